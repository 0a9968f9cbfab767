//! The job ledger: one row per (job, scheduled time), claimed atomically so a bar is processed exactly once even
//! with several scheduler replicas, retried after a failure, and taken over when its process died.

use super::query::Row;
use chrono::{DateTime, Utc};
use mcbot_stages::ports::{Claimant, JobClaim, JobRunRecord, JobStatus, NewEvent, RunFence, RunHolder, StoreError};

use super::SqlStore;
use super::codec::{Cols, clean};
use super::query::{Q, Sql};

static CLAIM_NEW: Sql = Sql::new(
    "INSERT INTO job_runs (run_id, job, scheduled_at, started_at, status, attempt, claim_token, claimant_pid, \
     claimant_host) VALUES ($1, $2, $3, $4, 'running', 1, $5, $6, $7) ON CONFLICT DO NOTHING",
);
// One conditional statement, so two claimers of a failed or stale run cannot both win: the second sees the row
// the first updated ('running', started now) and matches nothing.
static RECLAIM: Sql = Sql::new(
    "UPDATE job_runs SET status = 'running', attempt = attempt + 1, started_at = $3, finished_at = NULL, \
     error = NULL, outcome = NULL, claim_token = $5, claimant_pid = $6, claimant_host = $7 \
     WHERE job = $1 AND scheduled_at = $2 AND (status = 'failed' OR (status = 'running' AND started_at < $4)) \
     RETURNING attempt",
);
// A take-over names the token it replaces, so of two processes taking over the same dead claim one wins.
static TAKE_OVER: Sql = Sql::new(
    "UPDATE job_runs SET attempt = attempt + 1, started_at = $2, claim_token = $3, claimant_pid = $4, \
     claimant_host = $5 WHERE run_id = $1 AND status = 'running' AND claim_token IS NOT DISTINCT FROM $6 \
     RETURNING attempt",
);
static STATUS_OF: Sql = Sql::new(
    "SELECT status, started_at, claim_token, claimant_pid, claimant_host FROM job_runs \
     WHERE job = $1 AND scheduled_at = $2",
);
static FINISH: Sql = Sql::new(
    "UPDATE job_runs SET status = $3, finished_at = $4, error = $5, outcome = $6 \
     WHERE run_id = $1 AND claim_token = $2 AND status = 'running'",
);
// The first record of a scheduled time stands: a skip never overwrites a run that exists.
static SKIP: Sql = Sql::new(
    "INSERT INTO job_runs (run_id, job, scheduled_at, started_at, finished_at, status, attempt, error) \
     VALUES ($1, $2, $3, $4, $4, 'skipped', 1, $5) ON CONFLICT DO NOTHING",
);
static RECENT_ALL: Sql = Sql::new(
    "SELECT run_id, job, scheduled_at, started_at, finished_at, status, attempt, error, outcome, \
     claimant_pid, claimant_host FROM job_runs ORDER BY scheduled_at DESC, started_at DESC, run_id DESC LIMIT $1",
);
static RECENT_OF_JOB: Sql = Sql::new(
    "SELECT run_id, job, scheduled_at, started_at, finished_at, status, attempt, error, outcome, \
     claimant_pid, claimant_host FROM job_runs WHERE job = $1 ORDER BY scheduled_at DESC, started_at DESC LIMIT $2",
);
static LAST_SUCCESS: Sql = Sql::new(
    "SELECT run_id, job, scheduled_at, started_at, finished_at, status, attempt, error, outcome, \
     claimant_pid, claimant_host FROM job_runs WHERE job = $1 AND status = 'succeeded' ORDER BY scheduled_at DESC LIMIT 1",
);

/// The fixed statements, for the catalogue.
pub(crate) static STATEMENTS: &[&Sql] =
    &[&CLAIM_NEW, &RECLAIM, &TAKE_OVER, &STATUS_OF, &FINISH, &SKIP, &RECENT_ALL, &RECENT_OF_JOB, &LAST_SUCCESS];

impl SqlStore {
    /// See [`mcbot_stages::ports::Store::claim_run`]: insert-if-absent, else a conditional re-claim, else report
    /// why not.
    pub(crate) async fn claim_run_impl(
        &self,
        run_id: &str,
        job: &str,
        scheduled_at: DateTime<Utc>,
        now: DateTime<Utc>,
        stale_after: chrono::Duration,
        claimant: &Claimant,
    ) -> Result<JobClaim, StoreError> {
        let token = new_token();
        let inserted = Q::fixed(&CLAIM_NEW)
            .bind(run_id)
            .bind(job)
            .bind(scheduled_at)
            .bind(now)
            .bind(token.clone())
            .bind(i64::from(claimant.pid))
            .bind(claimant.host.clone())
            .execute(&self.pool)
            .await
            .map_err(self.err("claim_run"))?;
        if inserted == 1 {
            return Ok(JobClaim::Claimed { attempt: 1, fence: RunFence { run_id: run_id.to_owned(), token } });
        }
        let stale_before = now.checked_sub_signed(stale_after).unwrap_or(now);
        let reclaimed = Q::fixed(&RECLAIM)
            .bind(job)
            .bind(scheduled_at)
            .bind(now)
            .bind(stale_before)
            .bind(token.clone())
            .bind(i64::from(claimant.pid))
            .bind(claimant.host.clone())
            .fetch_optional(&self.pool)
            .await
            .map_err(self.err("claim_run"))?;
        if let Some(row) = reclaimed {
            let attempt = Cols::new(&row, "job_runs").int("attempt")?;
            return Ok(JobClaim::Claimed { attempt, fence: RunFence { run_id: run_id.to_owned(), token } });
        }
        let existing = Q::fixed(&STATUS_OF)
            .bind(job)
            .bind(scheduled_at)
            .fetch_optional(&self.pool)
            .await
            .map_err(self.err("claim_run"))?;
        let Some(row) = existing else {
            // Deleted between our statements: someone is tidying the ledger; let the caller try again later.
            return Ok(JobClaim::Busy { holder: None });
        };
        let c = Cols::new(&row, "job_runs");
        match c.named("status", JobStatus::parse)? {
            JobStatus::Succeeded | JobStatus::Skipped => Ok(JobClaim::AlreadyDone),
            // Running and fresh, or failed just now by a concurrent claimer's run: not ours this time.
            JobStatus::Running | JobStatus::Failed => {
                let claimant = claimant_of(&c)?;
                let since = c.time("started_at")?;
                Ok(JobClaim::Busy { holder: Some(RunHolder { claimant, since, token: c.opt_text("claim_token")? }) })
            }
        }
    }

