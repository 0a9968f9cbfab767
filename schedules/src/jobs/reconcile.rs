//! Reconciliation: the exchange is the truth. Orders whose outcome the bot does not know are looked up by client
//! order id and booked; one the exchange still does not know after a grace period never reached it and is closed
//! as not placed. Then stored positions are compared with the exchange's balances, less the holdings mcbot does
//! not manage (recorded at the first reconcile). Drift within the tolerance is corrected; beyond it, or an open
//! order the bot never placed, puts the bot in safe mode (no entries) with one critical event.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::Duration;
use mcbot_stages::Clock;
use mcbot_stages::control::{StateWrite, mutate_state, mutate_state_with};
use mcbot_stages::domain::{Decimal, OrderStatus, Position, Symbol};
use mcbot_stages::pipeline::booking::{close_unplaced, record_ack};
use mcbot_stages::pipeline::execution::UNKNOWN_BREAKER;
use mcbot_stages::pipeline::risk::API_FAILURE_BREAKER;
use mcbot_stages::ports::{EventKind, Exchange, ExchangeError, FailureKind, NewEvent, RunFence, Severity, Store};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::runtime::{Job, JobContext, JobError, JobOutcome};

/// What to do at the first reconcile with holdings on the account that mcbot did not buy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnmanagedHoldings {
    /// Leave them alone: record them as a baseline and measure drift on mcbot's share only.
    #[default]
    Ignore,
    /// Take them over as positions at the current price.
    Adopt,
}

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
    /// Symbol, stored quantity, exchange quantity (mcbot's share), for each drift too large to correct.
    pub drifts: Vec<(Symbol, Decimal, Decimal)>,
    /// Small drifts (within the tolerance) corrected to the exchange's quantity: symbol, stored, exchange.
    pub corrected: Vec<(Symbol, Decimal, Decimal)>,
    /// Open orders on the exchange the bot has no record of.
    pub unknown_open_orders: Vec<String>,
    /// Holdings found at the first reconcile that mcbot does not manage, by asset (recorded once).
    pub unmanaged_recorded: BTreeMap<String, Decimal>,
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
    clock: Arc<dyn Clock>,
    symbols: Vec<Symbol>,
    tolerance: Decimal,
    unplaced_after: Duration,
    unmanaged: UnmanagedHoldings,
}

fn ex(e: ExchangeError) -> JobError {
    JobError::failed(e.kind(), format!("exchange: {e}"))
}

impl ReconcileJob {
    /// Builds the job.
    pub fn new(
        store: Arc<dyn Store>,
        exchange: Arc<dyn Exchange>,
        clock: Arc<dyn Clock>,
        symbols: Vec<Symbol>,
    ) -> Self {
        let unplaced_after = Duration::minutes(2);
        Self {
            store,
            exchange,
            clock,
            symbols,
            tolerance: Decimal::new(1, 2),
            unplaced_after,
            unmanaged: UnmanagedHoldings::Ignore,
        }
    }

    /// How long a pending order may stay unknown to the exchange before it is taken as never placed (default
    /// 2 min: an exchange shows an accepted order to a lookup within seconds).
    pub fn with_unplaced_after(mut self, grace: Duration) -> Self {
        self.unplaced_after = grace;
        self
    }

    /// Relative drift (fraction of the stored quantity, default 1 %) that is corrected and recorded; anything
    /// larger, or a position the bot does not know at all, stops entries.
    pub fn with_tolerance(mut self, tolerance: Decimal) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// What to do with holdings mcbot finds at its first reconcile (default: ignore them).
    pub fn with_unmanaged_holdings(mut self, policy: UnmanagedHoldings) -> Self {
        self.unmanaged = policy;
        self
    }

