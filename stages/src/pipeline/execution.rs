//! Execution: sizes targets into orders, runs the pre-trade checks, rounds to the instrument's rules, submits
//! with deterministic client order ids, records fills, positions, cash, the equity snapshot and the state.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::book::Book;
use super::booking;
use super::liquidity;
use super::pretrade::{Approved, PreTradeContext, PreTradeLimits, approve};
use super::risk::{RiskLimits, RiskVerdict, count_order, entry_limit};
use super::stage::{CycleContext, Stage, StageError, StageName};
use crate::control::{StateWrite, mutate_state_with};
use crate::domain::{ClientOrderId, Instrument, Order, OrderIntent, OrderStatus, Side, Symbol};
use crate::ports::{
    BotState, EquitySnapshot, EventKind, Exchange, ExchangeError, FailureKind, NewEvent, OrderAck, Severity, Store,
};
use crate::strategy::Target;

/// The breaker an order of unknown outcome trips: entries stop until reconciliation resolves the order.
pub const UNKNOWN_BREAKER: &str = "order_outcome_unknown";

/// Sizing parameters, as configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SizingParams {
    /// Differences from target smaller than this share of equity (in %) are not traded: no churn on noise.
    pub rebalance_band_pct: Decimal,
    /// Share of cash (in %) kept back from buys to pay fees and slippage.
    pub cash_buffer_pct: Decimal,
    /// Largest slippage (in %) an order may cause according to the order book; larger orders are reduced.
    pub max_slippage_pct: Decimal,
    /// Share of equity the targets are sized on (the canary's `live.capital_fraction`; 1 outside mode live).
    #[serde(skip)]
    pub capital_fraction: Decimal,
}

impl Default for SizingParams {
    fn default() -> Self {
        Self {
            rebalance_band_pct: Decimal::from(2),
            cash_buffer_pct: Decimal::ONE,
            max_slippage_pct: Decimal::new(3, 1),
            capital_fraction: Decimal::ONE,
        }
    }
}

/// Everything Execution acts on.
#[derive(Debug, Clone)]
pub struct ExecutionInput {
    /// Targets from Analysis (empty when the cycle was halted before it).
    pub targets: Vec<Target>,
    /// RiskCheck's verdict: whether entries are allowed, and forced exits.
    pub verdict: RiskVerdict,
    /// Book at the start of the cycle, marks updated to the latest closes.
    pub book: Book,
    /// Symbols whose data may not be traded on, with why.
    pub data_issues: BTreeMap<Symbol, String>,
    /// State to update and persist.
    pub state: BotState,
    /// False when an earlier stage failed transiently: the bar is then not marked processed, so a retry of the
    /// cycle runs it again (placing nothing twice, thanks to the client order ids).
    pub complete: bool,
}

/// What Execution did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ExecutionReport {
    /// Orders placed (or found already placed) this cycle.
    pub orders: Vec<Order>,
    /// Symbols where no order was placed, with the reason.
    pub skipped: Vec<(Symbol, String)>,
    /// Equity after the cycle.
    pub equity: Decimal,
    /// Quote cash after the cycle.
    pub cash: Decimal,
}

/// The Execution stage.
pub struct Execution {
    exchange: Arc<dyn Exchange>,
    store: Arc<dyn Store>,
    symbols: BTreeSet<Symbol>,
    quote: String,
    limits: PreTradeLimits,
    sizing: SizingParams,
    risk: RiskLimits,
}

impl Execution {
    /// Builds the stage.
    pub fn new(
        exchange: Arc<dyn Exchange>,
        store: Arc<dyn Store>,
        symbols: &[Symbol],
        quote: String,
        limits: PreTradeLimits,
        sizing: SizingParams,
    ) -> Self {
        let risk = RiskLimits::default();
        Self { exchange, store, symbols: symbols.iter().cloned().collect(), quote, limits, sizing, risk }
    }

    /// The risk limits checked on each order: the size as a share of equity and the frequency limits.
    pub fn with_risk(mut self, risk: RiskLimits) -> Self {
        self.risk = risk;
        self
    }

    async fn cash(&self) -> Result<Decimal, StageError> {
        let balances = self.exchange.balances().await.map_err(exchange_err)?;
        Ok(balances.iter().filter(|b| b.asset == self.quote).map(|b| b.total()).sum())
    }

