//! A Binance-compatible loopback server for tests: REST (`/api/v3/...`) and the combined kline WebSocket stream
//! on 127.0.0.1, port 0. It keeps a seeded random-walk market, an order book around the last price, balances,
//! orders and trades; it verifies HMAC signatures and recvWindow, counts request weight per minute, and injects
//! faults on demand (429, 418, 5xx before or after an order is accepted or cancelled, time-outs, malformed
//! bodies, dropped connections and sockets, missing klines, partial fills, duplicate client ids, clock skew).
//! Market orders fill at once; an open order (a resting LIMIT order put there by `rest_limit_order`) is cancelled
//! by `DELETE /api/v3/order` as Binance does it: `CANCELED`, its funds unlocked, and `-2011 Unknown order sent.`
//! for an id that is unknown or no longer open.
//!
//! ```ignore
//! let fake = FakeBinance::start(FakeConfig::new(clock.clone())).await;
//! let exchange = BinanceExchange::new(fake.settings(), clock, None)?;
//! fake.fault_next("/api/v3/order", Fault::ServerErrorAfter);
//! fake.advance_bar();
//! ```

// Shared by several test modules; not every helper is used by each.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use mcbot::exchange::binance::{BinanceSettings, Secret, StreamSettings};
use mcbot_stages::domain::{Candle, Decimal, Side, Timeframe};
use mcbot_stages::{Clock, ManualClock};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::mpsc;

/// A clock that follows tokio's clock: with `start_paused` tests it jumps when tokio's virtual time does, so the
/// adapter's weight windows and ban expiry (measured on the injected clock) pass without real waiting.
#[derive(Debug)]
pub struct TokioClock {
    base: DateTime<Utc>,
    start: tokio::time::Instant,
}

impl TokioClock {
    /// Starts at `base` now.
    pub fn new(base: DateTime<Utc>) -> Self {
        Self { base, start: tokio::time::Instant::now() }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = tokio::time::Instant::now().saturating_duration_since(self.start);
        self.base + chrono::Duration::from_std(elapsed).unwrap_or_default()
    }
}

/// One tradable pair of the fake.
#[derive(Debug, Clone)]
pub struct FakeSymbol {
    /// e.g. `BTCUSDT`.
    pub symbol: String,
    /// e.g. `BTC`.
    pub base: String,
    /// e.g. `USDT`.
    pub quote: String,
    /// PRICE_FILTER tickSize.
    pub tick: Decimal,
    /// LOT_SIZE stepSize.
    pub step: Decimal,
    /// NOTIONAL minNotional (applied to market orders).
    pub min_notional: Decimal,
    /// First bar's open.
    pub start_price: Decimal,
}

impl FakeSymbol {
    /// A pair quoted in USDT with Binance-like filters.
    pub fn usdt(base: &str, start_price: Decimal) -> Self {
        Self {
            symbol: format!("{base}USDT"),
            base: base.into(),
            quote: "USDT".into(),
            tick: Decimal::new(1, 2),
            step: Decimal::new(1, 5),
            min_notional: Decimal::from(5),
            start_price,
        }
    }
}

/// Which asset fees are charged in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commission {
    /// As Binance without BNB: buys pay in the base asset, sells in the quote asset.
    Realistic,
    /// Always in the quote asset.
    Quote,
    /// Always in BNB (at a notional BNB price of 1 quote unit per BNB... i.e. fee amount = quote fee).
    Bnb,
}

/// How the fake starts.
#[derive(Clone)]
pub struct FakeConfig {
    /// API key it accepts.
    pub api_key: String,
    /// Secret signatures are checked with.
    pub api_secret: String,
    /// Pairs.
    pub symbols: Vec<FakeSymbol>,
    /// Kline interval served and streamed.
    pub interval: Timeframe,
    /// Completed bars before the forming one.
    pub history_bars: usize,
    /// Seed of the market walk and of random faults unless given separately.
    pub seed: u64,
    /// Weight per minute after which it answers 429 (Binance: 6000).
    pub weight_limit_per_min: u32,
    /// Starting balances.
    pub balances: Vec<(String, Decimal)>,
    /// Fee as a fraction of notional.
    pub fee_rate: Decimal,
    /// Fee asset.
    pub commission: Commission,
    /// Book levels per side.
    pub book_levels: usize,
    /// Base quantity on each level.
    pub level_qty: Decimal,
    /// Server time (plus the skew set by `set_clock_skew_ms`).
    pub clock: Arc<dyn Clock>,
    /// When set, moved to each new bar's open as the market advances, so "now" and the market agree.
    pub market_clock: Option<Arc<ManualClock>>,
    /// How long a `Timeout` fault holds its response.
    pub timeout_delay: Duration,
}

impl FakeConfig {
    /// BTCUSDT and ETHUSDT on 1m bars, 200 bars of history, a rich account.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            api_key: "test-api-key".into(),
            api_secret: "test-api-secret-0123456789".into(),
            symbols: vec![
                FakeSymbol::usdt("BTC", Decimal::from(40_000)),
                FakeSymbol::usdt("ETH", Decimal::from(2_000)),
            ],
            interval: Timeframe::from_minutes(1).expect("1m"),
            history_bars: 200,
            seed: 42,
            weight_limit_per_min: 6_000,
            balances: vec![
                ("USDT".into(), Decimal::from(1_000_000)),
                ("BTC".into(), Decimal::from(10)),
                ("ETH".into(), Decimal::from(100)),
            ],
            fee_rate: Decimal::new(1, 3),
            commission: Commission::Realistic,
            book_levels: 50,
            level_qty: Decimal::from(5),
            clock,
            market_clock: None,
            timeout_delay: Duration::from_millis(1_500),
        }
    }
}

/// A fault the fake injects into one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// 429 with `Retry-After`; nothing done.
    RateLimit {
        /// Seconds in the header.
        retry_after_secs: u64,
    },
    /// 418 with `Retry-After`; every request until then is refused too (and counted).
    Ban {
        /// Seconds in the header.
        retry_after_secs: u64,
    },
    /// 503 before anything is done.
    ServerErrorBefore,
    /// The request is processed (an order is accepted), then the answer is a 500.
    ServerErrorAfter,
    /// The request is processed, then the answer is held for `timeout_delay`.
    Timeout,
    /// The request is processed, then the answer is cut JSON with status 200.
    Malformed,
    /// Nothing is done; the answer is exactly this.
    Body {
        /// HTTP status.
        status: u16,
        /// Raw body.
        body: String,
    },
    /// The request is processed, then the connection dies in the middle of the body.
    DropConnection,
    /// Orders: the order is accepted, then the answer is `-2010 Duplicate order sent.`.
    DuplicateAfterAccept,
    /// Orders: only this share (percent) of the quantity finds liquidity; the order ends EXPIRED.
    PartialFill {
        /// Percent filled.
        percent: u32,
    },
}

#[derive(Debug, Clone)]
struct FaultRule {
    method: Option<Method>,
    path: String,
    fault: Fault,
    skip: usize,
    times: usize,
}

#[derive(Debug)]
struct RandomFaults {
    probability: f64,
    rng: StdRng,
}

