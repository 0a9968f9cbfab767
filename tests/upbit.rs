//! The Upbit adapter against the loopback fake Upbit: JWT and query-hash signing checked by the server, KRW tick
//! rules, market order types, identifier lookup after a lost answer (never a second order), malformed payloads
//! as typed errors, `Remaining-Req`, 429 and 418 handling, and closed candles paged from Upbit's newest-first API.
//! Also the binary in mode paper with Upbit as the venue, so the KRW configuration is known to work end to end.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use mcbot::exchange::upbit::auth::{Params, Signer};
use mcbot::exchange::upbit::rest::{NewOrder, OrderKind, OrderSide};
use mcbot::exchange::upbit::{ApiSecret, Pause, UpbitExchange, UpbitSettings};
use mcbot_stages::ManualClock;
use mcbot_stages::domain::{Candle, ClientOrderId, OrderIntent, OrderStatus, Side, Symbol};
use mcbot_stages::pipeline::pretrade::Approved;
use mcbot_stages::ports::{Exchange, ExchangeError};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;

use crate::support::approval::approved;
use crate::support::fake_upbit::{ACCESS_KEY, FakeUpbit, Fault, SECRET_KEY};

/// Waiting on virtual time: records each wait and moves the manual clock by it.
struct VirtualPause {
    clock: Arc<ManualClock>,
    waits: Mutex<Vec<Duration>>,
}

#[async_trait]
impl Pause for VirtualPause {
    async fn pause(&self, d: Duration) {
        self.waits.lock().unwrap().push(d);
        self.clock.advance(TimeDelta::from_std(d).unwrap());
    }
}

impl VirtualPause {
    fn waits(&self) -> Vec<Duration> {
        self.waits.lock().unwrap().clone()
    }
}

struct Rig {
    fake: FakeUpbit,
    ex: UpbitExchange,
    clock: Arc<ManualClock>,
    pause: Arc<VirtualPause>,
}

fn t0() -> DateTime<Utc> {
    // 2024-09-01T00:00:00.250Z: a quarter of a second into a second, to see rate-limit waits exactly.
    DateTime::from_timestamp_millis(1_725_148_800_250).unwrap()
}

fn settings(fake: &FakeUpbit) -> UpbitSettings {
    UpbitSettings {
        rest_url: fake.url.clone(),
        access_key: Some(ApiSecret::new(ACCESS_KEY)),
        secret_key: Some(ApiSecret::new(SECRET_KEY)),
        request_timeout_ms: 5_000,
        fill_poll_interval_ms: 10,
        ..UpbitSettings::default()
    }
}

async fn rig_with(edit: impl FnOnce(&mut UpbitSettings)) -> Rig {
    let fake = FakeUpbit::start().await;
    let mut s = settings(&fake);
    edit(&mut s);
    let clock = Arc::new(ManualClock::new(t0()));
    let pause = Arc::new(VirtualPause { clock: clock.clone(), waits: Mutex::new(Vec::new()) });
    let ex = UpbitExchange::with_pause(s, clock.clone(), pause.clone()).unwrap();
    Rig { fake, ex, clock, pause }
}

async fn rig() -> Rig {
    rig_with(|_| {}).await
}

fn btc() -> Symbol {
    Symbol::new("KRW-BTC").unwrap()
}

fn market(fake: &FakeUpbit) {
    fake.set_balance("KRW", dec!(1_000_000));
    fake.set_balance("BTC", dec!(0.01));
    fake.set_ticker("KRW-BTC", dec!(80_012_345));
    fake.set_book(
        "KRW-BTC",
        vec![(dec!(80_000_000), dec!(0.0004)), (dec!(79_999_000), dec!(1))],
        vec![(dec!(80_001_000), dec!(0.01)), (dec!(80_002_000), dec!(1))],
    );
}

/// An order intent as the pre-trade checks approve it (permissive limits: the adapter's rules are under test).
fn intent(side: Side, qty: Decimal) -> Approved<OrderIntent> {
    approved(OrderIntent {
        symbol: btc(),
        side,
        qty,
        ref_price: dec!(80_012_345),
        reduce_only: side == Side::Sell,
        reason: "test".into(),
    })
}

