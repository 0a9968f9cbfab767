//! Health: a heartbeat row with the store round trip, the exchange's reachability and the age of the newest
//! stored bar per symbol. Stale data raises a warning event and an alert.

use std::sync::Arc;

use async_trait::async_trait;
use mcbot_stages::Clock;
use mcbot_stages::domain::{Symbol, Timeframe};
use mcbot_stages::ports::{Exchange, Notifier, RiskEvent, Severity, Store};
use serde_json::json;

use crate::runtime::{Job, JobContext, JobError, JobOutcome};

/// The health job.
pub struct HealthJob {
    store: Arc<dyn Store>,
    exchange: Arc<dyn Exchange>,
    notifier: Arc<dyn Notifier>,
    clock: Arc<dyn Clock>,
    symbols: Vec<Symbol>,
    timeframe: Timeframe,
    max_stale_bars: i32,
}

impl HealthJob {
    /// Builds the job; data older than `max_stale_bars` bars past the last close counts as stale.
    pub fn new(
        store: Arc<dyn Store>,
        exchange: Arc<dyn Exchange>,
        notifier: Arc<dyn Notifier>,
        clock: Arc<dyn Clock>,
        symbols: Vec<Symbol>,
        timeframe: Timeframe,
        max_stale_bars: i32,
    ) -> Self {
        Self { store, exchange, notifier, clock, symbols, timeframe, max_stale_bars }
    }
}

#[async_trait]
impl Job for HealthJob {
    fn name(&self) -> &str {
        "health"
    }

    async fn run(&self, _cx: &JobContext) -> Result<JobOutcome, JobError> {
        let now = self.clock.now();
        let store_ok = self.store.ping().await.is_ok();
        let exchange_ok = match self.symbols.first() {
            Some(s) => self.exchange.last_price(s).await.is_ok(),
            None => true,
        };
        let expected = self.timeframe.last_close(now);
        let mut stale = Vec::new();
        let mut ages = serde_json::Map::new();
        for s in &self.symbols {
            let newest = self.store.candles(s, self.timeframe, expected, 1).await?.pop();
            let lag_bars = newest.map(|c| {
                let behind = expected - c.close_time(self.timeframe);
                behind.num_minutes() / i64::from(self.timeframe.minutes())
            });
            ages.insert(s.to_string(), json!(lag_bars));
            if lag_bars.is_none_or(|l| l > i64::from(self.max_stale_bars)) {
                stale.push(s.to_string());
            }
        }
        let ok = store_ok && exchange_ok && stale.is_empty();
        let detail = json!({"store": store_ok, "exchange": exchange_ok, "bars_behind": ages, "stale": stale});
        self.store.insert_heartbeat(now, ok, &detail).await?;
        if !stale.is_empty() {
            let event = RiskEvent {
                ts: now,
                run_id: None,
                kind: "stale_data".into(),
                severity: Severity::Warning,
                message: format!("stored data stale for {}", stale.join(", ")),
            };
            super::raise(self.store.as_ref(), self.notifier.as_ref(), event).await?;
        }
        let summary = if ok { "healthy".to_owned() } else { format!("unhealthy: {detail}") };
        Ok(JobOutcome { summary, detail, failed: !store_ok || !exchange_ok })
    }
}