/// An order as the fake keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeOrder {
    /// Binance id.
    pub order_id: i64,
    /// `newClientOrderId`.
    pub client_order_id: String,
    /// Pair.
    pub symbol: String,
    /// Direction.
    pub side: Side,
    /// Requested quantity.
    pub orig_qty: Decimal,
    /// Filled quantity.
    pub executed_qty: Decimal,
    /// Quote exchanged.
    pub cumulative_quote: Decimal,
    /// Binance status text.
    pub status: String,
    /// `MARKET`, or `LIMIT` for an order resting on the book.
    pub order_type: String,
    /// Limit price (zero for a market order).
    pub price: Decimal,
    /// Accept time, ms.
    pub time: i64,
}

/// A trade as the fake keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeTrade {
    /// Trade id.
    pub id: i64,
    /// Order id.
    pub order_id: i64,
    /// Pair.
    pub symbol: String,
    /// Price.
    pub price: Decimal,
    /// Base quantity.
    pub qty: Decimal,
    /// Fee amount.
    pub commission: Decimal,
    /// Fee asset.
    pub commission_asset: String,
    /// Time, ms.
    pub time: i64,
    /// Our side was the buyer.
    pub is_buyer: bool,
}

/// One request as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// HTTP method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Server time at arrival.
    pub at: DateTime<Utc>,
    /// Weight counted.
    pub weight: u32,
    /// Status answered.
    pub status: u16,
}

struct Market {
    spec: FakeSymbol,
    bars: Vec<Candle>,
    forming: Candle,
    rng: StdRng,
}

impl Market {
    fn next_bar(&mut self, open_time: DateTime<Utc>, open: Decimal) -> Candle {
        let unit = self.spec.tick * Decimal::from(100);
        let close = (open + unit * Decimal::from(self.rng.random_range(-20i64..=20))).max(self.spec.tick);
        let high = open.max(close) + unit * Decimal::from(self.rng.random_range(0i64..=5));
        let low = (open.min(close) - unit * Decimal::from(self.rng.random_range(0i64..=5))).max(self.spec.tick);
        let volume = Decimal::new(self.rng.random_range(1_000i64..1_000_000), 3);
        Candle { open_time, open, high, low, close, volume }
    }

    fn last_price(&self) -> Decimal {
        self.bars.last().map_or(self.spec.start_price, |b| b.close)
    }
}

enum WsOut {
    Text(String),
    Ping(Vec<u8>),
    Drop,
}

struct WsConn {
    id: u64,
    streams: Vec<String>,
    tx: mpsc::UnboundedSender<WsOut>,
}

struct State0 {
    cfg: FakeConfig,
    /// What `GET /sapi/v1/account/apiRestrictions` answers: (enableWithdrawals, ipRestrict).
    key_rights: (bool, bool),
    markets: BTreeMap<String, Market>,
    balances: BTreeMap<String, Decimal>,
    /// Tied up in open LIMIT orders (not part of `balances`, which are free amounts).
    locked: BTreeMap<String, Decimal>,
    orders: Vec<FakeOrder>,
    trades: Vec<FakeTrade>,
    next_order_id: i64,
    next_trade_id: i64,
    faults: Vec<FaultRule>,
    random: Option<RandomFaults>,
    skew_ms: i64,
    banned_until: Option<DateTime<Utc>>,
    weight: BTreeMap<i64, u32>,
    requests: Vec<RequestRecord>,
    requests_during_ban: u64,
    omitted: Vec<(String, i64)>,
    ws_conns: Vec<WsConn>,
    ws_next_id: u64,
    ws_available: bool,
    ws_connects: u64,
    skip_ws_bars: usize,
    pongs: Vec<Vec<u8>>,
    faults_injected: BTreeMap<String, u64>,
}

type Shared = Arc<Mutex<State0>>;

/// Book levels as (price, quantity), best first.
type Levels = Vec<(Decimal, Decimal)>;

