//! The job runtime: fires jobs exactly once per scheduled time, never overlapping a job with itself, recording
//! every run in the job ledger, and catching up a missed fire once if it is within the grace period.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use mcbot_stages::Clock;
use mcbot_stages::domain::RunId;
use mcbot_stages::ports::{
    Claimant, EventKind, FailureKind, JobClaim, JobRunRecord, JobStatus, NewEvent, RunFence, RunHolder, Severity,
    Store, StoreError,
};
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
    /// The run's claim, carried by the job's writes so they are refused once another process took it over.
    pub fence: Option<RunFence>,
    /// Turns true when the process is stopping: a job starts no new attempt after that.
    pub stop: tokio::sync::watch::Receiver<bool>,
}

impl JobContext {
    /// A context outside the runtime (tests, one-off calls): no claim, never stopping.
    pub fn detached(run_id: RunId, scheduled_at: DateTime<Utc>) -> Self {
        let (_tx, stop) = tokio::sync::watch::channel(false);
        Self { run_id, scheduled_at, attempt: 1, fence: None, stop }
    }

    /// True once the process is stopping.
    pub fn stopping(&self) -> bool {
        *self.stop.borrow()
    }
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
    /// When failed: what failed and why, stored in the ledger instead of the summary.
    pub failure: Option<(FailureKind, String)>,
    /// Events to record with the ledger row, in the same transaction.
    #[serde(skip)]
    pub events: Vec<NewEvent>,
}

impl JobOutcome {
    /// A successful outcome.
    pub fn ok(summary: impl Into<String>, detail: serde_json::Value) -> Self {
        Self { summary: summary.into(), detail, failed: false, failure: None, events: Vec::new() }
    }
}

/// Why a job could not complete.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The store failed; the run is recorded as failed if possible and retried at the next fire.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Anything else, with its cause.
    #[error("{kind}: {message}")]
    Failed {
        /// What failed.
        kind: FailureKind,
        /// Why.
        message: String,
    },
}

impl JobError {
    /// A failure of `kind`.
    pub fn failed(kind: FailureKind, message: impl Into<String>) -> Self {
        JobError::Failed { kind, message: message.into() }
    }

    /// What failed.
    pub fn kind(&self) -> FailureKind {
        match self {
            JobError::Store(StoreError::Fenced(_)) => FailureKind::ClaimLost,
            JobError::Store(_) => FailureKind::Store,
            JobError::Failed { kind, .. } => *kind,
        }
    }
}

/// Resolves once `stop` turns true; never, if its sender is gone (nobody can stop the holder then).
pub(crate) async fn stop_requested(stop: &mut tokio::sync::watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Who this process is, and whether the process behind another claim is gone: a claim of a dead process on
/// this host is taken over at once instead of after `stale_after`.
pub trait Liveness: Send + Sync {
    /// This process.
    fn me(&self) -> Claimant;
    /// True only when `claimant` is certainly dead (same host, no such process). Unknown means alive.
    fn is_dead(&self, claimant: &Claimant) -> bool;
}

/// A [`Liveness`] that knows nothing of other processes: every claim counts as alive until stale.
pub struct AssumeAlive(pub Claimant);

impl Liveness for AssumeAlive {
    fn me(&self) -> Claimant {
        self.0.clone()
    }
    fn is_dead(&self, _: &Claimant) -> bool {
        false
    }
}

/// One run about to start, as told to the [`RunObserver`]s.
#[derive(Debug, Clone, Copy)]
pub struct RunStart<'a> {
    /// The job's name.
    pub job: &'a str,
    /// The job's cron expression (six fields, seconds first, UTC).
    pub schedule: &'a str,
    /// The run.
    pub run_id: &'a str,
    /// The ledger key of the run.
    pub scheduled_at: DateTime<Utc>,
}

/// One run that ended, as told to the [`RunObserver`]s.
#[derive(Debug, Clone, Copy)]
pub struct RunEnd<'a> {
    /// The job's name.
    pub job: &'a str,
    /// The job's cron expression.
    pub schedule: &'a str,
    /// The run.
    pub run_id: &'a str,
    /// How it was recorded in the ledger.
    pub status: JobStatus,
    /// Wall time the job took.
    pub duration: std::time::Duration,
    /// When it ended (injected clock).
    pub finished_at: DateTime<Utc>,
    /// What failed and why, for a failed run.
    pub failure: Option<(FailureKind, &'a str)>,
}

