//! The raw Binance spot REST client: one method per endpoint, named after it, returning Binance's own shapes
//! parsed into typed structs. Signing, the clock offset, the weight budget, 429/418 handling and the error
//! mapping all happen here, so the domain adapter above only decides what to ask.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::Method;
use rust_decimal::Decimal;
use serde::de::{DeserializeOwned, IgnoredAny};

use mcbot_stages::Clock;
use mcbot_stages::domain::{ClientOrderId, Side, Symbol, Timeframe};

use super::errors::BinanceError;
use super::limits::{LimitStatus, RateLimiter, RiskHook};
use super::payloads::{Account, Depth, ExchangeInfo, Kline, OrderResponse, ServerTime, TickerPrice, Trade};
use super::settings::{BinanceSettings, Secret};
use super::signing;
use super::time_sync::TimeSync;

/// One endpoint: where it is, what it costs, whether it is signed and whether it changes orders (a 5xx on
/// those means the outcome is unknown, not "nothing happened").
#[derive(Debug, Clone)]
struct Endpoint {
    name: &'static str,
    method: Method,
    path: &'static str,
    weight: u32,
    signed: bool,
    mutation: bool,
}

impl Endpoint {
    const fn public(name: &'static str, path: &'static str, weight: u32) -> Self {
        Self { name, method: Method::GET, path, weight, signed: false, mutation: false }
    }

    const fn signed(name: &'static str, method: Method, path: &'static str, weight: u32, mutation: bool) -> Self {
        Self { name, method, path, weight, signed: true, mutation }
    }

    fn weighing(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }
}

const PING: Endpoint = Endpoint::public("ping", "/api/v3/ping", 1);
const TIME: Endpoint = Endpoint::public("time", "/api/v3/time", 1);
const EXCHANGE_INFO: Endpoint = Endpoint::public("exchangeInfo", "/api/v3/exchangeInfo", 20);
const KLINES: Endpoint = Endpoint::public("klines", "/api/v3/klines", 2);
const TICKER_PRICE: Endpoint = Endpoint::public("ticker/price", "/api/v3/ticker/price", 2);
const DEPTH: Endpoint = Endpoint::public("depth", "/api/v3/depth", 5);
const ACCOUNT: Endpoint = Endpoint::signed("account", Method::GET, "/api/v3/account", 20, false);
const NEW_ORDER: Endpoint = Endpoint::signed("order (new)", Method::POST, "/api/v3/order", 1, true);
const QUERY_ORDER: Endpoint = Endpoint::signed("order (query)", Method::GET, "/api/v3/order", 4, false);
const CANCEL_ORDER: Endpoint = Endpoint::signed("order (cancel)", Method::DELETE, "/api/v3/order", 1, true);
const OPEN_ORDERS: Endpoint = Endpoint::signed("openOrders", Method::GET, "/api/v3/openOrders", 6, false);
const MY_TRADES: Endpoint = Endpoint::signed("myTrades", Method::GET, "/api/v3/myTrades", 20, false);
const API_RESTRICTIONS: Endpoint =
    Endpoint::signed("account/apiRestrictions", Method::GET, "/sapi/v1/account/apiRestrictions", 1, false);

/// Most rows one klines request returns.
pub const KLINES_MAX_LIMIT: u16 = 1000;

/// A MARKET order to submit under our client order id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    /// The pair.
    pub symbol: Symbol,
    /// Direction.
    pub side: Side,
    /// Base quantity, already a multiple of the step.
    pub quantity: Decimal,
    /// Sent as `newClientOrderId`, so the order can be found again whatever happens to the response.
    pub client_order_id: ClientOrderId,
}

/// How an order is named in a query or cancel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderRef {
    /// Binance's id.
    Exchange(i64),
    /// Our client order id (`origClientOrderId`).
    Client(ClientOrderId),
}

/// Filters of `myTrades`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TradesQuery {
    /// Only this order's trades (weight 5 instead of 20).
    pub order_id: Option<i64>,
    /// Trades with id at or above this.
    pub from_id: Option<i64>,
    /// Trades at or after this time.
    pub start: Option<DateTime<Utc>>,
    /// Trades at or before this time (at most 24 h after `start`).
    pub end: Option<DateTime<Utc>>,
    /// Rows, at most 1000.
    pub limit: Option<u16>,
}

/// The raw REST client.
pub struct BinanceRest {
    http: reqwest::Client,
    base: String,
    api_key: Option<Secret>,
    api_secret: Option<Secret>,
    recv_window_ms: u64,
    time: Arc<TimeSync>,
    limiter: RateLimiter,
}

