//! Reports end to end: the figures of a fixture store (three months of candles, fills, orders, signals and equity
//! snapshots in tests/fixtures/reports) against the values its script computed independently; the report jobs
//! producing each period once and catching up missed ones; delivery with charts to Telegram, Discord and email
//! fakes; and `mcbot report` on the command line.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use mcbot::config::{DiscordConfig, DiscordWebhooks, EmailConfig, NotifyConfig, TelegramConfig};
use mcbot::notify::{DeliveryWorker, NotificationConsumer, setup};
use mcbot::store::{Backend, SqlStore};
use mcbot_schedules::jobs::{ReportJob, report_event};
use mcbot_schedules::reports::{Period, Report, ReportSettings, build_report, text};
use mcbot_schedules::{Consumer, FireOutcome, Job, Runtime, RuntimeConfig, Schedule};
use mcbot_stages::ManualClock;
use mcbot_stages::domain::{Candle, ClientOrderId, Decimal, Fill, Order, OrderStatus, Side, Symbol, Timeframe};
use mcbot_stages::ports::{DeliveryStore, EquitySnapshot, EventKind, EventQuery, SignalRecord, Store};
use serde_json::Value;

use crate::support::cli::{json, mcbot, workdir};
use crate::support::db::test_store;
use crate::support::fake_discord::FakeDiscord;
use crate::support::fake_telegram::FakeTelegram;
use crate::support::multipart::is_png;
use crate::support::smtp_sink::SmtpSink;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/reports")
}

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).map(|t| t.to_utc()).unwrap_or_else(|e| panic!("time {s}: {e}"))
}

fn d(s: &str) -> Decimal {
    s.parse().unwrap_or_else(|e| panic!("decimal {s}: {e}"))
}

fn sym(s: &str) -> Symbol {
    Symbol::new(s).unwrap_or_else(|e| panic!("{e}"))
}

/// The rows of a fixture CSV, header dropped.
fn csv(name: &str) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(fixture_dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    text.lines().skip(1).filter(|l| !l.is_empty()).map(|l| l.split(',').map(str::to_owned).collect()).collect()
}

/// Loads the fixture into `store`: candles per symbol, then orders, fills, signals and equity in one unit.
pub async fn load_fixture(store: &SqlStore) {
    let tf = Timeframe::from_minutes(60).expect("1h");
    let mut candles: std::collections::BTreeMap<String, Vec<Candle>> = Default::default();
    for r in csv("candles.csv") {
        candles.entry(r[0].clone()).or_default().push(Candle {
            open_time: t(&r[1]),
            open: d(&r[2]),
            high: d(&r[3]),
            low: d(&r[4]),
            close: d(&r[5]),
            volume: d(&r[6]),
        });
    }
    for (s, c) in &candles {
        store.save_candles(&sym(s), tf, c).await.expect("candles");
    }
    let mut uow = store.begin().await.expect("begin");
    for r in csv("orders.csv") {
        let order = Order {
            client_order_id: ClientOrderId::from_stored(r[0].clone()),
            run_id: r[1].clone(),
            symbol: sym(&r[2]),
            side: Side::parse(&r[3]).expect("side"),
            qty: d(&r[4]),
            filled_qty: d(&r[4]),
            avg_price: Some(d(&r[5])),
            status: OrderStatus::Filled,
            exchange_order_id: None,
            created_at: t(&r[6]),
            reason: "fixture".into(),
        };
        uow.insert_order(&order).await.expect("order");
    }
    for r in csv("fills.csv") {
        let fill = Fill {
            symbol: sym(&r[0]),
            trade_id: r[1].clone(),
            client_order_id: ClientOrderId::from_stored(r[2].clone()),
            side: Side::parse(&r[3]).expect("side"),
            qty: d(&r[4]),
            price: d(&r[5]),
            fee: d(&r[6]),
            ts: t(&r[7]),
        };
        uow.insert_fill(&fill).await.expect("fill");
    }
    for r in csv("signals.csv") {
        let s = SignalRecord {
            run_id: r[0].clone(),
            ts: t(&r[1]),
            symbol: sym(&r[2]),
            strategy: r[3].clone(),
            target_weight: d("0.25"),
            reason: "fixture".into(),
        };
        uow.insert_signal(&s).await.expect("signal");
    }
    for r in csv("equity.csv") {
        uow.insert_equity(&EquitySnapshot { ts: t(&r[0]), equity: d(&r[1]), cash: d(&r[2]) }).await.expect("equity");
    }
    uow.commit().await.expect("commit");
}

