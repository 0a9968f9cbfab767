//! `mcbot scheduler`: reconcile with the exchange, catch up a missed fire within the grace period, then run
//! every job on its schedule until SIGINT or SIGTERM; running work finishes, state is persisted, exit 0.

use mcbot_schedules::driver;

use crate::app::{App, AppError};
use crate::market_stream::MarketStream;

/// Runs until a shutdown signal.
pub async fn run(app: &App) -> Result<(), AppError> {
    // Listen before anything else: a SIGTERM that arrives during start-up must still be a clean stop.
    let shutdown = shutdown_signal()?;
    match app.reconcile.reconcile().await {
        Ok(r) if r.is_clean() => tracing::info!("start-up reconciliation: in sync"),
        Ok(r) => {
            tracing::error!(report = ?r, "start-up reconciliation is not clean; the reconcile job acts on it")
        }
        Err(e) => tracing::error!("start-up reconciliation failed: {e}"),
    }
    // Start-up order: state is loaded (App::build), reconciled above; now the stream backfills missed bars over
    // REST and follows new ones over the WebSocket (each complete bar starts the cycle); then the schedule
    // resumes with its catch-up.
    let stream = MarketStream::start(app);
    for v in app.runtime.views() {
        tracing::info!(job = %v.name, schedule = %v.schedule, next = ?v.next_fire, "scheduled");
    }
    let result = driver::run_until(app.runtime.clone(), shutdown).await.map_err(|e| AppError::Runtime(e.to_string()));
    if let Some(s) = stream {
        s.shutdown().await;
    }
    result
}

/// Registers SIGINT and SIGTERM now and returns a future that resolves on either.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, AppError> {
    use tokio::signal::unix::{SignalKind, signal};
    let err = |e: std::io::Error| AppError::Runtime(format!("cannot listen for signals: {e}"));
    let mut term = signal(SignalKind::terminate()).map_err(err)?;
    let mut int = signal(SignalKind::interrupt()).map_err(err)?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    })
}
