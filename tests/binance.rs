//! The Binance spot adapter and its kline stream against the loopback fake Binance: signing, rules, closed
//! candles, the weight budget, 429/418, clock skew, malformed payloads, orders whose outcome is unknown, and a
//! WebSocket that drops and comes back.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::Method;
use chrono::{DateTime, Utc};
use mcbot::exchange::binance::payloads::Kline;
use mcbot::exchange::binance::rest::TradesQuery;
use mcbot::exchange::binance::{BarSource, BinanceError, BinanceExchange, BinanceSettings, ClosedBar, RiskHook};
use mcbot_stages::domain::{ClientOrderId, Decimal, OrderIntent, OrderStatus, RunId, Side, Symbol, Timeframe};
use mcbot_stages::pipeline::pretrade::Approved;
use mcbot_stages::ports::{Exchange, ExchangeError, NewEvent, OrderAck};
use mcbot_stages::{Clock, ManualClock, SystemClock};
use rust_decimal_macros::dec;
use tokio::sync::broadcast;

use crate::support::approval::approved;
use crate::support::fake_binance::{Commission, FakeBinance, FakeConfig, Fault, TokioClock};

const ORDER: &str = "/api/v3/order";

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2024-01-01T00:00:30Z").unwrap().to_utc()
}

fn btc() -> Symbol {
    Symbol::new("BTCUSDT").unwrap()
}

fn eth() -> Symbol {
    Symbol::new("ETHUSDT").unwrap()
}

fn one_minute() -> Timeframe {
    "1m".parse().unwrap()
}

/// A fake whose market moves a manual clock, with `tweak` applied to its config.
async fn fake_with(clock: &Arc<ManualClock>, tweak: impl FnOnce(&mut FakeConfig)) -> FakeBinance {
    let mut cfg = FakeConfig::new(clock.clone());
    cfg.market_clock = Some(clock.clone());
    tweak(&mut cfg);
    FakeBinance::start(cfg).await
}

fn adapter(settings: BinanceSettings, clock: Arc<dyn Clock>) -> BinanceExchange {
    BinanceExchange::new(settings, clock, None).expect("adapter builds")
}

/// An order intent as the pre-trade checks approve it (permissive limits: the adapter's rules are under test).
fn intent(symbol: &Symbol, side: Side, qty: Decimal, ref_price: Decimal) -> Approved<OrderIntent> {
    approved(OrderIntent {
        symbol: symbol.clone(),
        side,
        qty,
        ref_price,
        reduce_only: side == Side::Sell,
        reason: "test".into(),
    })
}

fn id(n: i64, symbol: &Symbol, side: Side) -> ClientOrderId {
    ClientOrderId::derive(&RunId::new("trading-cycle", t0() + chrono::Duration::minutes(n)), symbol, side.as_str())
}

fn events_hook() -> (RiskHook, Arc<Mutex<Vec<NewEvent>>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    (Arc::new(move |e| sink.lock().unwrap().push(e)), events)
}

