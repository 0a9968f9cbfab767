//! `mcbot scheduler`: reconcile with the exchange, catch up a missed fire within the grace period, then run
//! every job on its schedule until SIGINT or SIGTERM; running work finishes, state is persisted, exit 0.

use mcbot_schedules::driver;

use crate::app::{App, AppError};

/// Runs until a shutdown signal.
pub async fn run(app: &App) -> Result<(), AppError> {
    match app.reconcile.reconcile().await {
        Ok(r) if r.is_clean() => tracing::info!("start-up reconciliation: in sync"),
        Ok(r) => tracing::error!(report = ?r, "start-up reconciliation found drift; the reconcile job will enter safe mode"),
        Err(e) => tracing::error!("start-up reconciliation failed: {e}"),
    }
    for v in app.runtime.views() {
        tracing::info!(job = %v.name, schedule = %v.schedule, next = ?v.next_fire, "scheduled");
    }
    driver::run_until(app.runtime.clone(), shutdown_signal())
        .await
        .map_err(|e| AppError::Runtime(e.to_string()))
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
