//! The scheduled jobs.

mod health;
mod reconcile;
mod report;
mod trading_cycle;

pub use health::HealthJob;
pub use reconcile::{ReconcileJob, ReconcileReport};
pub use report::{Period, ReportJob, period_bounds, summarize};
pub use trading_cycle::TradingCycleJob;

use mcbot_stages::ports::{Alert, Notifier, RiskEvent, Severity, Store};

/// Records a risk event and alerts people; an alert that cannot be delivered is logged, never fatal.
pub(crate) async fn raise(
    store: &dyn Store,
    notifier: &dyn Notifier,
    event: RiskEvent,
) -> Result<(), mcbot_stages::ports::StoreError> {
    store.insert_risk_event(&event).await?;
    let alert = Alert {
        severity: event.severity,
        title: format!("[{}] {}", event.severity.as_str(), event.kind),
        body: event.message.clone(),
        image_png: None,
    };
    if let Err(e) = notifier.notify(&alert).await {
        tracing::warn!("alert not delivered: {e}");
    }
    if event.severity == Severity::Critical {
        tracing::error!(kind = %event.kind, "{}", event.message);
    }
    Ok(())
}
