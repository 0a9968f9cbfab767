//! A loopback Upbit: REST on 127.0.0.1 port 0 speaking Upbit's paths, payload shapes and errors. It keeps
//! balances, an order book and orders; verifies every private call's JWT (HS256/HS512, access key, unused
//! nonce, SHA-512 query hash over the unencoded parameters); emits `Remaining-Req` on every answer; and injects
//! faults on demand (429, 418, 5xx after accepting, malformed JSON, answers slower than the client's time-out).
//! `DELETE /v1/order` cancels an open (`wait`) order as Upbit does: the state becomes `cancel` and the locked
//! funds are released, while the answer itself still reads `wait` (Upbit confirms cancellations a moment
//! later; `GET /v1/order` shows `cancel`); an order no longer open is refused with a 400, an unknown one with 404.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use mcbot_stages::domain::Candle;
use rust_decimal::Decimal;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};
use sha2::{Digest, Sha512};

/// A fault injected into the next request matching a method and path.
#[derive(Debug, Clone)]
pub enum Fault {
    /// 429 with Upbit's error body (and no processing).
    TooManyRequests,
    /// 418 with a block message.
    Teapot,
    /// 500 before processing.
    ServerError,
    /// The request is processed (an order is accepted), then 500 is answered.
    ServerErrorAfterAccept,
    /// 200 with this body instead of the real answer (nothing processed).
    Malformed(String),
    /// The request is processed, then the answer is held back for this long (longer than the client waits).
    SlowAfterAccept(Duration),
}

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// HTTP method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Parameters, decoded, in order (query or JSON body).
    pub params: Vec<(String, String)>,
}

/// An order the fake holds.
#[derive(Debug, Clone)]
pub struct FakeOrder {
    /// Upbit id.
    pub uuid: String,
    /// Client identifier.
    pub identifier: Option<String>,
    /// Market.
    pub market: String,
    /// `bid` / `ask`.
    pub side: String,
    /// `limit` / `price` / `market`.
    pub ord_type: String,
    /// Limit price or amount.
    pub price: Option<Decimal>,
    /// Volume asked (limit / market sell).
    pub volume: Option<Decimal>,
    /// `wait` / `done` / `cancel`.
    pub state: String,
    /// Trades: (trade uuid, price, volume).
    pub trades: Vec<(String, Decimal, Decimal)>,
    /// Fee paid.
    pub paid_fee: Decimal,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// Upbit writes order times in KST with an offset: `2024-08-31T22:25:59+09:00`.
fn kst(t: DateTime<Utc>) -> String {
    chrono::FixedOffset::east_opt(9 * 3600)
        .map(|tz| t.with_timezone(&tz).to_rfc3339_opts(SecondsFormat::Secs, false))
        .unwrap_or_default()
}

impl FakeOrder {
    fn executed(&self) -> Decimal {
        self.trades.iter().map(|t| t.2).sum()
    }