    /// Turns targets into sized intents, sells first so their proceeds fund the buys.
    fn intents(&self, input: &ExecutionInput, equity: Decimal) -> (Vec<OrderIntent>, Vec<(Symbol, String)>) {
        let mut wanted: BTreeMap<Symbol, (Decimal, String)> =
            input.targets.iter().map(|t| (t.symbol.clone(), (t.weight, t.reason.clone()))).collect();
        for exit in &input.verdict.exits {
            wanted.insert(exit.symbol.clone(), (Decimal::ZERO, exit.reason.clone()));
        }
        let (mut intents, mut skipped) = (Vec::new(), Vec::new());
        let band = self.sizing.rebalance_band_pct / Decimal::ONE_HUNDRED * equity;
        // The canary trades a share of equity: targets are weights of that share.
        let equity = equity * self.sizing.capital_fraction;
        for (symbol, (weight, reason)) in wanted {
            let Some(price) = input.book.marks.get(&symbol).copied().filter(|p| *p > Decimal::ZERO) else {
                skipped.push((symbol, "no price".into()));
                continue;
            };
            let held = input.book.qty(&symbol);
            let target_qty = weight * equity / price;
            let delta = target_qty - held;
            let closing = weight.is_zero() && held > Decimal::ZERO;
            if !closing && (delta * price).abs() < band {
                if !delta.is_zero() {
                    skipped
                        .push((symbol, format!("within rebalance band ({:.2} of {band:.2})", (delta * price).abs())));
                }
                continue;
            }
            let (side, qty) = if delta < Decimal::ZERO { (Side::Sell, (-delta).min(held)) } else { (Side::Buy, delta) };
            intents.push(OrderIntent { symbol, side, qty, ref_price: price, reduce_only: side == Side::Sell, reason });
        }
        intents.sort_by_key(|i| i.side == Side::Buy);
        (intents, skipped)
    }

    /// Submits one approved order exactly once: an id already in the store is looked up, never re-sent blindly.
    /// Returns the exchange's answer with the order's stored status before it.
    async fn submit(
        &self,
        cx: &CycleContext,
        approved: Approved<OrderIntent>,
    ) -> Result<Option<(OrderAck, OrderStatus)>, StageError> {
        let intent = approved.get();
        let fence = cx.fence.as_ref();
        let store = self.store.as_ref();
        let id = ClientOrderId::derive(&cx.run_id, &intent.symbol, intent.side.as_str());
        if let Some(existing) = self.store.order(&id).await? {
            // A final order is done, except one that was never placed (a transient refusal before sending):
            // that one is placed now, under the same id.
            let never_placed = existing.status == OrderStatus::Canceled && existing.filled_qty.is_zero();
            if existing.status.is_final() && !never_placed {
                let status = existing.status;
                return Ok(Some((OrderAck { order: existing, fills: Vec::new() }, status)));
            }
            if let Some(ack) = self.exchange.order(&intent.symbol, &id).await.map_err(exchange_err)? {
                return Ok(Some((ack, existing.status)));
            }
            if never_placed {
                booking::reopen(store, fence, &existing).await?;
            }
        } else {
            let pending = Order {
                client_order_id: id.clone(),
                run_id: cx.run_id.to_string(),
                symbol: intent.symbol.clone(),
                side: intent.side,
                qty: intent.qty,
                filled_qty: Decimal::ZERO,
                avg_price: None,
                status: OrderStatus::PendingNew,
                exchange_order_id: None,
                created_at: cx.now,
                reason: intent.reason.clone(),
            };
            booking::record_pending(store, fence, &pending, Some(intent.ref_price)).await?;
        }
        match self.exchange.place_market_order(&id, cx.run_id.as_str(), &approved).await {
            Ok(ack) => Ok(Some((ack, OrderStatus::PendingNew))),
            Err(ExchangeError::Rejected(why)) => {
                let why = format!("rejected: {why}");
                self.close_unplaced(cx, &id, OrderStatus::Rejected, &why, EventKind::OrderRejected).await?;
                tracing::warn!(client_order_id = %id, "order {why}");
                Ok(None)
            }
            // Refused before it was sent: not placed. The cycle is retried and places it under the same id.
            Err(ExchangeError::Retryable { retry_after, message }) => {
                let why = format!("not placed: {message}");
                self.close_unplaced(cx, &id, OrderStatus::Canceled, &why, EventKind::OrderNotPlaced).await?;
                let reason = format!("order {id} not placed: {message}");
                Err(StageError::Retry { kind: FailureKind::Exchange, after: retry_after, reason })
            }
            // Refused for good (ban, credentials): the venue did not take the order.
            Err(ExchangeError::Fatal(why)) => {
                let why = format!("not placed: {why}");
                self.close_unplaced(cx, &id, OrderStatus::Canceled, &why, EventKind::OrderNotPlaced).await?;
                Err(StageError::halt(FailureKind::ExchangeFatal, format!("order {id} {why}")))
            }
            // The request may have reached the venue: look it up before calling it unknown.
            Err(e) => match self.exchange.order(&intent.symbol, &id).await {
                Ok(Some(ack)) => Ok(Some((ack, OrderStatus::PendingNew))),
                _ => {
                    Err(StageError::halt(FailureKind::OrderOutcomeUnknown, format!("order {id} outcome unknown: {e}")))
                }
            },
        }
    }
}

