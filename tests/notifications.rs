//! Notifications end to end: events in the real store (SQLite file and PostgreSQL), the notification consumer and
//! the delivery worker, and what arrives at loopback fakes of Telegram, Discord and an SMTP server. Time is a
//! manual clock: retries fall due when the test moves it, nothing sleeps.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use mcbot::config::{DiscordConfig, DiscordWebhooks, EmailConfig, NotifyConfig, TelegramConfig};
use mcbot::notify::{DeliveryWorker, NotificationConsumer, setup};
use mcbot::store::{Backend, SqlStore};
use mcbot_schedules::Consumer;
use mcbot_stages::domain::Symbol;
use mcbot_stages::ports::{
    Channel, DeliveryStatus, DeliveryStore, EquitySnapshot, EventKind, EventQuery, NewEvent, Severity, Store,
};
use mcbot_stages::{Clock, ManualClock};
use rust_decimal_macros::dec;
use serde_json::json;

use crate::support::db::test_store;
use crate::support::fake_discord::FakeDiscord;
use crate::support::fake_telegram::{FakeTelegram, Fault};
use crate::support::multipart::is_png;
use crate::support::smtp_sink::SmtpSink;

pub(crate) const TOKEN: &str = "123456:AAH-secret-bot-token";
pub(crate) const CHAT: i64 = 111;

pub(crate) fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-02T12:05:00Z").map(|t| t.to_utc()).unwrap_or_default()
}

pub(crate) fn telegram(url: &str) -> NotifyConfig {
    NotifyConfig {
        telegram: Some(TelegramConfig { token: Some(TOKEN.into()), chat_ids: vec![CHAT], api_url: url.into() }),
        ..Default::default()
    }
}

/// The consumer and the worker over `store`, as the scheduler assembles them.
pub(crate) fn pipeline(store: &SqlStore, clock: Arc<ManualClock>, n: &NotifyConfig) -> (Consumer, DeliveryWorker) {
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
    let worker = DeliveryWorker::new(outbox, clock, notifiers, setup::policy(n)).with_rules(setup::follow_up_rules(n));
    (consumer, worker)
}

fn fill_events(run: &str, ts: DateTime<Utc>) -> Vec<NewEvent> {
    let sym = Symbol::new("BTCUSDT").expect("symbol");
    vec![
        NewEvent::new(ts, EventKind::OrderFilled, Severity::Info, "sold 0.01000 BTCUSDT at 65000.10")
            .run(run)
            .symbol(&sym)
            .payload(json!({"side": "sell", "qty": "0.01000", "price": "65000.10", "fee": "0.65"})),
        NewEvent::new(ts, EventKind::PositionClosed, Severity::Info, "BTCUSDT position closed")
            .run(run)
            .symbol(&sym)
            .payload(json!({"qty": "0", "realized_pnl": "12.34"})),
    ]
}

async fn a_fill_and_a_report_arrive_on_telegram(backend: Backend) {
    let db = test_store(backend).await;
    let fake = FakeTelegram::start(TOKEN).await;
    let clock = Arc::new(ManualClock::new(t0()));
    let (consumer, worker) = pipeline(&db.store, clock.clone(), &telegram(&fake.url));
    db.store.append_events(fill_events("r1", t0())).await.expect("append");
    for (i, eq) in [dec!(10000), dec!(10100), dec!(9950), dec!(10230)].into_iter().enumerate() {
        let ts = t0() - Duration::hours(24) + Duration::hours(6 * i as i64);
        db.store.insert_equity(&EquitySnapshot { ts, equity: eq, cash: eq }).await.expect("equity");
    }
    let report = NewEvent::new(t0(), EventKind::ReportProduced, Severity::Info, "daily report: +2.30 %").payload(
        json!({"period": "daily", "start": t0() - Duration::hours(24), "end": t0(), "figures": {"return_pct": "2.30"}}),
    );
    db.store.append_events(vec![report]).await.expect("append");
    consumer.pump().await.expect("pump");
    let pass = worker.pass().await.expect("pass");
    assert_eq!(pass.next_due, None, "everything sent");

    let texts = fake.texts();
    assert_eq!(texts.len(), 1, "one fill message: {texts:?}");
    let fill = &texts[0];
    for want in ["BTCUSDT", "sell", "0.01000", "65000.10", "0.65", "12.34"] {
        assert!(fill.contains(want), "{want} missing from {fill}");
    }
    let call = &fake.calls_of("sendmessage")[0];
    assert_eq!(call.params["parse_mode"], json!("HTML"));
    assert_eq!(call.params["chat_id"], json!(CHAT));
    let photos = fake.calls_of("sendphoto");
    assert_eq!(photos.len(), 1, "the report comes as a chart");
    assert!(photos[0].photo.as_deref().is_some_and(is_png), "a valid PNG arrives");
    assert!(photos[0].params["caption"].as_str().is_some_and(|c| c.contains("daily report")));
}