/// Told when a run starts and ends, and when a fire does not run: metrics and job monitors (error tracking's
/// cron check-ins) watch the jobs through this one seam instead of each job reporting on its own.
/// Implementations must return quickly and never fail: they run on the job's task.
pub trait RunObserver: Send + Sync {
    /// A claimed run is about to start.
    fn run_started(&self, _run: &RunStart<'_>) {}
    /// A run ended and its ledger row was written (or could not be).
    fn run_finished(&self, _run: &RunEnd<'_>) {}
    /// A fire of `job` did not run: `reason` is `already_done`, `busy`, `overlap`, `ledger_unavailable` or
    /// `shutting_down`.
    fn fire_not_run(&self, _job: &str, _reason: &'static str) {}
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

    /// True when a missed fire runs at start-up however long ago (reports: a missed period is still worth
    /// producing); false for jobs whose missed fires are only run within the grace period (a week-old bar is not
    /// traded).
    fn catches_up_any_age(&self) -> bool {
        false
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
        /// The other claimant, when known.
        holder: Option<RunHolder>,
    },
    /// The runtime is shutting down.
    ShuttingDown,
}

impl std::fmt::Display for FireOutcome {
    /// One short line for the log: the run and how it ended, never the stored detail document (a catch-up logs one
    /// line per job, and a cycle's detail runs to pages).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FireOutcome::Ran { run_id, status, summary, .. } => write!(f, "{run_id} {}: {summary}", status.as_str()),
            FireOutcome::AlreadyDone { run_id } => write!(f, "{run_id} already done"),
            FireOutcome::Busy { run_id, .. } => write!(f, "{run_id} is being run elsewhere"),
            FireOutcome::ShuttingDown => f.write_str("not run: shutting down"),
        }
    }
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
    /// The newest fire another claimant held when this process fired it: retried by
    /// [`Runtime::retry_held`] until it is done, so a replica that died holding it is taken over.
    held: std::sync::Mutex<Option<DateTime<Utc>>>,
}

/// The runtime. Cheap to share behind an `Arc`.
pub struct Runtime {
    jobs: Vec<Registered>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    cfg: RuntimeConfig,
    stopping: AtomicBool,
    stop_tx: tokio::sync::watch::Sender<bool>,
    liveness: Arc<dyn Liveness>,
    observers: Vec<Arc<dyn RunObserver>>,
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
                held: std::sync::Mutex::new(None),
            })
            .collect();
        let liveness: Arc<dyn Liveness> =
            Arc::new(AssumeAlive(Claimant { pid: std::process::id(), host: "localhost".into() }));
        let (stop_tx, _) = tokio::sync::watch::channel(false);
        Self { jobs, store, clock, cfg, stopping: AtomicBool::new(false), stop_tx, liveness, observers: Vec::new() }
    }

    /// Adds an observer told of every run's start and end (metrics, job monitors).
    pub fn with_observer(mut self, observer: Arc<dyn RunObserver>) -> Self {
        self.observers.push(observer);
        self
    }

    fn not_run(&self, job: &str, reason: &'static str) {
        for o in &self.observers {
            o.fire_not_run(job, reason);
        }
    }

    /// Names this process in its claims and lets it take over the claims of dead processes on its host.
    pub fn with_liveness(mut self, liveness: Arc<dyn Liveness>) -> Self {
        self.liveness = liveness;
        self
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
        self.stop_tx.send_replace(true);
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

    /// Fires again every fire that another claimant held when this process fired it, as long as it is still
    /// its job's newest fire: once the holder finished it is done (and forgotten); once the holder is gone (a
    /// dead process on this host) or its claim went stale (`stale_after`, another host) this process takes the
    /// run over. So of several replicas, one that dies mid-job has its run finished by another, instead of the
    /// run staying `running` until someone restarts. A newer fire of the job supersedes the held one.
    pub async fn retry_held(&self) -> Vec<(String, FireOutcome)> {
        let now = self.clock.now();
        let mut out = Vec::new();
        for idx in 0..self.jobs.len() {
            let r = &self.jobs[idx];
            let Some(fire) = *r.held.lock().unwrap_or_else(|e| e.into_inner()) else { continue };
            if r.schedule.last_at_or_before(now) != Some(fire) {
                self.set_held(idx, fire, false);
                continue;
            }
            out.push((r.job.name().to_owned(), self.fire(idx, fire).await));
        }
        out
    }

    /// Remembers (or forgets) `fire` as held by another claimant.
    fn set_held(&self, idx: usize, fire: DateTime<Utc>, held: bool) {
        let mut slot = self.jobs[idx].held.lock().unwrap_or_else(|e| e.into_inner());
        match (held, *slot) {
            (true, Some(f)) if f > fire => {}
            (true, _) => *slot = Some(fire),
            (false, Some(f)) if f == fire => *slot = None,
            (false, _) => {}
        }
    }

    /// Fires one job by name if due (the production driver's callback).
    pub async fn tick_job(&self, name: &str) -> Option<FireOutcome> {
        let now = self.clock.now();
        let idx = self.jobs.iter().position(|r| r.job.name() == name)?;
        let fire = self.due(idx, now)?;
        Some(self.fire(idx, fire).await)
    }

    /// At start-up: each job's most recent missed fire runs once if it is within the grace period (or the job
    /// catches up at any age) and the ledger has no completed run for it; older fires are not replayed (a
    /// week-old bar is not traded).
    pub async fn catch_up(&self) -> Vec<(String, FireOutcome)> {
        let now = self.clock.now();
        let mut out = Vec::new();
        for idx in 0..self.jobs.len() {
            let r = &self.jobs[idx];
            let Some(fire) = r.schedule.last_at_or_before(now) else { continue };
            self.mark_fired(idx, fire);
            if now - fire <= self.cfg.grace || r.job.catches_up_any_age() {
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
        let r = &self.jobs[idx];
        if self.stopping.load(Ordering::SeqCst) {
            self.not_run(r.job.name(), "shutting_down");
            return FireOutcome::ShuttingDown;
        }
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
                self.not_run(&name, "overlap");
                return FireOutcome::Busy { run_id: run_id.to_string(), holder: None };
            };
            let (attempt, fence) = match self.claim(&run_id, &name, key).await {
                Ok(JobClaim::Claimed { attempt, fence }) => (attempt, fence),
                Ok(JobClaim::AlreadyDone) => {
                    self.set_held(idx, fire, false);
                    self.not_run(&name, "already_done");
                    return FireOutcome::AlreadyDone { run_id: run_id.to_string() };
                }
                Ok(JobClaim::Busy { holder }) => {
                    tracing::info!(holder = %self.describe_holder(holder.as_ref()), "run held by another claimant");
                    self.set_held(idx, fire, true);
                    self.not_run(&name, "busy");
                    return FireOutcome::Busy { run_id: run_id.to_string(), holder };
                }
                Err(e) => {
                    tracing::error!("cannot claim run, not running it (fail closed): {e}");
                    self.not_run(&name, "ledger_unavailable");
                    return FireOutcome::Ran {
                        run_id: run_id.to_string(),
                        status: JobStatus::Failed,
                        summary: format!("ledger unavailable: {e}"),
                        detail: serde_json::Value::Null,
                    };
                }
            };
            self.set_held(idx, fire, false);
            let schedule = r.schedule.expr();
            let start = RunStart { job: &name, schedule, run_id: run_id.as_str(), scheduled_at: key };
            for o in &self.observers {
                o.run_started(&start);
            }
            let started = Instant::now();
            let cx = JobContext {
                run_id: run_id.clone(),
                scheduled_at: key,
                attempt,
                fence: Some(fence.clone()),
                stop: self.stop_tx.subscribe(),
            };
            let result = r.job.run(&cx).await;
            let took = started.elapsed();
            let ms = took.as_millis();
            let finished = self.clock.now();
            let (status, summary, detail, error, mut events) = match result {
                Ok(o) if o.failed => {
                    let (kind, why) = o.failure.clone().unwrap_or((FailureKind::Store, o.summary.clone()));
                    (JobStatus::Failed, o.summary, o.detail, Some((kind, why)), o.events)
                }
                Ok(o) => (JobStatus::Succeeded, o.summary, o.detail, None, o.events),
                Err(e) => {
                    (JobStatus::Failed, e.to_string(), serde_json::Value::Null, Some((e.kind(), e.to_string())), vec![])
                }
            };
            if let Some((kind, why)) = &error {
                events.push(
                    NewEvent::new(finished, EventKind::JobFailed, Severity::Critical, format!("{name} failed: {why}"))
                        .run(run_id.to_string())
                        .payload(serde_json::json!({"job": name, "kind": kind.as_str(), "attempt": attempt}))
                        .dedup(format!("job_failed:{name}:{}", kind.as_str())),
                );
            }
            let error_text = error.as_ref().map(|(kind, why)| format!("{kind}: {why}"));
            if let Err(e) =
                self.store.finish_run(&fence, status, finished, error_text.as_deref(), Some(&detail), events).await
            {
                tracing::error!("could not record the end of the run: {e}");
            }
            let end = RunEnd {
                job: &name,
                schedule,
                run_id: run_id.as_str(),
                status,
                duration: took,
                finished_at: finished,
                failure: error.as_ref().map(|(kind, why)| (*kind, why.as_str())),
            };
            for o in &self.observers {
                o.run_finished(&end);
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

impl Runtime {
    /// Claims the run; a claim held by a process that is certainly dead on this host is taken over at once.
    async fn claim(&self, run_id: &RunId, job: &str, key: DateTime<Utc>) -> Result<JobClaim, StoreError> {
        let me = self.liveness.me();
        let now = self.clock.now();
        let claim = self.store.claim_run(run_id.as_str(), job, key, now, self.cfg.stale_after, &me).await?;
        let JobClaim::Busy { holder: Some(holder) } = &claim else { return Ok(claim) };
        let Some(dead) = holder.claimant.as_ref().filter(|c| self.liveness.is_dead(c)) else { return Ok(claim) };
        tracing::warn!(pid = dead.pid, host = %dead.host, "the process holding this run is gone: taking it over");
        Ok(self.store.take_over_run(run_id.as_str(), holder.token.as_deref(), now, &me).await?.unwrap_or(claim))
    }
}

/// Who holds a claim, whether that process still lives, and when another process may take the run over: what a
/// person needs after a crash to know whether to wait, and how long.
pub fn describe_claim(
    claimant: Option<&Claimant>,
    since: DateTime<Utc>,
    liveness: &dyn Liveness,
    stale_after: Duration,
) -> String {
    let at = |t: DateTime<Utc>| t.format("%Y-%m-%d %H:%M:%S UTC").to_string();
    let stale_at = since.checked_add_signed(stale_after).unwrap_or(since);
    let Some(c) = claimant else {
        return format!("a process since {}; taken over after {} if it stops", at(since), at(stale_at));
    };
    let who = format!("pid {} on {} since {}", c.pid, c.host, at(since));
    if liveness.is_dead(c) {
        format!("{who}; that process is gone: the next run takes the claim over at once")
    } else if c.host == liveness.me().host {
        format!("{who}; alive; taken over after {} if it hangs", at(stale_at))
    } else {
        format!("{who}; on another host, not checked from here; taken over after {} if it stops", at(stale_at))
    }
}

impl Runtime {
    /// [`describe_claim`] for the holder a claim attempt reported, with this runtime's liveness and staleness.
    pub fn describe_holder(&self, holder: Option<&RunHolder>) -> String {
        match holder {
            Some(h) => describe_claim(h.claimant.as_ref(), h.since, self.liveness.as_ref(), self.cfg.stale_after),
            None => "this process (the previous run is still going)".into(),
        }
    }

    /// Where the claim of a `running` ledger row stands, in words; `None` for rows that are not running.
    pub fn describe_run(&self, run: &JobRunRecord) -> Option<String> {
        (run.status == JobStatus::Running).then(|| {
            describe_claim(run.claimant.as_ref(), run.started_at, self.liveness.as_ref(), self.cfg.stale_after)
        })
    }
}
