//! The job runtime: fires jobs exactly once per scheduled time, never overlapping a job with itself, recording
//! every run in the job ledger, and catching up a missed fire once if it is within the grace period.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use mcbot_stages::Clock;
use mcbot_stages::domain::RunId;
use mcbot_stages::ports::{JobClaim, JobStatus, Store, StoreError};
use serde::Serialize;
use tokio::sync::Mutex;
use tracing::Instrument;

use crate::schedule::Schedule;

/// What a job knows about the run it is in.
#[derive(Debug, Clone)]
pub struct JobContext {
    /// Deterministic run id (job and scheduled time).
    pub run_id: RunId,
    /// The scheduled time this run belongs to.
    pub scheduled_at: DateTime<Utc>,
    /// 1 for the first attempt; more when an earlier attempt of the same time failed.
    pub attempt: i64,
}

/// A job's result for the ledger.
#[derive(Debug, Clone, Serialize)]
pub struct JobOutcome {
    /// One line for `mcbot status` and logs.
    pub summary: String,
    /// Structured detail, stored as JSON.
    pub detail: serde_json::Value,
    /// True when the job ran but what it found is a failure (a halted stage, unhealthy data).
    pub failed: bool,
}

/// Why a job could not complete.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The store failed; the run is recorded as failed if possible and retried at the next fire.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Anything else, with its reason.
    #[error("{0}")]
    Failed(String),
}

/// A scheduled unit of work.
#[async_trait]
pub trait Job: Send + Sync {
    /// Name in config, ledger and metrics.
    fn name(&self) -> &str;

    /// The ledger key of a fire: by default the fire time itself. The trading cycle keys on the bar close so that
    /// `run-once` and the scheduler agree on what "this bar" is.
    fn key(&self, fire_time: DateTime<Utc>) -> DateTime<Utc> {
        fire_time
    }

    /// Does the work.
    async fn run(&self, cx: &JobContext) -> Result<JobOutcome, JobError>;
}

/// What happened to one fire.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum FireOutcome {
    /// The job ran.
    Ran {
        /// Run id.
        run_id: String,
        /// Ledger status.
        status: JobStatus,
        /// Summary line or error.
        summary: String,
        /// Stored detail.
        detail: serde_json::Value,
    },
    /// The ledger already has a successful run for this time.
    AlreadyDone {
        /// Run id.
        run_id: String,
    },
    /// Another process holds the run, or this job is still running its previous fire.
    Busy {
        /// Run id.
        run_id: String,
    },
    /// The runtime is shutting down.
    ShuttingDown,
}

/// What a fire does when its job is still running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Overlap {
    /// Skip it, recorded (cron fires: the next fire comes anyway).
    Skip,
    /// Wait for the running one, then claim (event fires).
    Wait,
}

/// Runtime settings.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// A fire missed (process down) by more than this is not run on start.
    pub grace: Duration,
    /// A `running` ledger row older than this belongs to a dead process and may be re-claimed.
    pub stale_after: Duration,
}

struct Registered {
    schedule: Schedule,
    job: Arc<dyn Job>,
    running: Mutex<()>,
    last_fired: std::sync::Mutex<Option<DateTime<Utc>>>,
}

/// The runtime. Cheap to share behind an `Arc`.
pub struct Runtime {
    jobs: Vec<Registered>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    cfg: RuntimeConfig,
    stopping: AtomicBool,
}

/// A job and its next fire, for `mcbot jobs`.
#[derive(Debug, Clone, Serialize)]
pub struct JobView {
    /// Name.
    pub name: String,
    /// Cron expression.
    pub schedule: String,
    /// Next fire after now.
    pub next_fire: Option<DateTime<Utc>>,
}

impl Runtime {
    /// Builds a runtime over `(schedule, job)` pairs.
    pub fn new(
        jobs: Vec<(Schedule, Arc<dyn Job>)>,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        cfg: RuntimeConfig,
    ) -> Self {
        let jobs = jobs
            .into_iter()
            .map(|(schedule, job)| Registered {
                schedule,
                job,
                running: Mutex::new(()),
                last_fired: std::sync::Mutex::new(None),
            })
            .collect();
        Self { jobs, store, clock, cfg, stopping: AtomicBool::new(false) }
    }