impl BinanceRest {
    /// Builds the client; `hook` receives critical events (418 ban, refused credentials).
    pub fn new(
        settings: &BinanceSettings,
        clock: Arc<dyn Clock>,
        hook: Option<RiskHook>,
    ) -> Result<Self, BinanceError> {
        let http = reqwest::Client::builder()
            .timeout(settings.request_timeout())
            .connect_timeout(settings.connect_timeout())
            .user_agent(concat!("mcbot/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| BinanceError::Config(format!("HTTP client: {e}")))?;
        let time = Arc::new(TimeSync::new(clock));
        metrics::gauge!(crate::metrics::names::EXCHANGE_WEIGHT_LIMIT, "venue" => "binance")
            .set(f64::from(settings.weight_budget_per_min));
        let limiter = RateLimiter::new(
            time.clone(),
            settings.weight_budget_per_min,
            Duration::from_millis(settings.max_limit_wait_ms),
            hook,
        );
        Ok(Self {
            http,
            base: settings.rest_url.trim_end_matches('/').to_owned(),
            api_key: settings.api_key.clone(),
            api_secret: settings.api_secret.clone(),
            recv_window_ms: settings.recv_window_ms.min(60_000),
            time,
            limiter,
        })
    }

    /// Server time as the adapter estimates it.
    pub fn time_sync(&self) -> &TimeSync {
        &self.time
    }

    /// Weight used, back-off and ban in force.
    pub fn limits(&self) -> LimitStatus {
        self.limiter.status()
    }

    /// Reports a condition through the event hook.
    pub fn raise(
        &self,
        kind: mcbot_stages::ports::EventKind,
        severity: mcbot_stages::ports::Severity,
        message: String,
    ) {
        self.limiter.raise(kind, severity, message);
    }

    /// `GET /api/v3/ping`: connectivity.
    pub async fn ping(&self) -> Result<(), BinanceError> {
        self.call::<IgnoredAny>(&PING, &[]).await.map(|_| ())
    }

    /// `GET /api/v3/time`: Binance's clock.
    pub async fn time(&self) -> Result<DateTime<Utc>, BinanceError> {
        // Public and unsigned: sent directly, since signed calls use this to measure the offset.
        let body = self.send(&TIME, &[]).await?;
        let t: ServerTime = serde_json::from_slice(&body).map_err(|e| BinanceError::malformed(TIME.name, e))?;
        super::payloads::ms_to_utc(t.server_time)
            .ok_or_else(|| BinanceError::malformed(TIME.name, format!("serverTime {} out of range", t.server_time)))
    }

    /// Measures the offset between the injected clock and Binance's, used for every signed timestamp.
    pub async fn sync_time(&self) -> Result<i64, BinanceError> {
        let sent = self.time.local_now();
        let server = self.time().await?;
        let received = self.time.local_now();
        self.time.record(sent, received, server);
        tracing::debug!(offset_ms = self.time.offset_ms(), "Binance clock offset measured");
        Ok(self.time.offset_ms())
    }

    /// `GET /api/v3/exchangeInfo` for `symbols` (all symbols when empty: weight 20 either way).
    pub async fn exchange_info(&self, symbols: &[Symbol]) -> Result<ExchangeInfo, BinanceError> {
        let params = match symbols {
            [] => vec![],
            [one] => vec![("symbol", one.to_string())],
            many => {
                let list: Vec<String> = many.iter().map(|s| format!("\"{s}\"")).collect();
                vec![("symbols", format!("[{}]", list.join(",")))]
            }
        };
        self.call(&EXCHANGE_INFO, &params).await
    }

    /// `GET /api/v3/klines`: bars whose open time lies in [start, end], oldest first, at most `limit` (≤ 1000).
    /// The last row may be the bar still forming; callers that need closed bars drop it.
    pub async fn klines(
        &self,
        symbol: &Symbol,
        interval: Timeframe,
        start: Option<DateTime<Utc>>,
        end: Option<DateTime<Utc>>,
        limit: u16,
    ) -> Result<Vec<Kline>, BinanceError> {
        let mut params = vec![("symbol", symbol.to_string()), ("interval", interval.to_string())];
        if let Some(s) = start {
            params.push(("startTime", s.timestamp_millis().to_string()));
        }
        if let Some(e) = end {
            params.push(("endTime", e.timestamp_millis().to_string()));
        }
        params.push(("limit", limit.clamp(1, KLINES_MAX_LIMIT).to_string()));
        self.call(&KLINES, &params).await
    }

    /// `GET /api/v3/ticker/price?symbol=`: last price.
    pub async fn ticker_price(&self, symbol: &Symbol) -> Result<TickerPrice, BinanceError> {
        self.call(&TICKER_PRICE, &[("symbol", symbol.to_string())]).await
    }

    /// `GET /api/v3/depth`: the book, `limit` levels a side (≤ 5000; weight grows with it).
    pub async fn depth(&self, symbol: &Symbol, limit: u32) -> Result<Depth, BinanceError> {
        let limit = limit.clamp(1, 5000);
        let weight = match limit {
            0..=100 => 5,
            101..=500 => 25,
            501..=1000 => 50,
            _ => 250,
        };
        self.call(&DEPTH.clone().weighing(weight), &[("symbol", symbol.to_string()), ("limit", limit.to_string())])
            .await
    }

    /// `GET /api/v3/account`: balances and permissions.
    pub async fn account(&self) -> Result<Account, BinanceError> {
        self.call(&ACCOUNT, &[("omitZeroBalances", "true".into())]).await
    }

    /// `GET /sapi/v1/account/apiRestrictions`: what the API key may do (withdraw, trade, from which IPs).
    pub async fn api_restrictions(&self) -> Result<super::payloads::ApiRestrictions, BinanceError> {
        self.call(&API_RESTRICTIONS, &[]).await
    }

    /// `POST /api/v3/order`: a MARKET order with `newOrderRespType=FULL`, so the fills come back at once.
    /// A 5xx, time-out or unreadable answer is `OutcomeUnknown`: look the order up before anything else.
    pub async fn new_order(&self, order: &NewOrder) -> Result<OrderResponse, BinanceError> {
        let side = match order.side {
            Side::Buy => "BUY",
            Side::Sell => "SELL",
        };
        let params = [
            ("symbol", order.symbol.to_string()),
            ("side", side.to_owned()),
            ("type", "MARKET".to_owned()),
            ("quantity", order.quantity.normalize().to_string()),
            ("newClientOrderId", order.client_order_id.to_string()),
            ("newOrderRespType", "FULL".to_owned()),
        ];
        self.call(&NEW_ORDER, &params).await
    }

    /// `GET /api/v3/order`: one order; `NoSuchOrder` when Binance never saw it.
    pub async fn query_order(&self, symbol: &Symbol, order: &OrderRef) -> Result<OrderResponse, BinanceError> {
        self.call(&QUERY_ORDER, &order_params(symbol, order)).await
    }

    /// `DELETE /api/v3/order`: cancels an open order; `NoSuchOrder` when it is not open.
    pub async fn cancel_order(&self, symbol: &Symbol, order: &OrderRef) -> Result<OrderResponse, BinanceError> {
        self.call(&CANCEL_ORDER, &order_params(symbol, order)).await
    }

    /// `GET /api/v3/openOrders`, for one symbol (weight 6) or all (weight 80).
    pub async fn open_orders(&self, symbol: Option<&Symbol>) -> Result<Vec<OrderResponse>, BinanceError> {
        match symbol {
            Some(s) => self.call(&OPEN_ORDERS, &[("symbol", s.to_string())]).await,
            None => self.call(&OPEN_ORDERS.clone().weighing(80), &[]).await,
        }
    }

    /// `GET /api/v3/myTrades` of one symbol.
    pub async fn my_trades(&self, symbol: &Symbol, q: &TradesQuery) -> Result<Vec<Trade>, BinanceError> {
        let mut params = vec![("symbol", symbol.to_string())];
        let mut ep = MY_TRADES.clone();
        if let Some(id) = q.order_id {
            params.push(("orderId", id.to_string()));
            ep = ep.weighing(5);
        }
        if let Some(id) = q.from_id {
            params.push(("fromId", id.to_string()));
        }
        if let Some(t) = q.start {
            params.push(("startTime", t.timestamp_millis().to_string()));
        }
        if let Some(t) = q.end {
            params.push(("endTime", t.timestamp_millis().to_string()));
        }
        if let Some(l) = q.limit {
            params.push(("limit", l.clamp(1, 1000).to_string()));
        }
        self.call(&ep, &params).await
    }

    /// Sends a request and parses the answer. An unreadable answer to an order-changing request means the
    /// outcome is unknown; to anything else it is `Malformed`.
    async fn call<T: DeserializeOwned>(&self, ep: &Endpoint, params: &[(&str, String)]) -> Result<T, BinanceError> {
        let body = if ep.signed {
            if !self.time.is_synced() {
                self.sync_time().await?;
            }
            match self.send(ep, params).await {
                Err(BinanceError::Timestamp(msg)) => {
                    // Our clock drifted from Binance's: measure the offset again and retry once.
                    tracing::warn!(endpoint = ep.name, "Binance refused the timestamp ({msg}): resyncing the clock");
                    self.sync_time().await?;
                    self.send(ep, params).await?
                }
                other => other?,
            }
        } else {
            self.send(ep, params).await?
        };
        serde_json::from_slice(&body).map_err(|e| {
            if ep.mutation {
                BinanceError::OutcomeUnknown(format!("unreadable answer to {}: {e}", ep.name))
            } else {
                BinanceError::malformed(ep.name, e)
            }
        })
    }

    /// One HTTP exchange: budget, sign, send, read, classify.
    async fn send(&self, ep: &Endpoint, params: &[(&str, String)]) -> Result<bytes::Bytes, BinanceError> {
        let mut query = signing::query_string(params);
        let key = if ep.signed {
            let (Some(key), Some(secret)) = (&self.api_key, &self.api_secret) else {
                return Err(BinanceError::Config(format!("{} needs api_key and api_secret", ep.name)));
            };
            Some((key, secret))
        } else {
            None
        };
        let permit = self.limiter.acquire(ep.weight).await?;
        if let Some((_, secret)) = key {
            if !query.is_empty() {
                query.push('&');
            }
            query.push_str(&format!("recvWindow={}&timestamp={}", self.recv_window_ms, self.time.server_now_ms()));
            let signature = signing::sign(secret.expose(), &query);
            query.push_str("&signature=");
            query.push_str(&signature);
        }
        let url = if query.is_empty() {
            format!("{}{}", self.base, ep.path)
        } else {
            format!("{}{}?{}", self.base, ep.path, query)
        };
        let mut req = self.http.request(ep.method.clone(), url);
        if let Some((k, _)) = key {
            req = req.header("X-MBX-APIKEY", k.expose());
        }
        let resp = match req.send().await {
            Ok(resp) => resp,
            Err(e) => {
                request_metric(ep, "transport_error");
                return Err(transport_error(ep, e));
            }
        };
        let status = resp.status().as_u16();
        request_metric(ep, status_class(status));
        let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::trim);
        let used = header("x-mbx-used-weight-1m").and_then(|v| v.parse::<u32>().ok());
        if let Some(w) = used {
            metrics::gauge!(crate::metrics::names::EXCHANGE_WEIGHT_USED, "venue" => "binance").set(f64::from(w));
        }
        permit.answered(used);
        let retry_after = header("retry-after").and_then(|v| v.parse::<u64>().ok()).map(Duration::from_secs);
        let body = resp.bytes().await.map_err(|e| transport_error(ep, e))?;
        if (200..300).contains(&status) {
            return Ok(body);
        }
        let err = BinanceError::from_response(status, &body, retry_after, self.time.server_now(), ep.mutation);
        match &err {
            BinanceError::RateLimited { retry_after } => self.limiter.on_rate_limited(*retry_after),
            BinanceError::Banned { until } => self.limiter.on_banned(*until),
            BinanceError::Auth { .. } => self.limiter.raise(
                mcbot_stages::ports::EventKind::Banned,
                mcbot_stages::ports::Severity::Emergency,
                format!("credentials refused: {err}"),
            ),
            _ => {}
        }
        Err(err)
    }
}

/// Counts a request by endpoint and status class (`2xx`, `4xx`, `429`, `418`, `5xx`, `transport_error`); the
/// endpoint's name is a fixed word of the adapter, never a URL.
fn request_metric(ep: &Endpoint, status: &'static str) {
    metrics::counter!(crate::metrics::names::EXCHANGE_REQUESTS, "venue" => "binance", "endpoint" => ep.name, "status" => status)
        .increment(1);
}

fn status_class(status: u16) -> &'static str {
    match status {
        429 => "429",
        418 => "418",
        200..=299 => "2xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "other",
    }
}

fn order_params(symbol: &Symbol, order: &OrderRef) -> Vec<(&'static str, String)> {
    match order {
        OrderRef::Exchange(id) => vec![("symbol", symbol.to_string()), ("orderId", id.to_string())],
        OrderRef::Client(id) => vec![("symbol", symbol.to_string()), ("origClientOrderId", id.to_string())],
    }
}

/// A failed exchange on the wire. A connect failure sent nothing; anything later may have reached Binance,
/// which matters only for order-changing requests.
fn transport_error(ep: &Endpoint, e: reqwest::Error) -> BinanceError {
    let connect = e.is_connect() || e.is_builder();
    let timeout = e.is_timeout();
    // Drop the URL: it carries the signature and the whole query.
    let e = e.without_url();
    let mut msg = if timeout { format!("time-out: {e}") } else { e.to_string() };
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    if connect || !ep.mutation {
        BinanceError::Transport(format!("{}: {msg}", ep.name))
    } else {
        BinanceError::OutcomeUnknown(format!("{}: {msg}", ep.name))
    }
}