    fn json(&self, with_trades: bool, state_override: Option<&str>) -> Value {
        let s = |d: Decimal| d.normalize().to_string();
        let executed = self.executed();
        let remaining = self.volume.map(|v| v - executed);
        let mut v = json!({
            "uuid": self.uuid, "side": self.side, "ord_type": self.ord_type,
            "price": self.price.map(s), "state": state_override.unwrap_or(&self.state), "market": self.market,
            "created_at": kst(self.created_at),
            "volume": self.volume.map(s), "remaining_volume": remaining.map(s),
            "reserved_fee": "0", "remaining_fee": "0", "paid_fee": s(self.paid_fee), "locked": "0",
            "executed_volume": s(executed), "trades_count": self.trades.len(), "identifier": self.identifier,
        });
        if with_trades {
            v["trades"] = Value::Array(
                self.trades
                    .iter()
                    .map(|(id, p, q)| {
                        json!({"market": self.market, "uuid": id, "price": s(*p), "volume": s(*q),
                               "funds": s(*p * *q), "side": self.side,
                               "created_at": self.created_at.to_rfc3339_opts(SecondsFormat::Secs, true)})
                    })
                    .collect(),
            );
        }
        v
    }
}

/// Price levels (price, size), best first.
type Levels = Vec<(Decimal, Decimal)>;

#[derive(Default)]
struct Inner {
    balances: BTreeMap<String, (Decimal, Decimal)>,
    /// market → (bids, asks).
    books: HashMap<String, (Levels, Levels)>,
    tickers: HashMap<String, Decimal>,
    /// (market, unit minutes or 1440 for days) → candles ascending.
    candles: HashMap<(String, u32), Vec<Candle>>,
    orders: Vec<FakeOrder>,
    identifiers: HashSet<String>,
    nonces: HashSet<String>,
    faults: VecDeque<(String, String, Fault)>,
    remaining: HashMap<String, VecDeque<u32>>,
    seen: Vec<Seen>,
    auth_failures: Vec<String>,
    seq: u64,
}

struct Shared {
    access_key: String,
    secret_key: String,
    fee_rate: Decimal,
    now: DateTime<Utc>,
    inner: Mutex<Inner>,
}

/// The running fake; the server stops when this is dropped.
pub struct FakeUpbit {
    /// Base URL, `http://127.0.0.1:PORT`.
    pub url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl fmt::Debug for FakeUpbit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeUpbit").field("url", &self.url).finish()
    }
}

impl Drop for FakeUpbit {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Test access key.
pub const ACCESS_KEY: &str = "test-access-key";
/// Test secret key.
pub const SECRET_KEY: &str = "test-secret-key-0123456789";

/// JSON body fields in the order they were sent (serde_json's map would sort them).
struct Ordered(Vec<(String, String)>);

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ordered;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ordered, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Value>()? {
                    let v = match v {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    out.push((k, v));
                }
                Ok(Ordered(out))
            }
        }
        d.deserialize_map(V)
    }
}

fn err(status: StatusCode, name: &str, message: &str) -> (StatusCode, Value) {
    (status, json!({"error": {"name": name, "message": message}}))
}

/// The fake's own price-unit check (independent of the adapter's table): Upbit KRW grid since 2025-07-31.
fn on_krw_grid(price: Decimal) -> bool {
    let bands: [(i64, u32, i64, u32); 10] = [
        (1_000_000, 0, 1000, 0),
        (500_000, 0, 500, 0),
        (100_000, 0, 100, 0),
        (50_000, 0, 50, 0),
        (10_000, 0, 10, 0),
        (5_000, 0, 5, 0),
        (100, 0, 1, 0),
        (10, 0, 1, 1),
        (1, 0, 1, 2),
        (0, 0, 1, 8),
    ];
    bands
        .iter()
        .find(|(f, fs, _, _)| price >= Decimal::new(*f, *fs))
        .is_some_and(|(_, _, t, ts)| (price % Decimal::new(*t, *ts)).is_zero())
}

fn group_of(method: &Method, path: &str) -> &'static str {
    if path.starts_with("/v1/candles") {
        "candles"
    } else if path == "/v1/ticker" {
        "ticker"
    } else if path == "/v1/orderbook" {
        "orderbook"
    } else if method == Method::POST && path == "/v1/orders" {
        "order"
    } else {
        "default"
    }
}

fn is_private(path: &str) -> bool {
    matches!(path, "/v1/accounts" | "/v1/orders" | "/v1/order" | "/v1/orders/open")
}

impl FakeUpbit {
    /// Starts a fake with the test keys, a 0.05 % fee and an empty market.
    pub async fn start() -> Self {
        let shared = Arc::new(Shared {
            access_key: ACCESS_KEY.into(),
            secret_key: SECRET_KEY.into(),
            fee_rate: Decimal::new(5, 4),
            now: DateTime::from_timestamp(1_725_000_000, 0).unwrap_or_default(),
            inner: Mutex::new(Inner::default()),
        });
        let app = axum::Router::new().fallback(handle).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, shared, task }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.shared.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets a balance (free) of a currency.
    pub fn set_balance(&self, currency: &str, free: Decimal) {
        self.inner().balances.insert(currency.into(), (free, Decimal::ZERO));
    }

