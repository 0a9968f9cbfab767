//! Reconciliation's outcomes, on SQLite and PostgreSQL: the exchange is the truth. A small difference between a
//! stored position and the account is corrected with one warning; a large one, or an open order the bot never
//! placed, turns safe mode on with one critical pair of events and stays quiet while it is on; a person clears it
//! with `reset-safe-mode`. Holdings already on the account at the first reconcile are a baseline (ignore) or
//! positions (adopt), never drift.

use std::collections::BTreeMap;

use mcbot::store::Backend;
use mcbot_schedules::jobs::UnmanagedHoldings;
use mcbot_schedules::{Job, JobContext};
use mcbot_stages::Clock;
use mcbot_stages::control::{Command, Issuer, issue};
use mcbot_stages::domain::{Decimal, RunId, Side};
use mcbot_stages::ports::{EventKind, EventQuery, Exchange, Severity};

use crate::support::venue::{Bot, FIRST, sym};

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(Backend::Postgres).await
            }
        })*
    };
}

on_both_backends!(
    drift_within_tolerance_is_corrected,
    drift_beyond_tolerance_latches_safe_mode_once,
    unknown_open_order_turns_safe_mode_on,
    holdings_found_at_the_first_reconcile_are_ignored_by_default,
    holdings_found_at_the_first_reconcile_can_be_adopted,
);

fn pct(n: i64) -> Decimal {
    Decimal::new(n, 2)
}

/// A bot that bought BTC in its first cycle and reconciled once (clean): returns it with the quantity bought.
async fn bot_holding_btc(backend: Backend) -> (Bot, Decimal) {
    let bot = Bot::new(backend).await;
    bot.target("BTCUSDT", pct(30));
    let report = bot.cycle(FIRST).await;
    assert_eq!(report.orders.len(), 1, "one buy: {report:?}");
    let qty = bot.position("BTCUSDT").await;
    assert!(qty > Decimal::ZERO);
    assert_eq!(qty, bot.venue.holding("BTC").await, "the bot's book equals the account");
    let first = bot.reconcile_job().reconcile_and_guard(None).await.unwrap();
    assert!(first.is_clean() && first.corrected.is_empty(), "{first:?}");
    (bot, qty)
}

async fn critical_events(bot: &Bot) -> usize {
    let q = EventQuery { min_severity: Some(Severity::Critical), ..Default::default() };
    bot.store.read_events(&q).await.unwrap().len()
}

async fn drift_within_tolerance_is_corrected(backend: Backend) {
    let (bot, qty) = bot_holding_btc(backend).await;
    // 0.5 % of the position went missing at the exchange (a fee charged in the base asset, say).
    let missing = (qty * Decimal::new(5, 3)).round_dp(5);
    bot.venue.add_balance("BTC", -missing);
    let job = bot.reconcile_job().with_tolerance(pct(1));

    let report = job.reconcile_and_guard(None).await.unwrap();

    assert_eq!(report.corrected, vec![(sym("BTCUSDT"), qty, qty - missing)], "{report:?}");
    assert!(report.drifts.is_empty() && report.is_clean(), "{report:?}");
    assert_eq!(bot.position("BTCUSDT").await, qty - missing, "the exchange's quantity is adopted");
    let corrected = bot.events(EventKind::ReconcileCorrected).await;
    assert_eq!(corrected.len(), 1, "{corrected:?}");
    assert_eq!(corrected[0].event.symbol, Some(sym("BTCUSDT")));
    assert_eq!(corrected[0].event.severity, Severity::Warning);
    assert_eq!(corrected[0].event.payload["exchange"], (qty - missing).to_string());
    let state = bot.store.load_state().await.unwrap();
    assert!(!state.safe_mode, "{state:?}");
    assert!(bot.events(EventKind::SafeModeOn).await.is_empty());
    assert_eq!(critical_events(&bot).await, 0);

    // Corrected once: the next reconcile finds store and exchange in agreement and records nothing.
    let again = job.reconcile_and_guard(None).await.unwrap();
    assert!(again.is_clean() && again.corrected.is_empty(), "{again:?}");
    assert_eq!(bot.events(EventKind::ReconcileCorrected).await.len(), 1);
}