#[tokio::test]
async fn a_fill_and_a_report_arrive_on_telegram_sqlite() {
    a_fill_and_a_report_arrive_on_telegram(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_fill_and_a_report_arrive_on_telegram_postgres() {
    a_fill_and_a_report_arrive_on_telegram(Backend::Postgres).await;
}

/// A port nobody listens on: Telegram "down".
pub(crate) async fn dead_url() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", l.local_addr().expect("addr"));
    drop(l);
    url
}

async fn an_outage_loses_nothing(backend: Backend) {
    let db = test_store(backend).await;
    let fake = FakeTelegram::start(TOKEN).await;
    let clock = Arc::new(ManualClock::new(t0()));
    let (consumer, down) = pipeline(&db.store, clock.clone(), &telegram(&dead_url().await));
    // Five minutes of virtual time without Telegram: an alert every 15 s, the worker trying all along.
    for i in 0..20 {
        let e = NewEvent::new(clock.now(), EventKind::JobFailed, Severity::Warning, format!("alert {i:02}"))
            .dedup(format!("job:{i}"));
        db.store.append_events(vec![e]).await.expect("append");
        consumer.pump().await.expect("pump");
        down.pass().await.expect("pass");
        clock.advance(Duration::seconds(15));
    }
    let pending = db.store.pending(Channel::Telegram, 100).await.expect("pending");
    assert_eq!(pending.len(), 20, "nothing lost while down");
    assert!(pending[0].attempts > 1 && pending[0].last_error.is_some());
    // Telegram is back (a new process, a new worker): everything arrives, in order, once.
    let (_, up) = pipeline(&db.store, clock.clone(), &telegram(&fake.url));
    for _ in 0..40 {
        clock.advance(Duration::seconds(10));
        up.pass().await.expect("pass");
    }
    // Alerts of one kind that waited together within a minute arrive grouped: every one, in order, once.
    let texts = fake.texts();
    assert!(texts.len() < 20, "grouped: {texts:?}");
    let alerts: Vec<String> =
        texts.iter().flat_map(|t| t.lines().filter_map(|l| l.find("alert ").map(|i| l[i..i + 8].to_owned()))).collect();
    let want: Vec<String> = (0..20).map(|i| format!("alert {i:02}")).collect();
    assert_eq!(alerts, want);
    let secret_free = db.store.pending(Channel::Telegram, 100).await.expect("pending");
    assert!(secret_free.is_empty());
}

#[tokio::test]
async fn telegram_down_for_five_minutes_then_every_message_arrives_in_order_once_sqlite() {
    an_outage_loses_nothing(Backend::Sqlite).await;
}

#[tokio::test]
async fn telegram_down_for_five_minutes_then_every_message_arrives_in_order_once_postgres() {
    an_outage_loses_nothing(Backend::Postgres).await;
}

#[tokio::test]
async fn retry_after_three_seconds_means_no_request_before_they_are_over() {
    let db = test_store(Backend::Sqlite).await;
    let fake = FakeTelegram::start(TOKEN).await;
    let clock = Arc::new(ManualClock::new(t0()));
    let (consumer, worker) = pipeline(&db.store, clock.clone(), &telegram(&fake.url));
    fake.fail_next("sendmessage", Fault::RetryAfter(3));
    let e = NewEvent::new(t0(), EventKind::SafeModeOn, Severity::Critical, "drawdown 21 %");
    db.store.append_events(vec![e]).await.expect("append");
    consumer.pump().await.expect("pump");
    worker.pass().await.expect("pass");
    assert_eq!(fake.calls_of("sendmessage").len(), 1);
    for _ in 0..29 {
        clock.advance(Duration::milliseconds(100));
        worker.pass().await.expect("pass");
    }
    assert_eq!(fake.calls_of("sendmessage").len(), 1, "no request before the 3 s are over");
    clock.advance(Duration::milliseconds(100));
    worker.pass().await.expect("pass");
    assert_eq!(fake.calls_of("sendmessage").len(), 2, "sent once they are");
    assert!(fake.texts()[0].contains("drawdown 21 %"));
}

#[tokio::test]
async fn a_hundred_identical_alerts_become_one_message_and_a_count_and_a_cleared_one_says_resolved() {
    let db = test_store(Backend::Postgres).await;
    let fake = FakeTelegram::start(TOKEN).await;
    let clock = Arc::new(ManualClock::new(t0()));
    let (consumer, worker) = pipeline(&db.store, clock.clone(), &telegram(&fake.url));
    let stale = |at: DateTime<Utc>| {
        NewEvent::new(at, EventKind::StaleData, Severity::Warning, "ETHUSDT data is 3 bars old").dedup("stale:ETHUSDT")
    };
    let burst: Vec<NewEvent> = (0..100).map(|i| stale(t0() + Duration::milliseconds(i * 590))).collect();
    db.store.append_events(burst).await.expect("append");
    consumer.pump().await.expect("pump");
    worker.pass().await.expect("pass");
    assert_eq!(fake.texts().len(), 1, "one message for a hundred");
    // Past the cooldown the condition is reported once more, with what was held back.
    clock.set(t0() + Duration::minutes(12));
    db.store.append_events(vec![stale(t0() + Duration::minutes(11))]).await.expect("append");
    let recovered =
        NewEvent::new(t0() + Duration::minutes(12), EventKind::DataRecovered, Severity::Info, "ETHUSDT fresh")
            .dedup("stale:ETHUSDT");
    db.store.append_events(vec![recovered]).await.expect("append");
    consumer.pump().await.expect("pump");
    worker.pass().await.expect("pass");
    let texts = fake.texts();
    assert_eq!(texts.len(), 3, "{texts:?}");
    assert!(texts[1].contains("×99 since 12:05"), "{}", texts[1]);
    assert!(texts[2].contains("resolved after 12 min"), "{}", texts[2]);
    let counts = db.store.delivery_counts().await.expect("counts");
    let suppressed = counts.iter().find(|c| c.channel == Channel::Telegram && c.status == DeliveryStatus::Suppressed);
    assert_eq!(suppressed.map(|c| c.count), Some(99));
}

#[tokio::test]
async fn discord_gets_coloured_embeds_on_the_right_webhook_and_waits_out_429s_and_empty_buckets() {
    let db = test_store(Backend::Sqlite).await;
    let fake = FakeDiscord::start().await;
    let clock = Arc::new(ManualClock::new(t0()));
    let n = NotifyConfig {
        discord: Some(DiscordConfig {
            webhooks: DiscordWebhooks {
                trades: Some(fake.webhook(1, "trades-token-secret")),
                alerts: Some(fake.webhook(2, "alerts-token-secret")),
                reports: None,
            },
            critical_role_id: None,
        }),
        ..Default::default()
    };
    let (consumer, worker) = pipeline(&db.store, clock.clone(), &n);
    db.store.append_events(fill_events("r1", t0())).await.expect("append");
    fake.limit_next("2", 1.5);
    consumer.pump().await.expect("pump");
    worker.pass().await.expect("pass");
    assert_eq!(fake.posts().len(), 1, "the 429");
    clock.advance(Duration::milliseconds(1900));
    worker.pass().await.expect("pass");
    assert_eq!(fake.posts().len(), 1, "Retry-After 2 s (longer than the body's 1.5 s) is waited out");
    clock.advance(Duration::milliseconds(100));
    worker.pass().await.expect("pass");
    let posts = fake.posts();
    assert_eq!(posts.len(), 2);
    let fill = &posts[1];
    assert_eq!(fill.status, 200);
    assert_eq!(fill.token, "trades-token-secret", "fills go to the trades webhook");
    assert_eq!(fill.payload["allowed_mentions"], json!({"parse": []}));
    let embed = &fill.payload["embeds"][0];
    assert_eq!(embed["color"], json!(0x2E_CC71));
    assert_eq!(embed["timestamp"], json!("2026-03-02T12:05:00.000Z"));
    assert!(embed["fields"].as_array().is_some_and(|f| f.iter().any(|f| f["value"] == json!("65000.10"))));

    // An exhausted bucket holds the next request back until its reset, without a 429.
    fake.bucket(2, 3.0);
    let crit = NewEvent::new(clock.now(), EventKind::SafeModeOn, Severity::Critical, "drawdown 21 %");
    let report = NewEvent::new(clock.now(), EventKind::ReportProduced, Severity::Info, "weekly report")
        .payload(json!({"period": "weekly", "figures": {"return_pct": "1.10"}}));
    db.store.append_events(vec![crit, report]).await.expect("append");
    consumer.pump().await.expect("pump");
    worker.pass().await.expect("pass");
    let posts = fake.posts();
    assert_eq!(posts.len(), 3, "the critical one, then the bucket is empty");
    assert_eq!(posts[2].token, "alerts-token-secret");
    assert_eq!(posts[2].payload["embeds"][0]["color"], json!(0xE7_4C3C));
    clock.advance(Duration::milliseconds(2900));
    worker.pass().await.expect("pass");
    assert_eq!(fake.posts().len(), 3, "held back until the bucket resets");
    clock.advance(Duration::milliseconds(200));
    worker.pass().await.expect("pass");
    let posts = fake.posts();
    assert_eq!(posts.len(), 4);
    assert_eq!(posts[3].token, "alerts-token-secret", "no reports webhook: the alerts one");
    assert!(posts.iter().all(|p| p.status != 429 || p.at == posts[0].at), "no second 429");
}

#[tokio::test]
async fn a_report_arrives_by_mail_as_html_with_a_plain_alternative_and_the_chart_inline() {
    let sink = SmtpSink::start().await;
    let n = NotifyConfig {
        email: Some(EmailConfig {
            smtp_url: Some(format!("smtp://mcbot:smtp-pass-secret@{}", sink.addr)),
            from: "mcbot@example.org".into(),
            to: vec!["owner@example.org".into()],
            ..Default::default()
        }),
        ..Default::default()
    };
    let clock = Arc::new(ManualClock::new(t0()));
    let notifiers = setup::notifiers(&n, clock.clone(), Some(Channel::Email)).expect("email");
    let png = {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("c.png");
        mcbot::commands::backtest::chart::equity_drawdown(&path, &[0, 3600, 7200], &[1.0, 1.1, 1.05], "equity")
            .expect("chart");
        std::fs::read(path).expect("png")
    };
    let message = mcbot_stages::ports::Message {
        kind: EventKind::ReportProduced,
        severity: Severity::Info,
        title: "daily report".into(),
        body: "P&L +23.00 <USDT>".into(),
        fields: vec![("return_pct".into(), "2.30".into())],
        ts: t0(),
        image_png: Some(png),
        charts: Vec::new(),
    };
    notifiers[0].deliver(mcbot_stages::ports::Route::Reports, &message).await.expect("sent");
    let mails = sink.mails();
    assert_eq!(mails.len(), 1);
    let m = &mails[0];
    assert_eq!(m.from, "mcbot@example.org");
    assert_eq!(m.to, ["owner@example.org"]);
    assert!(m.auth.is_some(), "logged in with the URL's credentials");
    for want in ["multipart/alternative", "text/plain", "text/html", "multipart/related", "image/png", "cid:chart"] {
        assert!(m.data.contains(want), "{want} missing");
    }
    assert!(m.data.contains("Content-ID: <chart>"));
    assert!(m.data.contains("P&amp;L +23.00 &lt;USDT&gt;"), "HTML escaped");
}

/// Captures log lines written on this thread.
#[derive(Clone, Default)]
pub(crate) struct Captured(pub(crate) Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn secrets_never_reach_the_logs_or_the_database() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let db = test_store(Backend::Sqlite).await;
    let discord = FakeDiscord::start().await;
    let clock = Arc::new(ManualClock::new(t0()));
    let mut n = telegram(&dead_url().await);
    n.max_attempts = 2;
    discord.refuse_quoting_the_path();
    n.discord = Some(DiscordConfig {
        webhooks: DiscordWebhooks { alerts: Some(discord.webhook(9, "discord-webhook-secret")), ..Default::default() },
        critical_role_id: None,
    });
    n.email = Some(EmailConfig {
        smtp_url: Some(format!("smtp://mcbot:smtp-pass-secret@{}", dead_url().await.trim_start_matches("http://"))),
        from: "mcbot@example.org".into(),
        to: vec!["owner@example.org".into()],
        alert_min_severity: Severity::Warning,
        ..Default::default()
    });
    let (consumer, worker) = pipeline(&db.store, clock.clone(), &n);
    let e = NewEvent::new(t0(), EventKind::Banned, Severity::Emergency, "the venue banned the IP");
    db.store.append_events(vec![e]).await.expect("append");
    consumer.pump().await.expect("pump");
    for _ in 0..4 {
        worker.pass().await.expect("pass");
        clock.advance(Duration::minutes(1));
    }
    let counts = db.store.delivery_counts().await.expect("counts");
    for c in [Channel::Telegram, Channel::Discord, Channel::Email] {
        let failed = counts.iter().find(|x| x.channel == c && x.status == DeliveryStatus::Failed);
        assert_eq!(failed.map(|x| x.count), Some(1), "{c} gave up after its attempts: {counts:?}");
    }
    let dump = raw_dump(&db.url).await;
    assert!(dump.contains("network") && dump.contains("SMTP") && dump.contains("401"), "errors recorded: {dump}");
    let logged = String::from_utf8_lossy(&logs.0.lock().unwrap_or_else(|e| e.into_inner())).to_string();
    assert!(logged.contains("delivery"), "the failures were logged: {logged}");
    for secret in [TOKEN, "AAH-secret-bot-token", "discord-webhook-secret", "smtp-pass-secret"] {
        assert!(!dump.contains(secret), "{secret} in the database:\n{dump}");
        assert!(!logged.contains(secret), "{secret} in the logs:\n{logged}");
    }
}

/// Every text column of the outbox and the event log, as one string.
async fn raw_dump(url: &str) -> String {
    use sqlx::{Connection, Row};
    let mut conn = sqlx::SqliteConnection::connect(url).await.expect("connect");
    let mut out = String::new();
    for sql in [
        "SELECT COALESCE(last_error, '') || ' ' || COALESCE(note, '') || ' ' || message FROM deliveries",
        "SELECT message || ' ' || payload FROM events",
    ] {
        for row in sqlx::query(sql).fetch_all(&mut conn).await.expect("dump") {
            out.push_str(&row.get::<String, _>(0));
            out.push('\n');
        }
    }
    out
}

mod chat {
    use std::sync::Arc;

    use chrono::{DateTime, Duration, Utc};
    use mcbot::app::{App, open_store};
    use mcbot::config::{Config, TelegramConfig};
    use mcbot::notify::chat::{ChatControl, Polled, Poller};
    use mcbot::notify::secrets::Scrubber;
    use mcbot::notify::setup;
    use mcbot::store::Backend;
    use mcbot_schedules::FireOutcome;
    use mcbot_schedules::jobs::TradingCycleJob;
    use mcbot_stages::ManualClock;
    use mcbot_stages::domain::Symbol;
    use mcbot_stages::ports::{EventKind, EventQuery, Store, TradingMode};
    use rust_decimal::Decimal;
    use serde_json::json;

    use super::{CHAT, TOKEN};
    use crate::support::db::{fresh_sqlite_url, test_store};
    use crate::support::fake_telegram::{FakeTelegram, Fault};

    fn start() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z").map(|t| t.to_utc()).unwrap_or_default()
    }

    async fn app(url: &str, fake: &FakeTelegram, dir: &std::path::Path) -> (App, Arc<ManualClock>) {
        let mut cfg = Config::default();
        cfg.market.symbols = ["BTCUSDT", "ETHUSDT"].iter().map(|s| Symbol::new(s).expect("symbol")).collect();
        cfg.sim.start = start();
        cfg.sim.tick_size = Decimal::new(1, 4);
        cfg.risk.kill_switch_file = dir.join("KILL");
        cfg.database.data_dir = dir.to_path_buf();
        cfg.notify.telegram =
            Some(TelegramConfig { token: Some(TOKEN.into()), chat_ids: vec![CHAT], api_url: fake.url.clone() });
        let bar = start() + Duration::hours(30);
        let clock = Arc::new(ManualClock::new(bar + Duration::seconds(7)));
        let app = App::build(cfg, open_store(url).await.expect("store"), clock.clone()).await.expect("app");
        (app, clock)
    }

    #[tokio::test]
    async fn kill_from_the_owner_needs_a_confirmation_then_halts_and_the_next_cycle_places_nothing() {
        let db = fresh_sqlite_url();
        let fake = FakeTelegram::start(TOKEN).await;
        let (app, _clock) = app(db.url(), &fake, db.dir()).await;
        let poller = app.chat_poller().expect("poller").expect("telegram is configured");
        poller.register_commands().await.expect("setMyCommands");
        let cmds = &fake.calls_of("setmycommands")[0].params["commands"];
        assert!(cmds.as_array().is_some_and(|c| c.iter().any(|c| c["command"] == json!("kill"))), "{cmds}");

        fake.push_text(CHAT, "/kill");
        assert_eq!(poller.poll_once().await.expect("poll"), Polled::Handled(1));
        let ask = fake.calls_of("sendmessage").pop().expect("a question");
        assert_eq!(ask.params["chat_id"], json!(CHAT));
        assert!(ask.params["reply_markup"].to_string().contains("kill:halt"), "{}", ask.params);
        assert_eq!(app.store.load_state().await.expect("state").trading, TradingMode::Active, "nothing yet");

        fake.push_callback(CHAT, 1, "kill:halt");
        assert_eq!(poller.poll_once().await.expect("poll"), Polled::Handled(1));
        assert_eq!(fake.calls_of("answercallbackquery").len(), 1, "the button press is answered");
        assert_eq!(app.store.load_state().await.expect("state").trading, TradingMode::Halted);
        let done = fake.texts().pop().expect("an answer");
        assert!(done.contains("halted") && done.contains("open orders cancelled: 0"), "{done}");
        let q = EventQuery { kinds: vec![EventKind::TradingKilled], ..Default::default() };
        let killed = app.store.read_events(&q).await.expect("events");
        assert_eq!(killed.len(), 1);
        assert_eq!(killed[0].event.payload["issuer"], json!("telegram"));
        assert_eq!(killed[0].event.payload["reason"], json!(format!("telegram chat {CHAT}")));
        assert!(app.store.open_orders().await.expect("orders").is_empty());

        let bar = app.current_bar();
        let Some(FireOutcome::Ran { detail, .. }) = app.runtime.fire_named(TradingCycleJob::NAME, bar).await else {
            panic!("the cycle runs")
        };
        assert!(detail["orders"].as_array().is_none_or(Vec::is_empty), "a killed bot places nothing: {detail}");
    }

    #[tokio::test]
    async fn a_chat_that_is_not_configured_hears_nothing_and_changes_nothing() {
        let db = fresh_sqlite_url();
        let fake = FakeTelegram::start(TOKEN).await;
        let (app, _clock) = app(db.url(), &fake, db.dir()).await;
        let poller = app.chat_poller().expect("poller").expect("telegram is configured");
        let before = app.store.load_state_versioned().await.expect("state");
        fake.push_text(999, "/kill");
        fake.push_callback(999, 1, "kill:flatten");
        fake.push_text(999, "/status");
        assert_eq!(poller.poll_once().await.expect("poll"), Polled::Handled(3));
        assert!(fake.calls_of("sendmessage").is_empty(), "nothing is sent to that chat");
        assert!(fake.calls_of("answercallbackquery").is_empty());
        let after = app.store.load_state_versioned().await.expect("state");
        assert_eq!(before.version, after.version, "no state change");
        let q = EventQuery { kinds: vec![EventKind::UnauthorizedChat], ..Default::default() };
        let refused = app.store.read_events(&q).await.expect("events");
        assert_eq!(refused.len(), 1, "recorded once, not per message");
        assert_eq!(refused[0].event.payload["chat_id"], json!(999));
    }

    #[tokio::test]
    async fn of_two_replicas_on_one_postgres_exactly_one_polls_and_a_conflict_backs_off() {
        let db = test_store(Backend::Postgres).await;
        let fake = FakeTelegram::start(TOKEN).await;
        let n = super::telegram(&fake.url);
        let settings = setup::telegram_settings(&n).expect("settings");
        let clock = Arc::new(ManualClock::new(super::t0()));
        let replica = |holder: &str, store: mcbot::store::SqlStore| {
            let shared: Arc<dyn Store> = Arc::new(store.clone());
            let exchange: Arc<dyn mcbot_stages::ports::Exchange> = Arc::new(mcbot_stages::sim::SimExchange::new(
                mcbot_stages::sim::MarketSource::Replay(Default::default()),
                mcbot_stages::sim::SimConfig {
                    quote: "USDT".into(),
                    initial_cash: Decimal::from(1000),
                    fee_rate: Decimal::ZERO,
                    slippage_bps: Decimal::ZERO,
                    timeframe: mcbot_stages::domain::Timeframe::from_minutes(60).expect("1h"),
                    instruments: vec![],
                },
                clock.clone(),
            ));
            let control = Arc::new(ChatControl::new([CHAT], shared, exchange, clock.clone(), None, "mock"));
            Poller::new(
                &settings,
                control,
                Arc::new(store),
                clock.clone(),
                holder.into(),
                0,
                Arc::new(Scrubber::default()),
            )
            .expect("poller")
        };
        let second_store = mcbot::store::SqlStore::open(&db.url).await.expect("second connection");
        let a = replica("replica-a", db.store.clone());
        let b = replica("replica-b", second_store);
        let mut polled = 0;
        for _ in 0..5 {
            for p in [&a, &b] {
                if let Polled::Handled(_) = p.poll_once().await.expect("poll") {
                    polled += 1;
                }
            }
            clock.advance(Duration::seconds(10));
        }
        assert_eq!(polled, 5, "one replica polls each round");
        assert_eq!(fake.calls_of("getupdates").len(), 5, "the other never calls getUpdates");
        assert_eq!(b.poll_once().await.expect("poll"), Polled::NotLeader);
        fake.fail_next("getupdates", Fault::Conflict);
        assert_eq!(a.poll_once().await.expect("poll"), Polled::Conflict);
        let pg = db.store.backend();
        assert_eq!(pg, "postgres");
    }
}