/// The settings the fixture's script assumes: 1h candles, USDT, BTC and ETH benchmarks, a 20 % drawdown limit.
pub fn settings() -> ReportSettings {
    ReportSettings {
        timeframe: Timeframe::from_minutes(60).expect("1h"),
        quote: "USDT".into(),
        benchmarks: vec![sym("BTCUSDT"), sym("ETHUSDT")],
        max_drawdown_pct: d("20"),
        unattributed: "unattributed".into(),
    }
}

/// Every difference between `expected` (the script's JSON) and `actual` (the report's) at the keys the script
/// computed: decimals compared as decimals (exact), floats to 1e-9 relative, the rest as they are.
fn differences(path: &str, expected: &Value, actual: &Value, out: &mut Vec<String>) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, ev) in e {
                differences(&format!("{path}.{k}"), ev, a.get(k).unwrap_or(&Value::Null), out);
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            if e.len() != a.len() {
                out.push(format!("{path}: {} items expected, {} found: {actual}", e.len(), a.len()));
                return;
            }
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                differences(&format!("{path}[{i}]"), ev, av, out);
            }
        }
        (Value::String(e), Value::String(a)) => match (e.parse::<Decimal>(), a.parse::<Decimal>()) {
            (Ok(x), Ok(y)) if x != y => out.push(format!("{path}: expected {e}, found {a}")),
            (Ok(_), Ok(_)) => {}
            _ if e != a => out.push(format!("{path}: expected {e:?}, found {a:?}")),
            _ => {}
        },
        (Value::Number(e), Value::Number(a)) => {
            let (x, y) = (e.as_f64().unwrap_or(f64::NAN), a.as_f64().unwrap_or(f64::NAN));
            if (x - y).abs() > 1e-9 * x.abs().max(1.0) {
                out.push(format!("{path}: expected {x}, found {y}"));
            }
        }
        (e, a) if e != a => out.push(format!("{path}: expected {e}, found {a}")),
        _ => {}
    }
}

async fn fixture_reports_match_the_script(backend: Backend) {
    let db = test_store(backend).await;
    load_fixture(&db.store).await;
    let expected: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(fixture_dir().join("expected.json")).expect("expected.json"))
            .expect("expected.json parses");
    assert_eq!(expected.len(), 8, "every case of the script");
    let mut diffs = Vec::new();
    for case in &expected {
        let period = Period::parse(case["period"].as_str().expect("period")).expect("a period");
        let start = t(case["start"].as_str().expect("start"));
        let report =
            build_report(&db.store, &settings(), period, start, period.next_start(start)).await.expect("report");
        let actual = serde_json::to_value(&report).expect("json");
        differences(&format!("{} {}", period.as_str(), start.format("%Y-%m-%d")), case, &actual, &mut diffs);
        // the text says what the figures say
        let body = text::render(&report, "USDT");
        if !report.history {
            assert!(body.contains("No history yet"), "{body}");
        } else if report.quiet() {
            assert!(body.contains("No trades in this period."), "{body}");
        } else {
            assert!(!body.contains("No trades"), "{body}");
        }
    }
    assert!(diffs.is_empty(), "{} figure(s) differ from the script's:\n{}", diffs.len(), diffs.join("\n"));
}

#[tokio::test]
async fn fixture_reports_match_the_script_sqlite() {
    fixture_reports_match_the_script(Backend::Sqlite).await;
}

#[tokio::test]
async fn fixture_reports_match_the_script_postgres() {
    fixture_reports_match_the_script(Backend::Postgres).await;
}

#[tokio::test]
async fn a_fresh_install_reports_no_history_yet_and_a_quiet_week_says_so() {
    let db = test_store(Backend::Sqlite).await;
    let (start, end) = (t("2026-03-09T00:00:00Z"), t("2026-03-16T00:00:00Z"));
    let r = build_report(&db.store, &settings(), Period::Weekly, start, end).await.expect("report");
    assert!(!r.history);
    let body = text::render(&r, "USDT");
    assert!(body.contains("No history yet"), "{body}");
    assert!(mcbot::reports::charts::all(&r).is_empty(), "nothing to draw");
    load_fixture(&db.store).await;
    let quiet =
        build_report(&db.store, &settings(), Period::Weekly, t("2026-02-09T00:00:00Z"), t("2026-02-16T00:00:00Z"))
            .await
            .expect("report");
    assert!(quiet.history && quiet.quiet());
    let body = text::render(&quiet, "USDT");
    assert!(body.contains("No trades in this period."), "{body}");
    assert!(body.contains("Allocation at start: USDT 100.0 %"), "{body}");
}