async fn drift_beyond_tolerance_latches_safe_mode_once(backend: Backend) {
    let (bot, qty) = bot_holding_btc(backend).await;
    // 5 % more BTC than the bot booked: not explained by rounding, a person must look.
    let surplus = (qty * pct(5)).round_dp(5);
    bot.venue.add_balance("BTC", surplus);
    let job = bot.reconcile_job().with_tolerance(pct(1));

    let report = job.reconcile_and_guard(None).await.unwrap();

    assert_eq!(report.drifts, vec![(sym("BTCUSDT"), qty, qty + surplus)], "{report:?}");
    assert!(report.corrected.is_empty() && report.needs_safe_mode());
    assert_eq!(bot.position("BTCUSDT").await, qty, "drift beyond tolerance is not papered over");
    let state = bot.store.load_state().await.unwrap();
    assert!(state.safe_mode, "{state:?}");
    assert!(state.safe_mode_reason.as_deref().unwrap_or_default().contains("BTCUSDT"), "{state:?}");
    let drift = bot.events(EventKind::ReconcileDrift).await;
    let on = bot.events(EventKind::SafeModeOn).await;
    assert_eq!((drift.len(), on.len()), (1, 1), "{drift:?} {on:?}");
    assert_eq!((drift[0].event.severity, on[0].event.severity), (Severity::Critical, Severity::Critical));
    assert_eq!(critical_events(&bot).await, 2);

    // While safe mode is on, the same drift found again (by the job, twice) adds no critical event.
    for n in 0..2 {
        let at = bot.clock.now();
        let outcome = job.run(&JobContext::detached(RunId::new("reconcile", at), at)).await.unwrap();
        assert!(!outcome.failed, "run {n}: a known condition is not a new failure: {}", outcome.summary);
        assert!(outcome.summary.contains("safe mode stays on"), "{}", outcome.summary);
    }
    assert_eq!(critical_events(&bot).await, 2, "no new critical event while safe mode stays on");
    assert_eq!(bot.events(EventKind::ReconcileDrift).await.len(), 1);
    assert_eq!(bot.events(EventKind::SafeModeOn).await.len(), 1);

    // Safe mode blocks entries at the next cycle.
    bot.target("ETHUSDT", pct(20));
    bot.venue.clear_sent();
    let blocked = bot.cycle(FIRST + 1).await;
    assert!(bot.venue.sent().iter().all(|(_, side)| *side == Side::Sell), "{blocked:?}");
    assert!(blocked.blocked_by.iter().any(|b| b.contains("safe mode")), "{:?}", blocked.blocked_by);

    // A person looked and clears it.
    issue(bot.store.as_ref(), &Command::ResetSafeMode, Issuer::Cli, "surplus was a manual deposit", bot.clock.now())
        .await
        .unwrap();
    let state = bot.store.load_state().await.unwrap();
    assert!(!state.safe_mode && state.safe_mode_reason.is_none(), "{state:?}");
    let off = bot.events(EventKind::SafeModeOff).await;
    assert_eq!(off.len(), 1, "{off:?}");
    assert_eq!(off[0].event.payload["issuer"], "cli");
}

async fn unknown_open_order_turns_safe_mode_on(backend: Backend) {
    let bot = Bot::new(backend).await;
    let job = bot.reconcile_job();
    assert!(job.reconcile_and_guard(None).await.unwrap().is_clean(), "a fresh account is in sync");
    bot.venue.add_foreign_open_order(&sym("ETHUSDT"), "web-12345");

    let report = job.reconcile_and_guard(None).await.unwrap();

    assert_eq!(report.unknown_open_orders, vec!["web-12345".to_owned()], "{report:?}");
    assert!(report.drifts.is_empty() && report.needs_safe_mode(), "{report:?}");
    let state = bot.store.load_state().await.unwrap();
    assert!(state.safe_mode, "{state:?}");
    assert!(state.safe_mode_reason.as_deref().unwrap_or_default().contains("web-12345"), "{state:?}");
    assert_eq!(bot.events(EventKind::ReconcileDrift).await.len(), 1);
    assert_eq!(bot.events(EventKind::SafeModeOn).await.len(), 1);
    job.reconcile_and_guard(None).await.unwrap();
    assert_eq!(critical_events(&bot).await, 2, "found again while on: nothing new");
}