/// `mcbot run-once` sends what its cycle produced before it exits; what it could not send within
/// `notify.flush_timeout_secs` stays pending and the next process sends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_once_delivers_before_it_exits_and_leaves_the_rest_to_the_next_process() {
    use crate::support::cli::{json, mcbot, workdir};
    let fake = FakeTelegram::start(TOKEN).await;
    let dead = dead_url().await;
    let dir = workdir();
    let path = dir.path().to_path_buf();
    let run = move |api: String, args: &'static [&'static str]| {
        let path = path.clone();
        tokio::task::spawn_blocking(move || {
            let env = [
                ("MCBOT_NOTIFY__TELEGRAM__TOKEN", TOKEN.to_owned()),
                ("MCBOT_NOTIFY__TELEGRAM__CHAT_IDS", format!("[{CHAT}]")),
                ("MCBOT_NOTIFY__TELEGRAM__API_URL", api),
                ("MCBOT_NOTIFY__ROUTES__CYCLE_FINISHED", "alerts".to_owned()),
                ("MCBOT_NOTIFY__FLUSH_TIMEOUT_SECS", "1".to_owned()),
            ];
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            mcbot(&path, args, &env)
        })
    };
    // Telegram unreachable: the cycle runs, its message waits at most the flush time and stays pending.
    let first = run(dead, &["run-once", "--output", "json"]).await.expect("join");
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let status = run(fake.url.clone(), &["notify", "status", "--output", "json"]).await.expect("join");
    let counts = json(&status);
    let pending = counts
        .as_array()
        .and_then(|a| a.iter().find(|c| c["channel"] == json!("telegram") && c["status"] == json!("pending")))
        .and_then(|c| c["count"].as_u64());
    let Some(pending) = pending.filter(|n| *n >= 1) else { panic!("the cycle's messages wait: {counts}") };
    assert!(fake.texts().is_empty());
    // The next process (the same bar: nothing traded again) sends what was left, before it exits.
    let second = run(fake.url.clone(), &["run-once"]).await.expect("join");
    assert!(second.status.success(), "{}", String::from_utf8_lossy(&second.stderr));
    let texts = fake.texts();
    assert_eq!(texts.len() as u64, pending, "every pending message, once: {texts:?}");
    assert!(texts.iter().any(|t| t.contains("cycle finished")), "{texts:?}");
    let out = String::from_utf8_lossy(&second.stdout).to_string() + &String::from_utf8_lossy(&second.stderr);
    assert!(!out.contains("AAH-secret-bot-token"), "{out}");
}