fn runtime(store: &SqlStore, clock: Arc<ManualClock>) -> Runtime {
    let dyn_store: Arc<dyn Store> = Arc::new(store.clone());
    let job: Arc<dyn Job> = Arc::new(ReportJob::new(Period::Daily, dyn_store.clone(), settings()));
    let jobs = vec![(Schedule::parse("0 5 0 * * *").expect("cron"), job)];
    let cfg = RuntimeConfig { grace: Duration::seconds(60), stale_after: Duration::minutes(10) };
    Runtime::new(jobs, dyn_store, clock, cfg)
}

async fn report_events(store: &SqlStore) -> Vec<(DateTime<Utc>, String)> {
    let q = EventQuery { after: 0, limit: 0, ..Default::default() };
    store
        .read_events(&q)
        .await
        .expect("events")
        .into_iter()
        .filter(|e| e.event.kind == EventKind::ReportProduced)
        .map(|e| (t(e.event.payload["start"].as_str().expect("start")), e.event.message))
        .collect()
}

#[tokio::test]
async fn the_daily_job_reports_each_day_once_and_catches_up_days_missed_however_long_ago() {
    let db = test_store(Backend::Sqlite).await;
    load_fixture(&db.store).await;
    let clock = Arc::new(ManualClock::new(t("2026-03-10T00:05:30Z")));
    let rt = runtime(&db.store, clock.clone());
    let ran = rt.catch_up().await;
    assert!(matches!(ran[0].1, FireOutcome::Ran { .. }), "{ran:?}");
    let again = rt.fire_named("report-daily", t("2026-03-10T00:05:00Z")).await.expect("job");
    assert!(matches!(again, FireOutcome::AlreadyDone { .. }), "{again:?}");
    let events = report_events(&db.store).await;
    assert_eq!(events.len(), 1, "one report for one day");
    assert_eq!(events[0].0, t("2026-03-09T00:00:00Z"));
    assert!(events[0].1.starts_with("Daily report 2026-03-09"), "{}", events[0].1);

    // Down for five days, far beyond the grace period: the restart reports every day it missed, once.
    clock.set(t("2026-03-15T09:00:00Z"));
    let rt = runtime(&db.store, clock.clone());
    rt.catch_up().await;
    rt.catch_up().await;
    let starts: Vec<DateTime<Utc>> = report_events(&db.store).await.into_iter().map(|e| e.0).collect();
    let want: Vec<DateTime<Utc>> = (9..=14).map(|day| t(&format!("2026-03-{day:02}T00:00:00Z"))).collect();
    assert_eq!(starts, want);
    for day in &want {
        assert!(db.store.stored_report("daily", *day).await.expect("read").is_some(), "{day} stored");
    }
}

async fn delivery_pipeline(store: &SqlStore, clock: Arc<ManualClock>, n: &NotifyConfig) -> (Consumer, DeliveryWorker) {
    let outbox: Arc<dyn DeliveryStore> = Arc::new(store.clone());
    let state: Arc<dyn Store> = Arc::new(store.clone());
    let handler = NotificationConsumer::new(
        "notifications",
        outbox.clone(),
        Some(state.clone()),
        setup::routing(n),
        setup::channel_rules(n),
        setup::fatigue(n),
    );
    let consumer = Consumer::new(state, clock.clone(), Arc::new(handler), "test".into());
    let notifiers = setup::notifiers(n, clock.clone(), None).expect("channels");
    (consumer, DeliveryWorker::new(outbox, clock, notifiers, setup::policy(n)))
}

