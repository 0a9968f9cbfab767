//! The job ledger: one row per (job, scheduled time), claimed atomically so a bar is processed exactly once even
//! with several scheduler replicas, retried after a failure, and taken over when its process died.

use chrono::{DateTime, Utc};
use mcbot_stages::ports::{JobClaim, JobRunRecord, JobStatus, StoreError};
use sqlx::any::AnyRow;

use super::SqlStore;
use super::codec::{Cols, clean, json_text, millis};
use super::dialect::Sql;

static CLAIM_NEW: Sql = Sql::new(
    "INSERT INTO job_runs (run_id, job, scheduled_at, started_at, status, attempt) \
     VALUES ($1, $2, $3, $4, 'running', 1) ON CONFLICT DO NOTHING",
);
// One conditional statement, so two claimers of a failed or stale run cannot both win: the second sees the row
// the first updated ('running', started now) and matches nothing.
static RECLAIM: Sql = Sql::new(
    "UPDATE job_runs SET status = 'running', attempt = attempt + 1, started_at = $3, finished_at = NULL, \
     error = NULL, outcome = NULL \
     WHERE job = $1 AND scheduled_at = $2 AND (status = 'failed' OR (status = 'running' AND started_at < $4)) \
     RETURNING attempt",
);
static STATUS_OF: Sql = Sql::new("SELECT status FROM job_runs WHERE job = $1 AND scheduled_at = $2");
static FINISH: Sql =
    Sql::new("UPDATE job_runs SET status = $2, finished_at = $3, error = $4, outcome = $5::jsonb WHERE run_id = $1");
// The first record of a scheduled time stands: a skip never overwrites a run that exists.
static SKIP: Sql = Sql::new(
    "INSERT INTO job_runs (run_id, job, scheduled_at, started_at, finished_at, status, attempt, error) \
     VALUES ($1, $2, $3, $4, $4, 'skipped', 1, $5) ON CONFLICT DO NOTHING",
);
static RECENT_ALL: Sql = Sql::new(
    "SELECT run_id, job, scheduled_at, started_at, finished_at, status, attempt, error, outcome::text \
     FROM job_runs ORDER BY scheduled_at DESC, started_at DESC, run_id DESC LIMIT $1",
);
static RECENT_OF_JOB: Sql = Sql::new(
    "SELECT run_id, job, scheduled_at, started_at, finished_at, status, attempt, error, outcome::text \
     FROM job_runs WHERE job = $1 ORDER BY scheduled_at DESC, started_at DESC LIMIT $2",
);
static LAST_SUCCESS: Sql = Sql::new(
    "SELECT run_id, job, scheduled_at, started_at, finished_at, status, attempt, error, outcome::text \
     FROM job_runs WHERE job = $1 AND status = 'succeeded' ORDER BY scheduled_at DESC LIMIT 1",
);

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
    ) -> Result<JobClaim, StoreError> {
        let inserted = self
            .query(&CLAIM_NEW)
            .bind(run_id)
            .bind(job)
            .bind(millis(scheduled_at))
            .bind(millis(now))
            .execute(&self.pool)
            .await
            .map_err(self.err("claim_run"))?;
        if inserted.rows_affected() == 1 {
            return Ok(JobClaim::Claimed { attempt: 1 });
        }
        let stale_before = now.checked_sub_signed(stale_after).unwrap_or(now);
        let reclaimed = self
            .query(&RECLAIM)
            .bind(job)
            .bind(millis(scheduled_at))
            .bind(millis(now))
            .bind(millis(stale_before))
            .fetch_optional(&self.pool)
            .await
            .map_err(self.err("claim_run"))?;
        if let Some(row) = reclaimed {
            return Ok(JobClaim::Claimed { attempt: Cols::new(&row, "job_runs").int("attempt")? });
        }
        let existing = self
            .query(&STATUS_OF)
            .bind(job)
            .bind(millis(scheduled_at))
            .fetch_optional(&self.pool)
            .await
            .map_err(self.err("claim_run"))?;
        let Some(row) = existing else {
            // Deleted between our statements: someone is tidying the ledger; let the caller try again later.
            return Ok(JobClaim::Busy);
        };
        match Cols::new(&row, "job_runs").named("status", JobStatus::parse)? {
            JobStatus::Succeeded | JobStatus::Skipped => Ok(JobClaim::AlreadyDone),
            // Running and fresh, or failed just now by a concurrent claimer's run: not ours this time.
            JobStatus::Running | JobStatus::Failed => Ok(JobClaim::Busy),
        }
    }

    /// See [`mcbot_stages::ports::Store::finish_run`]. Finishing a run that was never claimed is a bug in the
    /// caller and is reported as `Corrupt` rather than silently lost.
    pub(crate) async fn finish_run_impl(
        &self,
        run_id: &str,
        status: JobStatus,
        finished_at: DateTime<Utc>,
        error: Option<&str>,
        outcome: Option<&serde_json::Value>,
    ) -> Result<(), StoreError> {
        let done = self
            .query(&FINISH)
            .bind(run_id)
            .bind(status.as_str())
            .bind(millis(finished_at))
            .bind(error.map(clean))
            .bind(outcome.map(json_text))
            .execute(&self.pool)
            .await
            .map_err(self.err("finish_run"))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Corrupt(format!("job_runs: no run {run_id:?} to finish")));
        }
        Ok(())
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
        self.query(&SKIP)
            .bind(run_id)
            .bind(job)
            .bind(millis(scheduled_at))
            .bind(millis(now))
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
            Some(job) => self.query(&RECENT_OF_JOB).bind(job).bind(limit.max(0)),
            None => self.query(&RECENT_ALL).bind(limit.max(0)),
        }
        .fetch_all(&self.pool)
        .await
        .map_err(self.err("recent_runs"))?;
        rows.iter().map(run_from_row).collect()
    }

    /// See [`mcbot_stages::ports::Store::last_success`].
    pub(crate) async fn last_success_impl(&self, job: &str) -> Result<Option<JobRunRecord>, StoreError> {
        let row =
            self.query(&LAST_SUCCESS).bind(job).fetch_optional(&self.pool).await.map_err(self.err("last_success"))?;
        row.as_ref().map(run_from_row).transpose()
    }
}

fn run_from_row(row: &AnyRow) -> Result<JobRunRecord, StoreError> {
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
    })
}