    /// The jobs with their next fire times.
    pub fn views(&self) -> Vec<JobView> {
        let now = self.clock.now();
        self.jobs
            .iter()
            .map(|r| JobView {
                name: r.job.name().to_owned(),
                schedule: r.schedule.expr().to_owned(),
                next_fire: r.schedule.next_after(now),
            })
            .collect()
    }

    /// Job names in registration order.
    pub fn names(&self) -> Vec<String> {
        self.jobs.iter().map(|r| r.job.name().to_owned()).collect()
    }

    /// The cron expression of each job, for the production driver.
    pub fn schedules(&self) -> Vec<(String, String)> {
        self.jobs.iter().map(|r| (r.job.name().to_owned(), r.schedule.expr().to_owned())).collect()
    }

    /// The earliest fire of any job strictly after `t`: a virtual-time driver jumps the clock there.
    pub fn next_fire_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.jobs.iter().filter_map(|r| r.schedule.next_after(t)).min()
    }

    /// Stops accepting fires; running ones finish. [`Runtime::drain`] waits for them.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// Waits until no job is running (after [`Runtime::stop`], nothing new starts).
    pub async fn drain(&self) {
        for r in &self.jobs {
            let _idle = r.running.lock().await;
        }
    }

    /// Fires every job whose latest scheduled time at or before now has not been fired by this process yet.
    /// Used by the virtual-time driver and by the production driver's callbacks alike.
    pub async fn tick(&self) -> Vec<(String, FireOutcome)> {
        let now = self.clock.now();
        let mut out = Vec::new();
        for idx in 0..self.jobs.len() {
            if let Some(fire) = self.due(idx, now) {
                out.push((self.jobs[idx].job.name().to_owned(), self.fire(idx, fire).await));
            }
        }
        out
    }

    /// Fires one job by name if due (the production driver's callback).
    pub async fn tick_job(&self, name: &str) -> Option<FireOutcome> {
        let now = self.clock.now();
        let idx = self.jobs.iter().position(|r| r.job.name() == name)?;
        let fire = self.due(idx, now)?;
        Some(self.fire(idx, fire).await)
    }

    /// At start-up: each job's most recent missed fire runs once if it is within the grace period and the
    /// ledger has no completed run for it; older fires are not replayed (a week-old bar is not traded).
    pub async fn catch_up(&self) -> Vec<(String, FireOutcome)> {
        let now = self.clock.now();
        let mut out = Vec::new();
        for idx in 0..self.jobs.len() {
            let r = &self.jobs[idx];
            let Some(fire) = r.schedule.last_at_or_before(now) else { continue };
            self.mark_fired(idx, fire);
            if now - fire <= self.cfg.grace {
                out.push((r.job.name().to_owned(), self.fire(idx, fire).await));
            }
        }
        out
    }

    /// Runs job `name` for the explicit fire time `fire` (what `run-once` does), through the same ledger.
    pub async fn fire_named(&self, name: &str, fire: DateTime<Utc>) -> Option<FireOutcome> {
        let idx = self.jobs.iter().position(|r| r.job.name() == name)?;
        Some(self.fire_with(idx, fire, Overlap::Skip).await)
    }

    /// Like [`Runtime::fire_named`], but if the job is running (a catch-up, the previous bar's cycle) this fire
    /// waits for it instead of being skipped: an event-driven fire has no later cron tick to fall back on.
    pub async fn fire_named_after_running(&self, name: &str, fire: DateTime<Utc>) -> Option<FireOutcome> {
        let idx = self.jobs.iter().position(|r| r.job.name() == name)?;
        Some(self.fire_with(idx, fire, Overlap::Wait).await)
    }

    fn due(&self, idx: usize, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let r = &self.jobs[idx];
        let fire = r.schedule.last_at_or_before(now)?;
        let last = *r.last_fired.lock().unwrap_or_else(|e| e.into_inner());
        match last {
            Some(l) if l >= fire => None,
            // Several fires passed since the last one (the process stalled): only the newest runs.
            _ => {
                self.mark_fired(idx, fire);
                Some(fire)
            }
        }
    }

    fn mark_fired(&self, idx: usize, fire: DateTime<Utc>) {
        *self.jobs[idx].last_fired.lock().unwrap_or_else(|e| e.into_inner()) = Some(fire);
    }

    async fn fire(&self, idx: usize, fire: DateTime<Utc>) -> FireOutcome {
        self.fire_with(idx, fire, Overlap::Skip).await
    }

    async fn fire_with(&self, idx: usize, fire: DateTime<Utc>, overlap: Overlap) -> FireOutcome {
        if self.stopping.load(Ordering::SeqCst) {
            return FireOutcome::ShuttingDown;
        }
        let r = &self.jobs[idx];
        let name = r.job.name().to_owned();
        let key = r.job.key(fire);
        let run_id = RunId::new(&name, key);
        let span = tracing::info_span!("job", job = %name, run_id = %run_id);
        async {
            let guard = match overlap {
                Overlap::Skip => r.running.try_lock().ok(),
                Overlap::Wait => Some(r.running.lock().await),
            };
            if overlap == Overlap::Wait && self.stopping.load(Ordering::SeqCst) {
                return FireOutcome::ShuttingDown;
            }
            let Some(_guard) = guard else {
                let now = self.clock.now();
                if let Err(e) = self
                    .store
                    .record_skipped_run(
                        &format!("{run_id}#overlap@{}", now.timestamp_millis()),
                        &name,
                        now,
                        now,
                        "previous run still in progress",
                    )
                    .await
                {
                    tracing::warn!("could not record skipped run: {e}");
                }
                tracing::warn!("skipped: previous run still in progress");
                return FireOutcome::Busy { run_id: run_id.to_string() };
            };
            let now = self.clock.now();
            let attempt = match self.store.claim_run(run_id.as_str(), &name, key, now, self.cfg.stale_after).await {
                Ok(JobClaim::Claimed { attempt }) => attempt,
                Ok(JobClaim::AlreadyDone) => return FireOutcome::AlreadyDone { run_id: run_id.to_string() },
                Ok(JobClaim::Busy) => return FireOutcome::Busy { run_id: run_id.to_string() },
                Err(e) => {
                    tracing::error!("cannot claim run, not running it (fail closed): {e}");
                    return FireOutcome::Ran {
                        run_id: run_id.to_string(),
                        status: JobStatus::Failed,
                        summary: format!("ledger unavailable: {e}"),
                        detail: serde_json::Value::Null,
                    };
                }
            };
            let started = Instant::now();
            let cx = JobContext { run_id: run_id.clone(), scheduled_at: key, attempt };
            let result = r.job.run(&cx).await;
            let ms = started.elapsed().as_millis();
            let (status, summary, detail, error) = match result {
                Ok(o) if o.failed => (JobStatus::Failed, o.summary.clone(), o.detail, Some(o.summary)),
                Ok(o) => (JobStatus::Succeeded, o.summary, o.detail, None),
                Err(e) => (JobStatus::Failed, e.to_string(), serde_json::Value::Null, Some(e.to_string())),
            };
            let finished = self.clock.now();
            if let Err(e) =
                self.store.finish_run(run_id.as_str(), status, finished, error.as_deref(), Some(&detail)).await
            {
                tracing::error!("could not record the end of the run: {e}");
            }
            match status {
                JobStatus::Succeeded => tracing::info!(duration_ms = ms as u64, "{summary}"),
                _ => tracing::error!(duration_ms = ms as u64, "{summary}"),
            }
            FireOutcome::Ran { run_id: run_id.to_string(), status, summary, detail }
        }
        .instrument(span)
        .await
    }
}
