//! Health: a heartbeat row with the store round trip, the exchange's reachability and the age of the newest
//! stored bar per symbol. Stale data is a condition raised once and cleared once (a `stale_data` event when a
//! symbol goes stale, `data_recovered` when it is fresh again), not an alert every run. Also prunes the event log
//! and the notification outbox to their retention.

use std::sync::Arc;

use async_trait::async_trait;
use mcbot_stages::Clock;
use mcbot_stages::control::mutate_state;
use mcbot_stages::domain::{Symbol, Timeframe};
use mcbot_stages::ports::{DeliveryStore, EventKind, Exchange, FailureKind, NewEvent, Severity, Store};
use serde_json::json;

use super::monitor_inputs::Monitors;
use crate::runtime::{Job, JobContext, JobError, JobOutcome};
use mcbot_stages::monitors::{Finding, Level};

/// The health job.
pub struct HealthJob {
    store: Arc<dyn Store>,
    exchange: Arc<dyn Exchange>,
    clock: Arc<dyn Clock>,
    symbols: Vec<Symbol>,
    timeframe: Timeframe,
    max_stale_bars: i32,
    retention: chrono::Duration,
    monitors: Monitors,
    outbox: Option<(Arc<dyn DeliveryStore>, chrono::Duration)>,
}

impl HealthJob {
    /// Builds the job; data older than `max_stale_bars` bars past the last close counts as stale.
    pub fn new(
        store: Arc<dyn Store>,
        exchange: Arc<dyn Exchange>,
        clock: Arc<dyn Clock>,
        symbols: Vec<Symbol>,
        timeframe: Timeframe,
        max_stale_bars: i32,
    ) -> Self {
        let retention = chrono::Duration::days(400);
        Self {
            store,
            exchange,
            clock,
            symbols,
            timeframe,
            max_stale_bars,
            retention,
            monitors: Monitors::default(),
            outbox: None,
        }
    }

    /// The execution, return and process monitors to run, with their limits.
    pub fn with_monitors(mut self, monitors: Monitors) -> Self {
        self.monitors = monitors;
        self
    }

    /// Also prunes the notification outbox: sent and suppressed deliveries older than `retention` (pending and
    /// failed ones stay until they are sent or re-queued).
    pub fn with_outbox(mut self, outbox: Arc<dyn DeliveryStore>, retention: chrono::Duration) -> Self {
        self.outbox = Some((outbox, retention));
        self
    }

    /// How long events are kept (default 400 days); older ones are pruned by each health run.
    pub fn with_event_retention(mut self, retention: chrono::Duration) -> Self {
        self.retention = retention;
        self
    }
}

/// The condition key of a stale symbol.
fn stale_key(symbol: &str) -> String {
    format!("stale_data:{symbol}")
}

#[async_trait]
impl Job for HealthJob {
    fn name(&self) -> &str {
        "health"
    }