    /// (free, locked) of a currency.
    pub fn balance(&self, currency: &str) -> (Decimal, Decimal) {
        self.inner().balances.get(currency).copied().unwrap_or_default()
    }

    /// Sets the book of a market: bids best (highest) first, asks best (lowest) first.
    pub fn set_book(&self, market: &str, bids: Levels, asks: Levels) {
        self.inner().books.insert(market.into(), (bids, asks));
    }

    /// Sets the last price of a market.
    pub fn set_ticker(&self, market: &str, price: Decimal) {
        self.inner().tickers.insert(market.into(), price);
    }

    /// Stores candles of `unit` minutes (1440 for days), ascending.
    pub fn set_candles(&self, market: &str, unit: u32, candles: Vec<Candle>) {
        self.inner().candles.insert((market.into(), unit), candles);
    }

    /// Injects `fault` into the next `method` request to `path`.
    pub fn push_fault(&self, method: &str, path: &str, fault: Fault) {
        self.inner().faults.push_back((method.into(), path.into(), fault));
    }

    /// The next answers for `group` report these `sec` values in `Remaining-Req` (then 29).
    pub fn script_remaining(&self, group: &str, secs: &[u32]) {
        self.inner().remaining.entry(group.into()).or_default().extend(secs);
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.inner().seen.clone()
    }

    /// Why private requests were refused at authentication.
    pub fn auth_failures(&self) -> Vec<String> {
        self.inner().auth_failures.clone()
    }

    /// All orders.
    pub fn orders(&self) -> Vec<FakeOrder> {
        self.inner().orders.clone()
    }

    /// Number of orders carrying `identifier`.
    pub fn orders_with_identifier(&self, identifier: &str) -> usize {
        self.inner().orders.iter().filter(|o| o.identifier.as_deref() == Some(identifier)).count()
    }
}