#[tokio::test]
async fn a_report_arrives_with_its_charts_on_telegram_discord_and_email() {
    let db = test_store(Backend::Sqlite).await;
    load_fixture(&db.store).await;
    let tg = FakeTelegram::start("424242:AAH-report-token").await;
    let discord = FakeDiscord::start().await;
    let sink = SmtpSink::start().await;
    let n = NotifyConfig {
        telegram: Some(TelegramConfig {
            token: Some("424242:AAH-report-token".into()),
            chat_ids: vec![7],
            api_url: tg.url.clone(),
        }),
        discord: Some(DiscordConfig {
            webhooks: DiscordWebhooks { trades: None, alerts: Some(discord.webhook(1, "alerts-token")), reports: None },
            critical_role_id: None,
        }),
        email: Some(EmailConfig {
            smtp_url: Some(format!("smtp://mcbot:smtp-pass@{}", sink.addr)),
            from: "mcbot@example.org".into(),
            to: vec!["owner@example.org".into()],
            ..Default::default()
        }),
        ..Default::default()
    };
    let clock = Arc::new(ManualClock::new(t("2026-04-01T00:15:00Z")));
    let (consumer, worker) = delivery_pipeline(&db.store, clock.clone(), &n).await;
    let (start, end) = (t("2026-03-01T00:00:00Z"), t("2026-04-01T00:00:00Z"));
    let report = build_report(&db.store, &settings(), Period::Monthly, start, end).await.expect("report");
    db.store.append_events(vec![report_event(&report, "USDT", None).expect("event")]).await.expect("append");
    consumer.pump().await.expect("pump");
    let pass = worker.pass().await.expect("pass");
    assert_eq!(pass.next_due, None, "everything sent");

    let texts = tg.texts();
    assert!(texts.iter().any(|t| t.contains("Monthly report 2026-03") && t.contains("Buy and hold")), "{texts:?}");
    let photos = tg.calls_of("sendphoto");
    assert_eq!(photos.len(), 5, "one photo per chart");
    assert!(photos.iter().all(|p| p.photo.as_deref().is_some_and(is_png)));
    assert!(photos[0].params["caption"].as_str().is_some_and(|c| c.contains("Equity and drawdown")));

    let posts = discord.posts();
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].files.len(), 5, "the charts are attached");
    assert!(posts[0].files.iter().all(|f| is_png(&f.2)));
    let fields = posts[0].payload["embeds"][0]["fields"].as_array().cloned().unwrap_or_default();
    assert!(fields.iter().any(|f| f["name"] == "NAV"), "{fields:?}");

    let mails = sink.mails();
    assert_eq!(mails.len(), 1);
    let data = &mails[0].data;
    for want in ["multipart/alternative", "text/plain", "text/html", "cid:equity", "Content-ID: <equity>", "image/png"]
    {
        assert!(data.contains(want), "{want} missing from the mail");
    }
}

#[tokio::test]
async fn the_report_command_prints_every_figure_and_writes_the_charts() {
    let dir = workdir();
    let db_dir = dir.path().join("db");
    std::fs::create_dir_all(&db_dir).expect("db dir");
    let url = SqlStore::embedded_url(&db_dir);
    {
        let store = SqlStore::open(&url).await.expect("open");
        load_fixture(&store).await;
        store.close().await;
    }
    let out_dir = dir.path().join("out");
    let run = {
        let (p, url, out) = (dir.path().to_owned(), url.clone(), out_dir.display().to_string());
        tokio::task::spawn_blocking(move || {
            let args = ["report", "monthly", "--date", "2026-03-15", "--out", out.as_str(), "--output", "json"];
            mcbot(&p, &args, &[("DATABASE_URL", url.as_str())])
        })
        .await
        .expect("join")
    };
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let doc = json(&run);
    let expected: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(fixture_dir().join("expected.json")).expect("read"))
            .expect("json");
    let march =
        expected.iter().find(|c| c["period"] == "monthly" && c["start"] == "2026-03-01T00:00:00Z").expect("case");
    assert_eq!(doc["nav_end"], march["nav_end"]);
    assert_eq!(doc["trades"]["count"], march["trades"]["count"]);
    let pngs = std::fs::read_dir(&out_dir)
        .expect("out dir")
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "png"))
        .count();
    assert_eq!(pngs, 5);
    assert!(out_dir.join("monthly-2026-03-01.json").exists() && out_dir.join("monthly-2026-03-01.txt").exists());

    let bad = mcbot(dir.path(), &["report", "yearly"], &[("DATABASE_URL", url.as_str())]);
    assert_eq!(bad.status.code(), Some(2), "a wrong period is a usage error");
}

/// The charts and sample texts of the README's Reports section, rendered from the fixture store. They are
/// checked here (size, PNG) and rewritten under docs/reports with `MCBOT_BLESS=1`.
#[tokio::test]
async fn the_readme_charts_and_samples_come_from_the_fixture() {
    let db = test_store(Backend::Sqlite).await;
    load_fixture(&db.store).await;
    let cases = [
        (Period::Daily, "2026-03-15T00:00:00Z"),
        (Period::Weekly, "2026-03-09T00:00:00Z"),
        (Period::Monthly, "2026-03-01T00:00:00Z"),
    ];
    let bless = std::env::var("MCBOT_BLESS").is_ok_and(|v| v == "1");
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/reports");
    let mut reports: Vec<Report> = Vec::new();
    for (p, s) in cases {
        let start = t(s);
        reports.push(build_report(&db.store, &settings(), p, start, p.next_start(start)).await.expect("report"));
    }
    for r in &reports {
        let charts = mcbot::reports::charts::all(r);
        assert_eq!(charts.len(), 5, "{} has every chart", r.period.as_str());
        for c in &charts {
            assert!(is_png(&c.png));
            let img = image::load_from_memory(&c.png).expect("decodes");
            assert_eq!((img.width(), img.height()), mcbot::reports::charts::SIZE);
        }
        if bless {
            std::fs::create_dir_all(&docs).expect("docs dir");
            std::fs::write(docs.join(format!("{}.txt", r.period.as_str())), text::render(r, "USDT") + "\n")
                .expect("sample");
            if r.period == Period::Monthly {
                for c in &charts {
                    std::fs::write(docs.join(&c.name), &c.png).expect("chart");
                }
            }
        }
    }
}