fn cid(n: u32) -> ClientOrderId {
    ClientOrderId::from_stored(format!("mcb-test-{n:04}"))
}

fn posts(fake: &FakeUpbit) -> Vec<Vec<(String, String)>> {
    fake.seen().into_iter().filter(|s| s.method == "POST" && s.path == "/v1/orders").map(|s| s.params).collect()
}

fn get<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn signed_requests_pass_the_fakes_jwt_and_query_hash_checks() {
    let r = rig().await;
    market(&r.fake);
    let balances = r.ex.balances().await.unwrap();
    assert_eq!(balances.iter().find(|b| b.asset == "KRW").map(|b| b.free), Some(dec!(1_000_000)));
    assert_eq!(r.ex.order(&btc(), &cid(1)).await.unwrap().map(|a| a.order), None, "unknown id: 404 means None");
    r.ex.place_limit_order(&cid(2), "run", &btc(), Side::Buy, dec!(70_000_000), dec!(0.001)).await.unwrap();
    assert_eq!(r.ex.open_orders().await.unwrap().len(), 1);
    assert!(r.fake.auth_failures().is_empty(), "{:?}", r.fake.auth_failures());

    // A wrong secret is refused by the server and is fatal for the caller.
    let mut s = settings(&r.fake);
    s.secret_key = Some(ApiSecret::new("not-the-secret"));
    let bad = UpbitExchange::new(s, r.clock.clone()).unwrap();
    assert!(matches!(bad.balances().await, Err(ExchangeError::Fatal(m)) if m.contains("jwt_verification")));

    // A token whose query hash is for other parameters is refused too: the fake really checks the hash.
    let signer = Signer::new(&ApiSecret::new(ACCESS_KEY), &ApiSecret::new(SECRET_KEY));
    let token = signer.token(&Params::new().push("identifier", "a")).unwrap();
    let resp = reqwest::Client::new()
        .get(format!("{}/v1/order?identifier=b", r.fake.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(r.fake.auth_failures(), vec!["jwt_verification".to_owned(), "invalid_query_payload".to_owned()]);

    // Without keys, private calls fail before anything is sent.
    let before = r.fake.seen().len();
    let anon =
        UpbitExchange::new(UpbitSettings { rest_url: r.fake.url.clone(), ..Default::default() }, r.clock.clone())
            .unwrap();
    assert!(matches!(anon.balances().await, Err(ExchangeError::Fatal(_))));
    assert_eq!(r.fake.seen().len(), before);
    // Public endpoints need no keys.
    assert_eq!(anon.last_price(&btc()).await.unwrap(), dec!(80_012_345));
}

#[tokio::test]
async fn market_orders_use_upbit_order_types_and_come_back_with_fills() {
    let r = rig().await;
    market(&r.fake);
    // Buy: ord_type=price with the KRW amount (0.001 x 80 012 345 = 80 012.345 → 80 000 on the 50-won grid).
    let ack = r.ex.place_market_order(&cid(1), "run-1", &intent(Side::Buy, dec!(0.001))).await.unwrap();
    let p = &posts(&r.fake)[0];
    assert_eq!(get(p, "ord_type"), Some("price"));
    assert_eq!(get(p, "price"), Some("80000"));
    assert_eq!(get(p, "volume"), None);
    assert_eq!(get(p, "identifier"), Some("mcb-test-0001"));
    assert_eq!(ack.order.status, OrderStatus::Filled);
    assert_eq!(ack.order.run_id, "run-1");
    assert_eq!(ack.order.client_order_id, cid(1));
    let filled: Decimal = ack.fills.iter().map(|f| f.qty).sum();
    assert_eq!(filled, ack.order.filled_qty);
    assert_eq!(ack.fills.len(), 1, "80 000 KRW fits in the first ask level");
    let fee: Decimal = ack.fills.iter().map(|f| f.fee).sum();
    assert_eq!(fee, r.fake.orders()[0].paid_fee, "fees add up exactly");
    assert_eq!(ack.fills[0].price, dec!(80_001_000));
    let spent: Decimal = ack.fills.iter().map(|f| f.notional() + f.fee).sum();
    assert_eq!(r.fake.balance("KRW").0, dec!(1_000_000) - spent, "the fills are what the account paid");

    // Sell: ord_type=market with the volume.
    let ack = r.ex.place_market_order(&cid(2), "run-1", &intent(Side::Sell, dec!(0.0005))).await.unwrap();
    let p = &posts(&r.fake)[1];
    assert_eq!((get(p, "ord_type"), get(p, "volume"), get(p, "price")), (Some("market"), Some("0.0005"), None));
    assert_eq!(ack.order.status, OrderStatus::Filled);
    assert_eq!(ack.fills.len(), 2, "walked two bid levels");
    assert_eq!(ack.order.filled_qty, dec!(0.0005));

    // Below Upbit's 5 000 KRW minimum: refused here, nothing sent.
    let n = posts(&r.fake).len();
    let small = r.ex.place_market_order(&cid(3), "run-1", &intent(Side::Buy, dec!(0.00005))).await;
    assert!(matches!(small, Err(ExchangeError::Rejected(m)) if m.contains("minimum")));
    assert_eq!(posts(&r.fake).len(), n);

    // The order is found again by its client id, with the same fills.
    let again = r.ex.order(&btc(), &cid(2)).await.unwrap().unwrap();
    assert_eq!(
        again.fills.iter().map(|f| &f.trade_id).collect::<Vec<_>>(),
        ack.fills.iter().map(|f| &f.trade_id).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn limit_prices_are_moved_onto_the_krw_grid_before_sending() {
    let r = rig().await;
    market(&r.fake);
    let buy = r.ex.place_limit_order(&cid(1), "run", &btc(), Side::Buy, dec!(80_012_345), dec!(0.001)).await.unwrap();
    let sell = r.ex.place_limit_order(&cid(2), "run", &btc(), Side::Sell, dec!(80_012_345), dec!(0.001)).await.unwrap();
    let ps = posts(&r.fake);
    assert_eq!(get(&ps[0], "price"), Some("80012000"), "a buy rounds down");
    assert_eq!(get(&ps[1], "price"), Some("80013000"), "a sell rounds up");
    assert_eq!(get(&ps[0], "volume"), Some("0.001"));
    assert_eq!((buy.order.status, sell.order.status), (OrderStatus::New, OrderStatus::New));
    let small = r.ex.place_limit_order(&cid(3), "run", &btc(), Side::Buy, dec!(12_345.67), dec!(0.1)).await;
    assert!(small.is_err(), "1 234 KRW is below the minimum");
    let cheap = r.ex.place_limit_order(&cid(4), "run", &btc(), Side::Buy, dec!(7_003), dec!(1)).await.unwrap();
    assert_eq!(get(&posts(&r.fake)[2], "price"), Some("7000"), "5-won grid between 5 000 and 10 000");
    assert_eq!(cheap.order.status, OrderStatus::New);

    // The fake refuses what Upbit refuses: the same off-grid price sent raw is rejected.
    let raw = NewOrder {
        market: "KRW-BTC".into(),
        side: OrderSide::Bid,
        kind: OrderKind::Limit { price: dec!(80_012_345), volume: dec!(0.001) },
        identifier: "raw-1".into(),
    };
    let e = r.ex.rest().create_order(&raw).await.unwrap_err();
    assert_eq!(e.api_name(), Some("invalid_price_bid"));

    // Cancel by client id.
    let c = r.ex.cancel_order(&btc(), &cid(1)).await.unwrap().unwrap();
    assert_eq!(c.order.client_order_id, cid(1));
    assert_eq!(r.ex.open_orders().await.unwrap().len(), 2);
    assert!(r.ex.cancel_order(&btc(), &cid(99)).await.unwrap().is_none());
}

#[tokio::test]
async fn a_lost_answer_is_resolved_by_identifier_and_never_placed_twice() {
    let r = rig_with(|s| s.request_timeout_ms = 1_000).await;
    market(&r.fake);
    // The order is accepted but the answer comes after the client gave up.
    r.fake.push_fault("POST", "/v1/orders", Fault::SlowAfterAccept(Duration::from_secs(10)));
    let ack = r.ex.place_market_order(&cid(1), "run", &intent(Side::Buy, dec!(0.001))).await.unwrap();
    assert_eq!(ack.order.status, OrderStatus::Filled);
    assert_eq!(r.fake.orders_with_identifier("mcb-test-0001"), 1);

    // Placing the same id again returns the existing order: Upbit refuses the duplicate, the lookup resolves it.
    let again = r.ex.place_market_order(&cid(1), "run", &intent(Side::Buy, dec!(0.001))).await.unwrap();
    assert_eq!(again.order.exchange_order_id, ack.order.exchange_order_id);
    assert_eq!(r.fake.orders_with_identifier("mcb-test-0001"), 1);
    assert_eq!(posts(&r.fake).len(), 2, "the second attempt was sent and refused as a duplicate");

    // A 500 after the order was accepted: the same.
    r.fake.push_fault("POST", "/v1/orders", Fault::ServerErrorAfterAccept);
    let ack2 = r.ex.place_market_order(&cid(2), "run", &intent(Side::Sell, dec!(0.0005))).await.unwrap();
    assert_eq!(ack2.order.filled_qty, dec!(0.0005));
    assert_eq!(r.fake.orders_with_identifier("mcb-test-0002"), 1);

    // A 500 before anything was accepted: the lookup finds nothing, so retrying with the same id is safe.
    r.fake.push_fault("POST", "/v1/orders", Fault::ServerError);
    let e = r.ex.place_market_order(&cid(3), "run", &intent(Side::Sell, dec!(0.0005))).await.unwrap_err();
    assert!(matches!(e, ExchangeError::Retryable { .. }), "{e}");
    assert_eq!(r.fake.orders_with_identifier("mcb-test-0003"), 0);
    r.ex.place_market_order(&cid(3), "run", &intent(Side::Sell, dec!(0.0005))).await.unwrap();
    assert_eq!(r.fake.orders_with_identifier("mcb-test-0003"), 1);

    // A plain rejection (insufficient funds) stays a rejection after the lookup.
    let e = r.ex.place_market_order(&cid(4), "run", &intent(Side::Sell, dec!(5))).await.unwrap_err();
    assert!(matches!(e, ExchangeError::Rejected(ref m) if m.contains("insufficient_funds_ask")), "{e}");
    assert_eq!(r.fake.orders().len(), 3);
}

#[tokio::test]
async fn malformed_payloads_are_typed_errors_never_panics() {
    let r = rig().await;
    market(&r.fake);
    let hour = "2024-08-31T23:00:00";
    let candle = |o: &str, h: &str, l: &str, c: &str| {
        format!(
            r#"[{{"market":"KRW-BTC","candle_date_time_utc":"{hour}","opening_price":{o},"high_price":{h},"low_price":{l},"trade_price":{c},"candle_acc_trade_volume":1.5}}]"#
        )
    };
    let cases: Vec<(&str, &str, String)> = vec![
        ("GET", "/v1/ticker", r#"{"market":"#.into()),
        ("GET", "/v1/ticker", r#"[{"market":"KRW-BTC","trade_price":"abc"}]"#.into()),
        ("GET", "/v1/ticker", r#"[{"market":"KRW-ETH","trade_price":1}]"#.into()),
        ("GET", "/v1/ticker", "<html>maintenance</html>".into()),
        ("GET", "/v1/orderbook", r#"[{"market":"KRW-BTC","orderbook_units":[{"ask_price":null}]}]"#.into()),
        ("GET", "/v1/orderbook", r#"{"market":"KRW-BTC"}"#.into()),
        ("GET", "/v1/candles/minutes/60", candle("1", "2", "0.5", "1.5").replace(hour, "yesterday")),
        ("GET", "/v1/candles/minutes/60", candle("1", "0.9", "0.5", "1.5")),
        ("GET", "/v1/candles/minutes/60", candle("1", "2", "0.5", "true")),
        ("GET", "/v1/accounts", "{}".into()),
        ("GET", "/v1/accounts", r#"[{"currency":"KRW","balance":"1e","locked":"0"}]"#.into()),
        ("GET", "/v1/order", "[]".into()),
        (
            "GET",
            "/v1/order",
            r#"{"uuid":"u","side":"bid","ord_type":"price","state":"weird","market":"KRW-BTC","created_at":"2024-01-01T00:00:00+09:00","executed_volume":"0"}"#.into(),
        ),
        (
            "GET",
            "/v1/order",
            r#"{"uuid":"u","side":"up","ord_type":"price","state":"done","market":"KRW-BTC","created_at":"2024-01-01T00:00:00+09:00","executed_volume":"0"}"#.into(),
        ),
        ("GET", "/v1/orders/open", r#"[{"uuid":1}]"#.into()),
    ];
    let until = DateTime::parse_from_rfc3339("2024-09-01T00:00:00Z").unwrap().to_utc();
    for (method, path, body) in cases {
        r.fake.push_fault(method, path, Fault::Malformed(body.clone()));
        let res: Result<(), ExchangeError> = match path {
            "/v1/ticker" => r.ex.last_price(&btc()).await.map(drop),
            "/v1/orderbook" => r.ex.order_book(&btc(), 5).await.map(drop),
            "/v1/accounts" => r.ex.balances().await.map(drop),
            "/v1/order" => r.ex.order(&btc(), &cid(1)).await.map(drop),
            "/v1/orders/open" => r.ex.open_orders().await.map(drop),
            _ => r.ex.closed_candles(&btc(), "1h".parse().unwrap(), until, 1).await.map(drop),
        };
        assert!(matches!(res, Err(ExchangeError::Malformed(_))), "{path} {body}: {res:?}");
    }
    // A garbled answer to an order creation is an unknown outcome: looked up, not trusted, not re-sent blindly.
    r.fake.push_fault("POST", "/v1/orders", Fault::Malformed("{".into()));
    let e = r.ex.place_market_order(&cid(7), "run", &intent(Side::Buy, dec!(0.001))).await.unwrap_err();
    assert!(matches!(e, ExchangeError::Retryable { .. }), "{e}");
}

#[tokio::test]
async fn remaining_req_429_and_418_are_respected() {
    let r = rig().await;
    market(&r.fake);
    // The ticker group's second is spent after the first call: the next one waits for the next second.
    r.fake.script_remaining("ticker", &[0]);
    r.ex.last_price(&btc()).await.unwrap();
    assert!(r.pause.waits().is_empty());
    r.ex.last_price(&btc()).await.unwrap();
    assert_eq!(r.pause.waits(), vec![Duration::from_millis(750)], "waited from .250 to the next whole second");
    // Another group is not held back.
    r.fake.script_remaining("ticker", &[0]);
    r.ex.last_price(&btc()).await.unwrap();
    r.ex.order_book(&btc(), 5).await.unwrap();
    assert_eq!(r.pause.waits().len(), 1);

    // 429: retryable after the configured back-off, and the group rests that long before the next call.
    r.clock.advance(TimeDelta::seconds(5));
    r.fake.push_fault("GET", "/v1/ticker", Fault::TooManyRequests);
    let e = r.ex.last_price(&btc()).await.unwrap_err();
    assert!(matches!(e, ExchangeError::Retryable { retry_after, .. } if retry_after == Duration::from_secs(1)), "{e}");
    r.ex.last_price(&btc()).await.unwrap();
    assert_eq!(r.pause.waits().last(), Some(&Duration::from_secs(1)));

    // 418: fatal, and no request at all is sent until the block ends.
    r.fake.push_fault("GET", "/v1/orderbook", Fault::Teapot);
    assert!(matches!(r.ex.order_book(&btc(), 5).await, Err(ExchangeError::Fatal(_))));
    let sent = r.fake.seen().len();
    assert!(matches!(r.ex.last_price(&btc()).await, Err(ExchangeError::Fatal(_))));
    assert!(matches!(r.ex.balances().await, Err(ExchangeError::Fatal(_))));
    assert_eq!(r.fake.seen().len(), sent, "nothing sent during the block");
    r.clock.advance(TimeDelta::seconds(30));
    r.ex.last_price(&btc()).await.unwrap();
}

fn hourly(n: i64, start: DateTime<Utc>) -> Vec<Candle> {
    (0..n)
        .map(|i| {
            let base = Decimal::from(80_000_000 + i * 1000);
            Candle {
                open_time: start + TimeDelta::hours(i),
                open: base,
                high: base + dec!(5000),
                low: base - dec!(5000),
                close: base + dec!(1000),
                volume: dec!(0.12345678),
            }
        })
        .collect()
}

#[tokio::test]
async fn closed_candles_page_backwards_oldest_first_without_the_forming_bar() {
    let r = rig().await;
    let start = DateTime::parse_from_rfc3339("2024-09-10T00:00:00Z").unwrap().to_utc();
    let bars = hourly(500, start);
    r.fake.set_candles("KRW-BTC", 60, bars.clone());
    // The clock is inside bar 499 (still forming).
    r.clock.set(start + TimeDelta::hours(499) + TimeDelta::minutes(30));
    let far = start + TimeDelta::days(365);
    let got = r.ex.closed_candles(&btc(), "1h".parse().unwrap(), far, 300).await.unwrap();
    assert_eq!(got.len(), 300);
    assert_eq!(got.last(), Some(&bars[498]), "the forming bar is never returned");
    assert_eq!(got[0], bars[199]);
    assert!(got.windows(2).all(|w| w[0].open_time < w[1].open_time));
    let candle_calls: Vec<_> = r.fake.seen().into_iter().filter(|s| s.path.starts_with("/v1/candles")).collect();
    assert_eq!(candle_calls.len(), 2, "200 + 100");
    assert!(
        candle_calls.iter().all(|s| s.params.iter().any(|(k, v)| k == "count" && v.parse::<u32>().unwrap() <= 200))
    );

    // `until` in the past: bars closing at or before it.
    let until = start + TimeDelta::hours(10);
    let got = r.ex.closed_candles(&btc(), "1h".parse().unwrap(), until, 3).await.unwrap();
    assert_eq!(got, bars[7..10].to_vec());

    // 2h bars merged from hourly ones on UTC boundaries.
    let got = r.ex.closed_candles(&btc(), "2h".parse().unwrap(), until, 2).await.unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].open_time, bars[8].open_time);
    assert_eq!((got[1].open, got[1].close), (bars[8].open, bars[9].close));
    assert_eq!(got[1].high, bars[9].high);
    assert_eq!(got[1].volume, bars[8].volume + bars[9].volume);

    // History shorter than asked: all of it.
    let got = r.ex.closed_candles(&btc(), "1h".parse().unwrap(), start + TimeDelta::hours(2), 50).await.unwrap();
    assert_eq!(got, bars[0..2].to_vec());

    // Only KRW markets.
    let e = r.ex.closed_candles(&Symbol::new("BTCUSDT").unwrap(), "1h".parse().unwrap(), far, 1).await.unwrap_err();
    assert!(matches!(e, ExchangeError::Rejected(_)));
}

/// `mcbot --profile upbit run-once --stage all --mode paper` as a user runs it (the shipped profile: venue Upbit,
/// KRW amounts; the base URL from the environment): KRW markets, 1-minute bars from the fake's candles around the real clock, fills simulated on its order book,
/// and never an order sent to the venue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_once_in_paper_mode_against_the_fake_upbit() {
    let fake = FakeUpbit::start().await;
    // 1-minute bars from well before now until a few minutes after it: the binary runs on the system clock, and
    // the adapter serves only the bars closed by then.
    let now = Utc::now();
    let first = mcbot_stages::domain::Timeframe::from_minutes(1).unwrap().last_close(now) - TimeDelta::minutes(300);
    for (market, base, step) in [("KRW-BTC", dec!(90_000_000), dec!(1_000)), ("KRW-ETH", dec!(4_000_000), dec!(1_000))]
    {
        let bars: Vec<Candle> = (0..310i64)
            .map(|i| {
                // A steady climb (wicks of varying length): tsmom goes long on every bar, so Execution always
                // has something to size, whatever minute the binary runs in.
                let open = base + step * Decimal::from(2 * i);
                let close = open + step * Decimal::from(2);
                let wick = step * Decimal::from(1 + i % 3);
                Candle {
                    open_time: first + TimeDelta::minutes(i),
                    open,
                    high: close + wick,
                    low: open - wick,
                    close,
                    volume: dec!(1.5),
                }
            })
            .collect();
        let last = bars.last().unwrap().close;
        fake.set_candles(market, 1, bars);
        fake.set_ticker(market, last);
        let bids = (1..=20i64).map(|k| (last - step * Decimal::from(k), dec!(2))).collect();
        let asks = (1..=20i64).map(|k| (last + step * Decimal::from(k), dec!(2))).collect();
        fake.set_book(market, bids, asks);
    }

    let env = vec![
        ("MCBOT_EXCHANGE__UPBIT__REST_URL", fake.url.clone()),
        ("MCBOT_MARKET__SYMBOLS", r#"["KRW-BTC", "KRW-ETH"]"#.into()),
        ("MCBOT_MARKET__TIMEFRAME", "1m".into()),
        ("MCBOT_STRATEGY__PARAMS__LOOKBACK", "3".into()),
        ("MCBOT_PIPELINE__LOOKBACK_BARS", "10".into()),
    ];
    let doc = crate::support::cli::paper_run_once(&["--profile", "upbit"], env).await;
    for s in doc["stages"].as_array().unwrap() {
        assert_eq!(s["status"], "ok", "every stage ran clean on Upbit's data: {doc}");
    }
    assert!(!doc["orders"].as_array().unwrap().is_empty(), "the paper account traded on Upbit's book: {doc}");
    let paths: std::collections::BTreeSet<String> = fake.seen().into_iter().map(|s| s.path).collect();
    assert!(paths.contains("/v1/candles/minutes/1"), "bars came from the fake: {paths:?}");
    assert!(fake.orders().is_empty(), "paper never sends an order to the venue");
    assert!(!paths.iter().any(|p| p == "/v1/orders"), "no order request reached the venue: {paths:?}");
}

#[tokio::test]
async fn cancel_by_identifier_answers_open_filled_and_unknown_orders() {
    let r = rig().await;
    market(&r.fake);
    let deletes = || r.fake.seen().iter().filter(|s| s.method == "DELETE" && s.path == "/v1/order").count();
    let state = |n: u32| {
        let id = format!("mcb-test-{n:04}");
        r.fake.orders().into_iter().find(|o| o.identifier.as_deref() == Some(&id)).map(|o| o.state)
    };

    // An open limit order: cancelled, its KRW free again. Upbit's answer still reads `wait`; the adapter reads
    // the order again and reports what Upbit settled on.
    let open = r.ex.place_limit_order(&cid(1), "run", &btc(), Side::Buy, dec!(70_000_000), dec!(0.001)).await.unwrap();
    assert_eq!(open.order.status, OrderStatus::New);
    assert_eq!(r.fake.balance("KRW"), (dec!(930_000), dec!(70_000)));
    let c = r.ex.cancel_order(&btc(), &cid(1)).await.unwrap().expect("Upbit knows the identifier");
    assert_eq!((c.order.client_order_id.clone(), c.order.status), (cid(1), OrderStatus::Canceled));
    assert_eq!(c.order.exchange_order_id, open.order.exchange_order_id);
    assert!(c.fills.is_empty());
    assert_eq!(state(1).as_deref(), Some("cancel"));
    assert_eq!(r.fake.balance("KRW"), (dec!(1_000_000), dec!(0)));
    assert!(r.ex.open_orders().await.unwrap().is_empty());
    assert_eq!(deletes(), 1);

    // Cancelling it again: Upbit refuses (no longer open), the lookup answers with the final state.
    let again = r.ex.cancel_order(&btc(), &cid(1)).await.unwrap().expect("still known");
    assert_eq!(again.order.status, OrderStatus::Canceled);
    assert_eq!(deletes(), 2);

    // An identifier Upbit never saw: 404, so None.
    assert!(r.ex.cancel_order(&btc(), &cid(99)).await.unwrap().is_none());

    // A filled market order: its final state with its fills, nothing changed.
    let filled = r.ex.place_market_order(&cid(2), "run", &intent(Side::Sell, dec!(0.0005))).await.unwrap();
    assert_eq!(filled.order.status, OrderStatus::Filled);
    let before = (r.fake.balance("KRW"), r.fake.balance("BTC"));
    let c = r.ex.cancel_order(&btc(), &cid(2)).await.unwrap().expect("known");
    assert_eq!(c.order.status, OrderStatus::Filled);
    assert_eq!(
        c.fills.iter().map(|f| (&f.trade_id, f.qty)).collect::<Vec<_>>(),
        filled.fills.iter().map(|f| (&f.trade_id, f.qty)).collect::<Vec<_>>()
    );
    assert_eq!(state(2).as_deref(), Some("done"));
    assert_eq!((r.fake.balance("KRW"), r.fake.balance("BTC")), before);
    assert!(r.fake.auth_failures().is_empty(), "{:?}", r.fake.auth_failures());
}

#[tokio::test]
async fn a_cancel_whose_answer_is_lost_is_resolved_by_identifier() {
    let r = rig_with(|s| s.request_timeout_ms = 1_000).await;
    market(&r.fake);
    let state = |n: u32| {
        let id = format!("mcb-test-{n:04}");
        r.fake.orders().into_iter().find(|o| o.identifier.as_deref() == Some(&id)).map(|o| o.state).unwrap()
    };
    let rig = &r;
    let place = move |n: u32| async move {
        rig.ex.place_limit_order(&cid(n), "run", &btc(), Side::Buy, dec!(70_000_000), dec!(0.001)).await
    };
    let mut k = 0;

    // Upbit cancelled it but the answer was lost (500 after, or later than the client waits): found cancelled.
    for fault in [Fault::ServerErrorAfterAccept, Fault::SlowAfterAccept(Duration::from_secs(10))] {
        k += 1;
        place(k).await.unwrap();
        r.fake.push_fault("DELETE", "/v1/order", fault.clone());
        let c = r.ex.cancel_order(&btc(), &cid(k)).await.unwrap_or_else(|e| panic!("{fault:?}: {e}"));
        assert_eq!(c.map(|c| c.order.status), Some(OrderStatus::Canceled), "{fault:?}");
        assert_eq!(state(k), "cancel", "{fault:?}");
    }

    // Nothing was done (500 before, or an answer that is not an order): the lookup shows the order still open,
    // so the cancel is retryable, and sending it again cancels it.
    for fault in [Fault::ServerError, Fault::Malformed("{".into())] {
        k += 1;
        place(k).await.unwrap();
        r.fake.push_fault("DELETE", "/v1/order", fault.clone());
        let e = r.ex.cancel_order(&btc(), &cid(k)).await.unwrap_err();
        assert!(matches!(e, ExchangeError::Retryable { .. }), "{fault:?}: {e:?}");
        assert_eq!(state(k), "wait", "{fault:?}");
        let c = r.ex.cancel_order(&btc(), &cid(k)).await.unwrap().unwrap();
        assert_eq!(c.order.status, OrderStatus::Canceled, "{fault:?}");
    }

    // The answer lost and the lookup failing too: unknown. It did take effect; a later cancel reports it.
    k += 1;
    place(k).await.unwrap();
    r.fake.push_fault("DELETE", "/v1/order", Fault::ServerErrorAfterAccept);
    r.fake.push_fault("GET", "/v1/order", Fault::ServerError);
    let e = r.ex.cancel_order(&btc(), &cid(k)).await.unwrap_err();
    assert!(matches!(e, ExchangeError::Unknown(_)), "{e:?}");
    assert_eq!(state(k), "cancel");
    assert_eq!(r.ex.cancel_order(&btc(), &cid(k)).await.unwrap().unwrap().order.status, OrderStatus::Canceled);

    // Rate limited: nothing done, retryable.
    k += 1;
    place(k).await.unwrap();
    r.fake.push_fault("DELETE", "/v1/order", Fault::TooManyRequests);
    let e = r.ex.cancel_order(&btc(), &cid(k)).await.unwrap_err();
    assert!(matches!(e, ExchangeError::Retryable { .. }), "{e:?}");
    assert_eq!(state(k), "wait");
}
