//! `BinanceExchange`: the domain adapter over the raw REST client. It decides what to ask Binance so that the
//! pipeline's guarantees hold: rules applied before submit, closed bars only, and every order placed at most
//! once under its client order id whatever happens to requests and responses.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use mcbot_stages::Clock;
use mcbot_stages::domain::{
    Balance, Candle, ClientOrderId, Fill, Instrument, Order, OrderBook, OrderIntent, OrderStatus, Side, Symbol,
    Timeframe,
};
use mcbot_stages::pipeline::pretrade::Approved;
use mcbot_stages::ports::{Exchange, ExchangeError, OrderAck};

use super::candle_cache::CandleCache;
use super::errors::{BinanceError, DEFAULT_RETRY_AFTER, NextStep};
use super::history::closed_klines;
use super::limits::RiskHook;
use super::payloads::{OrderResponse, ms_to_utc};
use super::rest::{BinanceRest, NewOrder, OrderRef, TradesQuery};
use super::rules::SymbolRules;
use super::settings::BinanceSettings;
use super::stream::{StreamHandle, StreamSpec, spawn_kline_stream};

/// What Binance does not store about an order but the domain `Order` carries.
#[derive(Debug, Clone, Default)]
struct OrderContext {
    run_id: String,
    reason: String,
    side: Option<Side>,
    qty: Option<Decimal>,
}

/// The Binance spot exchange behind the `Exchange` port.
pub struct BinanceExchange {
    rest: Arc<BinanceRest>,
    settings: BinanceSettings,
    clock: Arc<dyn Clock>,
    rules: RwLock<HashMap<Symbol, SymbolRules>>,
    /// Final orders this process has seen, so placing the same id again answers without a request.
    finals: Mutex<HashMap<ClientOrderId, OrderAck>>,
    cache: OnceLock<Arc<CandleCache>>,
}

impl BinanceExchange {
    /// Builds the adapter. `risk_hook` is called on a 418 ban and on refused credentials.
    pub fn new(
        settings: BinanceSettings,
        clock: Arc<dyn Clock>,
        risk_hook: Option<RiskHook>,
    ) -> Result<Self, BinanceError> {
        let rest = Arc::new(BinanceRest::new(&settings, clock.clone(), risk_hook)?);
        Ok(Self {
            rest,
            settings,
            clock,
            rules: RwLock::new(HashMap::new()),
            finals: Mutex::new(HashMap::new()),
            cache: OnceLock::new(),
        })
    }

    /// The raw client, for endpoints the port does not cover.
    pub fn rest(&self) -> &Arc<BinanceRest> {
        &self.rest
    }

    /// Starts the kline stream for `symbols` at `timeframe`; from then on `closed_candles` serves that
    /// timeframe from the stream's cache whenever the cache is complete up to the bar asked for.
    pub fn start_stream(&self, symbols: Vec<Symbol>, timeframe: Timeframe) -> StreamHandle {
        let spec = StreamSpec {
            ws_url: self.settings.ws_url.clone(),
            symbols,
            timeframe,
            settings: self.settings.stream.clone(),
        };
        let handle = spawn_kline_stream(self.rest.clone(), self.clock.clone(), spec);
        if self.cache.set(handle.cache()).is_err() {
            tracing::warn!("a kline stream was already attached; the new one feeds only its own handle");
        }
        handle
    }

    /// Loads the rules of `symbols` in one exchangeInfo request (start-up), so orders never wait for them.
    pub async fn load_rules(&self, symbols: &[Symbol]) -> Result<(), BinanceError> {
        let info = self.rest.exchange_info(symbols).await?;
        let mut loaded = HashMap::new();
        for s in &info.symbols {
            let r = SymbolRules::from_info(s)?;
            loaded.insert(r.symbol.clone(), r);
        }
        if let Some(missing) = symbols.iter().find(|s| !loaded.contains_key(*s)) {
            return Err(BinanceError::Rejected { code: -1121, msg: format!("Binance does not list {missing}") });
        }
        self.rules.write().unwrap_or_else(|p| p.into_inner()).extend(loaded);
        Ok(())
    }