    /// See [`mcbot_stages::ports::Store::take_over_run`].
    pub(crate) async fn take_over_run_impl(
        &self,
        run_id: &str,
        token: Option<&str>,
        now: DateTime<Utc>,
        claimant: &Claimant,
    ) -> Result<Option<JobClaim>, StoreError> {
        let new = new_token();
        let row = Q::fixed(&TAKE_OVER)
            .bind(run_id)
            .bind(now)
            .bind(new.clone())
            .bind(i64::from(claimant.pid))
            .bind(claimant.host.clone())
            .bind(token)
            .fetch_optional(&self.pool)
            .await
            .map_err(self.err("take_over_run"))?;
        row.map(|row| {
            let attempt = Cols::new(&row, "job_runs").int("attempt")?;
            Ok(JobClaim::Claimed { attempt, fence: RunFence { run_id: run_id.to_owned(), token: new } })
        })
        .transpose()
    }

    /// See [`mcbot_stages::ports::Store::finish_run`]. A claim that was taken over (or never made) finishes
    /// nothing: `Fenced`, and the events are not written either.
    pub(crate) async fn finish_run_impl(
        &self,
        fence: &RunFence,
        status: JobStatus,
        finished_at: DateTime<Utc>,
        error: Option<&str>,
        outcome: Option<&serde_json::Value>,
        events: Vec<NewEvent>,
    ) -> Result<(), StoreError> {
        let mut uow = self.begin_sql().await?;
        let done = Q::fixed(&FINISH)
            .bind(fence.run_id.clone())
            .bind(fence.token.clone())
            .bind(status.as_str())
            .bind(finished_at)
            .bind(error.map(clean))
            .bind(outcome.cloned())
            .execute(&mut uow.tx)
            .await
            .map_err(self.err("finish_run"))?;
        if done == 0 {
            return Err(StoreError::Fenced(format!(
                "run {} is not claimed by this process: not finished",
                fence.run_id
            )));
        }
        uow.events = events;
        mcbot_stages::ports::UnitOfWork::commit(Box::new(uow)).await.map(drop)
    }

    /// See [`mcbot_stages::ports::Store::record_skipped_run`]. The reason goes to the `error` column.
    pub(crate) async fn record_skipped_run_impl(
        &self,
        run_id: &str,
        job: &str,
        scheduled_at: DateTime<Utc>,
        now: DateTime<Utc>,
        reason: &str,
    ) -> Result<(), StoreError> {
        Q::fixed(&SKIP)
            .bind(run_id)
            .bind(job)
            .bind(scheduled_at)
            .bind(now)
            .bind(clean(reason))
            .execute(&self.pool)
            .await
            .map_err(self.err("record_skipped_run"))?;
        Ok(())
    }

    /// See [`mcbot_stages::ports::Store::recent_runs`]; newest by scheduled time.
    pub(crate) async fn recent_runs_impl(
        &self,
        job: Option<&str>,
        limit: i64,
    ) -> Result<Vec<JobRunRecord>, StoreError> {
        let rows = match job {
            Some(job) => Q::fixed(&RECENT_OF_JOB).bind(job).bind(limit.max(0)),
            None => Q::fixed(&RECENT_ALL).bind(limit.max(0)),
        }
        .fetch_all(&self.pool)
        .await
        .map_err(self.err("recent_runs"))?;
        rows.iter().map(run_from_row).collect()
    }

    /// See [`mcbot_stages::ports::Store::last_success`].
    pub(crate) async fn last_success_impl(&self, job: &str) -> Result<Option<JobRunRecord>, StoreError> {
        let row =
            Q::fixed(&LAST_SUCCESS).bind(job).fetch_optional(&self.pool).await.map_err(self.err("last_success"))?;
        row.as_ref().map(run_from_row).transpose()
    }
}

/// A fresh claim token.
fn new_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The recorded claimant of a ledger row, if both parts are there.
fn claimant_of(c: &Cols<'_>) -> Result<Option<Claimant>, StoreError> {
    Ok(match (c.opt_int("claimant_pid")?, c.opt_text("claimant_host")?) {
        (Some(pid), Some(host)) => u32::try_from(pid).ok().map(|pid| Claimant { pid, host }),
        _ => None,
    })
}

fn run_from_row(row: &Row) -> Result<JobRunRecord, StoreError> {
    let c = Cols::new(row, "job_runs");
    Ok(JobRunRecord {
        run_id: c.text("run_id")?,
        job: c.text("job")?,
        scheduled_at: c.time("scheduled_at")?,
        started_at: c.time("started_at")?,
        finished_at: c.opt_time("finished_at")?,
        status: c.named("status", JobStatus::parse)?,
        attempt: c.int("attempt")?,
        error: c.opt_text("error")?,
        outcome: c.opt_json("outcome")?,
        claimant: claimant_of(&c)?,
    })
}