    async fn run(&self, cx: &JobContext) -> Result<JobOutcome, JobError> {
        let now = self.clock.now();
        if let Err(e) = self.store.ping().await {
            // The event log lives in the database: with it away, the log line is the alert.
            tracing::error!(kind = "store", "database unreachable: {e}");
            return Err(JobError::Store(e));
        }
        let exchange_ok = match self.symbols.first() {
            Some(s) => self.exchange.last_price(s).await.is_ok(),
            None => true,
        };
        let expected = self.timeframe.last_close(now);
        // Before the first trading cycle a fresh database holds no bars: that is waiting, not stale data.
        let first_cycle_pending = self.store.load_state().await?.last_bar.is_none();
        let mut stale = Vec::new();
        let mut waiting = Vec::new();
        let mut ages = serde_json::Map::new();
        for s in &self.symbols {
            let newest = self.store.candles(s, self.timeframe, expected, 1).await?.pop();
            if newest.is_none() && first_cycle_pending {
                waiting.push(s.clone());
                ages.insert(s.to_string(), serde_json::Value::Null);
                continue;
            }
            let lag_bars = newest.map(|c| {
                let behind = expected - c.close_time(self.timeframe);
                behind.num_minutes() / i64::from(self.timeframe.minutes())
            });
            ages.insert(s.to_string(), json!(lag_bars));
            if lag_bars.is_none_or(|l| l > i64::from(self.max_stale_bars)) {
                stale.push(s.clone());
            }
        }
        let ok = exchange_ok && stale.is_empty();
        let detail = json!({
            "store": true, "exchange": exchange_ok, "bars_behind": ages, "stale": stale, "waiting_for_first_bar": waiting,
        });
        let findings = self.monitors.findings(self.store.as_ref(), now).await?;
        let mut detail = detail;
        detail["monitors"] = json!(findings);
        self.store.insert_heartbeat(now, ok && findings.is_empty(), &detail).await?;
        let run_id = cx.run_id.to_string();
        mutate_state(self.store.as_ref(), cx.fence.as_ref(), |st| {
            let mut events = Vec::new();
            for s in &self.symbols {
                let key = stale_key(s.as_str());
                let is_stale = stale.contains(s);
                match (is_stale, st.conditions.contains_key(&key)) {
                    (true, false) => {
                        let why = format!("stored data of {s} stale (bars behind: {})", ages[s.as_str()]);
                        st.conditions.insert(key.clone(), why.clone());
                        events.push(
                            NewEvent::new(now, EventKind::StaleData, Severity::Warning, why)
                                .run(run_id.clone())
                                .symbol(s)
                                .dedup(key),
                        );
                    }
                    (false, true) => {
                        st.conditions.remove(&key);
                        events.push(
                            NewEvent::new(
                                now,
                                EventKind::DataRecovered,
                                Severity::Info,
                                format!("{s} data fresh again"),
                            )
                            .run(run_id.clone())
                            .symbol(s)
                            .dedup(key),
                        );
                    }
                    _ => {}
                }
            }
            events.extend(monitor_events(&mut st.conditions, &findings, now, &run_id));
            events
        })
        .await?;
        let pruned = self.store.prune_events(now - self.retention).await?;
        if pruned > 0 {
            tracing::info!(pruned, "events older than the retention pruned");
        }
        if let Some((outbox, keep)) = &self.outbox {
            let pruned = outbox.prune_deliveries(now - *keep).await?;
            if pruned > 0 {
                tracing::info!(pruned, "deliveries older than the retention pruned");
            }
        }
        let summary = match (ok, waiting.is_empty()) {
            (true, true) if !findings.is_empty() => {
                format!(
                    "healthy; monitors: {}",
                    findings.iter().map(|f| f.message.as_str()).collect::<Vec<_>>().join("; ")
                )
            }
            (true, true) => "healthy".to_owned(),
            (true, false) => "healthy; waiting for the first trading cycle to store bars".to_owned(),
            (false, _) => format!("unhealthy: {detail}"),
        };
        let mut outcome = JobOutcome::ok(summary, detail);
        if !exchange_ok {
            outcome.failed = true;
            outcome.failure = Some((FailureKind::Exchange, "exchange unreachable".into()));
        }
        Ok(outcome)
    }
}

/// Raises a monitor's condition once when it starts firing and clears it once when it stops; a monitor that keeps
/// firing adds nothing (and one that turns critical while raised as a warning is raised again, louder).
fn monitor_events(
    conditions: &mut std::collections::BTreeMap<String, String>,
    findings: &[Finding],
    now: chrono::DateTime<chrono::Utc>,
    run_id: &str,
) -> Vec<NewEvent> {
    let mut events = Vec::new();
    for f in findings {
        let marker = match f.level {
            Level::Warning => "warning",
            Level::Critical => "critical",
        };
        let raised = conditions.get(&f.key);
        if raised.is_some_and(|m| m.starts_with(marker) || m.starts_with("critical")) {
            continue;
        }
        conditions.insert(f.key.clone(), format!("{marker}: {}", f.message));
        let severity = if f.level == Level::Critical { Severity::Critical } else { Severity::Warning };
        events.push(
            NewEvent::new(now, EventKind::MonitorAlert, severity, f.message.clone())
                .run(run_id.to_owned())
                .dedup(f.key.clone()),
        );
    }
    let gone: Vec<String> = conditions
        .keys()
        .filter(|k| k.starts_with("monitor:") && !findings.iter().any(|f| &f.key == *k))
        .cloned()
        .collect();
    for key in gone {
        conditions.remove(&key);
        let what = key.trim_start_matches("monitor:").replace('_', " ");
        events.push(
            NewEvent::new(now, EventKind::MonitorCleared, Severity::Info, format!("{what} back within its limit"))
                .run(run_id.to_owned())
                .dedup(key),
        );
    }
    events
}
