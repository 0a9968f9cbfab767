//! Mode live's guards, through the real binary against the loopback fake Binance: with every guard met
//! `mcbot run-once --mode live` sends real orders (to the fake); with any one guard missing it trades paper
//! (nothing reaches the venue), says which guard failed and why at start and in `status`, and records a
//! `live_refused` event. `mcbot preflight` runs the same checks and exits 0 only when all pass.

use std::path::Path;
use std::process::Output;
use std::sync::Arc;

use axum::http::Method;
use mcbot::exchange::binance::BinanceExchange;
use mcbot::store::SqlStore;
use mcbot_schedules::jobs::ReconcileJob;
use mcbot_stages::domain::{Decimal, Side, Symbol};
use mcbot_stages::live::LiveExchange;
use mcbot_stages::ports::{EventKind, EventQuery, Exchange, Store};
use mcbot_stages::{Clock, SystemClock};

use crate::support::cli::{json, mcbot, workdir};
use crate::support::db::fresh_sqlite_url;
use crate::support::fake_binance::{FakeBinance, FakeConfig, Fault};

const ACCOUNT: &str = "main-spot";

/// A deployment in a scratch directory pointed at a fresh fake Binance, with every live guard met.
struct Deployment {
    dir: tempfile::TempDir,
    fake: FakeBinance,
    env: Vec<(String, String)>,
}

impl Deployment {
    async fn ready() -> Self {
        let fake = FakeBinance::start(FakeConfig::new(Arc::new(SystemClock))).await;
        let dir = workdir();
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        confirm(dir.path(), "binance", ACCOUNT);
        let cfg = FakeConfig::new(Arc::new(SystemClock));
        let env = vec![
            ("MCBOT_EXCHANGE__BINANCE__REST_URL".into(), fake.rest_url.clone()),
            ("MCBOT_EXCHANGE__BINANCE__WS_URL".into(), fake.ws_url.clone()),
            ("MCBOT_EXCHANGE__BINANCE__API_KEY".into(), cfg.api_key.clone()),
            ("MCBOT_EXCHANGE__BINANCE__API_SECRET".into(), cfg.api_secret.clone()),
            ("MCBOT_MARKET__SYMBOLS".into(), r#"["BTCUSDT", "ETHUSDT"]"#.into()),
            ("MCBOT_MARKET__TIMEFRAME".into(), "1m".into()),
            ("MCBOT_STRATEGY__PARAMS__LOOKBACK".into(), "3".into()),
            // Always long: every run wants to buy, so whether an order reaches the venue shows the mode.
            ("MCBOT_STRATEGY__PARAMS__THRESHOLD".into(), "-0.99".into()),
            ("MCBOT_PIPELINE__LOOKBACK_BARS".into(), "10".into()),
            ("MCBOT_LIVE__ACCOUNT".into(), ACCOUNT.into()),
            ("MCBOT_LIVE__DRY_RUN_CYCLES".into(), "0".into()),
            ("LIVE_TRADING".into(), "1".into()),
        ];
        Self { dir, fake, env }
    }

    fn set(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), value.into()));
    }

    fn unset(&mut self, key: &str) {
        self.env.retain(|(k, _)| k != key);
    }

    /// `mcbot args` in the deployment, off the async runtime (the fake keeps serving meanwhile).
    async fn mcbot(&self, args: &[&str]) -> Output {
        let dir = self.dir.path().to_path_buf();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let env = self.env.clone();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            mcbot(&dir, &args, &env)
        })
        .await
        .unwrap()
    }

    async fn run_once(&self) -> (Output, serde_json::Value) {
        let out = self.mcbot(&["run-once", "--mode", "live", "--output", "json"]).await;
        let doc = json(&out);
        (out, doc)
    }

    async fn store(&self) -> SqlStore {
        mcbot::app::open_store(&SqlStore::embedded_url(&self.dir.path().join("data"))).await.unwrap()
    }
}

