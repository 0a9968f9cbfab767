//! Reconciliation: the exchange is the truth. Orders whose outcome the bot does not know are looked up by client
//! order id and booked; one the exchange still does not know after a grace period never reached it and is closed
//! as not placed. Then stored positions are compared with the exchange's balances. Drift beyond one lot step, or
//! an open order the bot never placed, puts the bot in safe mode (no entries) with a critical event.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::Duration;
use mcbot_stages::Clock;
use mcbot_stages::domain::{Decimal, OrderStatus, Position, Symbol};
use mcbot_stages::pipeline::execution::{close_unplaced, record_ack};
use mcbot_stages::ports::{Exchange, Notifier, RiskEvent, Severity, Store};
use serde::Serialize;

use crate::runtime::{Job, JobContext, JobError, JobOutcome};

/// What reconciliation found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReconcileReport {
    /// Pending orders resolved from the exchange.
    pub resolved_orders: usize,
    /// Pending orders the exchange does not know yet, younger than the grace period: entries stay blocked until
    /// a later reconciliation resolves them.
    pub awaiting_orders: Vec<String>,
    /// Pending orders the exchange still did not know after the grace period: they never reached it and are
    /// closed as not placed (a retried cycle of the same bar places them again under the same id).
    pub closed_unplaced: Vec<String>,
    /// Symbol, stored quantity, exchange quantity, for each drift too large to correct (or an orphan position).
    pub drifts: Vec<(Symbol, Decimal, Decimal)>,
    /// Small drifts (within the tolerance) corrected to the exchange's quantity: symbol, stored, exchange.
    pub corrected: Vec<(Symbol, Decimal, Decimal)>,
    /// Open orders on the exchange the bot has no record of.
    pub unknown_open_orders: Vec<String>,
}

impl ReconcileReport {
    /// True when store and exchange agree and nothing is pending: the unknown-order breaker may be cleared.
    pub fn is_clean(&self) -> bool {
        self.awaiting_orders.is_empty() && !self.needs_safe_mode()
    }

    /// True when the disagreement needs a person: a position or an open order the bot cannot explain.
    pub fn needs_safe_mode(&self) -> bool {
        !self.drifts.is_empty() || !self.unknown_open_orders.is_empty()
    }
}

/// The reconcile job.
pub struct ReconcileJob {
    store: Arc<dyn Store>,
    exchange: Arc<dyn Exchange>,
    notifier: Arc<dyn Notifier>,
    clock: Arc<dyn Clock>,
    symbols: Vec<Symbol>,
    tolerance: Decimal,
    unplaced_after: Duration,
}

impl ReconcileJob {
    /// Builds the job.
    pub fn new(
        store: Arc<dyn Store>,
        exchange: Arc<dyn Exchange>,
        notifier: Arc<dyn Notifier>,
        clock: Arc<dyn Clock>,
        symbols: Vec<Symbol>,
    ) -> Self {
        let unplaced_after = Duration::minutes(2);
        Self { store, exchange, notifier, clock, symbols, tolerance: Decimal::new(1, 2), unplaced_after }
    }

    /// How long a pending order may stay unknown to the exchange before it is taken as never placed (default
    /// 2 min: an exchange shows an accepted order to a lookup within seconds).
    pub fn with_unplaced_after(mut self, grace: Duration) -> Self {
        self.unplaced_after = grace;
        self
    }