/// Verifies `Authorization: Bearer <JWT>` for the given parameters.
fn verify(
    shared: &Shared,
    inner: &mut Inner,
    headers: &HeaderMap,
    params: &[(String, String)],
) -> Result<(), (StatusCode, Value)> {
    let fail = |inner: &mut Inner, name: &str| {
        inner.auth_failures.push(name.to_owned());
        err(StatusCode::UNAUTHORIZED, name, "authentication failed")
    };
    let Some(token) =
        headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "))
    else {
        return Err(fail(inner, "jwt_verification"));
    };
    let mut validation = Validation::new(Algorithm::HS256);
    validation.algorithms = vec![Algorithm::HS256, Algorithm::HS512];
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    let claims = match jsonwebtoken::decode::<Value>(
        token,
        &DecodingKey::from_secret(shared.secret_key.as_bytes()),
        &validation,
    ) {
        Ok(t) => t.claims,
        Err(_) => return Err(fail(inner, "jwt_verification")),
    };
    if claims["access_key"].as_str() != Some(shared.access_key.as_str()) {
        return Err(fail(inner, "invalid_access_key"));
    }
    let Some(nonce) = claims["nonce"].as_str() else { return Err(fail(inner, "jwt_verification")) };
    if !inner.nonces.insert(nonce.to_owned()) {
        return Err(fail(inner, "nonce_used"));
    }
    if params.is_empty() {
        if claims.get("query_hash").is_some() {
            return Err(fail(inner, "invalid_query_payload"));
        }
        return Ok(());
    }
    let text = params.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
    let expected: String = Sha512::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    if claims["query_hash"].as_str() != Some(expected.as_str()) || claims["query_hash_alg"].as_str() != Some("SHA512") {
        return Err(fail(inner, "invalid_query_payload"));
    }
    Ok(())
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let group = group_of(&method, &path);
    let (params, body_ok) = if method == Method::POST {
        match serde_json::from_slice::<Ordered>(&body) {
            Ok(o) => (o.0, true),
            Err(_) => (Vec::new(), false),
        }
    } else {
        let q = uri.query().unwrap_or("");
        let pairs = reqwest::Url::parse(&format!("http://x/?{q}"))
            .map(|u| u.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
            .unwrap_or_default();
        (pairs, true)
    };
    let (fault, sec) = {
        let mut inner = shared.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.seen.push(Seen { method: method.to_string(), path: path.clone(), params: params.clone() });
        let idx = inner.faults.iter().position(|(m, p, _)| *m == method.as_str() && *p == path);
        let fault = idx.and_then(|i| inner.faults.remove(i)).map(|(_, _, f)| f);
        let sec = inner.remaining.get_mut(group).and_then(VecDeque::pop_front).unwrap_or(29);
        (fault, sec)
    };
    let mut hdrs = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("group={group}; min=1800; sec={sec}")) {
        hdrs.insert("Remaining-Req", v);
    }
    let respond = |status: StatusCode, body: String, hdrs: HeaderMap| {
        let mut r = (status, body).into_response();
        r.headers_mut().extend(hdrs);
        r.headers_mut().insert("content-type", HeaderValue::from_static("application/json; charset=utf-8"));
        r
    };
    match &fault {
        Some(Fault::TooManyRequests) => {
            let (s, b) = err(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", "slow down");
            return respond(s, b.to_string(), hdrs);
        }
        Some(Fault::Teapot) => {
            let (s, b) = err(StatusCode::IM_A_TEAPOT, "blocked", "blocked for 30 seconds");
            let mut h = hdrs;
            h.insert("retry-after", HeaderValue::from_static("30"));
            return respond(s, b.to_string(), h);
        }
        Some(Fault::ServerError) => return respond(StatusCode::INTERNAL_SERVER_ERROR, "oops".into(), hdrs),
        Some(Fault::Malformed(body)) => return respond(StatusCode::OK, body.clone(), hdrs),
        _ => {}
    }
    let (status, value) = if body_ok {
        process(&shared, &method, &path, &headers, &params)
    } else {
        err(StatusCode::BAD_REQUEST, "validation_error", "body is not a JSON object")
    };
    match fault {
        Some(Fault::ServerErrorAfterAccept) => respond(StatusCode::INTERNAL_SERVER_ERROR, "{}".into(), hdrs),
        Some(Fault::SlowAfterAccept(d)) => {
            tokio::time::sleep(d).await;
            respond(status, value.to_string(), hdrs)
        }
        _ => respond(status, value.to_string(), hdrs),
    }
}

fn param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn num(d: Decimal) -> Value {
    // Quotation numbers are JSON numbers, written from the exact decimal text.
    serde_json::from_str(&d.normalize().to_string()).unwrap_or(Value::Null)
}

fn process(
    shared: &Shared,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    params: &[(String, String)],
) -> (StatusCode, Value) {
    let mut guard = shared.inner.lock().unwrap_or_else(|e| e.into_inner());
    let inner = &mut *guard;
    if is_private(path)
        && let Err(e) = verify(shared, inner, headers, params)
    {
        return e;
    }
    match (method.as_str(), path) {
        ("GET", "/v1/ticker") => {
            let markets = param(params, "markets").unwrap_or("");
            let out: Vec<Value> = markets
                .split(',')
                .filter_map(|m| {
                    inner.tickers.get(m).map(|p| json!({"market": m, "trade_price": num(*p), "timestamp": 1}))
                })
                .collect();
            if out.is_empty() {
                return err(StatusCode::NOT_FOUND, "Code not found", "unknown market");
            }
            (StatusCode::OK, Value::Array(out))
        }
        ("GET", "/v1/orderbook") => {
            let markets = param(params, "markets").unwrap_or("");
            let out: Vec<Value> = markets
                .split(',')
                .filter_map(|m| {
                    inner.books.get(m).map(|(bids, asks)| {
                        let n = bids.len().max(asks.len());
                        let units: Vec<Value> = (0..n)
                            .map(|i| {
                                let (bp, bs) = bids.get(i).copied().unwrap_or_default();
                                let (ap, asz) = asks.get(i).copied().unwrap_or_default();
                                json!({"ask_price": num(ap), "bid_price": num(bp), "ask_size": num(asz), "bid_size": num(bs)})
                            })
                            .collect();
                        json!({"market": m, "timestamp": 1, "total_ask_size": 0, "total_bid_size": 0, "orderbook_units": units, "level": 0})
                    })
                })
                .collect();
            (StatusCode::OK, Value::Array(out))
        }
        ("GET", p) if p.starts_with("/v1/candles/") => candles(inner, p, params),
        ("GET", "/v1/accounts") => {
            let out: Vec<Value> = inner
                .balances
                .iter()
                .map(|(c, (free, locked))| {
                    json!({"currency": c, "balance": free.to_string(), "locked": locked.to_string(),
                           "avg_buy_price": "0", "avg_buy_price_modified": false, "unit_currency": "KRW"})
                })
                .collect();
            (StatusCode::OK, Value::Array(out))
        }
        ("POST", "/v1/orders") => create_order(shared, inner, params),
        ("GET", "/v1/order") | ("DELETE", "/v1/order") => {
            let found = match (param(params, "uuid"), param(params, "identifier")) {
                (Some(u), _) => inner.orders.iter().position(|o| o.uuid == u),
                (None, Some(i)) => inner.orders.iter().position(|o| o.identifier.as_deref() == Some(i)),
                _ => return err(StatusCode::BAD_REQUEST, "validation_error", "uuid or identifier required"),
            };
            let Some(i) = found else { return err(StatusCode::NOT_FOUND, "order_not_found", "no such order") };
            if method == Method::DELETE {
                if inner.orders[i].state != "wait" {
                    return err(StatusCode::BAD_REQUEST, "order_not_ready", "not open");
                }
                inner.orders[i].state = "cancel".into();
                let o = inner.orders[i].clone();
                unlock(inner, &o);
                return (StatusCode::OK, o.json(false, Some("wait")));
            }
            (StatusCode::OK, inner.orders[i].json(true, None))
        }
        ("GET", "/v1/orders/open") => {
            let limit: usize = param(params, "limit").and_then(|v| v.parse().ok()).unwrap_or(100);
            let page: usize = param(params, "page").and_then(|v| v.parse().ok()).unwrap_or(1).max(1);
            let out: Vec<Value> = inner
                .orders
                .iter()
                .filter(|o| o.state == "wait")
                .skip((page - 1) * limit)
                .take(limit)
                .map(|o| o.json(false, None))
                .collect();
            (StatusCode::OK, Value::Array(out))
        }
        _ => err(StatusCode::NOT_FOUND, "not_found", "no such endpoint"),
    }
}

fn candles(inner: &Inner, path: &str, params: &[(String, String)]) -> (StatusCode, Value) {
    let unit = match path.strip_prefix("/v1/candles/") {
        Some("days") => 1440,
        Some(rest) => match rest.strip_prefix("minutes/").and_then(|u| u.parse::<u32>().ok()) {
            Some(u) if [1, 3, 5, 10, 15, 30, 60, 240].contains(&u) => u,
            _ => return err(StatusCode::BAD_REQUEST, "validation_error", "bad unit"),
        },
        None => return err(StatusCode::NOT_FOUND, "not_found", "no such endpoint"),
    };
    let Some(market) = param(params, "market") else {
        return err(StatusCode::BAD_REQUEST, "validation_error", "market required");
    };
    let count: usize = param(params, "count").and_then(|c| c.parse().ok()).unwrap_or(1);
    if count == 0 || count > 200 {
        return err(StatusCode::BAD_REQUEST, "validation_error", "count must be 1..=200");
    }
    let to = match param(params, "to") {
        Some(t) => match DateTime::parse_from_rfc3339(t) {
            Ok(t) => t.to_utc(),
            Err(_) => return err(StatusCode::BAD_REQUEST, "validation_error", "bad to"),
        },
        None => DateTime::<Utc>::MAX_UTC,
    };
    let all = inner.candles.get(&(market.to_owned(), unit)).cloned().unwrap_or_default();
    let out: Vec<Value> = all
        .iter()
        .rev()
        .filter(|c| c.open_time < to)
        .take(count)
        .map(|c| {
            let mut v = json!({
                "market": market,
                "candle_date_time_utc": c.open_time.format("%Y-%m-%dT%H:%M:%S").to_string(),
                "candle_date_time_kst": (c.open_time + chrono::Duration::hours(9)).format("%Y-%m-%dT%H:%M:%S").to_string(),
                "opening_price": num(c.open), "high_price": num(c.high), "low_price": num(c.low),
                "trade_price": num(c.close), "timestamp": c.open_time.timestamp_millis(),
                "candle_acc_trade_price": num(c.close * c.volume), "candle_acc_trade_volume": num(c.volume),
            });
            if unit != 1440 {
                v["unit"] = json!(unit);
            }
            v
        })
        .collect();
    (StatusCode::OK, Value::Array(out))
}

fn dec(params: &[(String, String)], key: &str) -> Result<Option<Decimal>, (StatusCode, Value)> {
    match param(params, key) {
        None => Ok(None),
        Some(v) => v
            .parse::<Decimal>()
            .map(Some)
            .map_err(|_| err(StatusCode::BAD_REQUEST, "validation_error", &format!("{key} is not a number"))),
    }
}

fn unlock(inner: &mut Inner, o: &FakeOrder) {
    if o.ord_type != "limit" {
        return;
    }
    let (price, volume) = (o.price.unwrap_or_default(), o.volume.unwrap_or_default());
    let (cur, amount) = if o.side == "bid" {
        ("KRW".to_owned(), price * volume)
    } else {
        (o.market.split_once('-').map_or(String::new(), |(_, b)| b.to_owned()), volume)
    };
    let e = inner.balances.entry(cur).or_default();
    e.0 += amount;
    e.1 -= amount;
}

fn create_order(shared: &Shared, inner: &mut Inner, params: &[(String, String)]) -> (StatusCode, Value) {
    let identifier = param(params, "identifier").map(str::to_owned);
    if let Some(id) = &identifier {
        // Upbit burns an identifier on every request, failed ones included.
        if !inner.identifiers.insert(id.clone()) {
            return err(StatusCode::BAD_REQUEST, "duplicate_identifier", "identifier already used");
        }
    }
    let (Some(market), Some(side), Some(ord_type)) =
        (param(params, "market"), param(params, "side"), param(params, "ord_type"))
    else {
        return err(StatusCode::BAD_REQUEST, "validation_error", "market, side and ord_type are required");
    };
    let (price, volume) = match (dec(params, "price"), dec(params, "volume")) {
        (Ok(p), Ok(v)) => (p, v),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    let side_err = if side == "bid" { "create_bid_error" } else { "create_ask_error" };
    let Some((_, base)) = market.split_once('-') else {
        return err(StatusCode::BAD_REQUEST, "validation_error", "market");
    };
    let base = base.to_owned();
    let min_total = Decimal::from(5000);
    match (ord_type, side, price, volume) {
        ("limit", _, Some(p), Some(v)) => {
            if !on_krw_grid(p) {
                let name = if side == "bid" { "invalid_price_bid" } else { "invalid_price_ask" };
                return err(StatusCode::BAD_REQUEST, name, "price off the tick grid");
            }
            if p * v < min_total {
                return err(StatusCode::BAD_REQUEST, &format!("under_min_total_{side}"), "below minimum");
            }
        }
        ("price", "bid", Some(amount), None) => {
            if !on_krw_grid(amount) {
                return err(StatusCode::BAD_REQUEST, "invalid_price_bid", "amount off the grid");
            }
            if amount < min_total {
                return err(StatusCode::BAD_REQUEST, "under_min_total_bid", "below minimum");
            }
        }
        ("market", "ask", None, Some(_)) => {}
        _ => return err(StatusCode::BAD_REQUEST, side_err, "fields do not match ord_type"),
    }
    inner.seq += 1;
    let mut order = FakeOrder {
        uuid: format!("00000000-0000-4000-8000-{:012}", inner.seq),
        identifier,
        market: market.to_owned(),
        side: side.to_owned(),
        ord_type: ord_type.to_owned(),
        price,
        volume,
        state: "wait".into(),
        trades: Vec::new(),
        paid_fee: Decimal::ZERO,
        created_at: shared.now,
    };
    let krw = inner.balances.get("KRW").copied().unwrap_or_default().0;
    let held = inner.balances.get(&base).copied().unwrap_or_default().0;
    match ord_type {
        "limit" => {
            let (p, v) = (price.unwrap_or_default(), volume.unwrap_or_default());
            let (cur, amount, free) =
                if side == "bid" { ("KRW".to_owned(), p * v, krw) } else { (base.clone(), v, held) };
            if free < amount {
                return err(StatusCode::BAD_REQUEST, &format!("insufficient_funds_{side}"), "not enough");
            }
            let e = inner.balances.entry(cur).or_default();
            e.0 -= amount;
            e.1 += amount;
        }
        "price" => {
            let amount = price.unwrap_or_default();
            let fee_max = amount * shared.fee_rate;
            if krw < amount + fee_max {
                return err(StatusCode::BAD_REQUEST, "insufficient_funds_bid", "not enough KRW");
            }
            let book = inner.books.entry(market.to_owned()).or_default();
            let mut left = amount;
            let mut trades = Vec::new();
            for level in book.1.iter_mut() {
                if left <= Decimal::ZERO || level.0 <= Decimal::ZERO {
                    break;
                }
                let spend = left.min(level.0 * level.1);
                let qty = (spend / level.0).trunc_with_scale(8);
                if qty.is_zero() {
                    break;
                }
                level.1 -= qty;
                left -= qty * level.0;
                trades.push((level.0, qty));
            }
            book.1.retain(|l| l.1 > Decimal::ZERO);
            fill(shared, inner, &mut order, &base, trades);
            order.state = if left > Decimal::ZERO { "cancel".into() } else { "done".into() };
        }
        _ => {
            let v = volume.unwrap_or_default();
            if held < v {
                return err(StatusCode::BAD_REQUEST, "insufficient_funds_ask", "not enough");
            }
            let book = inner.books.entry(market.to_owned()).or_default();
            let mut left = v;
            let mut trades = Vec::new();
            for level in book.0.iter_mut() {
                if left <= Decimal::ZERO {
                    break;
                }
                let qty = left.min(level.1);
                level.1 -= qty;
                left -= qty;
                trades.push((level.0, qty));
            }
            book.0.retain(|l| l.1 > Decimal::ZERO);
            fill(shared, inner, &mut order, &base, trades);
            order.state = if left > Decimal::ZERO { "cancel".into() } else { "done".into() };
        }
    }
    // Upbit answers the creation with the order still `wait`; its trades show in GET /v1/order.
    let answer = order.json(false, Some("wait"));
    inner.orders.push(order);
    (StatusCode::CREATED, answer)
}

fn fill(shared: &Shared, inner: &mut Inner, order: &mut FakeOrder, base: &str, trades: Vec<(Decimal, Decimal)>) {
    let bid = order.side == "bid";
    for (price, qty) in trades {
        inner.seq += 1;
        let funds = price * qty;
        let fee = (funds * shared.fee_rate).round_dp(8);
        order.paid_fee += fee;
        order.trades.push((format!("trade-{}", inner.seq), price, qty));
        let sign = if bid { Decimal::ONE } else { -Decimal::ONE };
        inner.balances.entry(base.to_owned()).or_default().0 += sign * qty;
        inner.balances.entry("KRW".to_owned()).or_default().0 -= sign * funds + fee;
    }
}