async fn holdings_found_at_the_first_reconcile_are_ignored_by_default(backend: Backend) {
    let bot = Bot::new(backend).await;
    // The account already holds BTC bought by hand before mcbot ever ran.
    let by_hand = Decimal::new(15, 2);
    bot.venue.trade_by_hand(&sym("BTCUSDT"), Side::Buy, by_hand).await;
    let job = bot.reconcile_job().with_tolerance(pct(1));

    let first = job.reconcile_and_guard(None).await.unwrap();

    assert_eq!(first.unmanaged_recorded, BTreeMap::from([("BTC".to_owned(), by_hand)]), "{first:?}");
    assert!(first.is_clean(), "holdings mcbot did not buy are not drift: {first:?}");
    let state = bot.store.load_state().await.unwrap();
    assert!(!state.safe_mode, "{state:?}");
    assert_eq!(state.unmanaged, Some(BTreeMap::from([("BTC".to_owned(), by_hand)])));
    assert_eq!(bot.position("BTCUSDT").await, Decimal::ZERO, "ignored: not a position");
    assert_eq!(critical_events(&bot).await, 0);

    // mcbot buys its own share; reconciliation measures that share only.
    bot.target("BTCUSDT", pct(30));
    bot.cycle(FIRST).await;
    let own = bot.position("BTCUSDT").await;
    assert!(own > Decimal::ZERO);
    assert_eq!(bot.venue.holding("BTC").await, by_hand + own);
    let report = job.reconcile_and_guard(None).await.unwrap();
    assert!(report.is_clean() && report.corrected.is_empty() && report.unmanaged_recorded.is_empty(), "{report:?}");

    // 2 % of mcbot's share goes missing (under 1 % of everything held, were the baseline counted): drift.
    assert!(own * pct(2) < (own + by_hand) * pct(1));
    let missing = (own * pct(2)).round_dp(5);
    bot.venue.add_balance("BTC", -missing);
    let report = job.reconcile_and_guard(None).await.unwrap();
    assert_eq!(report.drifts, vec![(sym("BTCUSDT"), own, own - missing)], "{report:?}");
    assert!(bot.store.load_state().await.unwrap().safe_mode);
}

async fn holdings_found_at_the_first_reconcile_can_be_adopted(backend: Backend) {
    let bot = Bot::new(backend).await;
    let by_hand = Decimal::new(5, 2);
    bot.venue.trade_by_hand(&sym("BTCUSDT"), Side::Buy, by_hand).await;
    let price = bot.venue.last_price(&sym("BTCUSDT")).await.unwrap();
    let job = bot.reconcile_job().with_unmanaged_holdings(UnmanagedHoldings::Adopt);

    let first = job.reconcile_and_guard(None).await.unwrap();

    assert!(first.is_clean(), "{first:?}");
    assert_eq!(first.unmanaged_recorded, BTreeMap::from([("BTC".to_owned(), by_hand)]));
    let positions = bot.store.positions().await.unwrap();
    let btc = positions.iter().find(|p| p.symbol == sym("BTCUSDT")).expect("adopted as a position");
    assert_eq!((btc.qty, btc.avg_price), (by_hand, price), "taken over at the current price");
    let state = bot.store.load_state().await.unwrap();
    assert!(!state.safe_mode);
    assert_eq!(state.unmanaged, Some(BTreeMap::new()), "nothing left unmanaged");
    assert_eq!(job.reconcile_and_guard(None).await.unwrap().corrected, Vec::new(), "in sync afterwards");

    // The bot now manages it: a target of zero sells it.
    bot.target("BTCUSDT", Decimal::ZERO);
    let report = bot.cycle(FIRST).await;
    assert_eq!(bot.venue.sent(), vec![(sym("BTCUSDT"), Side::Sell)], "{report:?}");
    assert_eq!(bot.venue.holding("BTC").await, Decimal::ZERO);
    assert_eq!(bot.position("BTCUSDT").await, Decimal::ZERO);
}