/// A real `kill -9` of the scheduler while its messages are pending (Telegram unreachable): after the restart
/// every one of them arrives, with the unclean stop reported, and at most one twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduler_killed_with_messages_pending_delivers_them_after_its_restart() {
    use crate::support::cli::{command, json, mcbot, workdir};
    let fake = FakeTelegram::start(TOKEN).await;
    let dead = dead_url().await;
    let dir = workdir();
    let env = |api: &str| {
        vec![
            ("MCBOT_NOTIFY__TELEGRAM__TOKEN", TOKEN.to_owned()),
            ("MCBOT_NOTIFY__TELEGRAM__CHAT_IDS", format!("[{CHAT}]")),
            ("MCBOT_NOTIFY__TELEGRAM__API_URL", api.to_owned()),
        ]
    };
    let spawn = |api: &str| {
        let env = env(api);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        command(dir.path(), &["scheduler"], &env)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("scheduler starts")
    };
    let pending = |api: &str| {
        let env = env(api);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let out = mcbot(dir.path(), &["notify", "status", "--output", "json"], &env);
        if !out.status.success() {
            return 0;
        }
        json(&out)
            .as_array()
            .and_then(|a| a.iter().find(|c| c["channel"] == json!("telegram") && c["status"] == json!("pending")))
            .and_then(|c| c["count"].as_u64())
            .unwrap_or(0)
    };
    let mut first = spawn(&dead);
    let mut waited = 0;
    while pending(&dead) == 0 {
        waited += 1;
        assert!(waited < 300, "the start message never became a pending delivery");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    first.kill().expect("kill -9");
    first.wait().expect("reaped");
    assert!(fake.texts().is_empty());

    let mut second = spawn(&fake.url);
    let mut waited = 0;
    while !fake.texts().iter().any(|t| t.contains("crashed")) || fake.texts().len() < 3 {
        waited += 1;
        assert!(waited < 300, "not delivered after the restart: {:?}", fake.texts());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let pid = second.id().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
    second.wait().expect("stopped");
    let texts = fake.texts();
    let started = texts.iter().filter(|t| t.contains("scheduler started")).count();
    let crashed = texts.iter().filter(|t| t.contains("ended without stopping cleanly")).count();
    assert!(started >= 2 && crashed >= 1, "both starts and the crash: {texts:?}");
    // Each message is unique (its time and pid are in it): at most one may arrive twice, none three times.
    let mut seen = std::collections::HashMap::new();
    for t in &texts {
        *seen.entry(t.clone()).or_insert(0) += 1;
    }
    assert!(seen.values().all(|n| *n <= 2) && seen.values().filter(|n| **n == 2).count() <= 1, "{texts:?}");
    assert_eq!(pending(&fake.url), 0, "nothing left behind");
}

#[tokio::test]
async fn a_discord_report_carries_its_chart_as_an_attached_png_the_embed_shows() {
    let fake = FakeDiscord::start().await;
    let n = NotifyConfig {
        discord: Some(DiscordConfig {
            webhooks: DiscordWebhooks { alerts: Some(fake.webhook(2, "alerts-token")), ..Default::default() },
            critical_role_id: None,
        }),
        ..Default::default()
    };
    let clock = Arc::new(ManualClock::new(t0()));
    let notifiers = setup::notifiers(&n, clock, Some(Channel::Discord)).expect("discord");
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("c.png");
    mcbot::commands::backtest::chart::equity_drawdown(&path, &[0, 3600, 7200], &[1.0, 1.1, 1.05], "equity")
        .expect("chart");
    let message = mcbot_stages::ports::Message {
        kind: EventKind::ReportProduced,
        severity: Severity::Info,
        title: "weekly report".into(),
        body: "+1.10 %".into(),
        fields: vec![("return_pct".into(), "1.10".into())],
        ts: t0(),
        image_png: Some(std::fs::read(&path).expect("png")),
        charts: Vec::new(),
    };
    notifiers[0].deliver(mcbot_stages::ports::Route::Reports, &message).await.expect("sent");
    let posts = fake.posts();
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].status, 200, "the fake found attachment://chart.png among the uploads");
    assert_eq!(posts[0].payload["embeds"][0]["image"]["url"], json!("attachment://chart.png"));
    let (form, name, bytes) = &posts[0].files[0];
    assert_eq!((form.as_str(), name.as_str()), ("files[0]", "chart.png"));
    assert!(is_png(bytes));
}