/// The running fake.
pub struct FakeBinance {
    /// REST base URL (`http://127.0.0.1:port`).
    pub rest_url: String,
    /// WebSocket base URL (`ws://127.0.0.1:port`).
    pub ws_url: String,
    state: Shared,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeBinance {
    fn drop(&mut self) {
        self.server.abort();
        self.ws_drop_all();
    }
}

/// An error answer: (HTTP status, Binance code, message).
type Refusal = (u16, i64, String);

fn refusal(status: u16, code: i64, msg: &str) -> Refusal {
    (status, code, msg.to_owned())
}

fn d8(d: Decimal) -> String {
    format!("{:.8}", d)
}

impl FakeBinance {
    /// Starts the server on 127.0.0.1 port 0.
    pub async fn start(cfg: FakeConfig) -> FakeBinance {
        let now = cfg.clock.now();
        let tf = cfg.interval.duration();
        let forming_open = cfg.interval.last_close(now);
        let first_open = forming_open - tf * i32::try_from(cfg.history_bars).expect("history fits");
        let mut markets = BTreeMap::new();
        for (i, spec) in cfg.symbols.iter().enumerate() {
            let mut m = Market {
                spec: spec.clone(),
                bars: Vec::new(),
                forming: Candle {
                    open_time: first_open,
                    open: spec.start_price,
                    high: spec.start_price,
                    low: spec.start_price,
                    close: spec.start_price,
                    volume: Decimal::ZERO,
                },
                rng: StdRng::seed_from_u64(cfg.seed.wrapping_mul(31).wrapping_add(i as u64)),
            };
            let mut open = spec.start_price;
            for b in 0..cfg.history_bars {
                let bar = m.next_bar(first_open + tf * i32::try_from(b).expect("fits"), open);
                open = bar.close;
                m.bars.push(bar);
            }
            m.forming = m.next_bar(forming_open, open);
            markets.insert(spec.symbol.clone(), m);
        }
        let balances = cfg.balances.iter().cloned().collect();
        let state = Arc::new(Mutex::new(State0 {
            cfg,
            key_rights: (false, true),
            markets,
            balances,
            locked: BTreeMap::new(),
            orders: Vec::new(),
            trades: Vec::new(),
            next_order_id: 1,
            next_trade_id: 1,
            faults: Vec::new(),
            random: None,
            skew_ms: 0,
            banned_until: None,
            weight: BTreeMap::new(),
            requests: Vec::new(),
            requests_during_ban: 0,
            omitted: Vec::new(),
            ws_conns: Vec::new(),
            ws_next_id: 1,
            ws_available: true,
            ws_connects: 0,
            skip_ws_bars: 0,
            pongs: Vec::new(),
            faults_injected: BTreeMap::new(),
        }));
        let app = Router::new()
            .route("/stream", get(ws_combined))
            .route("/ws/{name}", get(ws_raw))
            .fallback(rest)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        // No Nagle: small stream frames go out at once, as from a real exchange's edge, so latency figures
        // measure the bot and not a 40 ms delayed-ACK stall on loopback.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeBinance { rest_url: format!("http://{addr}"), ws_url: format!("ws://{addr}"), state, server }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State0> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adapter settings pointing at this fake, with its keys and test-sized timeouts and back-offs.
    pub fn settings(&self) -> BinanceSettings {
        let st = self.lock();
        BinanceSettings {
            rest_url: self.rest_url.clone(),
            ws_url: self.ws_url.clone(),
            api_key: Some(Secret::new(st.cfg.api_key.clone())),
            api_secret: Some(Secret::new(st.cfg.api_secret.clone())),
            recv_window_ms: 5_000,
            weight_budget_per_min: 1_200,
            max_limit_wait_ms: 65_000,
            request_timeout_ms: 5_000,
            connect_timeout_ms: 2_000,
            lookup_before_place: true,
            order_submit_attempts: 2,
            order_lookup_attempts: 3,
            order_lookup_delay_ms: 5,
            stream: StreamSettings {
                aggregate_from_1m: false,
                warmup_bars: 20,
                cache_bars: 1_000,
                ping_interval_ms: 50,
                idle_timeout_ms: 5_000,
                reconnect_base_ms: 10,
                reconnect_max_ms: 200,
                max_connection_age_secs: 23 * 3_600,
                jitter_seed: Some(7),
            },
        }
    }

    // ---- faults ----

    /// Injects `fault` into the next request to `path` (any method).
    pub fn fault_next(&self, path: &str, fault: Fault) {
        self.fault_next_n(None, path, fault, 1);
    }

    /// Injects `fault` into the next `times` requests to `method` `path` (`None`: any method).
    pub fn fault_next_n(&self, method: Option<Method>, path: &str, fault: Fault, times: usize) {
        self.fault_after(method, path, 0, fault, times);
    }

    /// Lets `skip` matching requests through untouched, then injects `fault` into the next `times`.
    pub fn fault_after(&self, method: Option<Method>, path: &str, skip: usize, fault: Fault, times: usize) {
        self.lock().faults.push(FaultRule { method, path: path.into(), fault, skip, times });
    }

    /// From now on, each request suffers a random fault with `probability`, drawn from a seeded generator.
    /// Kinds: 429 (Retry-After 1 s), 5xx before, 5xx after, time-out, malformed body, dropped connection,
    /// and for orders also duplicate-id-after-accept and partial fills.
    pub fn set_random_faults(&self, probability: f64, seed: u64) {
        self.lock().random = Some(RandomFaults { probability, rng: StdRng::seed_from_u64(seed) });
    }

    /// No more injected faults (queued or random).
    pub fn clear_faults(&self) {
        let mut st = self.lock();
        st.faults.clear();
        st.random = None;
    }

    /// Faults injected so far, by kind.
    pub fn faults_injected(&self) -> BTreeMap<String, u64> {
        self.lock().faults_injected.clone()
    }

    /// Moves the server clock by `ms` relative to the configured clock.
    pub fn set_clock_skew_ms(&self, ms: i64) {
        self.lock().skew_ms = ms;
    }

    /// Counts `weight` in the current window as if another program on the same IP had used it.
    pub fn consume_weight(&self, weight: u32) {
        let mut st = self.lock();
        let w = st.window();
        *st.weight.entry(w).or_default() += weight;
    }

    /// Leaves the bar of `symbol` opened at `open_time` out of every klines answer.
    pub fn omit_kline(&self, symbol: &str, open_time: DateTime<Utc>) {
        self.lock().omitted.push((symbol.into(), open_time.timestamp_millis()));
    }

    /// What the API key may do, as `GET /sapi/v1/account/apiRestrictions` reports it (default: no withdrawals,
    /// IP-restricted).
    pub fn set_key_rights(&self, withdrawals: bool, ip_restrict: bool) {
        self.lock().key_rights = (withdrawals, ip_restrict);
    }

    /// Sets a balance.
    pub fn set_balance(&self, asset: &str, amount: Decimal) {
        self.lock().balances.insert(asset.into(), amount);
    }

    /// Puts a GTC LIMIT order on the book under `client_order_id`, as if placed outside the adapter (by hand
    /// on the venue, or by an earlier version of the bot): the adapter places only market orders, which never
    /// rest. `filled` of it has traded at `price` (`PARTIALLY_FILLED`, with its trades), the rest waits
    /// (`NEW` when nothing traded) and keeps its funds locked until it is cancelled. Returns the order id.
    pub fn rest_limit_order(
        &self,
        symbol: &str,
        client_order_id: &str,
        side: Side,
        qty: Decimal,
        price: Decimal,
        filled: Decimal,
    ) -> i64 {
        let mut st = self.lock();
        let spec = st.markets.get(symbol).expect("a symbol of the fake").spec.clone();
        assert!(filled < qty, "a resting order has something left to fill");
        let order_id = st.next_order_id;
        st.next_order_id += 1;
        let now_ms = st.server_now().timestamp_millis();
        if filled > Decimal::ZERO {
            st.book_trade(&spec, side, order_id, price, filled, now_ms);
        }
        let order = FakeOrder {
            order_id,
            client_order_id: client_order_id.into(),
            symbol: symbol.into(),
            side,
            orig_qty: qty,
            executed_qty: filled,
            cumulative_quote: filled * price,
            status: if filled > Decimal::ZERO { "PARTIALLY_FILLED".into() } else { "NEW".into() },
            order_type: "LIMIT".into(),
            price,
            time: now_ms,
        };
        if let Some((asset, amount)) = st.held_by(&order) {
            *st.balances.entry(asset.clone()).or_default() -= amount;
            *st.locked.entry(asset).or_default() += amount;
        }
        st.orders.push(order);
        order_id
    }

    /// Amounts tied up in open orders, by asset.
    pub fn locked(&self) -> BTreeMap<String, Decimal> {
        self.lock().locked.clone()
    }

    // ---- market and stream ----

    /// Closes the forming bar of every symbol and opens the next; the market clock (if any) moves to the new
    /// bar's open first, then each connected stream gets a mid-bar update and the closed kline (unless bars
    /// are being skipped). Returns the new forming bar's open time.
    pub fn advance_bar(&self) -> DateTime<Utc> {
        let (closed, new_open, clock, skip) = {
            let mut st = self.lock();
            let tf = st.cfg.interval.duration();
            let mut closed = Vec::new();
            let mut new_open = None;
            for m in st.markets.values_mut() {
                let done = m.forming.clone();
                let open = done.open_time + tf;
                m.bars.push(done.clone());
                m.forming = m.next_bar(open, done.close);
                new_open = Some(open);
                closed.push((m.spec.symbol.clone(), done));
            }
            let skip = st.skip_ws_bars > 0;
            if skip {
                st.skip_ws_bars -= 1;
            }
            (closed, new_open.unwrap_or_default(), st.cfg.market_clock.clone(), skip)
        };
        if let Some(c) = clock {
            c.set(new_open);
        }
        if !skip {
            for (symbol, bar) in closed {
                self.push_kline(&symbol, &bar, false);
                self.push_kline(&symbol, &bar, true);
            }
        }
        new_open
    }

    /// Sends every stream an update (x = false) of the bar still forming.
    pub fn push_forming_update(&self) {
        let forming: Vec<(String, Candle)> =
            self.lock().markets.values().map(|m| (m.spec.symbol.clone(), m.forming.clone())).collect();
        for (symbol, bar) in forming {
            self.push_kline(&symbol, &bar, false);
        }
    }

    fn push_kline(&self, symbol: &str, bar: &Candle, closed: bool) {
        let st = self.lock();
        let interval = st.cfg.interval.to_string();
        let stream = format!("{}@kline_{interval}", symbol.to_lowercase());
        let tf_ms = st.cfg.interval.duration().num_milliseconds();
        let t = bar.open_time.timestamp_millis();
        let msg = json!({
            "stream": stream,
            "data": {"e": "kline", "E": st.server_now().timestamp_millis(), "s": symbol, "k": {
                "t": t, "T": t + tf_ms - 1, "s": symbol, "i": interval, "f": 1, "L": 2,
                "o": d8(bar.open), "c": d8(bar.close), "h": d8(bar.high), "l": d8(bar.low), "v": d8(bar.volume),
                "n": 2, "x": closed, "q": "0", "V": "0", "Q": "0", "B": "0"}}
        })
        .to_string();
        for c in st.ws_conns.iter().filter(|c| c.streams.contains(&stream)) {
            let _ = c.tx.send(WsOut::Text(msg.clone()));
        }
    }

    /// Sends raw text to every stream (malformed-message tests).
    pub fn ws_send_raw(&self, text: &str) {
        for c in &self.lock().ws_conns {
            let _ = c.tx.send(WsOut::Text(text.into()));
        }
    }

    /// Pings every stream with `payload`; the pongs are collected by [`FakeBinance::pongs`].
    pub fn ws_ping(&self, payload: &[u8]) {
        for c in &self.lock().ws_conns {
            let _ = c.tx.send(WsOut::Ping(payload.to_vec()));
        }
    }

    /// Pong payloads received.
    pub fn pongs(&self) -> Vec<Vec<u8>> {
        self.lock().pongs.clone()
    }

    /// Cuts every stream connection without a close frame.
    pub fn ws_drop_all(&self) {
        let mut st = self.lock();
        for c in st.ws_conns.drain(..) {
            let _ = c.tx.send(WsOut::Drop);
        }
    }

    /// When false, stream connections are refused (HTTP 503) until set true again.
    pub fn ws_set_available(&self, available: bool) {
        self.lock().ws_available = available;
    }

    /// Open stream connections.
    pub fn ws_connections(&self) -> usize {
        self.lock().ws_conns.len()
    }

    /// Stream connections accepted so far.
    pub fn ws_connects(&self) -> u64 {
        self.lock().ws_connects
    }

    /// The next `n` bar advances push nothing to the streams (missed events; REST still has the bars).
    pub fn skip_ws_bars(&self, n: usize) {
        self.lock().skip_ws_bars = n;
    }

    // ---- inspection ----

    /// Completed bars of `symbol`.
    pub fn candles(&self, symbol: &str) -> Vec<Candle> {
        self.lock().markets.get(symbol).map(|m| m.bars.clone()).unwrap_or_default()
    }

    /// Last traded price of `symbol`.
    pub fn last_price(&self, symbol: &str) -> Decimal {
        self.lock().markets.get(symbol).map(Market::last_price).unwrap_or_default()
    }

    /// Open time of the bar forming now.
    pub fn forming_open(&self) -> DateTime<Utc> {
        self.lock().markets.values().next().map(|m| m.forming.open_time).unwrap_or_default()
    }

    /// Every order accepted.
    pub fn orders(&self) -> Vec<FakeOrder> {
        self.lock().orders.clone()
    }

    /// Orders accepted under a client order id (more than one is a duplicate).
    pub fn orders_with_client_id(&self, id: &str) -> Vec<FakeOrder> {
        self.lock().orders.iter().filter(|o| o.client_order_id == id).cloned().collect()
    }

    /// Every trade.
    pub fn trades(&self) -> Vec<FakeTrade> {
        self.lock().trades.clone()
    }

    /// Balances.
    pub fn balances(&self) -> BTreeMap<String, Decimal> {
        self.lock().balances.clone()
    }

    /// Weight counted per minute window (key: epoch minute).
    pub fn weight_by_window(&self) -> BTreeMap<i64, u32> {
        self.lock().weight.clone()
    }

    /// Requests received.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.lock().requests.clone()
    }