/// Polls `cond` every 10 ms for up to 20 s of real time: a bound for a loaded machine, not a timing assertion.
async fn wait_until(what: &str, cond: impl Fn() -> bool) {
    for _ in 0..2_000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// The next closed bar from the stream, within 20 s.
async fn next_bar(rx: &mut broadcast::Receiver<ClosedBar>) -> ClosedBar {
    tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("a bar within 20 s")
        .expect("the stream is alive and the consumer keeps up")
}

/// The fake's trades of an order as the domain's fill ids, quantities and prices.
fn fake_fills(fake: &FakeBinance, order_id: i64) -> BTreeSet<(String, Decimal, Decimal)> {
    fake.trades().iter().filter(|t| t.order_id == order_id).map(|t| (t.id.to_string(), t.qty, t.price)).collect()
}

fn ack_fills(ack: &OrderAck) -> BTreeSet<(String, Decimal, Decimal)> {
    ack.fills.iter().map(|f| (f.trade_id.clone(), f.qty, f.price)).collect()
}

#[tokio::test]
async fn binance_endpoints_parse_into_domain_types_and_sign_correctly() {
    let clock = Arc::new(ManualClock::new(t0()));
    let fake = fake_with(&clock, |_| {}).await;
    let ex = adapter(fake.settings(), clock.clone());
    let rest = ex.rest();
    rest.ping().await.unwrap();
    assert_eq!(rest.time().await.unwrap(), t0());
    let inst = ex.instrument(&btc()).await.unwrap();
    assert_eq!((inst.tick_size, inst.step_size, inst.min_notional), (dec!(0.01), dec!(0.00001), dec!(5)));
    assert_eq!(ex.last_price(&btc()).await.unwrap(), fake.last_price("BTCUSDT"));
    let book = ex.order_book(&btc(), 10).await.unwrap();
    assert_eq!((book.bids.len(), book.asks.len()), (10, 10));
    assert!(book.bids[0].0 < book.asks[0].0);
    let balances = ex.balances().await.unwrap();
    assert!(balances.iter().any(|b| b.asset == "USDT" && b.free == dec!(1000000)));
    assert!(ex.open_orders().await.unwrap().is_empty());
    assert!(rest.my_trades(&btc(), &TradesQuery::default()).await.unwrap().is_empty());
    assert!(ex.order(&btc(), &id(0, &btc(), Side::Buy)).await.unwrap().is_none());
    assert!(matches!(ex.instrument(&Symbol::new("NOPEUSDT").unwrap()).await, Err(ExchangeError::Rejected(_))));

    // A wrong secret is refused by the fake's signature check, mapped to Fatal, and raised as a risk event.
    let (hook, events) = events_hook();
    let mut bad = fake.settings();
    bad.api_secret = Some(mcbot::exchange::binance::Secret::new("wrong"));
    let wrong = BinanceExchange::new(bad, clock.clone(), Some(hook)).unwrap();
    assert!(matches!(wrong.balances().await, Err(ExchangeError::Fatal(_))));
    assert_eq!(events.lock().unwrap()[0].kind, mcbot_stages::ports::EventKind::Banned);
    // Market data needs no key at all.
    let mut anonymous = fake.settings();
    anonymous.api_key = None;
    anonymous.api_secret = None;
    let anonymous = adapter(anonymous, clock.clone());
    assert!(anonymous.last_price(&btc()).await.is_ok());
    assert!(matches!(anonymous.balances().await, Err(ExchangeError::Fatal(m)) if m.contains("api_key")));
}

#[tokio::test]
async fn binance_closed_candles_drop_the_forming_bar_and_page_ranges_over_1000() {
    let clock = Arc::new(ManualClock::new(t0()));
    let fake = fake_with(&clock, |c| c.history_bars = 2_500).await;
    let ex = adapter(fake.settings(), clock.clone());
    let history = fake.candles("BTCUSDT");
    let bars = ex.closed_candles(&btc(), one_minute(), clock.now(), 1_500).await.unwrap();
    assert_eq!(bars.len(), 1_500);
    assert_eq!(bars, history[history.len() - 1_500..], "exactly the closed bars, forming bar dropped");
    let klines_requests = fake.requests().iter().filter(|r| r.path == "/api/v3/klines").count();
    assert!(klines_requests >= 2, "a range over 1000 bars pages ({klines_requests} requests)");
    // `until` in the past: bars closed at or before it.
    let until = history[100].open_time + chrono::Duration::seconds(90);
    let bars = ex.closed_candles(&btc(), one_minute(), until, 3).await.unwrap();
    assert_eq!(bars, history[98..=100]);
    // A bar missing at the exchange is missing from the answer, never invented.
    fake.omit_kline("BTCUSDT", history[2_000].open_time);
    let range = ex.candles_between(&btc(), one_minute(), history[0].open_time, history[2_499].open_time).await.unwrap();
    assert_eq!(range.len(), 2_499);
    assert!(range.iter().all(|c| c.open_time != history[2_000].open_time));
    // Longer timeframes come from Binance's own klines.
    let hourly = ex.closed_candles(&btc(), "1h".parse().unwrap(), clock.now(), 10).await.unwrap();
    assert!(!hourly.is_empty() && hourly.iter().all(|c| c.close_time("1h".parse().unwrap()) <= clock.now()));
}

#[tokio::test(start_paused = true)]
async fn binance_weight_budget_is_never_exceeded() {
    let clock = Arc::new(TokioClock::new(t0()));
    let mut cfg = FakeConfig::new(clock.clone());
    cfg.history_bars = 50;
    let fake = FakeBinance::start(cfg).await;
    let mut settings = fake.settings();
    settings.weight_budget_per_min = 60;
    settings.request_timeout_ms = 3_600_000;
    let ex = Arc::new(adapter(settings, clock.clone()));
    // Another program on the same IP already used 30 this minute: the header tells the adapter.
    fake.consume_weight(30);
    let started = tokio::time::Instant::now();
    let mut tasks = Vec::new();
    for i in 0..4 {
        let ex = ex.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..25 {
                let symbol = if i % 2 == 0 { btc() } else { eth() };
                ex.last_price(&symbol).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let windows = fake.weight_by_window();
    let total: u32 = windows.values().sum();
    assert_eq!(total, 30 + 100 * 2);
    assert!(windows.values().all(|w| *w <= 60), "weight per minute: {windows:?}");
    assert!(fake.requests().iter().all(|r| r.status != 429), "never rate limited");
    assert!(windows.len() >= 4 && started.elapsed() >= Duration::from_secs(120), "the budget made it wait");
}

#[tokio::test(start_paused = true)]
async fn binance_after_418_no_request_is_sent_until_the_ban_ends() {
    let clock = Arc::new(TokioClock::new(t0()));
    let mut cfg = FakeConfig::new(clock.clone());
    cfg.history_bars = 50;
    let fake = FakeBinance::start(cfg).await;
    let (hook, events) = events_hook();
    let mut settings = fake.settings();
    settings.request_timeout_ms = 3_600_000;
    let ex = BinanceExchange::new(settings, clock.clone(), Some(hook)).unwrap();
    ex.instrument(&btc()).await.unwrap();
    fake.fault_next("/api/v3/ticker/price", Fault::Ban { retry_after_secs: 120 });
    let err = ex.last_price(&btc()).await.unwrap_err();
    assert!(matches!(&err, ExchangeError::Fatal(m) if m.contains("banned until")), "{err}");
    assert_eq!(events.lock().unwrap().len(), 1);
    assert_eq!(events.lock().unwrap()[0].kind, mcbot_stages::ports::EventKind::Banned);
    let sent = fake.request_count();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(matches!(ex.last_price(&btc()).await, Err(ExchangeError::Fatal(_))));
        assert!(matches!(ex.balances().await, Err(ExchangeError::Fatal(_))));
        let order = intent(&btc(), Side::Buy, dec!(0.01), dec!(40000));
        let placed = ex.place_market_order(&id(1, &btc(), Side::Buy), "r", &order).await;
        assert!(matches!(placed, Err(ExchangeError::Fatal(_))));
        assert!(matches!(ex.closed_candles(&btc(), one_minute(), clock.now(), 5).await, Err(ExchangeError::Fatal(_))));
    }
    assert_eq!(fake.request_count(), sent, "nothing left the adapter during the ban");
    assert_eq!(fake.requests_during_ban(), 0);
    tokio::time::sleep(Duration::from_secs(31)).await;
    assert_eq!(ex.last_price(&btc()).await.unwrap(), fake.last_price("BTCUSDT"));
    assert_eq!(fake.requests_during_ban(), 0);
}

#[tokio::test(start_paused = true)]
async fn binance_429_retry_after_is_honoured() {
    let clock = Arc::new(TokioClock::new(t0()));
    let fake = FakeBinance::start(FakeConfig::new(clock.clone())).await;
    let mut settings = fake.settings();
    settings.request_timeout_ms = 3_600_000;
    let ex = adapter(settings, clock.clone());
    fake.fault_next("/api/v3/ticker/price", Fault::RateLimit { retry_after_secs: 7 });
    let err = ex.last_price(&btc()).await.unwrap_err();
    assert!(matches!(err, ExchangeError::Retryable { retry_after, .. } if retry_after == Duration::from_secs(7)));
    let limited_at = clock.now();
    ex.last_price(&btc()).await.unwrap();
    let requests = fake.requests();
    let last = requests.last().unwrap();
    assert_eq!(last.status, 200);
    assert!(last.at - limited_at >= chrono::Duration::seconds(7), "sent {} after the 429", last.at - limited_at);
}

#[tokio::test]
async fn binance_clock_skew_is_answered_by_one_resync() {
    let clock = Arc::new(ManualClock::new(t0()));
    let fake = fake_with(&clock, |_| {}).await;
    let ex = adapter(fake.settings(), clock.clone());
    ex.balances().await.unwrap();
    fake.set_clock_skew_ms(12_000);
    ex.balances().await.unwrap();
    let tail: Vec<(String, u16)> =
        fake.requests().iter().rev().take(3).rev().map(|r| (r.path.clone(), r.status)).collect();
    assert_eq!(
        tail,
        [("/api/v3/account".into(), 400), ("/api/v3/time".into(), 200), ("/api/v3/account".into(), 200)],
        "-1021, resync, retry"
    );
    assert_eq!(ex.rest().time_sync().offset_ms(), 12_000);
}

#[tokio::test]
async fn binance_rules_are_applied_before_submit() {
    let clock = Arc::new(ManualClock::new(t0()));
    let fake = fake_with(&clock, |_| {}).await;
    let ex = adapter(fake.settings(), clock.clone());
    let price = fake.last_price("BTCUSDT");
    let ack = ex
        .place_market_order(&id(1, &btc(), Side::Buy), "run-1", &intent(&btc(), Side::Buy, dec!(0.0123456789), price))
        .await
        .unwrap();
    assert_eq!(fake.orders()[0].orig_qty, dec!(0.01234), "rounded down to the step before sending");
    assert_eq!(ack.order.qty, dec!(0.01234));
    assert_eq!(ack.order.run_id, "run-1");
    let posts = || fake.requests().iter().filter(|r| r.method == "POST").count();
    assert_eq!(posts(), 1);
    let under =
        ex.place_market_order(&id(2, &btc(), Side::Buy), "r", &intent(&btc(), Side::Buy, dec!(0.0001), price)).await;
    assert!(matches!(under, Err(ExchangeError::Rejected(m)) if m.contains("minimum notional")));
    let dust =
        ex.place_market_order(&id(3, &btc(), Side::Buy), "r", &intent(&btc(), Side::Buy, dec!(0.000001), price)).await;
    assert!(matches!(dust, Err(ExchangeError::Rejected(_))));
    assert_eq!(posts(), 1, "refused orders cost no request");
    // Binance's own refusal (insufficient balance) is a rejection too.
    fake.set_balance("USDT", dec!(1));
    let broke =
        ex.place_market_order(&id(4, &btc(), Side::Buy), "r", &intent(&btc(), Side::Buy, dec!(0.01), price)).await;
    assert!(matches!(broke, Err(ExchangeError::Rejected(m)) if m.contains("insufficient balance")));
}

#[tokio::test]
async fn binance_fills_carry_trade_ids_and_fees_in_quote() {
    let clock = Arc::new(ManualClock::new(t0()));
    let fake = fake_with(&clock, |c| c.level_qty = dec!(0.01)).await;
    let ex = adapter(fake.settings(), clock.clone());
    let price = fake.last_price("BTCUSDT");
    // A buy walks three levels; its fee is charged in BTC and valued at each fill's price.
    let buy = ex
        .place_market_order(&id(1, &btc(), Side::Buy), "r", &intent(&btc(), Side::Buy, dec!(0.025), price))
        .await
        .unwrap();
    assert_eq!(buy.order.status, OrderStatus::Filled);
    assert_eq!(buy.fills.len(), 3);
    assert_eq!(ack_fills(&buy), fake_fills(&fake, 1));
    for (f, t) in buy.fills.iter().zip(fake.trades()) {
        assert_eq!(t.commission_asset, "BTC");
        assert_eq!(f.fee, t.commission * t.price);
    }
    assert_eq!(buy.order.filled_qty, buy.fills.iter().map(|f| f.qty).sum::<Decimal>());
    // A sell pays in USDT: taken as is.
    let sell = ex
        .place_market_order(&id(2, &btc(), Side::Sell), "r", &intent(&btc(), Side::Sell, dec!(0.005), price))
        .await
        .unwrap();
    let t = fake.trades().into_iter().find(|t| t.order_id == 2).unwrap();
    assert_eq!((t.commission_asset.as_str(), sell.fills[0].fee), ("USDT", t.commission));
    // A partial fill (liquidity ran out) ends final with every fill it had.
    fake.fault_next_n(Some(Method::POST), ORDER, Fault::PartialFill { percent: 40 }, 1);
    let part = ex
        .place_market_order(&id(3, &btc(), Side::Buy), "r", &intent(&btc(), Side::Buy, dec!(0.05), price))
        .await
        .unwrap();
    assert_eq!(part.order.status, OrderStatus::Canceled);
    assert_eq!(part.order.filled_qty, dec!(0.02));
    assert_eq!(ack_fills(&part), fake_fills(&fake, 3));
}

#[tokio::test]
async fn binance_fees_in_bnb_are_not_guessed() {
    let clock = Arc::new(ManualClock::new(t0()));
    let fake = fake_with(&clock, |c| c.commission = Commission::Bnb).await;
    let ex = adapter(fake.settings(), clock.clone());
    let price = fake.last_price("BTCUSDT");
    let ack = ex
        .place_market_order(&id(1, &btc(), Side::Buy), "r", &intent(&btc(), Side::Buy, dec!(0.01), price))
        .await
        .unwrap();
    assert_eq!(ack.fills[0].fee, Decimal::ZERO);
    assert!(fake.trades()[0].commission > Decimal::ZERO);
}

#[tokio::test]
async fn binance_unknown_outcomes_are_looked_up_and_never_placed_twice() {
    let clock = Arc::new(ManualClock::new(t0()));
    let fake = fake_with(&clock, |_| {}).await;
    let mut settings = fake.settings();
    settings.request_timeout_ms = 1_000;
    let ex = adapter(settings, clock.clone());
    let price = fake.last_price("BTCUSDT");
    let cases = [
        Fault::ServerErrorAfter,
        Fault::Timeout,
        Fault::Malformed,
        Fault::DropConnection,
        Fault::DuplicateAfterAccept,
        Fault::ServerErrorBefore,
    ];
    for (n, fault) in cases.into_iter().enumerate() {
        let cid = id(n as i64, &btc(), Side::Buy);
        fake.fault_next_n(Some(Method::POST), ORDER, fault.clone(), 1);
        let ack = ex
            .place_market_order(&cid, "r", &intent(&btc(), Side::Buy, dec!(0.01), price))
            .await
            .unwrap_or_else(|e| panic!("{fault:?}: {e}"));
        let placed = fake.orders_with_client_id(cid.as_str());
        assert_eq!(placed.len(), 1, "{fault:?}: exactly one order");
        assert_eq!(ack.order.exchange_order_id, Some(placed[0].order_id.to_string()), "{fault:?}");
        assert_eq!(ack_fills(&ack), fake_fills(&fake, placed[0].order_id), "{fault:?}");
    }
}

#[tokio::test]
async fn binance_restart_with_an_order_in_flight_finds_it_by_client_id() {
    let clock = Arc::new(ManualClock::new(t0()));
    let fake = fake_with(&clock, |_| {}).await;
    let price = fake.last_price("BTCUSDT");
    let cid = id(7, &btc(), Side::Buy);
    // The first process: its lookup before placing finds nothing, Binance accepts the order but the answer is
    // lost, and every lookup after that fails too: the process dies not knowing.
    let mut first = fake.settings();
    first.order_lookup_attempts = 2;
    let before = adapter(first, clock.clone());
    fake.fault_next_n(Some(Method::POST), ORDER, Fault::ServerErrorAfter, 1);
    fake.fault_after(Some(Method::GET), ORDER, 1, Fault::ServerErrorBefore, 2);
    let lost = before.place_market_order(&cid, "run-7", &intent(&btc(), Side::Buy, dec!(0.01), price)).await;
    assert!(matches!(lost, Err(ExchangeError::Unknown(_))), "{lost:?}");
    assert_eq!(fake.orders_with_client_id(cid.as_str()).len(), 1);
    drop(before);

    // The restarted process: a new adapter, no memory. Asked to place the same id, it finds the order instead.
    let after = adapter(fake.settings(), clock.clone());
    let found = after.order(&btc(), &cid).await.unwrap().expect("found by client id");
    assert_eq!(found.order.status, OrderStatus::Filled);
    let again = after.place_market_order(&cid, "run-7", &intent(&btc(), Side::Buy, dec!(0.01), price)).await.unwrap();
    assert_eq!(fake.orders_with_client_id(cid.as_str()).len(), 1, "not placed again");
    assert_eq!(again.order.exchange_order_id, found.order.exchange_order_id);
    assert_eq!(ack_fills(&again), fake_fills(&fake, 1));
    assert_eq!(fake.requests().iter().filter(|r| r.method == "POST").count(), 1);
}

#[tokio::test]
async fn binance_every_malformed_payload_is_a_typed_error() {
    let clock = Arc::new(ManualClock::new(t0()));
    let fake = fake_with(&clock, |_| {}).await;
    let ex = adapter(fake.settings(), clock.clone());
    ex.instrument(&btc()).await.unwrap();
    ex.balances().await.unwrap();
    let garbage = ["", "{", "<html>502 Bad Gateway</html>", "null", "[1,2", "{\"code\":"];
    let wrong_shapes: [(&str, &str); 9] = [
        ("/api/v3/ticker/price", r#"{"symbol":"BTCUSDT","price":40000.5}"#),
        ("/api/v3/ticker/price", r#"{"symbol":"BTCUSDT","price":"4e4x"}"#),
        ("/api/v3/klines", r#"[[1,"1","1","1"]]"#),
        ("/api/v3/klines", r#"[[9999999999999999,"1","1","1","1","1",1]]"#),
        ("/api/v3/depth", r#"{"lastUpdateId":1,"bids":[["1"]],"asks":[]}"#),
        ("/api/v3/account", r#"{"balances":[{"asset":"BTC","free":null,"locked":"0"}]}"#),
        ("/api/v3/openOrders", r#"[{"symbol":"BTCUSDT"}]"#),
        ("/api/v3/openOrders", r#"[{"symbol":"BTCUSDT","orderId":1,"clientOrderId":"x","status":"WEIRD"}]"#),
        ("/api/v3/time", r#"{"serverTime":"soon"}"#),
    ];
    let mut cases: Vec<(&str, String)> = wrong_shapes.iter().map(|(p, b)| (*p, b.to_string())).collect();
    for path in ["/api/v3/ticker/price", "/api/v3/klines", "/api/v3/depth", "/api/v3/account", "/api/v3/openOrders"] {
        cases.extend(garbage.iter().map(|g| (path, g.to_string())));
    }
    for (path, body) in cases {
        fake.fault_next(path, Fault::Body { status: 200, body: body.clone() });
        let result: Result<(), ExchangeError> = match path {
            "/api/v3/ticker/price" => ex.last_price(&btc()).await.map(drop),
            "/api/v3/klines" => ex.closed_candles(&btc(), one_minute(), clock.now(), 5).await.map(drop),
            "/api/v3/depth" => ex.order_book(&btc(), 5).await.map(drop),
            "/api/v3/account" => ex.balances().await.map(drop),
            "/api/v3/openOrders" => ex.open_orders().await.map(drop),
            "/api/v3/time" => ex.rest().time().await.map(drop).map_err(ExchangeError::from),
            _ => unreachable!(),
        };
        assert!(matches!(result, Err(ExchangeError::Malformed(_))), "{path} {body:?}: {result:?}");
    }
    // Error bodies that are not Binance's JSON are still typed by their status.
    fake.fault_next("/api/v3/ticker/price", Fault::Body { status: 502, body: "<html>".into() });
    assert!(matches!(ex.last_price(&btc()).await, Err(ExchangeError::Retryable { .. })));
    fake.fault_next("/api/v3/ticker/price", Fault::Body { status: 400, body: "nope".into() });
    assert!(matches!(ex.last_price(&btc()).await, Err(ExchangeError::Rejected(_))));
    // An unreadable answer to an order means "outcome unknown" at the raw layer...
    fake.fault_next(ORDER, Fault::Body { status: 200, body: "{\"symbol\":".into() });
    let raw = ex
        .rest()
        .new_order(&mcbot::exchange::binance::rest::NewOrder {
            symbol: btc(),
            side: Side::Buy,
            quantity: dec!(0.01),
            client_order_id: id(1, &btc(), Side::Buy),
        })
        .await;
    assert!(matches!(raw, Err(BinanceError::OutcomeUnknown(_))), "{raw:?}");
    // ... and the raw kline decoder refuses what the REST layer would.
    assert!(serde_json::from_str::<Vec<Kline>>(r#"[[1,"1","1","1","1","1"]]"#).is_err());
}

#[tokio::test]
async fn binance_many_orders_with_random_faults_duplicate_nothing_and_lose_no_fill() {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut cfg = FakeConfig::new(clock.clone());
    cfg.history_bars = 50;
    cfg.level_qty = dec!(0.02);
    cfg.timeout_delay = Duration::from_millis(1_500);
    let fake = FakeBinance::start(cfg).await;
    let mut settings = fake.settings();
    settings.request_timeout_ms = 1_000;
    settings.order_lookup_delay_ms = 1;
    let ex = adapter(settings, clock.clone());
    fake.set_random_faults(0.10, 2024);
    let symbols = [btc(), eth()];
    let mut acks: BTreeMap<ClientOrderId, OrderAck> = BTreeMap::new();
    let mut rejected = 0;
    for n in 0..80i64 {
        let symbol = &symbols[(n % 2) as usize];
        let side = if n % 3 == 2 { Side::Sell } else { Side::Buy };
        let price = fake.last_price(symbol.as_str());
        let qty = if symbol == &btc() { Decimal::new(500 + n * 37 % 4_000, 5) } else { Decimal::new(5 + n % 40, 2) };
        let cid = id(n, symbol, side);
        let order = intent(symbol, side, qty, price);
        // What Execution does: retry the same id after a retryable error, look it up after an unknown one.
        let mut outcome = None;
        for _ in 0..30 {
            match ex.place_market_order(&cid, "run", &order).await {
                Ok(ack) => {
                    outcome = Some(ack);
                    break;
                }
                Err(ExchangeError::Unknown(_)) => {
                    if let Ok(Some(ack)) = ex.order(symbol, &cid).await {
                        outcome = Some(ack);
                        break;
                    }
                }
                Err(ExchangeError::Rejected(why)) => {
                    panic!("order {n} rejected: {why}");
                }
                Err(ExchangeError::Retryable { .. } | ExchangeError::Malformed(_)) => {}
                Err(ExchangeError::Fatal(why)) => panic!("fatal: {why}"),
            }
        }
        match outcome {
            Some(ack) => {
                acks.insert(cid, ack);
            }
            None => rejected += 1,
        }
    }
    fake.clear_faults();
    let injected = fake.faults_injected();
    assert!(injected.values().sum::<u64>() >= 15, "faults were injected: {injected:?}");
    assert_eq!(rejected, 0, "every order was eventually resolved");
    // Zero duplicates: one exchange order per client id, and every exchange order is one we know.
    let orders = fake.orders();
    let ids: BTreeSet<&str> = orders.iter().map(|o| o.client_order_id.as_str()).collect();
    assert_eq!(ids.len(), orders.len(), "a client id was placed twice");
    assert_eq!(orders.len(), acks.len());
    // Zero lost fills: our view of each order equals the fake's, fill by fill.
    for o in &orders {
        let ack = &acks[&ClientOrderId::from_stored(o.client_order_id.clone())];
        assert_eq!(ack.order.exchange_order_id, Some(o.order_id.to_string()));
        assert_eq!(ack.order.filled_qty, o.executed_qty);
        assert_eq!(ack_fills(ack), fake_fills(&fake, o.order_id), "fills of {}", o.client_order_id);
    }
    let trades_seen: usize = acks.values().map(|a| a.fills.len()).sum();
    assert_eq!(trades_seen, fake.trades().len());
}

// ---- the kline stream ----

fn stream_fake_config(c: &mut FakeConfig) {
    c.history_bars = 100;
}

#[tokio::test]
async fn binance_stream_dropped_mid_bar_and_restored_three_bars_later_delivers_every_bar_once() {
    let clock = Arc::new(ManualClock::new(t0()));
    let fake = fake_with(&clock, stream_fake_config).await;
    let ex = adapter(fake.settings(), clock.clone());
    let stream = ex.start_stream(vec![btc(), eth()], one_minute());
    let mut rx = stream.subscribe();
    let mut seen: BTreeMap<Symbol, Vec<ClosedBar>> = BTreeMap::new();
    let mut take = |bar: ClosedBar| seen.entry(bar.symbol.clone()).or_default().push(bar);
    // Warm-up: the last 20 closed bars of each symbol.
    for _ in 0..40 {
        take(next_bar(&mut rx).await);
    }
    wait_until("stream connected", || fake.ws_connections() == 1).await;
    for _ in 0..2 {
        fake.advance_bar();
        for _ in 0..2 {
            take(next_bar(&mut rx).await);
        }
    }
    // Mid-bar: an update of the forming bar arrives, then the socket dies and the server refuses reconnects.
    fake.push_forming_update();
    fake.ws_set_available(false);
    fake.ws_drop_all();
    wait_until("stream noticed the drop", || !stream.stats().connected).await;
    for _ in 0..3 {
        fake.advance_bar();
    }
    fake.ws_set_available(true);
    for _ in 0..6 {
        take(next_bar(&mut rx).await);
    }
    wait_until("stream reconnected", || fake.ws_connections() == 1).await;
    fake.advance_bar();
    for _ in 0..2 {
        take(next_bar(&mut rx).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(matches!(rx.try_recv(), Err(broadcast::error::TryRecvError::Empty)), "no bar delivered twice");
    for symbol in [btc(), eth()] {
        let history = fake.candles(symbol.as_str());
        let got: Vec<_> = seen[&symbol].iter().map(|b| b.candle.clone()).collect();
        assert_eq!(got, history[history.len() - 26..], "{symbol}: every bar once, in order, as the exchange has it");
        let sources: Vec<BarSource> = seen[&symbol].iter().map(|b| b.source).collect();
        assert_eq!(&sources[22..25], &[BarSource::Backfill; 3], "{symbol}: the outage was backfilled over REST");
        assert_eq!(sources[25], BarSource::Stream);
    }
    let stats = stream.stats();
    assert!(stats.reconnects >= 1 && stats.connected, "{stats:?}");
    assert_eq!(stats.last_message_age.len(), 2);
    // The cache serves Analysis' lookback without a REST call.
    let klines = || fake.requests().iter().filter(|r| r.path == "/api/v3/klines").count();
    let before = klines();
    let bars = ex.closed_candles(&btc(), one_minute(), clock.now(), 25).await.unwrap();
    assert_eq!(bars, fake.candles("BTCUSDT")[fake.candles("BTCUSDT").len() - 25..]);
    assert_eq!(klines(), before, "served from the stream cache");
    stream.shutdown().await;
}

#[tokio::test]
async fn binance_stream_backfills_a_missed_event_and_survives_garbage() {
    let clock = Arc::new(ManualClock::new(t0()));
    let fake = fake_with(&clock, stream_fake_config).await;
    let mut settings = fake.settings();
    settings.stream.warmup_bars = 3;
    let ex = adapter(settings, clock.clone());
    let stream = ex.start_stream(vec![btc()], one_minute());
    let mut rx = stream.subscribe();
    for _ in 0..3 {
        next_bar(&mut rx).await;
    }
    wait_until("stream connected", || fake.ws_connections() == 1).await;
    fake.ws_send_raw("{not json");
    fake.ws_send_raw(r#"{"stream":"btcusdt@kline_1m","data":{"e":"kline","k":{"t":"x"}}}"#);
    fake.skip_ws_bars(1);
    fake.advance_bar();
    fake.advance_bar();
    let a = next_bar(&mut rx).await;
    let b = next_bar(&mut rx).await;
    let history = fake.candles("BTCUSDT");
    assert_eq!([a.candle, b.candle], history[history.len() - 2..]);
    assert_eq!(a.source, BarSource::Backfill, "the skipped bar came over REST, before the next one");
    assert_eq!(b.source, BarSource::Stream);
    assert_eq!(stream.stats().malformed_messages, 2);
    // Pings are answered with the same payload.
    fake.ws_ping(b"are-you-there");
    wait_until("pong received", || fake.pongs().contains(&b"are-you-there".to_vec())).await;
    stream.shutdown().await;
}

#[tokio::test]
async fn binance_stream_renews_its_connection_before_the_24h_cut() {
    let clock = Arc::new(ManualClock::new(t0()));
    let fake = fake_with(&clock, stream_fake_config).await;
    let mut settings = fake.settings();
    settings.stream.max_connection_age_secs = 3_600;
    settings.stream.warmup_bars = 2;
    let ex = adapter(settings, clock.clone());
    let stream = ex.start_stream(vec![btc()], one_minute());
    wait_until("stream connected", || fake.ws_connects() == 1 && stream.stats().connected).await;
    clock.advance(chrono::Duration::minutes(61));
    wait_until("renewed", || fake.ws_connects() == 2).await;
    let stats = stream.stats();
    assert_eq!((stats.planned_reconnects, stats.reconnects), (1, 1), "{stats:?}");
    stream.shutdown().await;
}

#[tokio::test]
async fn binance_stream_aggregates_1m_bars_to_5m_on_utc_boundaries() {
    let clock = Arc::new(ManualClock::new(DateTime::parse_from_rfc3339("2024-01-01T00:02:30Z").unwrap().to_utc()));
    let fake = fake_with(&clock, stream_fake_config).await;
    let mut settings = fake.settings();
    settings.stream.aggregate_from_1m = true;
    settings.stream.warmup_bars = 4;
    let ex = adapter(settings, clock.clone());
    let five: Timeframe = "5m".parse().unwrap();
    let stream = ex.start_stream(vec![btc()], five);
    let mut rx = stream.subscribe();
    let warm: Vec<ClosedBar> =
        vec![next_bar(&mut rx).await, next_bar(&mut rx).await, next_bar(&mut rx).await, next_bar(&mut rx).await];
    assert_eq!(warm[3].candle.open_time, DateTime::parse_from_rfc3339("2023-12-31T23:55:00Z").unwrap().to_utc());
    wait_until("stream connected", || fake.ws_connections() == 1).await;
    // 00:02 .. 00:04 close: the 00:00 bucket completes with the 00:04 minute.
    for _ in 0..3 {
        fake.advance_bar();
    }
    let bar = next_bar(&mut rx).await;
    assert_eq!(bar.candle.open_time, DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z").unwrap().to_utc());
    assert_eq!(bar.timeframe, five);
    let minutes: Vec<_> = fake.candles("BTCUSDT").into_iter().filter(|c| c.open_time >= bar.candle.open_time).collect();
    assert_eq!(minutes.len(), 5);
    let expected = mcbot::exchange::binance::aggregate::combine(&minutes, 5).unwrap();
    assert_eq!(bar.candle, expected);
    assert_eq!(bar.source, BarSource::Stream);
    stream.shutdown().await;
}

// ---- cancellation ----

#[tokio::test]
async fn binance_cancel_closes_an_open_order_and_answers_final_and_unknown_ids() {
    let clock = Arc::new(ManualClock::new(t0()));
    let fake = fake_with(&clock, |_| {}).await;
    let ex = adapter(fake.settings(), clock.clone());
    let price = fake.last_price("BTCUSDT");
    let below = price - dec!(1000);
    let deletes = || fake.requests().iter().filter(|r| r.method == "DELETE").count();

    // An order resting on the book: cancelled, its funds free again.
    let open = id(1, &btc(), Side::Buy);
    let usdt = fake.balances()["USDT"];
    let order_id = fake.rest_limit_order("BTCUSDT", open.as_str(), Side::Buy, dec!(0.01), below, Decimal::ZERO);
    assert_eq!(fake.locked()["USDT"], dec!(0.01) * below);
    assert_eq!(ex.open_orders().await.unwrap().len(), 1);
    let c = ex.cancel_order(&btc(), &open).await.unwrap().expect("Binance knows the order");
    assert_eq!(c.order.client_order_id, open, "our id, not the cancel's own clientOrderId");
    assert_eq!((c.order.status, c.order.filled_qty, c.order.qty), (OrderStatus::Canceled, dec!(0), dec!(0.01)));
    assert_eq!(c.order.exchange_order_id, Some(order_id.to_string()));
    assert!(c.fills.is_empty());
    assert_eq!(fake.orders_with_client_id(open.as_str())[0].status, "CANCELED");
    assert_eq!((fake.balances()["USDT"], fake.locked()["USDT"]), (usdt, dec!(0)));
    assert!(ex.open_orders().await.unwrap().is_empty());
    assert_eq!(deletes(), 1);

    // Cancelled again, by a restarted process: Binance says -2011, the lookup gives the final state.
    let fresh = adapter(fake.settings(), clock.clone());
    let again = fresh.cancel_order(&btc(), &open).await.unwrap().expect("still known");
    assert_eq!(again.order.status, OrderStatus::Canceled);
    assert_eq!(deletes(), 2);

    // An id Binance never saw: -2011, then -2013 on the lookup: None, not an error.
    assert!(fresh.cancel_order(&btc(), &id(2, &btc(), Side::Buy)).await.unwrap().is_none());

    // A filled market order cannot be cancelled: its final state comes back with every fill, nothing changes.
    let filled = id(3, &btc(), Side::Buy);
    let placed = ex.place_market_order(&filled, "r", &intent(&btc(), Side::Buy, dec!(0.01), price)).await.unwrap();
    let balances = fake.balances();
    let c = fresh.cancel_order(&btc(), &filled).await.unwrap().expect("filled, still known");
    assert_eq!(c.order.status, OrderStatus::Filled);
    assert_eq!(ack_fills(&c), ack_fills(&placed));
    assert_eq!(fake.orders_with_client_id(filled.as_str())[0].status, "FILLED");
    assert_eq!(fake.balances(), balances);

    // A partly filled order keeps what it filled; the fills are read from myTrades.
    let part = id(4, &btc(), Side::Sell);
    let above = price + dec!(1000);
    let order_id = fake.rest_limit_order("BTCUSDT", part.as_str(), Side::Sell, dec!(0.05), above, dec!(0.02));
    let c = ex.cancel_order(&btc(), &part).await.unwrap().expect("known");
    assert_eq!((c.order.status, c.order.filled_qty), (OrderStatus::Canceled, dec!(0.02)));
    assert_eq!(ack_fills(&c), fake_fills(&fake, order_id));
    assert_eq!(c.fills.iter().map(|f| f.qty).sum::<Decimal>(), dec!(0.02));
    assert_eq!(fake.locked()["BTC"], dec!(0));
}

#[tokio::test]
async fn binance_a_cancel_whose_answer_is_lost_is_resolved_by_a_lookup() {
    let clock = Arc::new(ManualClock::new(t0()));
    let fake = fake_with(&clock, |_| {}).await;
    let mut settings = fake.settings();
    settings.request_timeout_ms = 1_000;
    let ex = adapter(settings, clock.clone());
    let below = fake.last_price("BTCUSDT") - dec!(1000);
    let rest = |n: i64| {
        let cid = id(n, &btc(), Side::Buy);
        fake.rest_limit_order("BTCUSDT", cid.as_str(), Side::Buy, dec!(0.01), below, Decimal::ZERO);
        cid
    };
    let status = |cid: &ClientOrderId| fake.orders_with_client_id(cid.as_str())[0].status.clone();

    // Binance cancelled it, but the answer was lost (5xx after, time-out, cut body, dropped connection): the
    // lookup finds it cancelled.
    let lost = [Fault::ServerErrorAfter, Fault::Timeout, Fault::Malformed, Fault::DropConnection];
    for (n, fault) in lost.into_iter().enumerate() {
        let cid = rest(n as i64);
        fake.fault_next_n(Some(Method::DELETE), ORDER, fault.clone(), 1);
        let c = ex.cancel_order(&btc(), &cid).await.unwrap_or_else(|e| panic!("{fault:?}: {e}"));
        assert_eq!(c.map(|c| c.order.status), Some(OrderStatus::Canceled), "{fault:?}");
        assert_eq!(status(&cid), "CANCELED", "{fault:?}");
    }

    // A 5xx before Binance did anything: the lookup finds the order still open, so the cancel is retryable,
    // and sending it again cancels it.
    let cid = rest(10);
    fake.fault_next_n(Some(Method::DELETE), ORDER, Fault::ServerErrorBefore, 1);
    let e = ex.cancel_order(&btc(), &cid).await.unwrap_err();
    assert!(matches!(e, ExchangeError::Retryable { .. }), "{e:?}");
    assert_eq!(status(&cid), "NEW");
    assert_eq!(ex.cancel_order(&btc(), &cid).await.unwrap().unwrap().order.status, OrderStatus::Canceled);

    // Answer lost and the lookup failing too: the outcome is unknown. A later cancel settles it.
    let cid = rest(11);
    fake.fault_next_n(Some(Method::DELETE), ORDER, Fault::ServerErrorAfter, 1);
    fake.fault_next_n(Some(Method::GET), ORDER, Fault::ServerErrorBefore, 1);
    let e = ex.cancel_order(&btc(), &cid).await.unwrap_err();
    assert!(matches!(e, ExchangeError::Unknown(_)), "{e:?}");
    assert_eq!(status(&cid), "CANCELED", "it did take effect");
    assert_eq!(ex.cancel_order(&btc(), &cid).await.unwrap().unwrap().order.status, OrderStatus::Canceled);

    // Rate limited: nothing was done, retry later.
    let cid = rest(12);
    fake.fault_next_n(Some(Method::DELETE), ORDER, Fault::RateLimit { retry_after_secs: 1 }, 1);
    let e = ex.cancel_order(&btc(), &cid).await.unwrap_err();
    assert!(matches!(e, ExchangeError::Retryable { .. }), "{e:?}");
    assert_eq!(status(&cid), "NEW");
}
