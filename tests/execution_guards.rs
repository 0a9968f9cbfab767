//! Execution's guards, on the real pipeline, simulator and store: an unreadable order book sends no new exposure
//! for that symbol (an exit still goes out); a pause issued while a cycle runs stops the very next buy of that cycle (exits still go out); a kill
//! with flatten sells everything at the next cycle and buys nothing; the frequency limits and the equity share of
//! one buy refuse entries, never exits.

use mcbot::store::Backend;
use mcbot_stages::Clock;
use mcbot_stages::control::{Command, Issuer, issue};
use mcbot_stages::domain::{Decimal, Side};
use mcbot_stages::ports::{EventKind, TradingMode};

use crate::support::venue::{Bot, FIRST, sym};

fn pct(n: i64) -> Decimal {
    Decimal::new(n, 2)
}

fn skipped_reason<'a>(report: &'a mcbot_stages::pipeline::CycleReport, symbol: &str) -> Vec<&'a str> {
    report.skipped.iter().filter(|(s, _)| s.as_str() == symbol).map(|(_, why)| why.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_order_book_sends_nothing_for_that_symbol() {
    let bot = Bot::new(Backend::Sqlite).await;
    bot.venue.break_book(&sym("ETHUSDT"));
    bot.target("BTCUSDT", pct(20));
    bot.target("ETHUSDT", pct(20));

    let report = bot.cycle(FIRST).await;

    assert!(report.failure().is_none(), "{report:?}");
    assert_eq!(bot.venue.sent(), vec![(sym("BTCUSDT"), Side::Buy)], "ETH's order is never sent: {report:?}");
    let why = skipped_reason(&report, "ETHUSDT");
    assert!(why.len() == 1 && why[0].contains("order book unreadable"), "{:?}", report.skipped);
    assert_eq!(bot.position("ETHUSDT").await, Decimal::ZERO);
    assert!(bot.position("BTCUSDT").await > Decimal::ZERO, "the readable symbol trades as usual");

    // An exit still goes out when its book cannot be read: risk that can be reduced is reduced.
    bot.venue.break_book(&sym("BTCUSDT"));
    bot.venue.clear_sent();
    bot.target("BTCUSDT", Decimal::ZERO);
    let report = bot.cycle(FIRST + 1).await;
    assert_eq!(bot.venue.sent(), vec![(sym("BTCUSDT"), Side::Sell)], "{report:?}");
    assert_eq!(bot.position("BTCUSDT").await, Decimal::ZERO);
    assert!(report.orders[0].reason.contains("exit sent unchecked"), "{:?}", report.orders[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_issued_while_a_cycle_runs_stops_its_next_buy() {
    let bot = Bot::new(Backend::Sqlite).await;
    for s in ["BTCUSDT", "ETHUSDT", "SOLUSDT"] {
        bot.target(s, pct(20));
    }
    // Three buys due; an operator pauses from Telegram while the first one is being sent.
    bot.venue.issue_on_next_place(bot.store.clone(), Command::Pause, Issuer::Telegram);

    let report = bot.cycle(FIRST).await;

    assert!(report.blocked_by.is_empty(), "entries were allowed when the cycle started: {:?}", report.blocked_by);
    assert_eq!(bot.venue.sent(), vec![(sym("BTCUSDT"), Side::Buy)], "{report:?}");
    for s in ["ETHUSDT", "SOLUSDT"] {
        let why = skipped_reason(&report, s);
        assert!(why.len() == 1 && why[0].contains("entries paused"), "{s}: {:?}", report.skipped);
    }
    let paused = bot.events(EventKind::TradingPaused).await;
    assert_eq!(paused.len(), 1, "{paused:?}");
    assert_eq!(paused[0].event.payload["issuer"], "telegram");
    assert_eq!(bot.store.load_state().await.unwrap().trading, TradingMode::EntriesPaused);

    // Resumed, the bot buys the rest; then a pause arrives while the first of two exits is sent: the second exit
    // still goes out, the buy after it does not.
    issue(bot.store.as_ref(), &Command::Resume, Issuer::Cli, "ok", bot.clock.now()).await.unwrap();
    bot.cycle(FIRST + 1).await;
    for s in ["BTCUSDT", "ETHUSDT", "SOLUSDT"] {
        assert!(bot.position(s).await > Decimal::ZERO, "{s} bought after the resume");
    }
    bot.target("BTCUSDT", Decimal::ZERO);
    bot.target("ETHUSDT", Decimal::ZERO);
    bot.target("SOLUSDT", pct(50));
    bot.venue.clear_sent();
    bot.venue.issue_on_next_place(bot.store.clone(), Command::Pause, Issuer::Telegram);

    let report = bot.cycle(FIRST + 2).await;

    let sent = bot.venue.sent();
    assert_eq!(sent, vec![(sym("BTCUSDT"), Side::Sell), (sym("ETHUSDT"), Side::Sell)], "{report:?}");
    let why = skipped_reason(&report, "SOLUSDT");
    assert!(why.len() == 1 && why[0].contains("entries paused"), "{:?}", report.skipped);
    let paused = bot.events(EventKind::TradingPaused).await;
    assert_eq!(paused.len(), 2);
    assert_eq!(paused[1].event.payload["issuer"], "telegram");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_with_flatten_sells_everything_at_the_next_cycle_and_buys_nothing() {
    let bot = Bot::new(Backend::Sqlite).await;
    bot.target("BTCUSDT", pct(30));
    bot.target("ETHUSDT", pct(30));
    bot.cycle(FIRST).await;
    assert!(bot.position("BTCUSDT").await > Decimal::ZERO && bot.position("ETHUSDT").await > Decimal::ZERO);
    // The strategy still wants all three; the operator kills with flatten.
    bot.target("SOLUSDT", pct(30));
    let kill = Command::Kill { cancel_orders: false, flatten: true };
    let out = issue(bot.store.as_ref(), &kill, Issuer::Cli, "going on holiday", bot.clock.now()).await.unwrap();
    assert!(out.state.flatten);
    bot.venue.clear_sent();

    let report = bot.cycle(FIRST + 1).await;

    assert!(report.failure().is_none(), "{report:?}");
    assert_eq!(bot.venue.sent(), vec![(sym("BTCUSDT"), Side::Sell), (sym("ETHUSDT"), Side::Sell)], "{report:?}");
    for (s, asset) in [("BTCUSDT", "BTC"), ("ETHUSDT", "ETH"), ("SOLUSDT", "SOL")] {
        assert_eq!(bot.position(s).await, Decimal::ZERO, "{s}");
        assert_eq!(bot.venue.holding(asset).await, Decimal::ZERO, "{asset}");
    }
    let state = bot.store.load_state().await.unwrap();
    assert!(!state.flatten, "everything the kill asked to close is closed: {state:?}");
    assert_eq!(state.trading, TradingMode::Halted, "still halted until resumed");

    // Halted and flat: the next cycle sends nothing.
    bot.venue.clear_sent();
    bot.cycle(FIRST + 2).await;
    assert!(bot.venue.sent().is_empty());
}

/// The frequency limits on the real pipeline: at most `max_entries_per_day` buys a UTC day, and a symbol is not
/// entered again within `min_entry_interval_secs`; sells are never limited. Counts survive in the stored state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_per_day_and_the_interval_per_symbol_limit_buys_not_sells() {
    let bot = Bot::with_risk(Backend::Sqlite, |r| {
        r.max_entries_per_day = 2;
        r.min_entry_interval_secs = 4 * 3600;
    })
    .await;
    for s in ["BTCUSDT", "ETHUSDT", "SOLUSDT"] {
        bot.target(s, pct(20));
    }
    let report = bot.cycle(FIRST).await;
    assert_eq!(bot.venue.sent().len(), 2, "two entries a day: {report:?}");
    let why = skipped_reason(&report, "SOLUSDT");
    assert!(why.len() == 1 && why[0].contains("max entries per day (2) reached"), "{:?}", report.skipped);
    let state = bot.store.load_state().await.unwrap();
    let counts = state.day_counts.clone().unwrap();
    assert_eq!((counts.entries, counts.trades), (2, 2), "{state:?}");
    assert!(state.last_entry.contains_key("BTCUSDT") && state.last_entry.contains_key("ETHUSDT"));

    // An hour later: BTC wants more, but was entered less than 4 h ago; ETH is sold regardless.
    bot.venue.clear_sent();
    bot.target("BTCUSDT", pct(40));
    bot.target("ETHUSDT", Decimal::ZERO);
    let report = bot.cycle(FIRST + 1).await;
    assert_eq!(bot.venue.sent(), vec![(sym("ETHUSDT"), Side::Sell)], "{report:?}");
    let why = skipped_reason(&report, "BTCUSDT");
    assert!(why.len() == 1 && why[0].contains("frequency limit"), "{:?}", report.skipped);

    // The next UTC day, long after the interval: entries again.
    bot.venue.clear_sent();
    let report = bot.cycle(FIRST + 24).await;
    let sent = bot.venue.sent();
    assert!(sent.contains(&(sym("BTCUSDT"), Side::Buy)), "{report:?}");
    assert_eq!(sent.iter().filter(|(_, side)| *side == Side::Buy).count(), 2, "{report:?}");
}

/// One buy above `max_order_equity_pct` of equity is refused, not reduced; a smaller one goes out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_buy_above_the_equity_share_is_refused() {
    let bot = Bot::with_risk(Backend::Sqlite, |r| r.max_order_equity_pct = Decimal::from(30)).await;
    bot.target("BTCUSDT", pct(40));
    bot.target("ETHUSDT", pct(20));
    let report = bot.cycle(FIRST).await;
    assert_eq!(bot.venue.sent(), vec![(sym("ETHUSDT"), Side::Buy)], "{report:?}");
    let why = skipped_reason(&report, "BTCUSDT");
    assert!(why.len() == 1 && why[0].contains("more than 30% of equity"), "{:?}", report.skipped);
    assert_eq!(bot.position("BTCUSDT").await, Decimal::ZERO);
}