    /// Requests received.
    pub fn request_count(&self) -> usize {
        self.lock().requests.len()
    }

    /// Requests that arrived while a ban was in force (each is a protocol violation by the client).
    pub fn requests_during_ban(&self) -> u64 {
        self.lock().requests_during_ban
    }
}

// ---- request handling ----

impl State0 {
    fn server_now(&self) -> DateTime<Utc> {
        self.cfg.clock.now() + chrono::Duration::milliseconds(self.skew_ms)
    }

    fn window(&self) -> i64 {
        self.server_now().timestamp_millis().div_euclid(60_000)
    }

    fn take_fault(&mut self, method: &Method, path: &str) -> Option<Fault> {
        if let Some(i) = self
            .faults
            .iter()
            .position(|r| r.path == path && r.method.as_ref().is_none_or(|m| m == method) && r.times > 0)
        {
            let rule = &mut self.faults[i];
            if rule.skip > 0 {
                rule.skip -= 1;
                return None;
            }
            rule.times -= 1;
            let fault = rule.fault.clone();
            if rule.times == 0 {
                self.faults.remove(i);
            }
            return Some(fault);
        }
        let is_new_order = method == Method::POST && path == "/api/v3/order";
        let random = self.random.as_mut()?;
        if random.rng.random::<f64>() >= random.probability {
            return None;
        }
        let mut kinds = vec![
            Fault::RateLimit { retry_after_secs: 1 },
            Fault::ServerErrorBefore,
            Fault::ServerErrorAfter,
            Fault::Timeout,
            Fault::Malformed,
            Fault::DropConnection,
        ];
        if is_new_order {
            kinds.push(Fault::DuplicateAfterAccept);
            kinds.push(Fault::PartialFill { percent: 40 });
        }
        let pick = random.rng.random_range(0..kinds.len());
        Some(kinds.swap_remove(pick))
    }

    fn weight_of(method: &Method, path: &str, params: &HashMap<String, String>) -> u32 {
        match (method.as_str(), path) {
            ("GET", "/api/v3/exchangeInfo") | ("GET", "/api/v3/account") => 20,
            ("GET", "/api/v3/klines") | ("GET", "/api/v3/ticker/price") => 2,
            ("GET", "/api/v3/depth") => match params.get("limit").and_then(|l| l.parse::<u32>().ok()).unwrap_or(100) {
                0..=100 => 5,
                101..=500 => 25,
                501..=1000 => 50,
                _ => 250,
            },
            ("GET", "/api/v3/order") => 4,
            ("GET", "/api/v3/openOrders") => {
                if params.contains_key("symbol") {
                    6
                } else {
                    80
                }
            }
            ("GET", "/api/v3/myTrades") => {
                if params.contains_key("orderId") {
                    5
                } else {
                    20
                }
            }
            _ => 1,
        }
    }