impl Execution {
    /// Records that an order was not placed, and why.
    async fn close_unplaced(
        &self,
        cx: &CycleContext,
        id: &ClientOrderId,
        status: OrderStatus,
        why: &str,
        kind: EventKind,
    ) -> Result<(), StageError> {
        if let Some(o) = self.store.order(id).await? {
            let store = self.store.as_ref();
            booking::close_unplaced(store, cx.fence.as_ref(), o, status, why, kind, Severity::Warning, cx.now).await?;
        }
        Ok(())
    }

    /// Reduces an order the book cannot carry within the slippage limit, saying so in its reason. A book that
    /// cannot be read fails closed for new exposure: the order is not sent, and the reason is returned for the
    /// record. An exit (reduce-only) still goes out, its reason saying it was not checked: risk that can be
    /// reduced is reduced.
    async fn liquidity_gate(&self, intent: &mut OrderIntent, inst: &Instrument) -> Result<(), String> {
        let limit = self.sizing.max_slippage_pct / Decimal::ONE_HUNDRED;
        let book = match self.exchange.order_book(&intent.symbol, 100).await {
            Ok(book) => book,
            Err(e) if intent.reduce_only => {
                intent.reason.push_str(&format!("; liquidity gate: order book unreadable, exit sent unchecked ({e})"));
                return Ok(());
            }
            Err(e) => return Err(format!("liquidity gate: order book unreadable, not sent ({e})")),
        };
        let est = liquidity::slippage(&book, intent.side, intent.qty);
        if est.is_some_and(|s| s <= limit) {
            return Ok(());
        }
        let fits = inst.floor_qty(liquidity::max_qty_within(&book, intent.side, limit).min(intent.qty));
        intent.reason.push_str(&format!(
            "; liquidity gate: est. slippage {} > {}%, reduced {} -> {fits}",
            est.map_or_else(|| "beyond book depth".to_owned(), |s| format!("{:.3}%", s * Decimal::ONE_HUNDRED)),
            self.sizing.max_slippage_pct,
            intent.qty
        ));
        intent.qty = fits;
        Ok(())
    }

    /// Why entries are blocked right now: RiskCheck's verdict from the start of the cycle, and the trading state
    /// as stored now, re-read before every order so a pause or kill issued mid-cycle applies to the next order.
    async fn entries_blocked(&self, verdict: &RiskVerdict) -> Result<(Option<String>, BotState), StageError> {
        let mut why = verdict.blocked_by.clone();
        let state = self.store.load_state().await?;
        why.extend(super::risk::blocked_by(&state));
        why.sort();
        why.dedup();
        Ok(((!why.is_empty()).then(|| why.join("; ")), state))
    }
}

fn exchange_err(e: ExchangeError) -> StageError {
    match e {
        ExchangeError::Retryable { retry_after, message } => {
            StageError::Retry { kind: FailureKind::Exchange, after: retry_after, reason: message }
        }
        other => StageError::halt(other.kind(), other.to_string()),
    }
}

#[async_trait]
impl Stage for Execution {
    type Input = ExecutionInput;
    type Output = (ExecutionReport, BotState);

    fn name(&self) -> StageName {
        StageName::Execution
    }

