//! Named leases in the database, so that of several scheduler replicas exactly one runs a given job at a time,
//! and another takes over when the holder stops renewing.

use chrono::{DateTime, Utc};
use mcbot_stages::ports::StoreError;

use super::SqlStore;

use super::codec::Cols;
use super::query::{Q, Sql};

// One statement decides: insert a free lease, or take it over when it is ours (renewal) or has expired. Under
// concurrency the engine serialises the conflicting writes and the loser's WHERE sees the winner's row.
static ACQUIRE: Sql = Sql::new(
    "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) \
     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
     WHERE leases.holder = excluded.holder OR leases.expires_at <= $4",
);
static RELEASE: Sql = Sql::new("DELETE FROM leases WHERE name = $1 AND holder = $2");
static HOLDER: Sql = Sql::new("SELECT holder FROM leases WHERE name = $1");

/// The fixed statements, for the catalogue.
pub(crate) static STATEMENTS: &[&Sql] = &[&ACQUIRE, &RELEASE, &HOLDER];

impl SqlStore {
    /// Takes or renews lease `name` for `holder` until `now + ttl`. True when `holder` now holds it; false when
    /// another holder's lease has not expired at `now`. Times come from the caller's `Clock`, so replicas must
    /// agree on time (NTP) to within a small fraction of `ttl`.
    pub async fn try_acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: DateTime<Utc>,
        ttl: chrono::Duration,
    ) -> Result<bool, StoreError> {
        let expires_at = now.checked_add_signed(ttl).unwrap_or(now);
        let done = Q::fixed(&ACQUIRE)
            .bind(name)
            .bind(holder)
            .bind(expires_at)
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(self.err("try_acquire_lease"))?;
        Ok(done == 1)
    }

    /// Who holds (or last held) lease `name`, if anyone: to tell whether that process is still alive.
    pub async fn lease_holder(&self, name: &str) -> Result<Option<String>, StoreError> {
        let row = Q::fixed(&HOLDER).bind(name).fetch_optional(&self.pool).await.map_err(self.err("lease_holder"))?;
        Ok(row.as_ref().map(|r| Cols::new(r, "leases").opt_text("holder")).transpose()?.flatten())
    }

    /// Gives lease `name` up if `holder` holds it, so another replica need not wait for expiry. True if it was
    /// held by `holder` and is now free.
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<bool, StoreError> {
        let done =
            Q::fixed(&RELEASE).bind(name).bind(holder).execute(&self.pool).await.map_err(self.err("release_lease"))?;
        Ok(done == 1)
    }
}