    /// Signature, key and recvWindow, as Binance checks them.
    fn check_signed(
        &self,
        headers: &HeaderMap,
        raw_query: &str,
        body: &[u8],
        params: &HashMap<String, String>,
    ) -> Result<(), Refusal> {
        let key = headers.get("x-mbx-apikey").and_then(|v| v.to_str().ok()).unwrap_or_default();
        if key != self.cfg.api_key {
            return Err(refusal(401, -2015, "Invalid API-key, IP, or permissions for action."));
        }
        let (payload, sig) = match raw_query.rfind("signature=") {
            Some(0) => ("", &raw_query[10..]),
            Some(i) if raw_query.as_bytes()[i - 1] == b'&' => (&raw_query[..i - 1], &raw_query[i + 10..]),
            _ => {
                return Err(refusal(
                    400,
                    -1102,
                    "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.",
                ));
            }
        };
        let mut signed = payload.to_owned();
        signed.push_str(&String::from_utf8_lossy(body));
        let mut mac = Hmac::<Sha256>::new_from_slice(self.cfg.api_secret.as_bytes()).expect("any key length");
        mac.update(signed.as_bytes());
        let ok = hex::decode(sig.to_ascii_lowercase()).is_ok_and(|s| mac.verify_slice(&s).is_ok());
        if !ok {
            return Err(refusal(400, -1022, "Signature for this request is not valid."));
        }
        let ts: i64 = params.get("timestamp").and_then(|t| t.parse().ok()).ok_or_else(|| {
            refusal(400, -1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.")
        })?;
        let window: i64 = params.get("recvWindow").and_then(|t| t.parse().ok()).unwrap_or(5_000);
        if window > 60_000 {
            return Err(refusal(400, -1131, "recvWindow must be less than 60000"));
        }
        let now = self.server_now().timestamp_millis();
        if ts >= now + 1_000 || now - ts > window {
            return Err(refusal(400, -1021, "Timestamp for this request is outside of the recvWindow."));
        }
        Ok(())
    }

    fn market(&self, params: &HashMap<String, String>) -> Result<&Market, Refusal> {
        let s =
            params.get("symbol").ok_or_else(|| refusal(400, -1102, "Mandatory parameter 'symbol' was not sent."))?;
        self.markets.get(s).ok_or_else(|| refusal(400, -1121, "Invalid symbol."))
    }

    fn process(
        &mut self,
        method: &Method,
        path: &str,
        params: &HashMap<String, String>,
        fault: Option<&Fault>,
    ) -> Result<Value, Refusal> {
        let now_ms = self.server_now().timestamp_millis();
        match (method.as_str(), path) {
            ("GET", "/api/v3/ping") => Ok(json!({})),
            ("GET", "/api/v3/time") => Ok(json!({ "serverTime": now_ms })),
            ("GET", "/api/v3/exchangeInfo") => self.exchange_info(params),
            ("GET", "/api/v3/klines") => self.klines(params),
            ("GET", "/api/v3/ticker/price") => {
                let m = self.market(params)?;
                Ok(json!({"symbol": m.spec.symbol, "price": d8(m.last_price())}))
            }
            ("GET", "/api/v3/depth") => {
                let m = self.market(params)?;
                let limit = params.get("limit").and_then(|l| l.parse::<usize>().ok()).unwrap_or(100).min(5_000);
                let (bids, asks) = self.book(m, limit);
                let level = |l: &(Decimal, Decimal)| json!([d8(l.0), d8(l.1)]);
                Ok(json!({"lastUpdateId": now_ms, "bids": bids.iter().map(level).collect::<Vec<_>>(),
                    "asks": asks.iter().map(level).collect::<Vec<_>>()}))
            }
            ("GET", "/api/v3/account") => {
                let balances: Vec<Value> = self
                    .balances
                    .iter()
                    .map(|(a, v)| {
                        let locked = self.locked.get(a).copied().unwrap_or_default();
                        json!({"asset": a, "free": d8(*v), "locked": d8(locked)})
                    })
                    .collect();
                Ok(json!({"makerCommission": 10, "takerCommission": 10, "canTrade": true, "canWithdraw": true,
                    "canDeposit": true, "updateTime": now_ms, "accountType": "SPOT", "balances": balances,
                    "permissions": ["SPOT"], "uid": 1}))
            }
            ("GET", "/sapi/v1/account/apiRestrictions") => {
                let (withdrawals, ip_restrict) = self.key_rights;
                Ok(json!({"ipRestrict": ip_restrict, "createTime": 1_700_000_000_000_i64,
                    "enableInternalTransfer": false, "enableFutures": false, "enablePortfolioMarginTrading": false,
                    "enableVanillaOptions": false, "permitsUniversalTransfer": false, "enableReading": true,
                    "enableSpotAndMarginTrading": true, "enableWithdrawals": withdrawals, "enableMargin": false}))
            }
            ("POST", "/api/v3/order") => self.new_order(params, fault),
            ("GET", "/api/v3/order") => {
                let o = self.find_order(params).ok_or_else(|| refusal(400, -2013, "Order does not exist."))?;
                Ok(order_json(o, None))
            }
            ("DELETE", "/api/v3/order") => {
                let o = self.find_order(params).ok_or_else(|| refusal(400, -2011, "Unknown order sent."))?;
                if o.status != "NEW" && o.status != "PARTIALLY_FILLED" {
                    return Err(refusal(400, -2011, "Unknown order sent."));
                }
                let id = o.order_id;
                let o = self.orders.iter_mut().find(|o| o.order_id == id).expect("found above");
                o.status = "CANCELED".into();
                let o = o.clone();
                // What the order still held is free again.
                if let Some((asset, amount)) = self.held_by(&o) {
                    *self.locked.entry(asset.clone()).or_default() -= amount;
                    *self.balances.entry(asset).or_default() += amount;
                }
                let mut v = order_json(&o, None);
                v["origClientOrderId"] = json!(o.client_order_id);
                v["clientOrderId"] = json!(format!("cancel-{id}"));
                v["transactTime"] = json!(now_ms);
                if let Some(m) = v.as_object_mut() {
                    // The cancel's answer is the order without its query-only fields.
                    for k in ["time", "updateTime", "isWorking", "workingTime"] {
                        m.remove(k);
                    }
                }
                Ok(v)
            }
            ("GET", "/api/v3/openOrders") => {
                let sym = params.get("symbol");
                Ok(Value::Array(
                    self.orders
                        .iter()
                        .filter(|o| {
                            (o.status == "NEW" || o.status == "PARTIALLY_FILLED") && sym.is_none_or(|s| *s == o.symbol)
                        })
                        .map(|o| order_json(o, None))
                        .collect(),
                ))
            }
            ("GET", "/api/v3/myTrades") => {
                let m = self.market(params)?;
                let symbol = m.spec.symbol.clone();
                let order_id: Option<i64> = params.get("orderId").and_then(|v| v.parse().ok());
                let from_id: i64 = params.get("fromId").and_then(|v| v.parse().ok()).unwrap_or(0);
                let limit: usize = params.get("limit").and_then(|v| v.parse().ok()).unwrap_or(500).min(1000);
                Ok(Value::Array(
                    self.trades
                        .iter()
                        .filter(|t| t.symbol == symbol && order_id.is_none_or(|id| t.order_id == id) && t.id >= from_id)
                        .take(limit)
                        .map(trade_json)
                        .collect(),
                ))
            }
            _ => Err(refusal(404, -1000, "Unknown endpoint.")),
        }
    }

    fn exchange_info(&self, params: &HashMap<String, String>) -> Result<Value, Refusal> {
        let wanted: Option<Vec<String>> = match (params.get("symbol"), params.get("symbols")) {
            (Some(s), _) => Some(vec![s.clone()]),
            (None, Some(list)) => Some(
                serde_json::from_str::<Vec<String>>(list)
                    .map_err(|_| refusal(400, -1100, "Illegal characters found in parameter 'symbols'."))?,
            ),
            (None, None) => None,
        };
        if let Some(w) = &wanted
            && w.iter().any(|s| !self.markets.contains_key(s))
        {
            return Err(refusal(400, -1121, "Invalid symbol."));
        }
        let symbols: Vec<Value> = self
            .markets
            .values()
            .filter(|m| wanted.as_ref().is_none_or(|w| w.contains(&m.spec.symbol)))
            .map(|m| {
                let s = &m.spec;
                json!({"symbol": s.symbol, "status": "TRADING", "baseAsset": s.base, "baseAssetPrecision": 8,
                  "quoteAsset": s.quote, "quoteAssetPrecision": 8, "orderTypes": ["LIMIT", "MARKET"],
                  "quoteOrderQtyMarketAllowed": true, "isSpotTradingAllowed": true,
                  "filters": [
                    {"filterType": "PRICE_FILTER", "minPrice": d8(s.tick), "maxPrice": "1000000.00000000", "tickSize": d8(s.tick)},
                    {"filterType": "LOT_SIZE", "minQty": d8(s.step), "maxQty": "9000.00000000", "stepSize": d8(s.step)},
                    {"filterType": "ICEBERG_PARTS", "limit": 10},
                    {"filterType": "MARKET_LOT_SIZE", "minQty": "0.00000000", "maxQty": "100.00000000", "stepSize": "0.00000000"},
                    {"filterType": "NOTIONAL", "minNotional": d8(s.min_notional), "applyMinToMarket": true,
                     "maxNotional": "9000000.00000000", "applyMaxToMarket": false, "avgPriceMins": 5}],
                  "permissionSets": [["SPOT"]]})
            })
            .collect();
        Ok(json!({"timezone": "UTC", "serverTime": self.server_now().timestamp_millis(),
            "rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                            "limit": self.cfg.weight_limit_per_min}],
            "exchangeFilters": [], "symbols": symbols}))
    }

    /// Klines of the configured interval, or of any multiple of it (built from it on UTC boundaries, the
    /// last one still forming), so an adapter may ask for 1h while the stream runs on 1m.
    fn klines(&self, params: &HashMap<String, String>) -> Result<Value, Refusal> {
        let m = self.market(params)?;
        let base = self.cfg.interval;
        let tf: Timeframe = params
            .get("interval")
            .and_then(|i| i.parse().ok())
            .filter(|t: &Timeframe| t.minutes().is_multiple_of(base.minutes()))
            .ok_or_else(|| refusal(400, -1120, "Invalid interval."))?;
        let num = |k: &str| params.get(k).and_then(|v| v.parse::<i64>().ok());
        let limit = num("limit").unwrap_or(500).clamp(1, 1000) as usize;
        let tf_ms = tf.duration().num_milliseconds();
        let mut series: Vec<Candle> = Vec::new();
        for b in m.bars.iter().chain(std::iter::once(&m.forming)) {
            let bucket = tf.last_close(b.open_time);
            match series.last_mut() {
                Some(last) if last.open_time == bucket => {
                    last.high = last.high.max(b.high);
                    last.low = last.low.min(b.low);
                    last.close = b.close;
                    last.volume += b.volume;
                }
                _ => series.push(Candle { open_time: bucket, ..b.clone() }),
            }
        }
        let all = series.iter().filter(|b| {
            let t = b.open_time.timestamp_millis();
            !self.omitted.iter().any(|(s, o)| *s == m.spec.symbol && *o == t)
                && num("startTime").is_none_or(|s| t >= s)
                && num("endTime").is_none_or(|e| t <= e)
        });
        let rows: Vec<&Candle> = if num("startTime").is_some() {
            all.take(limit).collect()
        } else {
            let v: Vec<&Candle> = all.collect();
            v[v.len().saturating_sub(limit)..].to_vec()
        };
        Ok(Value::Array(
            rows.into_iter()
                .map(|b| {
                    let t = b.open_time.timestamp_millis();
                    json!([
                        t,
                        d8(b.open),
                        d8(b.high),
                        d8(b.low),
                        d8(b.close),
                        d8(b.volume),
                        t + tf_ms - 1,
                        d8(b.volume * b.close),
                        2,
                        "0",
                        "0",
                        "0"
                    ])
                })
                .collect(),
        ))
    }

    /// Levels one tick apart around the last price.
    fn book(&self, m: &Market, levels: usize) -> (Levels, Levels) {
        let p = m.last_price();
        let n = levels.min(self.cfg.book_levels);
        let bids = (1..=n)
            .map(|i| (p - m.spec.tick * Decimal::from(i as u64), self.cfg.level_qty))
            .filter(|(price, _)| *price > Decimal::ZERO)
            .collect();
        let asks = (1..=n).map(|i| (p + m.spec.tick * Decimal::from(i as u64), self.cfg.level_qty)).collect();
        (bids, asks)
    }

    fn find_order(&self, params: &HashMap<String, String>) -> Option<&FakeOrder> {
        let symbol = params.get("symbol")?;
        if let Some(id) = params.get("orderId").and_then(|v| v.parse::<i64>().ok()) {
            return self.orders.iter().find(|o| o.order_id == id && o.symbol == *symbol);
        }
        let cid = params.get("origClientOrderId")?;
        self.orders.iter().rev().find(|o| o.client_order_id == *cid && o.symbol == *symbol)
    }

    /// Books one execution of `order_id`: balances moved, fee charged as configured, the trade recorded.
    fn book_trade(
        &mut self,
        spec: &FakeSymbol,
        side: Side,
        order_id: i64,
        price: Decimal,
        qty: Decimal,
        now_ms: i64,
    ) -> FakeTrade {
        let notional = price * qty;
        let (commission, asset) = match (self.cfg.commission, side) {
            (Commission::Realistic, Side::Buy) => ((qty * self.cfg.fee_rate).round_dp(8), spec.base.clone()),
            (Commission::Bnb, _) => ((notional * self.cfg.fee_rate).round_dp(8), "BNB".to_owned()),
            _ => ((notional * self.cfg.fee_rate).round_dp(8), spec.quote.clone()),
        };
        let sign = if side == Side::Buy { Decimal::ONE } else { -Decimal::ONE };
        *self.balances.entry(spec.base.clone()).or_default() += sign * qty;
        *self.balances.entry(spec.quote.clone()).or_default() -= sign * notional;
        *self.balances.entry(asset.clone()).or_default() -= commission;
        let t = FakeTrade {
            id: self.next_trade_id,
            order_id,
            symbol: spec.symbol.clone(),
            price,
            qty,
            commission,
            commission_asset: asset,
            time: now_ms,
            is_buyer: side == Side::Buy,
        };
        self.next_trade_id += 1;
        self.trades.push(t.clone());
        t
    }

    /// What an open LIMIT order keeps locked: quote for the unfilled part of a buy, base for a sell.
    fn held_by(&self, o: &FakeOrder) -> Option<(String, Decimal)> {
        if o.order_type != "LIMIT" {
            return None;
        }
        let spec = &self.markets.get(&o.symbol)?.spec;
        let left = o.orig_qty - o.executed_qty;
        Some(match o.side {
            Side::Buy => (spec.quote.clone(), left * o.price),
            Side::Sell => (spec.base.clone(), left),
        })
    }

    fn new_order(&mut self, params: &HashMap<String, String>, fault: Option<&Fault>) -> Result<Value, Refusal> {
        let spec = self.market(params)?.spec.clone();
        let side = match params.get("side").map(String::as_str) {
            Some("BUY") => Side::Buy,
            Some("SELL") => Side::Sell,
            _ => return Err(refusal(400, -1102, "Mandatory parameter 'side' was not sent.")),
        };
        if params.get("type").map(String::as_str) != Some("MARKET") {
            return Err(refusal(400, -1116, "Invalid orderType."));
        }
        let qty: Decimal = params
            .get("quantity")
            .and_then(|q| q.parse().ok())
            .ok_or_else(|| refusal(400, -1102, "Mandatory parameter 'quantity' was not sent."))?;
        if qty <= Decimal::ZERO || (qty / spec.step).fract() != Decimal::ZERO || qty < spec.step {
            return Err(refusal(400, -1013, "Filter failure: LOT_SIZE"));
        }
        let price = self.markets[&spec.symbol].last_price();
        if qty * price < spec.min_notional {
            return Err(refusal(400, -1013, "Filter failure: NOTIONAL"));
        }
        let cid = params.get("newClientOrderId").cloned().unwrap_or_else(|| format!("auto-{}", self.next_order_id));
        if !cid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') || cid.len() > 36 {
            return Err(refusal(400, -1100, "Illegal characters found in parameter 'newClientOrderId'."));
        }
        if self.orders.iter().any(|o| o.client_order_id == cid && (o.status == "NEW" || o.status == "PARTIALLY_FILLED"))
        {
            return Err(refusal(400, -2010, "Duplicate order sent."));
        }
        // Walk the book.
        let (bids, asks) = self.book(&self.markets[&spec.symbol], self.cfg.book_levels);
        let levels = if side == Side::Buy { asks } else { bids };
        let available = match fault {
            Some(Fault::PartialFill { percent }) => {
                let part = qty * Decimal::from(*percent) / Decimal::from(100);
                ((part / spec.step).floor() * spec.step).max(spec.step)
            }
            _ => qty,
        };
        let mut left = available;
        let mut fills: Vec<(Decimal, Decimal)> = Vec::new();
        for (p, q) in levels {
            if left <= Decimal::ZERO {
                break;
            }
            let take = left.min(q);
            fills.push((p, take));
            left -= take;
        }
        let executed: Decimal = fills.iter().map(|f| f.1).sum();
        let quote: Decimal = fills.iter().map(|f| f.0 * f.1).sum();
        let fee_quote = quote * self.cfg.fee_rate;
        let held = |a: &str| self.balances.get(a).copied().unwrap_or_default();
        match side {
            Side::Buy if held(&spec.quote) < quote + fee_quote => {
                return Err(refusal(400, -2010, "Account has insufficient balance for requested action."));
            }
            Side::Sell if held(&spec.base) < qty => {
                return Err(refusal(400, -2010, "Account has insufficient balance for requested action."));
            }
            _ => {}
        }
        let order_id = self.next_order_id;
        self.next_order_id += 1;
        let now_ms = self.server_now().timestamp_millis();
        let trades: Vec<FakeTrade> =
            fills.iter().map(|(p, q)| self.book_trade(&spec, side, order_id, *p, *q, now_ms)).collect();
        let order = FakeOrder {
            order_id,
            client_order_id: cid,
            symbol: spec.symbol.clone(),
            side,
            orig_qty: qty,
            executed_qty: executed,
            cumulative_quote: quote,
            status: if executed == qty { "FILLED".into() } else { "EXPIRED".into() },
            order_type: "MARKET".into(),
            price: Decimal::ZERO,
            time: now_ms,
        };
        self.orders.push(order.clone());
        if fault == Some(&Fault::DuplicateAfterAccept) {
            return Err(refusal(400, -2010, "Duplicate order sent."));
        }
        let resp_type = params.get("newOrderRespType").map(String::as_str).unwrap_or("FULL");
        let mut v = order_json(&order, Some(&trades));
        match resp_type {
            "ACK" => Ok(json!({"symbol": order.symbol, "orderId": order.order_id, "orderListId": -1,
                "clientOrderId": order.client_order_id, "transactTime": now_ms})),
            "RESULT" => {
                if let Some(o) = v.as_object_mut() {
                    o.remove("fills");
                }
                Ok(v)
            }
            _ => Ok(v),
        }
    }
}

fn order_json(o: &FakeOrder, fills: Option<&[FakeTrade]>) -> Value {
    let side = if o.side == Side::Buy { "BUY" } else { "SELL" };
    let mut v = json!({"symbol": o.symbol, "orderId": o.order_id, "orderListId": -1, "clientOrderId": o.client_order_id,
        "transactTime": o.time, "time": o.time, "updateTime": o.time, "price": d8(o.price), "origQty": d8(o.orig_qty),
        "executedQty": d8(o.executed_qty), "origQuoteOrderQty": "0.00000000", "cummulativeQuoteQty": d8(o.cumulative_quote),
        "status": o.status, "timeInForce": "GTC", "type": o.order_type, "side": side, "workingTime": o.time,
        "isWorking": true, "selfTradePreventionMode": "NONE"});
    if let Some(fills) = fills {
        v["fills"] = Value::Array(
            fills
                .iter()
                .map(|t| {
                    json!({"price": d8(t.price), "qty": d8(t.qty), "commission": d8(t.commission),
                    "commissionAsset": t.commission_asset, "tradeId": t.id})
                })
                .collect(),
        );
    }
    v
}

fn trade_json(t: &FakeTrade) -> Value {
    json!({"symbol": t.symbol, "id": t.id, "orderId": t.order_id, "orderListId": -1, "price": d8(t.price),
        "qty": d8(t.qty), "quoteQty": d8(t.price * t.qty), "commission": d8(t.commission),
        "commissionAsset": t.commission_asset, "time": t.time, "isBuyer": t.is_buyer, "isMaker": false,
        "isBestMatch": true})
}

fn error_json(code: i64, msg: &str) -> String {
    json!({"code": code, "msg": msg}).to_string()
}

fn respond(status: u16, body: String, used_weight: u32, retry_after: Option<u64>) -> Response {
    let mut b = Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json;charset=UTF-8")
        .header("x-mbx-used-weight-1m", used_weight.to_string());
    if let Some(secs) = retry_after {
        b = b.header("retry-after", secs.to_string());
    }
    b.body(Body::from(body)).unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

const SIGNED: [&str; 5] =
    ["/api/v3/account", "/api/v3/order", "/api/v3/openOrders", "/api/v3/myTrades", "/sapi/v1/account/apiRestrictions"];

/// What the handler does after the state was updated under the lock.
enum Then {
    Answer(Response),
    Delay(Duration, Response),
    Cut(String, u32),
}

async fn rest(State(state): State<Shared>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path().to_owned();
    let raw_query = uri.query().unwrap_or_default().to_owned();
    let mut params: HashMap<String, String> = form_urlencoded::parse(raw_query.as_bytes()).into_owned().collect();
    for (k, v) in form_urlencoded::parse(&body) {
        params.entry(k.into_owned()).or_insert_with(|| v.into_owned());
    }
    let then = {
        let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
        handle(&mut st, &method, &path, &raw_query, &headers, &body, &params)
    };
    match then {
        Then::Answer(r) => r,
        Then::Delay(d, r) => {
            tokio::time::sleep(d).await;
            r
        }
        Then::Cut(text, used) => {
            let half = text[..text.len() / 2].to_owned();
            let chunks: Vec<Result<Bytes, std::io::Error>> =
                vec![Ok(Bytes::from(half)), Err(std::io::Error::other("connection dropped by fault injection"))];
            Response::builder()
                .status(StatusCode::OK)
                .header("x-mbx-used-weight-1m", used.to_string())
                .body(Body::from_stream(futures_util::stream::iter(chunks)))
                .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
        }
    }
}

fn handle(
    st: &mut State0,
    method: &Method,
    path: &str,
    raw_query: &str,
    headers: &HeaderMap,
    body: &[u8],
    params: &HashMap<String, String>,
) -> Then {
    let now = st.server_now();
    let weight = State0::weight_of(method, path, params);
    let mut record = RequestRecord { method: method.to_string(), path: path.into(), at: now, weight, status: 200 };
    // A ban refuses everything, and every request during it is a violation.
    if let Some(until) = st.banned_until {
        if now < until {
            st.requests_during_ban += 1;
            let secs = (until - now).num_seconds().max(1) as u64;
            record.status = 418;
            st.requests.push(record);
            return Then::Answer(respond(
                418,
                error_json(-1003, "Way too much request weight used; IP banned."),
                0,
                Some(secs),
            ));
        }
        st.banned_until = None;
    }
    let window = st.window();
    let used = {
        let w = st.weight.entry(window).or_default();
        *w += weight;
        *w
    };
    let answer = |st: &mut State0, rec: RequestRecord, status: u16, body: String, retry: Option<u64>| {
        let mut rec = rec;
        rec.status = status;
        st.requests.push(rec);
        respond(status, body, used, retry)
    };
    if used > st.cfg.weight_limit_per_min {
        let secs = ((window + 1) * 60_000 - now.timestamp_millis()).div_euclid(1_000).max(1) as u64;
        return Then::Answer(answer(st, record, 429, error_json(-1003, "Too much request weight used."), Some(secs)));
    }
    let fault = st.take_fault(method, path);
    if let Some(f) = &fault {
        let name = format!("{f:?}").split([' ', '{']).next().unwrap_or_default().to_owned();
        *st.faults_injected.entry(name).or_default() += 1;
    }
    match &fault {
        Some(Fault::RateLimit { retry_after_secs }) => {
            return Then::Answer(answer(
                st,
                record,
                429,
                error_json(-1003, "Too much request weight used."),
                Some(*retry_after_secs),
            ));
        }
        Some(Fault::Ban { retry_after_secs }) => {
            st.banned_until = Some(now + chrono::Duration::seconds(*retry_after_secs as i64));
            return Then::Answer(answer(
                st,
                record,
                418,
                error_json(-1003, "Way too much request weight used; IP banned."),
                Some(*retry_after_secs),
            ));
        }
        Some(Fault::ServerErrorBefore) => {
            return Then::Answer(answer(st, record, 503, "Service Unavailable".into(), None));
        }
        Some(Fault::Body { status, body }) => {
            return Then::Answer(answer(st, record, *status, body.clone(), None));
        }
        _ => {}
    }
    if SIGNED.contains(&path)
        && let Err((status, code, msg)) = st.check_signed(headers, raw_query, body, params)
    {
        return Then::Answer(answer(st, record, status, error_json(code, &msg), None));
    }
    let result = st.process(method, path, params, fault.as_ref());
    let (status, text) = match result {
        Ok(v) => (200, v.to_string()),
        Err((status, code, msg)) => (status, error_json(code, &msg)),
    };
    match fault {
        Some(Fault::ServerErrorAfter) => Then::Answer(answer(
            st,
            record,
            500,
            error_json(-1000, "An unknown error occurred while processing the request."),
            None,
        )),
        Some(Fault::Timeout) => {
            let delay = st.cfg.timeout_delay;
            Then::Delay(delay, answer(st, record, status, text, None))
        }
        Some(Fault::Malformed) => {
            let cut = text[..text.len() / 2].to_owned();
            Then::Answer(answer(st, record, 200, cut, None))
        }
        Some(Fault::DropConnection) => {
            record.status = 0;
            st.requests.push(record);
            Then::Cut(text, used)
        }
        _ => Then::Answer(answer(st, record, status, text, None)),
    }
}

// ---- WebSocket ----

async fn ws_combined(
    State(state): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    ws: WebSocketUpgrade,
) -> Response {
    let streams: Vec<String> = q.get("streams").map(|s| s.split('/').map(str::to_owned).collect()).unwrap_or_default();
    upgrade(state, streams, ws)
}

async fn ws_raw(State(state): State<Shared>, Path(name): Path<String>, ws: WebSocketUpgrade) -> Response {
    upgrade(state, vec![name], ws)
}

fn upgrade(state: Shared, streams: Vec<String>, ws: WebSocketUpgrade) -> Response {
    let (tx, rx) = mpsc::unbounded_channel();
    let id = {
        let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
        if !st.ws_available {
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
        st.ws_next_id += 1;
        st.ws_next_id
    };
    let registered = state.clone();
    ws.on_upgrade(move |socket| async move {
        {
            let mut st = registered.lock().unwrap_or_else(|p| p.into_inner());
            st.ws_connects += 1;
            st.ws_conns.push(WsConn { id, streams, tx });
        }
        serve_socket(registered.clone(), socket, rx).await;
        registered.lock().unwrap_or_else(|p| p.into_inner()).ws_conns.retain(|c| c.id != id);
    })
}

async fn serve_socket(state: Shared, mut socket: WebSocket, mut rx: mpsc::UnboundedReceiver<WsOut>) {
    loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(WsOut::Text(t)) => {
                    if socket.send(Message::Text(t.into())).await.is_err() {
                        return;
                    }
                }
                Some(WsOut::Ping(p)) => {
                    if socket.send(Message::Ping(p.into())).await.is_err() {
                        return;
                    }
                }
                Some(WsOut::Drop) | None => return,
            },
            msg = socket.recv() => match msg {
                Some(Ok(Message::Pong(p))) => state.lock().unwrap_or_else(|e| e.into_inner()).pongs.push(p.to_vec()),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}