    /// The full rules of a symbol (cached after the first exchangeInfo).
    pub async fn rules(&self, symbol: &Symbol) -> Result<SymbolRules, BinanceError> {
        if let Some(r) = self.rules.read().unwrap_or_else(|p| p.into_inner()).get(symbol) {
            return Ok(r.clone());
        }
        self.load_rules(std::slice::from_ref(symbol)).await?;
        self.rules
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(symbol)
            .cloned()
            .ok_or_else(|| BinanceError::Rejected { code: -1121, msg: format!("Binance does not list {symbol}") })
    }

    /// Closed bars with open time in [`from`, `to`], paging over any range (data download, backfill).
    pub async fn candles_between(
        &self,
        symbol: &Symbol,
        tf: Timeframe,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Candle>, BinanceError> {
        closed_klines(&self.rest, symbol, tf, from, to, self.clock.now()).await
    }

    fn remember(&self, ack: &OrderAck) {
        if ack.order.status.is_final() {
            self.finals
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(ack.order.client_order_id.clone(), ack.clone());
        }
    }

    fn remembered(&self, id: &ClientOrderId) -> Option<OrderAck> {
        self.finals.lock().unwrap_or_else(|p| p.into_inner()).get(id).cloned()
    }

    /// The order under `id` with all its fills, or `None` when Binance never saw it.
    async fn lookup(
        &self,
        symbol: &Symbol,
        id: &ClientOrderId,
        cx: &OrderContext,
    ) -> Result<Option<OrderAck>, BinanceError> {
        match self.rest.query_order(symbol, &OrderRef::Client(id.clone())).await {
            Ok(resp) => self.ack(resp, cx).await.map(Some),
            Err(BinanceError::NoSuchOrder(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// After an unknown outcome: look the order up a few times (the matching engine may publish it late).
    /// `Ok(None)` only when every lookup answered "no such order".
    async fn resolve(
        &self,
        symbol: &Symbol,
        id: &ClientOrderId,
        cx: &OrderContext,
    ) -> Result<Option<OrderAck>, BinanceError> {
        let attempts = self.settings.order_lookup_attempts.max(1);
        let mut last_err = None;
        for attempt in 0..attempts {
            if attempt > 0 || self.settings.order_lookup_delay_ms > 0 {
                tokio::time::sleep(Duration::from_millis(self.settings.order_lookup_delay_ms)).await;
            }
            match self.lookup(symbol, id, cx).await {
                Ok(Some(ack)) => return Ok(Some(ack)),
                Ok(None) => last_err = None,
                Err(e) if e.next_step() == NextStep::Stop => return Err(e),
                Err(e) => {
                    tracing::warn!(client_order_id = %id, error = %e, "order lookup failed");
                    last_err = Some(e);
                }
            }
        }
        match last_err {
            None => Ok(None),
            Some(e) => Err(e),
        }
    }

    /// The order and its fills: from the FULL response when it carries them all, else from myTrades.
    async fn ack(&self, resp: OrderResponse, cx: &OrderContext) -> Result<OrderAck, BinanceError> {
        let order = self.to_order(&resp, cx)?;
        let rules = self.rules(&order.symbol).await?;
        let in_response: Decimal = resp.fills.iter().flatten().map(|f| f.qty.0).sum();
        let fills = if order.filled_qty.is_zero() {
            Vec::new()
        } else if resp.fills.is_some() && in_response == order.filled_qty {
            let ts = resp.transact_time.and_then(ms_to_utc).unwrap_or(order.created_at);
            resp.fills
                .iter()
                .flatten()
                .map(|f| Fill {
                    trade_id: f.trade_id.to_string(),
                    client_order_id: order.client_order_id.clone(),
                    symbol: order.symbol.clone(),
                    side: order.side,
                    qty: f.qty.0,
                    price: f.price.0,
                    fee: quote_fee(f.commission.0, &f.commission_asset, f.price.0, &rules),
                    ts,
                })
                .collect()
        } else {
            let q = TradesQuery { order_id: Some(resp.order_id), limit: Some(1000), ..TradesQuery::default() };
            let trades = self.rest.my_trades(&order.symbol, &q).await?;
            let mut fills = Vec::with_capacity(trades.len());
            for t in trades.into_iter().filter(|t| t.order_id == resp.order_id) {
                let ts = ms_to_utc(t.time).ok_or_else(|| BinanceError::malformed("myTrades", "time out of range"))?;
                fills.push(Fill {
                    trade_id: t.id.to_string(),
                    client_order_id: order.client_order_id.clone(),
                    symbol: order.symbol.clone(),
                    side: if t.is_buyer { Side::Buy } else { Side::Sell },
                    qty: t.qty.0,
                    price: t.price.0,
                    fee: quote_fee(t.commission.0, &t.commission_asset, t.price.0, &rules),
                    ts,
                });
            }
            let traded: Decimal = fills.iter().map(|f| f.qty).sum();
            if traded != order.filled_qty {
                // Binance publishes trades a moment after the order: an incomplete list is not an answer.
                return Err(BinanceError::Server {
                    status: 200,
                    msg: format!(
                        "myTrades shows {traded} of {} executed for {}",
                        order.filled_qty, order.client_order_id
                    ),
                });
            }
            fills
        };
        let ack = OrderAck { order, fills };
        self.remember(&ack);
        Ok(ack)
    }

    fn to_order(&self, resp: &OrderResponse, cx: &OrderContext) -> Result<Order, BinanceError> {
        let bad = |d: String| BinanceError::malformed("order", d);
        let symbol = Symbol::new(&resp.symbol).map_err(|e| bad(e.to_string()))?;
        let side = match resp.side.as_deref() {
            Some("BUY") => Side::Buy,
            Some("SELL") => Side::Sell,
            Some(other) => return Err(bad(format!("side {other:?}"))),
            None => cx.side.ok_or_else(|| bad("order without side".into()))?,
        };
        let filled_qty = resp.executed_qty.map_or(Decimal::ZERO, |d| d.0);
        let status = match resp.status.as_deref() {
            None | Some("NEW") | Some("PENDING_NEW") => OrderStatus::New,
            Some("PARTIALLY_FILLED") => OrderStatus::PartiallyFilled,
            Some("FILLED") => OrderStatus::Filled,
            // A MARKET order that ran out of liquidity ends EXPIRED: final, with what it filled.
            Some("CANCELED" | "PENDING_CANCEL" | "EXPIRED" | "EXPIRED_IN_MATCH") => OrderStatus::Canceled,
            Some("REJECTED") => OrderStatus::Rejected,
            Some(other) => return Err(bad(format!("status {other:?}"))),
        };
        let quote = resp.cumulative_quote_qty.map_or(Decimal::ZERO, |d| d.0);
        let avg_price = (filled_qty > Decimal::ZERO).then(|| quote / filled_qty);
        let created_at = resp.transact_time.or(resp.time).and_then(ms_to_utc).unwrap_or_else(|| self.clock.now());
        let id = resp.orig_client_order_id.clone().unwrap_or_else(|| resp.client_order_id.clone());
        Ok(Order {
            client_order_id: ClientOrderId::from_stored(id),
            run_id: cx.run_id.clone(),
            symbol,
            side,
            qty: resp.orig_qty.map(|d| d.0).or(cx.qty).unwrap_or(filled_qty),
            filled_qty,
            avg_price,
            status,
            exchange_order_id: Some(resp.order_id.to_string()),
            created_at,
            reason: cx.reason.clone(),
        })
    }

    /// Submits under `id`, resolving every ambiguous answer by a lookup before anything is sent again.
    async fn submit(&self, order: &NewOrder, cx: &OrderContext) -> Result<OrderAck, BinanceError> {
        let attempts = self.settings.order_submit_attempts.max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let err = match self.rest.new_order(order).await {
                Ok(resp) => match self.ack(resp, cx).await {
                    Ok(ack) => return Ok(ack),
                    // Placed, but the fills could not be read yet: the caller looks it up again.
                    Err(e) => return Err(BinanceError::OutcomeUnknown(format!("order placed, fills unread: {e}"))),
                },
                Err(e) => e,
            };
            match err {
                BinanceError::DuplicateOrder(msg) => {
                    // The id is taken: by our own earlier attempt. Binance's view is the answer; an order that
                    // exists but cannot be read now is unknown, never "not placed".
                    return match self.resolve(&order.symbol, &order.client_order_id, cx).await {
                        Ok(Some(ack)) => Ok(ack),
                        Ok(None) => Err(BinanceError::OutcomeUnknown(format!("{msg} but no order under the id"))),
                        Err(le) => Err(BinanceError::OutcomeUnknown(format!("{msg}; lookup failed: {le}"))),
                    };
                }
                e if e.next_step() == NextStep::LookUpOrder => {
                    tracing::warn!(client_order_id = %order.client_order_id, error = %e, "order outcome unknown: looking it up");
                    match self.resolve(&order.symbol, &order.client_order_id, cx).await {
                        Ok(Some(ack)) => return Ok(ack),
                        Ok(None) if attempt < attempts => {
                            tracing::warn!(client_order_id = %order.client_order_id, "order not found: resubmitting under the same id");
                        }
                        // Every lookup after the last submission answered "no such order": Binance never
                        // accepted it. Saying so lets the caller retry under the same id (looked up first)
                        // instead of leaving an order pending that the exchange will never know.
                        Ok(None) => {
                            return Err(BinanceError::NotPlaced(format!(
                                "{e}; Binance has no order {} after {attempt} submission(s) and their lookups",
                                order.client_order_id
                            )));
                        }
                        Err(le) => return Err(BinanceError::OutcomeUnknown(format!("{e}; lookup failed: {le}"))),
                    }
                }
                e => return Err(e),
            }
        }
    }
}

/// A fee in the quote asset. A buy's fee charged in the base asset is valued at the fill price; a fee in a
/// third asset (BNB) cannot be converted exactly without that asset's price and is recorded as zero here
/// (the raw commission stays available from `myTrades`).
fn quote_fee(commission: Decimal, asset: &str, price: Decimal, rules: &SymbolRules) -> Decimal {
    if asset == rules.quote {
        commission
    } else if asset == rules.base {
        commission * price
    } else {
        if !commission.is_zero() {
            tracing::warn!(asset, %commission, symbol = %rules.symbol, "fee paid in a third asset: not converted to quote");
        }
        Decimal::ZERO
    }
}

#[async_trait]
impl Exchange for BinanceExchange {
    fn name(&self) -> &str {
        "binance"
    }

    async fn instrument(&self, symbol: &Symbol) -> Result<Instrument, ExchangeError> {
        Ok(self.rules(symbol).await?.instrument())
    }

    async fn closed_candles(
        &self,
        symbol: &Symbol,
        tf: Timeframe,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Candle>, ExchangeError> {
        let now = self.clock.now();
        let last_open = tf.last_close(until.min(now)) - tf.duration();
        if let Some(cache) = self.cache.get().filter(|c| c.timeframe() == tf)
            && let Some(bars) = cache.closed_until(symbol, last_open, limit)
        {
            return Ok(bars);
        }
        if limit == 0 {
            return Ok(Vec::new());
        }
        let span = i32::try_from(limit - 1).map_err(|_| ExchangeError::Rejected(format!("limit {limit} too large")))?;
        let from = last_open - tf.duration() * span;
        let mut bars = closed_klines(&self.rest, symbol, tf, from, last_open, now).await?;
        let excess = bars.len().saturating_sub(limit);
        bars.drain(..excess);
        Ok(bars)
    }

    async fn last_price(&self, symbol: &Symbol) -> Result<Decimal, ExchangeError> {
        Ok(self.rest.ticker_price(symbol).await?.price.0)
    }

    async fn order_book(&self, symbol: &Symbol, depth: usize) -> Result<OrderBook, ExchangeError> {
        let limit = u32::try_from(depth).unwrap_or(5000);
        let mut book = self.rest.depth(symbol, limit).await?.to_book();
        book.bids.truncate(depth);
        book.asks.truncate(depth);
        Ok(book)
    }

    async fn balances(&self) -> Result<Vec<Balance>, ExchangeError> {
        let account = self.rest.account().await?;
        Ok(account.balances.iter().map(|b| b.to_balance()).filter(|b| !b.total().is_zero()).collect())
    }

    async fn place_market_order(
        &self,
        client_order_id: &ClientOrderId,
        run_id: &str,
        approved: &Approved<OrderIntent>,
    ) -> Result<OrderAck, ExchangeError> {
        let intent = approved.get();
        if let Some(ack) = self.remembered(client_order_id) {
            return Ok(ack);
        }
        let rules = self.rules(&intent.symbol).await?;
        let qty = rules.market_qty(intent.qty, intent.ref_price).map_err(|v| ExchangeError::Rejected(v.to_string()))?;
        let cx = OrderContext {
            run_id: run_id.to_owned(),
            reason: intent.reason.clone(),
            side: Some(intent.side),
            qty: Some(qty),
        };
        if self.settings.lookup_before_place {
            // An id placed by an earlier process (restart with an order in flight) is answered, not re-placed.
            match self.rest.query_order(&intent.symbol, &OrderRef::Client(client_order_id.clone())).await {
                Ok(resp) => {
                    // The order exists: if its fills cannot be read now, its outcome is unknown (looked up
                    // again by the caller), never "not placed".
                    return self.ack(resp, &cx).await.map_err(|e| {
                        ExchangeError::Unknown(format!("order {client_order_id} exists, fills unread: {e}"))
                    });
                }
                Err(BinanceError::NoSuchOrder(_)) => {}
                // Nothing has been sent yet: an unreadable answer to the lookup leaves the order unplaced, to be
                // tried again under the same id, like the 5xx, time-outs and 429s that already map to "retry".
                Err(e @ BinanceError::Malformed { .. }) => {
                    return Err(ExchangeError::Retryable {
                        retry_after: DEFAULT_RETRY_AFTER,
                        message: format!("order {client_order_id} not sent: lookup before placing failed: {e}"),
                    });
                }
                Err(e) => return Err(e.into()),
            }
        }
        let order = NewOrder {
            symbol: intent.symbol.clone(),
            side: intent.side,
            quantity: qty,
            client_order_id: client_order_id.clone(),
        };
        Ok(self.submit(&order, &cx).await?)
    }

    async fn order(&self, symbol: &Symbol, client_order_id: &ClientOrderId) -> Result<Option<OrderAck>, ExchangeError> {
        if let Some(ack) = self.remembered(client_order_id) {
            return Ok(Some(ack));
        }
        Ok(self.lookup(symbol, client_order_id, &OrderContext::default()).await?)
    }

    async fn open_orders(&self) -> Result<Vec<Order>, ExchangeError> {
        let open = self.rest.open_orders(None).await?;
        let mut out = Vec::with_capacity(open.len());
        for resp in &open {
            out.push(self.to_order(resp, &OrderContext::default())?);
        }
        Ok(out)
    }

    /// `DELETE /api/v3/order` by `origClientOrderId`. Binance answers `-2011 Unknown order sent.` both for an id
    /// it never saw and for an order no longer open, so that answer is resolved by a lookup: the final order,
    /// or `None`. An answer lost after the request may have reached Binance (5xx, time-out, cut body) is
    /// resolved the same way: final means settled, still open means the cancel may be sent again.
    async fn cancel_order(
        &self,
        symbol: &Symbol,
        client_order_id: &ClientOrderId,
    ) -> Result<Option<OrderAck>, ExchangeError> {
        if let Some(ack) = self.remembered(client_order_id) {
            return Ok(Some(ack));
        }
        let cx = OrderContext::default();
        let err = match self.rest.cancel_order(symbol, &OrderRef::Client(client_order_id.clone())).await {
            Ok(resp) => {
                // Cancelled; a partly filled order's fills come from myTrades, which may lag a moment.
                return self.ack(resp, &cx).await.map(Some).map_err(|e| {
                    ExchangeError::Unknown(format!("order {client_order_id} cancelled, fills unread: {e}"))
                });
            }
            Err(e) => e,
        };
        match err {
            BinanceError::NoSuchOrder(msg) => match self.lookup(symbol, client_order_id, &cx).await? {
                None => Ok(None),
                Some(ack) if ack.order.status.is_final() => Ok(Some(ack)),
                Some(ack) => Err(ExchangeError::Rejected(format!(
                    "Binance refused to cancel {client_order_id} ({msg}) but shows it {:?}",
                    ack.order.status
                ))),
            },
            e if e.next_step() == NextStep::LookUpOrder => match self.lookup(symbol, client_order_id, &cx).await {
                Ok(None) => Ok(None),
                Ok(Some(ack)) if ack.order.status.is_final() => Ok(Some(ack)),
                Ok(Some(ack)) => Err(ExchangeError::Retryable {
                    retry_after: DEFAULT_RETRY_AFTER,
                    message: format!(
                        "cancel of {client_order_id} not in effect after: {e}; Binance still shows it {:?}",
                        ack.order.status
                    ),
                }),
                Err(le) => Err(ExchangeError::Unknown(format!(
                    "cancel of {client_order_id}: {e}; the order could not be looked up: {le}"
                ))),
            },
            e => Err(e.into()),
        }
    }
}
