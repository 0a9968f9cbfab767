//! The production driver: tokio-cron-scheduler triggers each job at its cron times and the [`Runtime`] decides
//! what runs. Shutdown (SIGINT/SIGTERM in the binary) stops new fires, lets running jobs finish, then returns.

use std::future::Future;
use std::sync::Arc;

use tokio_cron_scheduler::{Job as CronJob, JobScheduler, JobSchedulerError};

use crate::runtime::Runtime;

/// How often a run held by another replica is looked at again.
const HELD_RETRY: std::time::Duration = std::time::Duration::from_secs(15);

/// The scheduler could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("scheduler: {0}")]
pub struct DriverError(#[from] JobSchedulerError);

/// Runs `runtime` on wall-clock cron triggers until `shutdown` resolves. Catch-up of missed fires runs first.
/// After `shutdown`, no new run or attempt starts; running jobs get `drain_within` to finish and commit, then are
/// abandoned (their ledger rows stay `running` and the next start takes them over at once, as their process is
/// gone).
pub async fn run_until(
    runtime: Arc<Runtime>,
    shutdown: impl Future<Output = ()>,
    drain_within: std::time::Duration,
) -> Result<(), DriverError> {
    for (job, outcome) in runtime.catch_up().await {
        tracing::info!(%job, %outcome, "catch-up on start");
    }
    let mut scheduler = JobScheduler::new().await?;
    for (name, expr) in runtime.schedules() {
        let rt = runtime.clone();
        let job = CronJob::new_async(expr.as_str(), move |_id, _lock| {
            let rt = rt.clone();
            let name = name.clone();
            Box::pin(async move {
                // Each trigger runs on its own task; the runtime refuses overlaps and duplicates.
                if let Some(outcome) = rt.tick_job(&name).await {
                    tracing::debug!(job = %name, %outcome, "fired");
                }
            })
        })?;
        scheduler.add(job).await?;
    }
    scheduler.start().await?;
    // A run another replica held when this one fired is looked at again every few seconds: done by then, it is
    // forgotten; its holder dead or stale, this process takes it over.
    let retry = {
        let rt = runtime.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(HELD_RETRY).await;
                for (job, outcome) in rt.retry_held().await {
                    tracing::debug!(%job, outcome = ?outcome, "held run looked at again");
                }
            }
        })
    };
    shutdown.await;
    tracing::info!("shutdown requested: no new runs; waiting for running jobs to finish");
    runtime.stop();
    if let Err(e) = scheduler.shutdown().await {
        // Stopping the cron triggers failed: fires that still arrive are refused by the stopped runtime.
        tracing::warn!("stopping the cron scheduler failed: {e}");
    }
    if tokio::time::timeout(drain_within, runtime.drain()).await.is_err() {
        tracing::warn!(
            "running job(s) did not finish within {drain_within:?}: abandoned; the next start takes their runs over"
        );
    } else {
        tracing::info!("all jobs idle, state persisted; bye");
    }
    // After the drain: a retry that was running has finished (or been abandoned with the rest), and the stopped
    // runtime starts no new one.
    retry.abort();
    Ok(())
}