    /// Relative drift (fraction of the stored quantity, default 1 %) that is corrected silently-but-recorded;
    /// anything larger, or a position the bot does not know at all, is an orphan and stops entries.
    pub fn with_tolerance(mut self, tolerance: Decimal) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// Compares and books; also used at start-up before the schedule resumes.
    pub async fn reconcile(&self) -> Result<ReconcileReport, JobError> {
        let ex = |e: mcbot_stages::ports::ExchangeError| JobError::Failed(format!("exchange: {e}"));
        let mut report = ReconcileReport::default();
        let mut positions: BTreeMap<Symbol, _> =
            self.store.positions().await?.into_iter().map(|p| (p.symbol.clone(), p)).collect();
        for order in self.store.open_orders().await? {
            match self.exchange.order(&order.symbol, &order.client_order_id).await.map_err(ex)? {
                Some(ack) => {
                    record_ack(self.store.as_ref(), &ack, &mut positions).await?;
                    report.resolved_orders += 1;
                }
                None if self.clock.now() - order.created_at >= self.unplaced_after => {
                    report.closed_unplaced.push(order.client_order_id.to_string());
                    let why = "not placed: unknown to the exchange after the grace period";
                    close_unplaced(self.store.as_ref(), order, OrderStatus::Canceled, why).await?;
                }
                None => report.awaiting_orders.push(order.client_order_id.to_string()),
            }
        }
        for order in self.exchange.open_orders().await.map_err(ex)? {
            if self.store.order(&order.client_order_id).await?.is_none() {
                report.unknown_open_orders.push(order.client_order_id.to_string());
            }
        }
        let balances: BTreeMap<String, Decimal> =
            self.exchange.balances().await.map_err(ex)?.into_iter().map(|b| (b.asset.clone(), b.total())).collect();
        for s in &self.symbols {
            let inst = self.exchange.instrument(s).await.map_err(ex)?;
            let stored = positions.get(s).map_or(Decimal::ZERO, |p| p.qty);
            let actual = balances.get(&inst.base).copied().unwrap_or_default();
            let diff = (actual - stored).abs();
            if diff < inst.step_size.max(Decimal::new(1, 12)) {
                continue;
            }
            if stored > Decimal::ZERO && diff <= stored * self.tolerance {
                // The exchange is the truth: adopt its quantity, keep the cost basis.
                let mut p = positions.get(s).cloned().unwrap_or_else(|| Position::flat(s.clone()));
                p.qty = actual;
                self.store.save_position(&p).await?;
                report.corrected.push((s.clone(), stored, actual));
            } else {
                report.drifts.push((s.clone(), stored, actual));
            }
        }
        Ok(report)
    }

    async fn raise(&self, run_id: &str, kind: &str, severity: Severity, message: String) -> Result<(), JobError> {
        let event =
            RiskEvent { ts: self.clock.now(), run_id: Some(run_id.to_owned()), kind: kind.into(), severity, message };
        Ok(super::raise(self.store.as_ref(), self.notifier.as_ref(), event).await?)
    }

    /// Reconciles, then fails closed on anything unclean: safe mode on, a critical event recorded and alerted.
    /// A clean result clears the unknown-order breaker. Run by the job and after every trading cycle.
    pub async fn reconcile_and_guard(&self, run_id: &str) -> Result<ReconcileReport, JobError> {
        let report = self.reconcile().await?;
        for (s, stored, actual) in &report.corrected {
            self.raise(
                run_id,
                "reconcile_corrected",
                Severity::Warning,
                format!("{s}: stored {stored} corrected to the exchange's {actual}"),
            )
            .await?;
        }
        for id in &report.closed_unplaced {
            self.raise(
                run_id,
                "order_not_placed",
                Severity::Warning,
                format!("order {id} never reached the exchange: closed as not placed"),
            )
            .await?;
        }
        let mut state = self.store.load_state().await?;
        if report.is_clean() {
            if state.tripped.remove("order_outcome_unknown").is_some() {
                self.store.save_state(&state).await?;
            }
        } else if !report.needs_safe_mode() {
            // Only orders the exchange may not show yet: entries stay blocked by the unknown-outcome breaker.
            tracing::warn!(orders = ?report.awaiting_orders, "order(s) not yet known to the exchange; entries blocked");
        } else {
            let mut why = Vec::new();
            why.extend(report.drifts.iter().map(|(s, a, b)| format!("{s}: stored {a}, exchange {b}")));
            why.extend(report.unknown_open_orders.iter().map(|o| format!("unknown open order {o}")));
            let message = why.join("; ");
            if !state.safe_mode {
                state.safe_mode = true;
                state.safe_mode_reason = Some(format!("reconciliation: {message}"));
                self.store.save_state(&state).await?;
            }
            self.raise(run_id, "reconcile_drift", Severity::Critical, message).await?;
        }
        Ok(report)
    }
}

#[async_trait]
impl Job for ReconcileJob {
    fn name(&self) -> &str {
        "reconcile"
    }

    async fn run(&self, cx: &JobContext) -> Result<JobOutcome, JobError> {
        let report = self.reconcile_and_guard(cx.run_id.as_str()).await?;
        let summary = if report.is_clean() {
            format!(
                "in sync ({} pending order(s) resolved, {} closed as not placed)",
                report.resolved_orders,
                report.closed_unplaced.len()
            )
        } else if report.needs_safe_mode() {
            "drift found: safe mode on".to_owned()
        } else {
            format!("{} order(s) not yet known to the exchange: entries blocked", report.awaiting_orders.len())
        };
        let detail = serde_json::to_value(&report).map_err(|e| JobError::Failed(e.to_string()))?;
        Ok(JobOutcome { summary, detail, failed: !report.is_clean() })
    }
}
