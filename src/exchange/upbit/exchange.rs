//! [`UpbitExchange`]: the `Exchange` port over Upbit's KRW market. It turns intents into Upbit orders (market
//! buys by KRW amount, market sells by volume), applies the market rules before sending (tick grid, minimum
//! total, volume step), makes every order idempotent through Upbit's `identifier`, and converts payloads into
//! domain types.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, DurationRound, NaiveDateTime, Utc};
use mcbot_stages::Clock;
use mcbot_stages::domain::{
    Balance, Candle, ClientOrderId, Fill, Instrument, Order, OrderBook, OrderIntent, OrderStatus, Side, Symbol,
    Timeframe,
};
use mcbot_stages::pipeline::pretrade::Approved;
use mcbot_stages::ports::{Exchange, ExchangeError, OrderAck};
use rust_decimal::Decimal;

use super::error::UpbitError;
use super::rate_limit::{Pause, TokioPause};
use super::rest::{MAX_CANDLES_PER_CALL, NewOrder, OrderKind, OrderRef, OrderSide, UpbitRest};
use super::settings::UpbitSettings;
use super::tick::{Rounding, TickTable};
use super::wire::{WireCandle, WireOrder};

/// What Upbit does not keep about an order but the domain `Order` carries: who placed it and why.
#[derive(Debug, Clone)]
struct Placed {
    run_id: String,
    reason: String,
    qty: Decimal,
    created_at: DateTime<Utc>,
}

/// How a timeframe is fetched: Upbit's own bar, or several of them merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Native {
    Minutes(u32),
    Days,
}

/// Upbit has 1, 3, 5, 10, 15, 30, 60 and 240-minute and daily bars; 2h, 6h and 12h are merged from hourly bars on
/// UTC boundaries.
fn native_of(tf: Timeframe) -> (Native, u32) {
    match tf.minutes() {
        m @ (1 | 3 | 5 | 10 | 15 | 30 | 60 | 240) => (Native::Minutes(m), 1),
        1440 => (Native::Days, 1),
        m => (Native::Minutes(60), m / 60),
    }
}

/// The Upbit adapter.
pub struct UpbitExchange {
    rest: UpbitRest,
    settings: UpbitSettings,
    clock: Arc<dyn Clock>,
    pause: Arc<dyn Pause>,
    placed: Mutex<HashMap<String, Placed>>,
}

impl std::fmt::Debug for UpbitExchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpbitExchange").field("rest", &self.rest).finish_non_exhaustive()
    }
}

fn malformed(endpoint: &str, message: impl Into<String>) -> UpbitError {
    UpbitError::Malformed { endpoint: endpoint.to_owned(), message: message.into() }
}

/// Upbit candle times have no zone suffix and are UTC.
fn parse_candle_time(s: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(s.trim_end_matches('Z'), "%Y-%m-%dT%H:%M:%S").ok().map(|t| t.and_utc())
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.to_utc()).or_else(|| parse_candle_time(s))
}

fn to_candle(w: &WireCandle, market: &str) -> Result<Candle, UpbitError> {
    const EP: &str = "GET /v1/candles";
    if w.market != market {
        return Err(malformed(EP, format!("asked for {market}, got a {} candle", w.market)));
    }
    let open_time = parse_candle_time(&w.candle_date_time_utc)
        .ok_or_else(|| malformed(EP, format!("candle time {:?}", w.candle_date_time_utc)))?;
    let c = Candle {
        open_time,
        open: w.opening_price,
        high: w.high_price,
        low: w.low_price,
        close: w.trade_price,
        volume: w.candle_acc_trade_volume,
    };
    if !c.is_sane() {
        return Err(malformed(EP, format!("OHLC not sane at {}", w.candle_date_time_utc)));
    }
    Ok(c)
}

