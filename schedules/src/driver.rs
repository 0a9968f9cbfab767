//! The production driver: tokio-cron-scheduler triggers each job at its cron times and the [`Runtime`] decides
//! what runs. Shutdown (SIGINT/SIGTERM in the binary) stops new fires, lets running jobs finish, then returns.

use std::future::Future;
use std::sync::Arc;

use tokio_cron_scheduler::{Job as CronJob, JobScheduler, JobSchedulerError};

use crate::runtime::Runtime;

/// The scheduler could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("scheduler: {0}")]
pub struct DriverError(#[from] JobSchedulerError);

/// Runs `runtime` on wall-clock cron triggers until `shutdown` resolves. Catch-up of missed fires runs first.
pub async fn run_until(runtime: Arc<Runtime>, shutdown: impl Future<Output = ()>) -> Result<(), DriverError> {
    for (job, outcome) in runtime.catch_up().await {
        tracing::info!(%job, outcome = ?outcome, "catch-up on start");
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
                    tracing::debug!(job = %name, outcome = ?outcome, "fired");
                }
            })
        })?;
        scheduler.add(job).await?;
    }
    scheduler.start().await?;
    shutdown.await;
    tracing::info!("shutdown requested: no new runs; waiting for running jobs to finish");
    runtime.stop();
    scheduler.shutdown().await?;
    runtime.drain().await;
    tracing::info!("all jobs idle, state persisted; bye");
    Ok(())
}