    /// Compares and books; also used at start-up before the schedule resumes. Writes carry `fence` when run
    /// inside a claimed run.
    pub async fn reconcile(&self, fence: Option<&RunFence>) -> Result<ReconcileReport, JobError> {
        let store = self.store.as_ref();
        let now = self.clock.now();
        let mut report = ReconcileReport::default();
        for order in self.store.open_orders().await? {
            match self.exchange.order(&order.symbol, &order.client_order_id).await.map_err(ex)? {
                Some(ack) => {
                    record_ack(store, fence, &ack, order.status, now).await?;
                    report.resolved_orders += 1;
                }
                None if now - order.created_at >= self.unplaced_after => {
                    report.closed_unplaced.push(order.client_order_id.to_string());
                    let why = "not placed: unknown to the exchange after the grace period";
                    let (kind, sev) = (EventKind::ReconcileClosedUnplaced, Severity::Warning);
                    close_unplaced(store, fence, order, OrderStatus::Canceled, why, kind, sev, now).await?;
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
        let mut positions: BTreeMap<Symbol, Position> =
            self.store.positions().await?.into_iter().map(|p| (p.symbol.clone(), p)).collect();
        let unmanaged = match self.store.load_state().await?.unmanaged {
            Some(u) => u,
            None => self.record_unmanaged(fence, &balances, &mut positions, &mut report).await?,
        };
        for s in &self.symbols {
            let inst = self.exchange.instrument(s).await.map_err(ex)?;
            let stored = positions.get(s).map_or(Decimal::ZERO, |p| p.qty);
            let held = balances.get(&inst.base).copied().unwrap_or_default();
            let actual = held - unmanaged.get(&inst.base).copied().unwrap_or_default();
            let diff = (actual - stored).abs();
            if diff < inst.step_size.max(Decimal::new(1, 12)) {
                continue;
            }
            if stored > Decimal::ZERO && actual >= Decimal::ZERO && diff <= stored * self.tolerance {
                // The exchange is the truth: adopt its quantity, keep the cost basis.
                let mut p = positions.get(s).cloned().unwrap_or_else(|| Position::flat(s.clone()));
                p.qty = actual;
                let mut uow = store.begin().await?;
                if let Some(f) = fence {
                    uow.fence(f).await?;
                }
                uow.save_position(&p).await?;
                uow.append(
                    NewEvent::new(
                        now,
                        EventKind::ReconcileCorrected,
                        Severity::Warning,
                        format!("{s}: stored {stored} corrected to the exchange's {actual}"),
                    )
                    .maybe_run(fence.map(|f| f.run_id.as_str()))
                    .symbol(s)
                    .payload(json!({"stored": stored.to_string(), "exchange": actual.to_string()})),
                );
                uow.commit().await?;
                report.corrected.push((s.clone(), stored, actual));
            } else {
                report.drifts.push((s.clone(), stored, actual));
            }
        }
        Ok(report)
    }

    /// What a reconciliation would find now, without writing anything (the live guards ask before the bot may
    /// trade, and a bot that ends up trading paper must not have taken over the venue's holdings). A pending
    /// order the exchange knows counts as resolved (its symbol's quantity is compared once it is booked); at the
    /// first reconcile the holdings beyond the stored positions are the baseline, as the real one records them.
    pub async fn check(&self) -> Result<ReconcileReport, JobError> {
        let now = self.clock.now();
        let mut report = ReconcileReport::default();
        let mut booking = std::collections::BTreeSet::new();
        for order in self.store.open_orders().await? {
            match self.exchange.order(&order.symbol, &order.client_order_id).await.map_err(ex)? {
                Some(_) => {
                    report.resolved_orders += 1;
                    booking.insert(order.symbol.clone());
                }
                None if now - order.created_at >= self.unplaced_after => {
                    report.closed_unplaced.push(order.client_order_id.to_string())
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
        let positions: BTreeMap<Symbol, Position> =
            self.store.positions().await?.into_iter().map(|p| (p.symbol.clone(), p)).collect();
        let recorded = self.store.load_state().await?.unmanaged;
        for s in self.symbols.iter().filter(|s| !booking.contains(*s)) {
            let inst = self.exchange.instrument(s).await.map_err(ex)?;
            let stored = positions.get(s).map_or(Decimal::ZERO, |p| p.qty);
            let held = balances.get(&inst.base).copied().unwrap_or_default();
            let baseline = match &recorded {
                Some(u) => u.get(&inst.base).copied().unwrap_or_default(),
                // The first reconcile takes (or adopts) whatever is beyond the stored positions.
                None => (held - stored).max(Decimal::ZERO),
            };
            let actual = held - baseline;
            let diff = (actual - stored).abs();
            if diff < inst.step_size.max(Decimal::new(1, 12)) {
                continue;
            }
            if stored > Decimal::ZERO && actual >= Decimal::ZERO && diff <= stored * self.tolerance {
                report.corrected.push((s.clone(), stored, actual));
            } else {
                report.drifts.push((s.clone(), stored, actual));
            }
        }
        Ok(report)
    }

    /// At the first reconcile: holdings beyond the stored positions are mcbot's baseline (ignored) or adopted as
    /// positions at the last price, by policy. Recorded once, with an event.
    async fn record_unmanaged(
        &self,
        fence: Option<&RunFence>,
        balances: &BTreeMap<String, Decimal>,
        positions: &mut BTreeMap<Symbol, Position>,
        report: &mut ReconcileReport,
    ) -> Result<BTreeMap<String, Decimal>, JobError> {
        let mut baseline = BTreeMap::new();
        let mut adopted = Vec::new();
        for s in &self.symbols {
            let inst = self.exchange.instrument(s).await.map_err(ex)?;
            let stored = positions.get(s).map_or(Decimal::ZERO, |p| p.qty);
            let extra = balances.get(&inst.base).copied().unwrap_or_default() - stored;
            if extra < inst.step_size.max(Decimal::new(1, 12)) {
                continue;
            }
            match self.unmanaged {
                UnmanagedHoldings::Ignore => {
                    baseline.insert(inst.base.clone(), extra);
                }
                UnmanagedHoldings::Adopt => {
                    let price = self.exchange.last_price(s).await.map_err(ex)?;
                    let mut p = positions.get(s).cloned().unwrap_or_else(|| Position::flat(s.clone()));
                    p.avg_price = if p.qty + extra > Decimal::ZERO {
                        (p.qty * p.avg_price + extra * price) / (p.qty + extra)
                    } else {
                        price
                    };
                    p.qty += extra;
                    adopted.push(p.clone());
                    positions.insert(s.clone(), p);
                }
            }
            report.unmanaged_recorded.insert(inst.base.clone(), extra);
        }
        let now = self.clock.now();
        let policy = self.unmanaged;
        let found = report.unmanaged_recorded.clone();
        let recorded = baseline.clone();
        let writes: Vec<StateWrite<'_>> = adopted.iter().map(StateWrite::Position).collect();
        mutate_state_with(self.store.as_ref(), fence, &writes, move |st| {
            if st.unmanaged.is_some() {
                return Vec::new();
            }
            st.unmanaged = Some(recorded.clone());
            if found.is_empty() {
                return Vec::new();
            }
            let what = found.iter().map(|(a, q)| format!("{q} {a}")).collect::<Vec<_>>().join(", ");
            let verb = if policy == UnmanagedHoldings::Adopt { "adopted as positions" } else { "ignored" };
            vec![
                NewEvent::new(
                    now,
                    EventKind::ReconcileCorrected,
                    Severity::Warning,
                    format!("holdings found at the first reconcile, {verb}: {what}"),
                )
                .payload(json!({"policy": policy, "holdings": found})),
            ]
        })
        .await?;
        Ok(baseline)
    }

    /// Reconciles, then fails closed on anything unclean: safe mode on with one critical event (none again while
    /// it stays on). A clean result clears the unknown-order and API-failure breakers. Run by the job and after every trading
    /// cycle that traded.
    pub async fn reconcile_and_guard(&self, fence: Option<&RunFence>) -> Result<ReconcileReport, JobError> {
        let report = self.reconcile(fence).await?;
        let now = self.clock.now();
        let run_id = fence.map(|f| f.run_id.clone());
        if report.is_clean() {
            mutate_state(self.store.as_ref(), fence, |st| {
                let mut events = Vec::new();
                for (name, why) in
                    [(UNKNOWN_BREAKER, "every order resolved"), (API_FAILURE_BREAKER, "the exchange answers again")]
                {
                    if let Some(was) = st.tripped.remove(name) {
                        events.push(
                            NewEvent::new(
                                now,
                                EventKind::BreakerCleared,
                                Severity::Info,
                                format!("breaker {name} cleared by a clean reconcile: {why} (it was: {was})"),
                            )
                            .maybe_run(run_id.as_deref())
                            .payload(json!({"breaker": name, "issuer": "system"}))
                            .dedup(format!("breaker:{name}")),
                        );
                    }
                }
                events
            })
            .await?;
        } else if !report.needs_safe_mode() {
            // Only orders the exchange may not show yet: entries stay blocked by the unknown-outcome breaker.
            tracing::warn!(orders = ?report.awaiting_orders, "order(s) not yet known to the exchange; entries blocked");
        } else {
            let mut why = Vec::new();
            why.extend(report.drifts.iter().map(|(s, a, b)| format!("{s}: stored {a}, exchange {b}")));
            why.extend(report.unknown_open_orders.iter().map(|o| format!("unknown open order {o}")));
            let message = why.join("; ");
            let drifts: Vec<_> = report
                .drifts
                .iter()
                .map(|(s, a, b)| json!({"symbol": s, "stored": a.to_string(), "exchange": b.to_string()}))
                .collect();
            mutate_state(self.store.as_ref(), fence, |st| {
                if st.safe_mode {
                    // Already on: a person has been told; a repeat adds nothing.
                    return Vec::new();
                }
                st.safe_mode = true;
                st.safe_mode_reason = Some(format!("reconciliation: {message}"));
                let payload = json!({"drifts": drifts, "unknown_open_orders": report.unknown_open_orders});
                vec![
                    NewEvent::new(now, EventKind::ReconcileDrift, Severity::Critical, message.clone())
                        .maybe_run(run_id.as_deref())
                        .payload(payload.clone())
                        .dedup("reconcile_drift"),
                    NewEvent::new(now, EventKind::SafeModeOn, Severity::Critical, format!("safe mode on: {message}"))
                        .maybe_run(run_id.as_deref())
                        .payload(json!({"cause": "reconcile_drift", "detail": payload}))
                        .dedup("safe_mode"),
                ]
            })
            .await?;
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
        let was_safe = self.store.load_state().await?.safe_mode;
        let report = self.reconcile_and_guard(cx.fence.as_ref()).await?;
        let (summary, failure) = if report.is_clean() {
            let s = format!(
                "in sync ({} pending order(s) resolved, {} closed as not placed)",
                report.resolved_orders,
                report.closed_unplaced.len()
            );
            (s, None)
        } else if report.needs_safe_mode() && was_safe {
            // Safe mode was already on: the condition is known, this run reports it without a new failure.
            ("drift persists: safe mode stays on".to_owned(), None)
        } else if report.needs_safe_mode() {
            ("drift found: safe mode on".to_owned(), Some((FailureKind::Drift, "drift found: safe mode on".into())))
        } else {
            let s = format!("{} order(s) not yet known to the exchange: entries blocked", report.awaiting_orders.len());
            (s.clone(), Some((FailureKind::OrderOutcomeUnknown, s)))
        };
        let detail = serde_json::to_value(&report).map_err(|e| JobError::failed(FailureKind::Store, e.to_string()))?;
        let mut outcome = JobOutcome::ok(summary, detail);
        outcome.failed = failure.is_some();
        outcome.failure = failure;
        Ok(outcome)
    }
}