/// Merges consecutive bars into `tf` bars on UTC boundaries (bars sorted ascending).
fn merge(bars: &[Candle], tf: Timeframe) -> Vec<Candle> {
    let mut out: Vec<Candle> = Vec::new();
    for b in bars {
        let start = b.open_time.duration_trunc(tf.duration()).unwrap_or(b.open_time);
        match out.last_mut() {
            Some(last) if last.open_time == start => {
                last.high = last.high.max(b.high);
                last.low = last.low.min(b.low);
                last.close = b.close;
                last.volume += b.volume;
            }
            _ => out.push(Candle { open_time: start, ..b.clone() }),
        }
    }
    out
}

impl UpbitExchange {
    /// Builds the adapter; waits (rate limit, fill polling) use tokio's timer.
    pub fn new(settings: UpbitSettings, clock: Arc<dyn Clock>) -> Result<Self, UpbitError> {
        Self::with_pause(settings, clock, Arc::new(TokioPause))
    }

    /// Builds the adapter with an injected way to wait, so tests run on virtual time.
    pub fn with_pause(
        settings: UpbitSettings,
        clock: Arc<dyn Clock>,
        pause: Arc<dyn Pause>,
    ) -> Result<Self, UpbitError> {
        settings.validate()?;
        let rest = UpbitRest::new(&settings, clock.clone(), pause.clone())?;
        Ok(Self { rest, settings, clock, pause, placed: Mutex::new(HashMap::new()) })
    }

    /// The raw endpoint client, for calls the port does not cover.
    pub fn rest(&self) -> &UpbitRest {
        &self.rest
    }

    /// The KRW price-unit table in force.
    pub fn tick_table(&self) -> &TickTable {
        &self.settings.tick_table
    }