/// One contract for every outbox: the in-memory one the rules are unit-tested on, SQLite and PostgreSQL.
async fn outbox_contract(o: &dyn DeliveryStore) {
    use mcbot_stages::ports::{Message, NewDelivery, Route};
    let row = |event_id: i64, channel: Channel, status: DeliveryStatus, key: &str, secs: i64, resolves: bool| {
        let at = t0() + Duration::seconds(secs);
        NewDelivery {
            event_id,
            occurrence: 0,
            channel,
            route: Route::Alerts,
            status,
            fatigue_key: Some(key.into()),
            resolves,
            note: None,
            message: Message {
                kind: EventKind::StaleData,
                severity: Severity::Warning,
                title: format!("e{event_id}"),
                body: "b".into(),
                fields: vec![("qty".into(), "0.010".into())],
                ts: at,
                image_png: None,
                charts: Vec::new(),
            },
            created_at: at,
            follow_up: None,
        }
    };
    let (tg, log) = (Channel::Telegram, Channel::Log);
    let added = o
        .enqueue(vec![
            row(1, tg, DeliveryStatus::Pending, "k", 0, false),
            row(1, log, DeliveryStatus::Pending, "k", 0, false),
            row(2, tg, DeliveryStatus::Suppressed, "k", 10, false),
            row(3, tg, DeliveryStatus::Suppressed, "k", 20, false),
        ])
        .await
        .expect("enqueue");
    assert_eq!(added, 4);
    assert_eq!(o.enqueue(vec![row(1, tg, DeliveryStatus::Pending, "k", 0, false)]).await.expect("again"), 0);
    let p = o.pending(tg, 10).await.expect("pending");
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].new.message.fields, [("qty".to_owned(), "0.010".to_owned())], "decimals as written");
    assert_eq!(p[0].next_attempt_at, t0());
    let first = p[0].id;
    o.mark_retry(first, 1, "refused", t0() + Duration::seconds(5)).await.expect("retry");
    let p = o.pending(tg, 10).await.expect("pending");
    assert_eq!((p[0].attempts, p[0].last_error.as_deref()), (1, Some("refused")));
    assert_eq!(p[0].next_attempt_at, t0() + Duration::seconds(5));
    let last = o.last_unsuppressed(tg, "k").await.expect("last").expect("one");
    assert_eq!(last.id, first);
    assert_eq!(o.suppressed_after(tg, "k", first).await.expect("n"), (2, Some(t0() + Duration::seconds(10))));
    assert_eq!(o.active_since(tg, "k").await.expect("since"), Some(t0()));
    o.enqueue(vec![row(4, tg, DeliveryStatus::Pending, "k", 30, true)]).await.expect("resolved");
    assert_eq!(o.active_since(tg, "k").await.expect("since"), None, "resolved");
    assert!(o.resolved_after(tg, "k", first).await.expect("resolved"), "a resolving row after the first");
    assert!(!o.resolved_after(log, "k", 0).await.expect("resolved"), "not on another channel");
    assert!(!o.resolved_after(tg, "other", 0).await.expect("resolved"), "not for another key");
    o.mark_failed(first, 2, "gave up").await.expect("failed");
    o.mark_sent(o.pending(log, 1).await.expect("log")[0].id, 1, t0()).await.expect("sent");
    let counts = o.delivery_counts().await.expect("counts");
    let get = |c: Channel, s: DeliveryStatus| counts.iter().find(|x| x.channel == c && x.status == s).map(|x| x.count);
    assert_eq!(get(tg, DeliveryStatus::Failed), Some(1));
    assert_eq!(get(tg, DeliveryStatus::Suppressed), Some(2));
    assert_eq!(get(log, DeliveryStatus::Sent), Some(1));
    assert_eq!(o.requeue_failed(Some(log), t0()).await.expect("none"), 0);
    assert_eq!(o.requeue_failed(None, t0() + Duration::minutes(1)).await.expect("one"), 1);
    let p = o.pending(tg, 10).await.expect("pending");
    assert_eq!(p[0].id, first, "in id order, the re-queued one first");
    assert_eq!((p[0].attempts, p[0].next_attempt_at), (0, t0() + Duration::minutes(1)));

    // Follow-ups: an emergency repeats until acknowledged, a warning escalates until closed.
    use mcbot_stages::ports::FollowUp;
    let alarm =
        NewDelivery { follow_up: Some(FollowUp::Repeat), ..row(10, tg, DeliveryStatus::Pending, "b", 40, false) };
    let warn =
        NewDelivery { follow_up: Some(FollowUp::Escalate), ..row(11, tg, DeliveryStatus::Pending, "w", 50, false) };
    let again = NewDelivery { occurrence: 1, ..alarm.clone() };
    o.enqueue(vec![alarm, warn, again]).await.expect("follow-ups");
    let open = o.open_follow_ups(10).await.expect("open");
    let ids: Vec<(i64, Option<FollowUp>)> = open.iter().map(|d| (d.new.event_id, d.new.follow_up)).collect();
    assert_eq!(ids, [(10, Some(FollowUp::Repeat)), (11, Some(FollowUp::Escalate))], "first occurrences only");
    assert_eq!(o.acknowledge(t0() + Duration::minutes(2)).await.expect("ack"), 1, "only the repeating one");
    let open = o.open_follow_ups(10).await.expect("open");
    assert_eq!(open.len(), 1);
    o.close_follow_up(open[0].id, t0() + Duration::minutes(3)).await.expect("close");
    assert!(o.open_follow_ups(10).await.expect("open").is_empty());

    // Pruning takes sent and suppressed rows before the cut, never pending or failed ones.
    let before: i64 = o.delivery_counts().await.expect("counts").iter().map(|c| c.count).sum();
    let pruned = o.prune_deliveries(t0() + Duration::seconds(25)).await.expect("prune");
    assert_eq!(pruned, 3, "the sent log row and the two suppressed ones");
    let after: i64 = o.delivery_counts().await.expect("counts").iter().map(|c| c.count).sum();
    assert_eq!(after, before - 3);
    assert_eq!(o.pending(tg, 10).await.expect("pending")[0].id, first, "the pending row stays");

    // Mutes: until a time, expired ones gone, a past time unmutes; each with its event.
    let muted = |what: &str| NewEvent::new(t0(), EventKind::NotificationsMuted, Severity::Info, what);
    o.set_mute("stale_data", t0() + Duration::hours(1), muted("stale_data muted")).await.expect("mute");
    o.set_mute("all", t0() + Duration::minutes(1), muted("all muted")).await.expect("mute");
    assert_eq!(o.mutes(t0()).await.expect("mutes").len(), 2);
    let later = o.mutes(t0() + Duration::minutes(5)).await.expect("mutes");
    assert_eq!(later, [("stale_data".to_owned(), t0() + Duration::hours(1))]);
    o.set_mute("stale_data", t0(), muted("stale_data unmuted")).await.expect("unmute");
    assert!(o.mutes(t0() + Duration::minutes(5)).await.expect("mutes").is_empty());

    // A batch is written whole, in its own order (the worker and the fatigue rules read by id), every column as
    // given; a row repeated within the batch, or already there, is added once.
    let mut batch = Vec::new();
    for (event, secs) in [(70, 70), (60, 60), (65, 65)] {
        let mut r = row(event, Channel::Email, DeliveryStatus::Pending, "batch", secs, false);
        r.note = Some(format!("note \"{event}\" 'quoted'"));
        r.route = Route::Reports;
        r.follow_up = Some(FollowUp::Escalate);
        batch.push(r);
    }
    batch.push(batch[0].clone());
    batch.push(row(1, tg, DeliveryStatus::Pending, "k", 0, false));
    batch.push(NewDelivery {
        resolves: true,
        fatigue_key: None,
        ..row(66, Channel::Email, DeliveryStatus::Pending, "", 66, false)
    });
    assert_eq!(o.enqueue(batch.clone()).await.expect("batch"), 4, "three rows, a resolving one; no repeats");
    let p = o.pending(Channel::Email, 10).await.expect("pending");
    let order: Vec<i64> = p.iter().map(|d| d.new.event_id).collect();
    assert_eq!(order, [70, 60, 65, 66], "ids follow the batch's order");
    assert!(p.windows(2).all(|w| w[0].id < w[1].id));
    assert_eq!(p[0].new, batch[0], "every column as given");
    assert_eq!(p[0].next_attempt_at, batch[0].created_at, "due at once");
    assert_eq!(p[3].new, batch[batch.len() - 1]);
}

#[tokio::test]
async fn every_outbox_keeps_the_same_contract() {
    outbox_contract(&mcbot::notify::MemoryOutbox::new()).await;
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let db = test_store(backend).await;
        outbox_contract(&db.store).await;
        // Every mute's event is in the log, written with it.
        let query = EventQuery { kinds: vec![EventKind::NotificationsMuted], ..Default::default() };
        let events = db.store.read_events(&query).await.expect("events");
        let said: Vec<&str> = events.iter().map(|e| e.event.message.as_str()).collect();
        assert_eq!(said, ["stale_data muted", "all muted", "stale_data unmuted"], "{backend:?}");
    }
}