fn confirm(dir: &Path, venue: &str, account: &str) {
    std::fs::write(dir.join("data/LIVE_OK"), format!("venue = \"{venue}\"\naccount = \"{account}\"\n")).unwrap();
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_with_every_guard_met_trades_against_the_fake_binance() {
    let d = Deployment::ready().await;
    let pre = d.mcbot(&["preflight", "--mode", "live", "--output", "json"]).await;
    let doc = json(&pre);
    assert_eq!(pre.status.code(), Some(0), "{doc}\n{}", stderr(&pre));
    let names: Vec<&str> = doc["checks"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, mcbot::live::GUARDS, "every guard, in order");

    let (out, report) = d.run_once().await;
    assert!(out.status.success(), "{report}\n{}", stderr(&out));
    let orders = d.fake.orders();
    assert!(!orders.is_empty(), "real orders reached the venue: {report}");
    assert!(orders.iter().all(|o| o.side == Side::Buy));
    // The canary: each buy is at most live.max_order_notional (1000 USDT), far below 10 % of the account.
    for o in &orders {
        let notional = o.cumulative_quote;
        assert!(notional <= Decimal::from(1000) && notional > Decimal::ZERO, "{notional}");
    }
    let store = d.store().await;
    let state = store.load_state().await.unwrap();
    let live = state.live.expect("the verdict is recorded");
    assert!(live.active && live.failed.is_empty(), "{live:?}");
    assert_eq!(live.capital_fraction, Decimal::new(1, 1));
    let q = EventQuery { kinds: vec![EventKind::LiveStarted], ..Default::default() };
    let started = store.read_events(&q).await.unwrap();
    assert_eq!(started.len(), 1);
    assert!(started[0].event.message.contains("10% of equity"), "the start message says the fraction: {started:?}");
    assert!(stderr(&out).contains("LIVE trading") && stderr(&out).contains("10% of equity"), "{}", stderr(&out));
}

/// What each run with one guard missing must show: paper (nothing at the venue), the guard named with why at
/// start, in the state that `status` prints, and in a `live_refused` event.
async fn trades_paper_because(d: &Deployment, guard: &str, why: &str) {
    let (out, report) = d.run_once().await;
    assert!(out.status.success(), "{report}\n{}", stderr(&out));
    let sent: Vec<_> = d.fake.orders().into_iter().filter(|o| o.client_order_id.starts_with("mcb-")).collect();
    assert!(sent.is_empty(), "{guard}: nothing of the bot's reaches the venue: {sent:?}");
    assert!(report["orders"].as_array().is_some_and(|o| !o.is_empty()), "{guard}: it traded paper: {report}");
    let stages: Vec<&str> = report["stages"].as_array().unwrap().iter().map(|s| s["stage"].as_str().unwrap()).collect();
    assert_eq!(stages, ["risk_check", "data_collection", "analysis", "execution"], "{report}");
    let log = stderr(&out);
    assert!(log.contains("mode live refused, trading PAPER") && log.contains(guard), "{log}");

    let status = d.mcbot(&["status", "--mode", "live", "--output", "json"]).await;
    let doc = json(&status);
    assert_eq!(doc["live"]["active"], false, "{doc}");
    let said = doc["live"]["failed"][guard].as_str().unwrap_or_else(|| panic!("{guard} not in {doc}"));
    assert!(said.contains(why), "{said}");
    let text = d.mcbot(&["status", "--mode", "live"]).await;
    assert!(String::from_utf8_lossy(&text.stdout).contains("REFUSED, trading paper"), "{}", stderr(&text));

    let store = d.store().await;
    let q = EventQuery { kinds: vec![EventKind::LiveRefused], ..Default::default() };
    let refused = store.read_events(&q).await.unwrap();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(refused[0].event.payload["failed"][guard].is_string(), "{refused:?}");
    let paper_orders = store.open_orders().await.unwrap();
    assert!(paper_orders.is_empty(), "paper orders filled: {paper_orders:?}");

    let pre = d.mcbot(&["preflight", "--mode", "live"]).await;
    assert_eq!(pre.status.code(), Some(1), "preflight fails too");
    let table = String::from_utf8_lossy(&pre.stdout);
    let row = table.lines().find(|l| l.contains(guard)).unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains('✗'), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_live_trading_1_it_trades_paper() {
    let mut d = Deployment::ready().await;
    d.unset("LIVE_TRADING");
    trades_paper_because(&d, "live_trading_env", "LIVE_TRADING is not set").await;
    d.set("LIVE_TRADING", "yes");
    let pre = d.mcbot(&["preflight", "--mode", "live"]).await;
    assert!(String::from_utf8_lossy(&pre.stdout).contains("\"yes\""), "only 1 counts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_confirmation_file_it_trades_paper() {
    let d = Deployment::ready().await;
    std::fs::remove_file(d.dir.path().join("data/LIVE_OK")).unwrap();
    trades_paper_because(&d, "confirmation_file", "LIVE_OK").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmation_copied_from_another_deployment_does_not_count() {
    let d = Deployment::ready().await;
    confirm(d.dir.path(), "binance", "someone-else");
    trades_paper_because(&d, "confirmation_file", "account \"someone-else\"").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_insane_risk_limits_it_trades_paper() {
    let mut d = Deployment::ready().await;
    // A max order of 999999 is more than 30 % of the account's 1.6 million.
    d.set("MCBOT_PRETRADE__MAX_ORDER_NOTIONAL", "999999");
    d.set("MCBOT_LIVE__MAX_ORDER_NOTIONAL", "999999");
    trades_paper_because(&d, "risk_limits", "more than risk.max_order_equity_pct 30%").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_exchange_unreachable_it_trades_paper() {
    let d = Deployment::ready().await;
    d.fake.fault_next_n(Some(Method::GET), "/api/v3/ping", Fault::ServerErrorBefore, 1_000);
    trades_paper_because(&d, "exchange_reachable", "binance").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_clock_off_by_more_than_a_second_it_trades_paper() {
    let d = Deployment::ready().await;
    d.fake.set_clock_skew_ms(3_000);
    trades_paper_because(&d, "clock_offset", "over 1000 ms").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_balances_unreadable_it_trades_paper() {
    let d = Deployment::ready().await;
    let body = r#"{"code":-2015,"msg":"Invalid API-key, IP, or permissions for action."}"#;
    d.fake.fault_next_n(Some(Method::GET), "/api/v3/account", Fault::Body { status: 401, body: body.into() }, 1_000);
    // Paper needs the venue's data only; the account is not read again after the guards.
    let (out, report) = d.run_once().await;
    assert!(report["orders"].as_array().is_some_and(|o| !o.is_empty()), "it traded paper: {report}");
    assert!(stderr(&out).contains("balances_readable"), "{}", stderr(&out));
    assert!(d.fake.orders().is_empty());
    let store = d.store().await;
    let live = store.load_state().await.unwrap().live.unwrap();
    assert!(!live.active && live.failed.contains_key("balances_readable"), "{live:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_key_that_can_withdraw_it_trades_paper_unless_allowed() {
    let mut d = Deployment::ready().await;
    d.fake.set_key_rights(true, false);
    trades_paper_because(&d, "key_cannot_withdraw", "the key can withdraw").await;
    // Allowed explicitly: the guard is met, and the missing IP restriction is reported. The database now holds
    // the paper positions of the run above, which the exchange does not: not clean for live.
    d.set("MCBOT_LIVE__ALLOW_WITHDRAWAL_KEY", "true");
    let pre = d.mcbot(&["preflight", "--mode", "live", "--output", "json"]).await;
    let doc = json(&pre);
    let row = |name: &str| doc["checks"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap().clone();
    let key = row("key_cannot_withdraw");
    assert_eq!(key["ok"], true, "{doc}");
    assert!(key["detail"].as_str().unwrap().contains("not IP-restricted"), "{key}");
    assert_eq!(row("reconciliation_clean")["ok"], false, "paper positions are not the venue's: {doc}");
    assert_eq!(pre.status.code(), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_reconciliation_unclean_it_trades_paper() {
    let d = Deployment::ready().await;
    // An open order at the venue the bot has no record of.
    d.fake.rest_limit_order("BTCUSDT", "by-hand-1", Side::Buy, Decimal::ONE, Decimal::from(30_000), Decimal::ZERO);
    trades_paper_because(&d, "reconciliation_clean", "open order by-hand-1 at the exchange is not the bot's").await;
    // The check wrote nothing: the paper fallback kept its own clean books.
    let store = d.store().await;
    let state = store.load_state().await.unwrap();
    assert!(!state.safe_mode, "{state:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_cycles_after_a_start_are_dry_runs() {
    let mut d = Deployment::ready().await;
    d.unset("MCBOT_LIVE__DRY_RUN_CYCLES"); // the default: 3
    let (out, report) = d.run_once().await;
    assert!(out.status.success(), "{report}\n{}", stderr(&out));
    assert!(d.fake.orders().is_empty(), "a dry run sends nothing");
    let store = d.store().await;
    assert!(store.load_state().await.unwrap().live.unwrap().active, "live, but dry");
    let q = EventQuery { kinds: vec![EventKind::OrderRejected], ..Default::default() };
    let dry = store.read_events(&q).await.unwrap();
    assert!(!dry.is_empty(), "the orders are recorded: {report}");
    for e in &dry {
        assert!(e.event.message.contains("dry run (cycle 1 of 3 after start): nothing sent; would buy"), "{e:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_outside_mode_live_fails_and_prints_a_table() {
    let d = Deployment::ready().await;
    let out = d.mcbot(&["preflight", "--mode", "paper"]).await;
    assert_eq!(out.status.code(), Some(1));
    let table = String::from_utf8_lossy(&out.stdout);
    let row = table.lines().find(|l| l.contains(" mode ")).unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains('✗') && row.contains("--mode live"), "{table}");
    assert!(table.contains('✓'), "the guards that pass say so: {table}");
    assert!(d.fake.orders().is_empty());
}

/// Consecutive failed exchange calls trip the API-failure breaker (entries stop); a clean reconcile clears it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consecutive_api_failures_halt_entries_until_a_clean_reconcile() {
    let fake = FakeBinance::start(FakeConfig::new(Arc::new(SystemClock))).await;
    let db = fresh_sqlite_url();
    let store: Arc<dyn Store> = Arc::new(SqlStore::open(db.url()).await.unwrap());
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let venue: Arc<dyn Exchange> = Arc::new(BinanceExchange::new(fake.settings(), clock.clone(), None).unwrap());
    let live = Arc::new(LiveExchange::cleared(venue, store.clone(), clock.clone(), 0, 3));
    let btc = Symbol::new("BTCUSDT").unwrap();
    fake.fault_next_n(Some(Method::GET), "/api/v3/ticker/price", Fault::ServerErrorBefore, 1_000);
    for n in 1..=2 {
        assert!(live.last_price(&btc).await.is_err());
        assert_eq!(live.consecutive_failures(), n);
        assert!(store.load_state().await.unwrap().tripped.is_empty(), "not yet at {n}");
    }
    assert!(live.last_price(&btc).await.is_err());
    let state = store.load_state().await.unwrap();
    assert!(state.tripped.contains_key("api_failures"), "{state:?}");
    assert!(!mcbot_stages::pipeline::risk::blocked_by(&state).is_empty(), "entries stop");
    fake.clear_faults();
    assert!(live.last_price(&btc).await.is_ok());
    assert_eq!(live.consecutive_failures(), 0);
    assert!(store.load_state().await.unwrap().tripped.contains_key("api_failures"), "latched until a reconcile");
    let reconcile = ReconcileJob::new(store.clone(), live.clone(), clock, vec![btc]);
    assert!(reconcile.reconcile_and_guard(None).await.unwrap().is_clean());
    let state = store.load_state().await.unwrap();
    assert!(state.tripped.is_empty(), "{state:?}");
}

/// Upbit does not show a key's rights: preflight says it cannot check, and the owner's explicit
/// `live.key_cannot_withdraw = true` is what meets the guard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_upbit_the_key_guard_wants_the_owners_word() {
    let fake = crate::support::fake_upbit::FakeUpbit::start().await;
    let dir = workdir();
    let row = |with_word: bool| {
        let dir = dir.path().to_path_buf();
        let url = fake.url.clone();
        async move {
            let out = tokio::task::spawn_blocking(move || {
                let mut env = vec![("MCBOT_EXCHANGE__UPBIT__REST_URL", url.as_str())];
                if with_word {
                    env.push(("MCBOT_LIVE__KEY_CANNOT_WITHDRAW", "true"));
                }
                mcbot(&dir, &["--profile", "upbit", "preflight", "--mode", "live", "--output", "json"], &env)
            })
            .await
            .unwrap();
            assert_eq!(out.status.code(), Some(1), "other guards fail here: {}", stderr(&out));
            let doc = json(&out);
            doc["checks"].as_array().unwrap().iter().find(|c| c["name"] == "key_cannot_withdraw").unwrap().clone()
        }
    };
    let without = row(false).await;
    assert_eq!(without["ok"], false, "{without}");
    let detail = without["detail"].as_str().unwrap();
    assert!(detail.contains("cannot be checked") && detail.contains("live.key_cannot_withdraw = true"), "{detail}");
    let with = row(true).await;
    assert_eq!(with["ok"], true, "{with}");
}

/// `mcbot --mode live scheduler` with a guard missing: the start-up line says paper and why, `/metrics` shows
/// every guard, the control API (with its token) reports the refusal, a market stream down too long stops
/// entries until it is back, and a kill over HTTP halts the bot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_says_why_in_its_start_line_metrics_and_http_status() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let mut d = Deployment::ready().await;
    d.unset("LIVE_TRADING");
    let token_file = d.dir.path().join("api-token");
    std::fs::write(&token_file, "t0ken-for-tests\n").unwrap();
    d.set("MCBOT_HTTP__API_TOKEN_FILE", &token_file.display().to_string());
    d.set("MCBOT_RISK__MAX_STREAM_DOWN_SECS", "1");
    let env: Vec<(&str, &str)> = d.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut child = crate::support::cli::command(d.dir.path(), &["--mode", "live", "scheduler"], &env)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || BufReader::new(stdout).lines().map_while(Result::ok).next())
        .await
        .unwrap()
        .expect("the start-up line");
    assert!(line.contains("mode live (mode live refused, trading PAPER instead: live_trading_env"), "{line}");
    let base = line.split("metrics http://").nth(1).and_then(|r| r.split("/metrics").next()).unwrap().to_owned();
    let http = reqwest::Client::new();
    let metrics = http.get(format!("http://{base}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.lines().any(|l| l == "mcbot_live_active 0"), "{metrics}");
    assert!(metrics.contains("mcbot_live_guard_ok{guard=\"live_trading_env\"} 0"), "{metrics}");
    assert!(metrics.contains("mcbot_live_guard_ok{guard=\"confirmation_file\"} 1"), "{metrics}");

    let status = http.get(format!("http://{base}/api/v1/status")).send().await.unwrap();
    assert_eq!(status.status().as_u16(), 401, "the token is needed");
    let status: serde_json::Value = http
        .get(format!("http://{base}/api/v1/status"))
        .bearer_auth("t0ken-for-tests")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["live"]["active"], false, "{status}");
    assert!(status["live"]["failed"]["live_trading_env"].is_string(), "{status}");
    // The market stream goes down for longer than risk.max_stream_down_secs: entries stop; back up, they resume.
    let status_doc = || {
        let (http, url) = (http.clone(), format!("http://{base}/api/v1/status"));
        async move {
            let r = http.get(url).bearer_auth("t0ken-for-tests").send().await.unwrap();
            r.json::<serde_json::Value>().await.unwrap()
        }
    };
    let until = |want: bool| {
        let status_doc = &status_doc;
        async move {
            for _ in 0..300 {
                let doc = status_doc().await;
                if doc["breakers_tripped"].get("stream_down").is_some() == want {
                    return doc;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            panic!("stream_down never became {want}: {}", status_doc().await);
        }
    };
    until(false).await;
    d.fake.ws_set_available(false);
    d.fake.ws_drop_all();
    let down = until(true).await;
    assert!(down["blocked_by"][0].as_str().unwrap().contains("market stream down"), "{down}");
    d.fake.ws_set_available(true);
    let up = until(false).await;
    assert_eq!(up["entries_allowed"], true, "{up}");

    let kill = http
        .post(format!("http://{base}/api/v1/kill"))
        .bearer_auth("t0ken-for-tests")
        .json(&serde_json::json!({"reason": "test", "flatten": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(kill.status().as_u16(), 200);
    let ready: serde_json::Value =
        http.get(format!("http://{base}/readyz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["checks"]["trading"], "halted", "{ready}");
    assert!(std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let exit = tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
    assert_eq!(exit.code(), Some(0));
    assert!(d.fake.orders().is_empty());
}

/// The canary sizes every target on `live.capital_fraction` of equity, and the start message reports it: half
/// the account on BTC is 50 000 of the 1 000 000 USDT at 0.1, twice that at 0.2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_canary_trades_its_share_of_equity_and_says_so() {
    for (fraction, pct, want) in [("0.1", "10%", 50_000), ("0.2", "20%", 100_000)] {
        let mut d = Deployment::ready().await;
        // Caps high enough not to bind (still under 30 % of the account), so the fraction decides the size.
        d.set("MCBOT_LIVE__MAX_ORDER_NOTIONAL", "400000");
        d.set("MCBOT_PRETRADE__MAX_ORDER_NOTIONAL", "400000");
        d.set("MCBOT_LIVE__CAPITAL_FRACTION", fraction);
        let (out, report) = d.run_once().await;
        assert!(out.status.success(), "{report}\n{}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!("{pct} of equity (live.capital_fraction {fraction})")),
            "{}",
            stderr(&out)
        );
        let btc = d.fake.orders().into_iter().find(|o| o.symbol == "BTCUSDT").unwrap_or_else(|| panic!("{report}"));
        let want = Decimal::from(want);
        // Within the 1 % cash buffer and a bar's price move of the target.
        let off = (btc.cumulative_quote - want).abs() / want;
        assert!(off < Decimal::new(3, 2), "{fraction}: bought {} for a target of {want}", btc.cumulative_quote);
    }
}