#[tokio::test]
async fn the_chat_answers_the_report_commands_from_the_store() {
    use mcbot::notify::chat::ChatControl;
    let db = test_store(Backend::Sqlite).await;
    load_fixture(&db.store).await;
    let clock = Arc::new(ManualClock::new(t("2026-03-16T08:00:00Z")));
    let exchange: Arc<dyn mcbot_stages::ports::Exchange> = Arc::new(mcbot_stages::sim::SimExchange::new(
        mcbot_stages::sim::MarketSource::Replay(Default::default()),
        mcbot_stages::sim::SimConfig {
            quote: "USDT".into(),
            initial_cash: Decimal::from(1000),
            fee_rate: Decimal::ZERO,
            slippage_bps: Decimal::ZERO,
            timeframe: Timeframe::from_minutes(60).expect("1h"),
            instruments: vec![],
        },
        clock.clone(),
    ));
    let store: Arc<dyn Store> = Arc::new(db.store.clone());
    let chat = ChatControl::new([7], store, exchange, clock.clone(), None, "mock").with_reports(settings());
    let ask = |text: &'static str| {
        let chat = &chat;
        async move { chat.command(7, text).await.expect("answer").html }
    };
    let daily = ask("/daily").await;
    assert!(daily.contains("Daily report 2026-03-15") && daily.contains("Rolling 30 days"), "{daily}");
    let days = ask("/daily 3").await;
    assert!(days.contains("2026-03-15: +39.06 (+0.40 %), 2 trades"), "{days}");
    assert!(days.contains("2026-03-14") && days.contains("2026-03-13") && !days.contains("2026-03-12"), "{days}");
    let weekly = ask("/weekly").await;
    assert!(weekly.contains("Weekly report 2026-03-09") && weekly.contains("P&amp;L per strategy"), "{weekly}");
    let monthly = ask("/monthly 2").await;
    assert!(monthly.contains("2026-02:") && monthly.contains("2026-01:"), "{monthly}");
    let report = ask("/report monthly").await;
    assert!(report.contains("Monthly report 2026-02") && report.contains("Daily P&amp;L:"), "{report}");
    assert!(ask("/report yearly").await.contains("usage"));
    assert!(ask("/daily 99").await.contains("usage"));
    let perf = ask("/performance").await;
    for want in ["Performance, last 30 days", "Sharpe", "Sortino", "Per strategy", "BTCUSDT buy and hold"] {
        assert!(perf.contains(want), "{want} missing: {perf}");
    }
}

#[tokio::test]
async fn report_send_delivers_the_report_with_its_charts_through_telegram() {
    let dir = workdir();
    let db_dir = dir.path().join("db");
    std::fs::create_dir_all(&db_dir).expect("db dir");
    let url = SqlStore::embedded_url(&db_dir);
    {
        let store = SqlStore::open(&url).await.expect("open");
        load_fixture(&store).await;
        store.close().await;
    }
    let fake = FakeTelegram::start("424242:AAH-report-token").await;
    let run = {
        let (p, url, api) = (dir.path().to_owned(), url.clone(), fake.url.clone());
        tokio::task::spawn_blocking(move || {
            let env = [
                ("DATABASE_URL", url.as_str()),
                ("MCBOT_NOTIFY__TELEGRAM__TOKEN", "424242:AAH-report-token"),
                ("MCBOT_NOTIFY__TELEGRAM__CHAT_IDS", "[7]"),
                ("MCBOT_NOTIFY__TELEGRAM__API_URL", api.as_str()),
                ("MCBOT_NOTIFY__FLUSH_TIMEOUT_SECS", "5"),
            ];
            mcbot(&p, &["report", "weekly", "--date", "2026-03-11", "--send"], &env)
        })
        .await
        .expect("join")
    };
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.contains("Weekly report 2026-03-09 – 2026-03-15"), "{stdout}");
    let texts = fake.texts();
    assert!(texts.iter().any(|t| t.contains("Weekly report 2026-03-09")), "{texts:?}");
    assert_eq!(fake.calls_of("sendphoto").len(), 5, "the charts follow the text");
}