    async fn run(&self, cx: &CycleContext, input: ExecutionInput) -> Result<Self::Output, StageError> {
        let mut book = input.book.clone();
        book.cash = self.cash().await?;
        let equity = book.equity();
        let (intents, mut skipped) = self.intents(&input, equity);
        // A run decides once per symbol. A retried run (killed mid-way and taken over later) sees a moved price
        // and fills booked since, so its recomputed delta may point the other way; an order of the other side
        // would be a second order of this run at the exchange, under a new id. The first decision stands.
        let decided: BTreeMap<Symbol, Side> =
            self.store.orders_of_run(cx.run_id.as_str()).await?.into_iter().map(|o| (o.symbol, o.side)).collect();
        let mut orders = Vec::new();
        let mut unknown = None;
        // Orders placed this cycle (symbol, buy), counted for the frequency limits with the state at the end.
        let mut placed: Vec<(Symbol, bool)> = Vec::new();
        for mut intent in intents {
            if let Some(side) = decided.get(&intent.symbol).filter(|side| **side != intent.side) {
                let why = format!("this run already placed its {} order for {}", side.as_str(), intent.symbol);
                skipped.push((intent.symbol, why));
                continue;
            }
            let inst = self.exchange.instrument(&intent.symbol).await.map_err(exchange_err)?;
            if intent.side == Side::Buy {
                let spendable = book.cash * (Decimal::ONE - self.sizing.cash_buffer_pct / Decimal::ONE_HUNDRED);
                intent.qty = intent.qty.min((spendable / intent.ref_price).max(Decimal::ZERO));
            }
            intent.qty = inst.floor_qty(intent.qty);
            if let Err(why) = self.liquidity_gate(&mut intent, &inst).await {
                tracing::warn!(symbol = %intent.symbol, "{why}");
                skipped.push((intent.symbol, why));
                continue;
            }
            let held: BTreeSet<Symbol> = book.held().map(|p| p.symbol.clone()).collect();
            let data_issue = input.data_issues.get(&intent.symbol).map(|s| format!("data: {s}"));
            let (entries_blocked, mut counted) = self.entries_blocked(&input.verdict).await?;
            let entries_blocked = entries_blocked.or(data_issue);
            for (s, buy) in &placed {
                count_order(&mut counted, s, *buy, cx.now);
            }
            let frequency = entry_limit(&self.risk, &counted, &intent.symbol, cx.now);
            let pcx = PreTradeContext {
                limits: &self.limits,
                symbols: &self.symbols,
                held: &held,
                entries_blocked: entries_blocked.as_deref(),
                frequency: frequency.as_deref(),
                max_share: Some((book.equity(), self.risk.max_order_equity_pct)),
            };
            let buy = intent.side == Side::Buy;
            let symbol = intent.symbol.clone();
            let approved = match approve(intent, &inst, &pcx) {
                Ok(a) => a,
                Err(refusal) => {
                    skipped.push((symbol, refusal.to_string()));
                    continue;
                }
            };
            match self.submit(cx, approved).await {
                Ok(Some((ack, before))) => {
                    if before == OrderStatus::PendingNew {
                        placed.push((symbol.clone(), buy));
                    }
                    let store = self.store.as_ref();
                    let booked = booking::record_ack(store, cx.fence.as_ref(), &ack, before, cx.now).await?;
                    for p in booked.positions {
                        book.positions.insert(p.symbol.clone(), p);
                    }
                    book.cash = self.cash().await?;
                    orders.push(ack.order);
                }
                Ok(None) => skipped.push((symbol, "rejected by the exchange".into())),
                Err(StageError::Halt { kind: FailureKind::OrderOutcomeUnknown, reason }) => {
                    unknown = Some((symbol, reason));
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        let equity = book.equity();
        let snapshot = EquitySnapshot { ts: cx.bar_close, equity, cash: book.cash };
        let run_id = cx.run_id.to_string();
        let complete = unknown.is_none() && input.complete;
        let writes = [StateWrite::Equity(&snapshot)];
        let (state, _) = mutate_state_with(self.store.as_ref(), cx.fence.as_ref(), &writes, |st| {
            st.cash = Some(book.cash);
            for (s, buy) in &placed {
                count_order(st, s, *buy, cx.now);
            }
            st.peak_equity = Some(st.peak_equity.map_or(equity, |p| p.max(equity)));
            if complete && st.last_bar.is_none_or(|b| b < cx.bar_close) {
                st.last_bar = Some(cx.bar_close);
            }
            if st.flatten && book.held().next().is_none() {
                // The kill's flatten is done once nothing is held after this cycle's exits, not a cycle later.
                st.flatten = false;
            }
            let mut events = Vec::new();
            if let Some((symbol, why)) = &unknown {
                if !st.tripped.contains_key(UNKNOWN_BREAKER) {
                    events.push(
                        NewEvent::new(cx.now, EventKind::OrderOutcomeUnknown, Severity::Emergency, why.clone())
                            .run(run_id.clone())
                            .symbol(symbol)
                            .dedup(format!("breaker:{UNKNOWN_BREAKER}")),
                    );
                }
                st.tripped.insert(UNKNOWN_BREAKER.into(), why.clone());
            }
            events
        })
        .await?;
        match unknown {
            Some((_, why)) => Err(StageError::halt(FailureKind::OrderOutcomeUnknown, why)),
            None => Ok((ExecutionReport { orders, skipped, equity, cash: book.cash }, state)),
        }
    }
}