    fn placed(&self) -> std::sync::MutexGuard<'_, HashMap<String, Placed>> {
        self.placed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `KRW-BTC` → (`KRW`, `BTC`); other quote markets are refused (the tick table is KRW's).
    fn split_market(&self, symbol: &Symbol) -> Result<(String, String), UpbitError> {
        match symbol.as_str().split_once('-') {
            Some((quote, base)) if quote == self.settings.quote && !base.is_empty() => {
                Ok((quote.to_owned(), base.to_owned()))
            }
            _ => Err(UpbitError::Invalid(format!(
                "{symbol} is not an Upbit {} market (expected {}-BASE)",
                self.settings.quote, self.settings.quote
            ))),
        }
    }

    /// Fetches up to `need` native bars opening before `to`, paging backwards 200 at a time; ascending, unique.
    async fn native_bars(
        &self,
        symbol: &Symbol,
        native: Native,
        to: DateTime<Utc>,
        need: usize,
    ) -> Result<(Vec<Candle>, bool), UpbitError> {
        let market = symbol.as_str();
        let mut bars: Vec<Candle> = Vec::with_capacity(need);
        let mut cursor = to;
        let mut exhausted = false;
        while bars.len() < need {
            let count = (need - bars.len()).min(MAX_CANDLES_PER_CALL);
            let page = match native {
                Native::Minutes(unit) => self.rest.candles_minutes(unit, market, Some(cursor), count).await?,
                Native::Days => self.rest.candles_days(market, Some(cursor), count).await?,
            };
            let mut parsed = page.iter().map(|w| to_candle(w, market)).collect::<Result<Vec<_>, _>>()?;
            // Only bars strictly before the cursor count, whatever order or overlap the server sends.
            parsed.retain(|c| c.open_time < cursor);
            let Some(oldest) = parsed.iter().map(|c| c.open_time).min() else {
                exhausted = true;
                break;
            };
            bars.extend(parsed);
            cursor = oldest;
            if page.len() < count {
                exhausted = true;
                break;
            }
        }
        bars.sort_by_key(|c| c.open_time);
        bars.dedup_by_key(|c| c.open_time);
        Ok((bars, exhausted))
    }

    async fn closed_candles_impl(
        &self,
        symbol: &Symbol,
        tf: Timeframe,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Candle>, UpbitError> {
        self.split_market(symbol)?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        // The bar forming at `until` (or now) opens at `to`; every bar opening before it has closed.
        let to = tf.last_close(until.min(self.clock.now()));
        let (native, factor) = native_of(tf);
        if factor == 1 {
            let (bars, _) = self.native_bars(symbol, native, to, limit).await?;
            return Ok(bars[bars.len().saturating_sub(limit)..].to_vec());
        }
        let need = (limit + 1) * factor as usize;
        let (bars, exhausted) = self.native_bars(symbol, native, to, need).await?;
        let mut merged = merge(&bars, tf);
        if !exhausted && !merged.is_empty() {
            // Paging stopped inside the oldest merged bar: it may be missing its first hours.
            merged.remove(0);
        }
        Ok(merged[merged.len().saturating_sub(limit)..].to_vec())
    }

    /// Converts an Upbit order into the domain order and its fills.
    fn to_ack(&self, w: &WireOrder) -> Result<OrderAck, UpbitError> {
        const EP: &str = "GET /v1/order";
        let symbol = Symbol::new(&w.market).map_err(|e| malformed(EP, e.to_string()))?;
        let side = match w.side.as_str() {
            "bid" => Side::Buy,
            "ask" => Side::Sell,
            other => return Err(malformed(EP, format!("order side {other:?}"))),
        };
        let identifier = w.identifier.clone().unwrap_or_else(|| w.uuid.clone());
        let client_order_id = ClientOrderId::from_stored(identifier.clone());
        let market_order = matches!(w.ord_type.as_str(), "price" | "market");
        let executed = w.executed_volume;
        let status = match w.state.as_str() {
            "wait" | "watch" if executed > Decimal::ZERO => OrderStatus::PartiallyFilled,
            "wait" | "watch" => OrderStatus::New,
            "done" => OrderStatus::Filled,
            // A market buy by amount ends "cancel" once its leftover KRW cannot buy another unit: it is done.
            "cancel" if market_order && executed > Decimal::ZERO => OrderStatus::Filled,
            "cancel" => OrderStatus::Canceled,
            other => return Err(malformed(EP, format!("order state {other:?}"))),
        };
        let created =
            parse_time(&w.created_at).ok_or_else(|| malformed(EP, format!("created_at {:?}", w.created_at)))?;
        let meta = self.placed().get(&identifier).cloned();
        let fills = self.fills_of(w, &client_order_id, &symbol, side)?;
        let (qty_sum, funds_sum) =
            fills.iter().fold((Decimal::ZERO, Decimal::ZERO), |(q, f), x| (q + x.qty, f + x.notional()));
        let avg_price = (qty_sum > Decimal::ZERO).then(|| funds_sum / qty_sum);
        let qty = meta.as_ref().map(|m| m.qty).or(w.volume).unwrap_or(executed);
        let order = Order {
            client_order_id,
            run_id: meta.as_ref().map(|m| m.run_id.clone()).unwrap_or_default(),
            symbol,
            side,
            qty,
            filled_qty: executed,
            avg_price,
            status,
            exchange_order_id: Some(w.uuid.clone()),
            created_at: meta.as_ref().map_or(created, |m| m.created_at),
            reason: meta.map(|m| m.reason).unwrap_or_default(),
        };
        Ok(OrderAck { order, fills })
    }

    /// The order's trades as fills. Upbit reports the fee per order, not per trade: it is shared out in
    /// proportion to each trade's value, the last trade taking the remainder so the fills add up exactly.
    fn fills_of(
        &self,
        w: &WireOrder,
        cid: &ClientOrderId,
        symbol: &Symbol,
        side: Side,
    ) -> Result<Vec<Fill>, UpbitError> {
        let fee_total = w.paid_fee.unwrap_or_default();
        let funds: Vec<Decimal> = w.trades.iter().map(|t| t.funds.unwrap_or(t.price * t.volume)).collect();
        let total: Decimal = funds.iter().sum();
        let mut fee_left = fee_total;
        let mut out = Vec::with_capacity(w.trades.len());
        for (i, (t, f)) in w.trades.iter().zip(&funds).enumerate() {
            let fee = if i + 1 == w.trades.len() {
                fee_left
            } else if total > Decimal::ZERO {
                (fee_total * *f / total).round_dp(8)
            } else {
                Decimal::ZERO
            };
            fee_left -= fee;
            let ts = parse_time(&t.created_at)
                .ok_or_else(|| malformed("GET /v1/order", format!("trade time {:?}", t.created_at)))?;
            out.push(Fill {
                trade_id: t.uuid.clone(),
                client_order_id: cid.clone(),
                symbol: symbol.clone(),
                side,
                qty: t.volume,
                price: t.price,
                fee,
                ts,
            });
        }
        Ok(out)
    }

    /// The order under `identifier`, `None` when Upbit has never seen it.
    async fn lookup(&self, identifier: &str) -> Result<Option<WireOrder>, UpbitError> {
        match self.rest.order(&OrderRef::Identifier(identifier.to_owned())).await {
            Ok(w) => Ok(Some(w)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// For a market order, polls until it is final so the fills come back with the ack; returns the last state
    /// seen (a poll failure is not an error: reconciliation and `order()` pick the fills up later).
    async fn settle(&self, mut w: WireOrder) -> WireOrder {
        if !matches!(w.ord_type.as_str(), "price" | "market") {
            return w;
        }
        let interval = Duration::from_millis(self.settings.fill_poll_interval_ms);
        for attempt in 0..self.settings.fill_polls {
            if attempt > 0 {
                self.pause.pause(interval).await;
            }
            match self.rest.order(&OrderRef::Uuid(w.uuid.clone())).await {
                Ok(latest) => {
                    let done = matches!(latest.state.as_str(), "done" | "cancel");
                    w = latest;
                    if done {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(uuid = %w.uuid, "cannot poll the Upbit order for fills: {e}");
                    break;
                }
            }
        }
        w
    }

    /// Sends an order exactly once. An outcome that is not known (time-out, 5xx, garbled answer) and any 400
    /// (which may be Upbit refusing a duplicate identifier) are resolved by looking the identifier up; a retry
    /// after "not found" is safe because Upbit never accepts an identifier twice.
    async fn submit(&self, order: NewOrder, meta: Placed) -> Result<OrderAck, ExchangeError> {
        self.placed().insert(order.identifier.clone(), meta);
        let first = match self.rest.create_order(&order).await {
            Ok(w) => {
                let w = self.settle(w).await;
                return self.to_ack(&w).map_err(Into::into);
            }
            Err(e) => e,
        };
        let resolvable = first.outcome_unknown()
            || matches!(first, UpbitError::Malformed { .. })
            || matches!(first, UpbitError::Api { status: 400 | 409 | 422, .. });
        if !resolvable {
            return Err(first.into());
        }
        let unknown = first.outcome_unknown() || matches!(first, UpbitError::Malformed { .. });
        let interval = Duration::from_millis(self.settings.fill_poll_interval_ms);
        let mut last_lookup_error = None;
        for attempt in 0..self.settings.lookup_attempts.max(1) {
            if attempt > 0 {
                self.pause.pause(interval).await;
            }
            match self.lookup(&order.identifier).await {
                Ok(Some(w)) => {
                    tracing::info!(identifier = %order.identifier, "Upbit order found by identifier after: {first}");
                    let w = self.settle(w).await;
                    return self.to_ack(&w).map_err(Into::into);
                }
                // A plain rejection of an order Upbit never stored: nothing to resolve.
                Ok(None) if !unknown => return Err(first.into()),
                Ok(None) => last_lookup_error = None,
                Err(e) => last_lookup_error = Some(e),
            }
        }
        Err(match last_lookup_error {
            Some(e) => ExchangeError::Unknown(format!("{first}; lookup by identifier failed: {e}")),
            None => ExchangeError::Retryable {
                retry_after: interval,
                message: format!("{first}; Upbit has no order {}: safe to retry with the same id", order.identifier),
            },
        })
    }

    /// Places a limit order. The price is moved onto the KRW tick grid in the caller's favour (buys down, sells
    /// up) and the volume down to the step, before anything is sent.
    pub async fn place_limit_order(
        &self,
        client_order_id: &ClientOrderId,
        run_id: &str,
        symbol: &Symbol,
        side: Side,
        price: Decimal,
        volume: Decimal,
    ) -> Result<OrderAck, ExchangeError> {
        self.split_market(symbol)?;
        let price = match side {
            Side::Buy => self.settings.tick_table.round(price, Rounding::Down),
            Side::Sell => self.settings.tick_table.round(price, Rounding::Up),
        };
        let volume = self.floor_volume(volume);
        self.check_total(price * volume, volume)?;
        let order = NewOrder {
            market: symbol.to_string(),
            side: upbit_side(side),
            kind: OrderKind::Limit { price, volume },
            identifier: client_order_id.to_string(),
        };
        let meta =
            Placed { run_id: run_id.to_owned(), reason: String::new(), qty: volume, created_at: self.clock.now() };
        self.submit(order, meta).await
    }

    /// After Upbit accepted a cancel (its answer often still reads `wait` and never carries the trades), reads
    /// the order until it is no longer open, at most `fill_polls` times: the last state seen, with its fills.
    async fn settle_cancel(&self, accepted: &WireOrder) -> Result<WireOrder, UpbitError> {
        let interval = Duration::from_millis(self.settings.fill_poll_interval_ms);
        let mut latest = None;
        for attempt in 0..self.settings.fill_polls.max(1) {
            if attempt > 0 {
                self.pause.pause(interval).await;
            }
            let w = self.rest.order(&OrderRef::Uuid(accepted.uuid.clone())).await?;
            let open = is_open(&w);
            latest = Some(w);
            if !open {
                break;
            }
        }
        Ok(latest.unwrap_or_else(|| accepted.clone()))
    }

    fn floor_volume(&self, v: Decimal) -> Decimal {
        let step = self.settings.volume_step;
        ((v / step).floor() * step).normalize()
    }

    fn check_total(&self, total: Decimal, volume: Decimal) -> Result<(), UpbitError> {
        if volume <= Decimal::ZERO {
            return Err(UpbitError::Invalid("order volume rounds to zero".into()));
        }
        if total < self.settings.min_order_total {
            return Err(UpbitError::Invalid(format!(
                "order total {total} {} is below Upbit's minimum {}",
                self.settings.quote, self.settings.min_order_total
            )));
        }
        Ok(())
    }
}

/// `wait` (on the book) and `watch` (a reserved order not yet triggered) can still trade or be cancelled.
fn is_open(w: &WireOrder) -> bool {
    matches!(w.state.as_str(), "wait" | "watch")
}

fn upbit_side(side: Side) -> OrderSide {
    match side {
        Side::Buy => OrderSide::Bid,
        Side::Sell => OrderSide::Ask,
    }
}

#[async_trait]
impl Exchange for UpbitExchange {
    fn name(&self) -> &str {
        "upbit"
    }

    /// Upbit's tick depends on the price, so the instrument carries the tick at the last trade price.
    async fn instrument(&self, symbol: &Symbol) -> Result<Instrument, ExchangeError> {
        let (quote, base) = self.split_market(symbol)?;
        let last = self.last_price(symbol).await?;
        Ok(Instrument {
            symbol: symbol.clone(),
            base,
            quote,
            tick_size: self.settings.tick_table.tick_for(last),
            step_size: self.settings.volume_step,
            min_notional: self.settings.min_order_total,
        })
    }

    async fn closed_candles(
        &self,
        symbol: &Symbol,
        tf: Timeframe,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Candle>, ExchangeError> {
        Ok(self.closed_candles_impl(symbol, tf, until, limit).await?)
    }

    async fn last_price(&self, symbol: &Symbol) -> Result<Decimal, ExchangeError> {
        self.split_market(symbol)?;
        let tickers = self.rest.ticker(&[symbol.as_str()]).await?;
        let t = tickers
            .iter()
            .find(|t| t.market == symbol.as_str())
            .ok_or_else(|| malformed("GET /v1/ticker", format!("no ticker for {symbol}")))?;
        if t.trade_price <= Decimal::ZERO {
            return Err(malformed("GET /v1/ticker", format!("non-positive price {}", t.trade_price)).into());
        }
        Ok(t.trade_price)
    }

    async fn order_book(&self, symbol: &Symbol, depth: usize) -> Result<OrderBook, ExchangeError> {
        self.split_market(symbol)?;
        let books = self.rest.orderbook(&[symbol.as_str()]).await?;
        let b = books
            .iter()
            .find(|b| b.market == symbol.as_str())
            .ok_or_else(|| malformed("GET /v1/orderbook", format!("no book for {symbol}")))?;
        let units = b.orderbook_units.iter().take(depth);
        Ok(OrderBook {
            bids: units.clone().map(|u| (u.bid_price, u.bid_size)).filter(|(_, q)| *q > Decimal::ZERO).collect(),
            asks: units.map(|u| (u.ask_price, u.ask_size)).filter(|(_, q)| *q > Decimal::ZERO).collect(),
        })
    }

    async fn balances(&self) -> Result<Vec<Balance>, ExchangeError> {
        let accounts = self.rest.accounts().await?;
        Ok(accounts
            .into_iter()
            .map(|a| Balance { asset: a.currency, free: a.balance, locked: a.locked })
            .filter(|b| !b.total().is_zero())
            .collect())
    }

    /// A buy spends `qty x ref_price` KRW (`ord_type=price`, the amount floored onto the KRW grid, which also
    /// makes it whole won); a sell sells `qty` (`ord_type=market`). Our client order id is Upbit's `identifier`.
    async fn place_market_order(
        &self,
        client_order_id: &ClientOrderId,
        run_id: &str,
        approved: &Approved<OrderIntent>,
    ) -> Result<OrderAck, ExchangeError> {
        let intent = approved.get();
        self.split_market(&intent.symbol)?;
        let kind = match intent.side {
            Side::Buy => {
                let amount = self.settings.tick_table.round(intent.qty * intent.ref_price, Rounding::Down);
                self.check_total(amount, intent.qty)?;
                OrderKind::MarketBuy { amount }
            }
            Side::Sell => {
                let volume = self.floor_volume(intent.qty);
                self.check_total(volume * intent.ref_price, volume)?;
                OrderKind::MarketSell { volume }
            }
        };
        let order = NewOrder {
            market: intent.symbol.to_string(),
            side: upbit_side(intent.side),
            kind,
            identifier: client_order_id.to_string(),
        };
        let meta = Placed {
            run_id: run_id.to_owned(),
            reason: intent.reason.clone(),
            qty: intent.qty,
            created_at: self.clock.now(),
        };
        self.submit(order, meta).await
    }

    async fn order(
        &self,
        _symbol: &Symbol,
        client_order_id: &ClientOrderId,
    ) -> Result<Option<OrderAck>, ExchangeError> {
        match self.lookup(client_order_id.as_str()).await? {
            Some(w) => Ok(Some(self.to_ack(&w)?)),
            None => Ok(None),
        }
    }

    /// `DELETE /v1/order?identifier=`. A 404 means Upbit never saw the id. Upbit refuses (4xx) to cancel an order
    /// that is no longer open, so a refusal is answered with the order's final state when a lookup finds one.
    /// An answer lost after the request may have reached Upbit (5xx, time-out, garbled body) is resolved by a
    /// lookup too: final means settled, still open means the cancel may be sent again.
    async fn cancel_order(
        &self,
        symbol: &Symbol,
        client_order_id: &ClientOrderId,
    ) -> Result<Option<OrderAck>, ExchangeError> {
        self.split_market(symbol)?;
        let id = client_order_id.as_str();
        let err = match self.rest.cancel_order(&OrderRef::Identifier(id.to_owned())).await {
            Ok(accepted) => {
                return match self.settle_cancel(&accepted).await {
                    Ok(w) => Ok(Some(self.to_ack(&w)?)),
                    Err(e) => Err(ExchangeError::Unknown(format!(
                        "Upbit accepted the cancel of {id} but the order could not be read since: {e}"
                    ))),
                };
            }
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => e,
        };
        let ambiguous = err.outcome_unknown() || matches!(err, UpbitError::Malformed { .. });
        let refused = matches!(err, UpbitError::Api { status: 400 | 409 | 422, .. });
        if !ambiguous && !refused {
            return Err(err.into());
        }
        let found = match self.lookup(id).await {
            Ok(found) => found,
            Err(le) if ambiguous => {
                return Err(ExchangeError::Unknown(format!(
                    "cancel of {id}: {err}; the order could not be looked up: {le}"
                )));
            }
            Err(le) => return Err(le.into()),
        };
        match found {
            None => Ok(None),
            Some(w) if !is_open(&w) => Ok(Some(self.to_ack(&w)?)),
            Some(w) if ambiguous => Err(ExchangeError::Retryable {
                retry_after: Duration::from_millis(self.settings.fill_poll_interval_ms),
                message: format!("cancel of {id} not in effect after: {err}; Upbit still shows it {}", w.state),
            }),
            Some(w) => Err(ExchangeError::Rejected(format!("{err}; Upbit still shows {id} {}", w.state))),
        }
    }

    async fn open_orders(&self) -> Result<Vec<Order>, ExchangeError> {
        const PAGE: u32 = 100;
        const MAX_PAGES: u32 = 50;
        let mut out = Vec::new();
        for page in 1..=MAX_PAGES {
            let batch = self.rest.open_orders(None, page, PAGE).await?;
            let n = batch.len();
            for w in &batch {
                out.push(self.to_ack(w)?.order);
            }
            if n < PAGE as usize {
                break;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn bar(h: i64, o: Decimal, hi: Decimal, lo: Decimal, c: Decimal) -> Candle {
        Candle {
            open_time: DateTime::from_timestamp(1_700_006_400 + h * 3600, 0).unwrap(),
            open: o,
            high: hi,
            low: lo,
            close: c,
            volume: dec!(1.5),
        }
    }

    #[test]
    fn hourly_bars_merge_on_utc_boundaries() {
        let tf: Timeframe = "2h".parse().unwrap();
        // 1_700_006_400 is 00:00 UTC; hour 3 is missing (no trades).
        let bars = vec![
            bar(0, dec!(10), dec!(12), dec!(9), dec!(11)),
            bar(1, dec!(11), dec!(13), dec!(10), dec!(12)),
            bar(2, dec!(12), dec!(12), dec!(8), dec!(9)),
        ];
        let m = merge(&bars, tf);
        assert_eq!(m.len(), 2);
        assert_eq!(
            (m[0].open, m[0].high, m[0].low, m[0].close, m[0].volume),
            (dec!(10), dec!(13), dec!(9), dec!(12), dec!(3.0))
        );
        assert_eq!(m[1].open_time, bars[2].open_time);
        assert_eq!(native_of(tf), (Native::Minutes(60), 2));
        assert_eq!(native_of("1d".parse().unwrap()), (Native::Days, 1));
        assert_eq!(native_of("4h".parse().unwrap()), (Native::Minutes(240), 1));
    }

    #[test]
    fn candle_times_are_utc_without_zone() {
        assert_eq!(
            parse_candle_time("2024-08-31T13:25:00").map(|t| t.timestamp()),
            Some(DateTime::parse_from_rfc3339("2024-08-31T13:25:00Z").unwrap().timestamp())
        );
        assert_eq!(
            parse_time("2024-08-31T22:25:59+09:00").map(|t| t.to_rfc3339()),
            Some("2024-08-31T13:25:59+00:00".into())
        );
        assert!(parse_candle_time("31/08/2024").is_none());
    }
}
