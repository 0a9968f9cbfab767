//! The rules that keep alerts useful, end to end on the real store and the fake Telegram, on virtual time: an
//! emergency repeats every 5 minutes until someone acknowledges it (button or `/ack`), a warning still active
//! after 30 minutes escalates to critical, similar alerts waiting together go out as one message, `/mute`
//! silences a kind for a while; the chat poller's offset survives a restart; `/profit` and `/health` answer
//! with their figures; a long message is split within Discord's limits; the outbox is pruned.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use mcbot::app::{App, open_store};
use mcbot::config::{Config, DiscordConfig, DiscordWebhooks, NotifyConfig, TelegramConfig};
use mcbot::notify::chat::Polled;
use mcbot::store::Backend;
use mcbot_stages::domain::Symbol;
use mcbot_stages::ports::{Channel, DeliveryStatus, DeliveryStore, EventKind, EventQuery, NewEvent, Severity, Store};
use mcbot_stages::{Clock, ManualClock};
use rust_decimal::Decimal;
use serde_json::json;

use crate::notifications::{CHAT, TOKEN, pipeline, t0, telegram};
use crate::support::db::{fresh_sqlite_url, test_store};
use crate::support::fake_discord::FakeDiscord;
use crate::support::fake_telegram::FakeTelegram;

fn start() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z").map(|t| t.to_utc()).unwrap_or_default()
}

/// The whole bot on an SQLite file with Telegram at `fake`, on a manual clock.
async fn app(fake: &FakeTelegram, url: &str, dir: &std::path::Path) -> (App, Arc<ManualClock>) {
    let mut cfg = Config::default();
    cfg.market.symbols = ["BTCUSDT", "ETHUSDT"].iter().map(|s| Symbol::new(s).expect("symbol")).collect();
    cfg.sim.start = start();
    cfg.sim.tick_size = Decimal::new(1, 4);
    cfg.risk.kill_switch_file = dir.join("KILL");
    cfg.database.data_dir = dir.to_path_buf();
    cfg.notify.telegram =
        Some(TelegramConfig { token: Some(TOKEN.into()), chat_ids: vec![CHAT], api_url: fake.url.clone() });
    let clock = Arc::new(ManualClock::new(start() + Duration::hours(30) + Duration::seconds(7)));
    let app = App::build(cfg, open_store(url).await.expect("store"), clock.clone()).await.expect("app");
    (app, clock)
}

/// Texts that arrived whose text contains `needle`.
fn arrived(fake: &FakeTelegram, needle: &str) -> usize {
    fake.texts().iter().filter(|t| t.contains(needle)).count()
}

#[tokio::test]
async fn an_emergency_repeats_every_five_minutes_until_the_button_or_ack_stops_it() {
    let db = fresh_sqlite_url();
    let fake = FakeTelegram::start(TOKEN).await;
    let (app, clock) = app(&fake, db.url(), db.dir()).await;
    let notify = app.notifications().expect("notifications");
    let poller = app.chat_poller().expect("poller").expect("telegram is configured");
    let emergency = |what: &str| {
        NewEvent::new(
            clock.now(),
            EventKind::OrderOutcomeUnknown,
            Severity::Emergency,
            format!("{what}: outcome unknown"),
        )
        .dedup(format!("unknown:{what}"))
    };
    let run = || async {
        notify.consumer.pump().await.expect("pump");
        notify.worker.pass().await.expect("pass");
    };
    app.store.append_events(vec![emergency("order A")]).await.expect("append");
    run().await;
    assert_eq!(arrived(&fake, "order A"), 1);
    let first = fake.calls_of("sendmessage").pop().expect("sent");
    assert!(first.params["reply_markup"].to_string().contains("\"ack\""), "an Acknowledge button: {}", first.params);
    clock.advance(Duration::minutes(4) + Duration::seconds(59));
    run().await;
    assert_eq!(arrived(&fake, "order A"), 1, "nothing before 5 minutes");
    clock.advance(Duration::seconds(1));
    run().await;
    assert_eq!(arrived(&fake, "order A"), 2, "again at 5 minutes");
    assert!(fake.texts().last().is_some_and(|t| t.contains("repeat 1, not acknowledged")), "{:?}", fake.texts());
    clock.advance(Duration::minutes(5));
    run().await;
    run().await;
    assert_eq!(arrived(&fake, "order A"), 3, "and every 5 minutes, once each");

    // The button acknowledges: no more repeats, and the acknowledgment is an event with the chat as issuer.
    fake.push_callback(CHAT, 1, "ack");
    assert_eq!(poller.poll_once().await.expect("poll"), Polled::Handled(1));
    assert!(fake.texts().last().is_some_and(|t| t.contains("acknowledged")));
    for _ in 0..4 {
        clock.advance(Duration::minutes(5));
        run().await;
    }
    assert_eq!(arrived(&fake, "order A"), 3, "acknowledged: silent");
    let acks = app
        .store
        .read_events(&EventQuery { kinds: vec![EventKind::AlertAcknowledged], ..Default::default() })
        .await
        .expect("events");
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0].event.payload["issuer"], json!("telegram"));
    assert_eq!(acks[0].event.payload["reason"], json!(format!("telegram chat {CHAT}")));

    // `/ack` does the same for the next one.
    app.store.append_events(vec![emergency("order B")]).await.expect("append");
    run().await;
    clock.advance(Duration::minutes(5));
    run().await;
    assert_eq!(arrived(&fake, "order B"), 2);
    fake.push_text(CHAT, "/ack");
    assert_eq!(poller.poll_once().await.expect("poll"), Polled::Handled(1));
    for _ in 0..3 {
        clock.advance(Duration::minutes(5));
        run().await;
    }
    assert_eq!(arrived(&fake, "order B"), 2, "acknowledged with /ack");
}

#[tokio::test]
async fn a_warning_still_active_after_thirty_minutes_escalates_once_and_a_cleared_one_does_not() {
    let db = test_store(Backend::Postgres).await;
    let fake = FakeTelegram::start(TOKEN).await;
    let clock = Arc::new(ManualClock::new(t0()));
    let (consumer, worker) = pipeline(&db.store, clock.clone(), &telegram(&fake.url));
    let stale = |sym: &str| {
        NewEvent::new(clock.now(), EventKind::StaleData, Severity::Warning, format!("{sym} data is 3 bars old"))
            .dedup(format!("stale_data:{sym}"))
    };
    db.store.append_events(vec![stale("ETHUSDT")]).await.expect("append");
    consumer.pump().await.expect("pump");
    worker.pass().await.expect("pass");
    clock.advance(Duration::minutes(10));
    db.store.append_events(vec![stale("XRPUSDT")]).await.expect("append");
    consumer.pump().await.expect("pump");
    worker.pass().await.expect("pass");
    clock.advance(Duration::minutes(5));
    let cleared = NewEvent::new(clock.now(), EventKind::DataRecovered, Severity::Info, "XRPUSDT fresh")
        .dedup("stale_data:XRPUSDT");
    db.store.append_events(vec![cleared]).await.expect("append");
    consumer.pump().await.expect("pump");
    worker.pass().await.expect("pass");
    assert_eq!(fake.texts().len(), 3, "two warnings and a resolved: {:?}", fake.texts());
    clock.advance(Duration::minutes(14) + Duration::seconds(59));
    worker.pass().await.expect("pass");
    assert_eq!(arrived(&fake, "escalated"), 0, "not before 30 minutes");
    clock.advance(Duration::seconds(1));
    worker.pass().await.expect("pass");
    let escalated: Vec<String> = fake.texts().into_iter().filter(|t| t.contains("escalated")).collect();
    assert_eq!(escalated.len(), 1, "{:?}", fake.texts());
    assert!(escalated[0].contains("ETHUSDT") && escalated[0].contains("🔴"), "as critical: {}", escalated[0]);
    assert!(escalated[0].contains("still active after 30 min"), "{}", escalated[0]);
    for _ in 0..6 {
        clock.advance(Duration::minutes(10));
        worker.pass().await.expect("pass");
    }
    assert_eq!(arrived(&fake, "escalated"), 1, "once; the cleared XRPUSDT never");
}

#[tokio::test]
async fn similar_alerts_waiting_together_arrive_as_one_message() {
    let db = test_store(Backend::Sqlite).await;
    let fake = FakeTelegram::start(TOKEN).await;
    let clock = Arc::new(ManualClock::new(t0()));
    let (consumer, worker) = pipeline(&db.store, clock.clone(), &telegram(&fake.url));
    let stale: Vec<NewEvent> = ["BTCUSDT", "ETHUSDT", "XRPUSDT"]
        .iter()
        .map(|s| {
            NewEvent::new(clock.now(), EventKind::StaleData, Severity::Warning, format!("{s} data is 3 bars old"))
                .dedup(format!("stale_data:{s}"))
        })
        .collect();
    let other = NewEvent::new(clock.now(), EventKind::JobFailed, Severity::Warning, "report job failed");
    db.store.append_events(stale.into_iter().chain([other]).collect()).await.expect("append");
    consumer.pump().await.expect("pump");
    worker.pass().await.expect("pass");
    let texts = fake.texts();
    assert_eq!(texts.len(), 2, "three stale symbols in one message, the job failure in its own: {texts:?}");
    assert!(texts[0].contains("(+2 similar)"), "{}", texts[0]);
    for s in ["BTCUSDT", "ETHUSDT", "XRPUSDT"] {
        assert!(texts[0].contains(s), "{s} in {}", texts[0]);
    }
    assert!(texts[1].contains("report job failed"));
    let counts = db.store.delivery_counts().await.expect("counts");
    let sent = counts.iter().find(|c| c.channel == Channel::Telegram && c.status == DeliveryStatus::Sent);
    assert_eq!(sent.map(|c| c.count), Some(4), "every row is marked sent");
}

#[tokio::test]
async fn mute_silences_a_kind_for_its_time_but_never_a_critical_message() {
    let db = fresh_sqlite_url();
    let fake = FakeTelegram::start(TOKEN).await;
    let (app, clock) = app(&fake, db.url(), db.dir()).await;
    let notify = app.notifications().expect("notifications");
    let poller = app.chat_poller().expect("poller").expect("telegram is configured");
    fake.push_text(CHAT, "/mute stale_data 1h");
    fake.push_text(CHAT, "/mute nonsense 1h");
    assert_eq!(poller.poll_once().await.expect("poll"), Polled::Handled(2));
    let replies = fake.texts();
    assert!(replies[0].contains("stale_data muted until"), "{replies:?}");
    assert!(replies[1].contains("unknown kind"), "{replies:?}");
    let before = fake.texts().len();
    let stale = NewEvent::new(clock.now(), EventKind::StaleData, Severity::Warning, "BTCUSDT data is 3 bars old")
        .dedup("stale_data:BTCUSDT");
    // The same kind, critical: a mute never silences it.
    let critical = NewEvent::new(clock.now(), EventKind::StaleData, Severity::Critical, "SOLUSDT data 40 bars old")
        .dedup("stale_data:SOLUSDT");
    app.store.append_events(vec![stale, critical]).await.expect("append");
    notify.consumer.pump().await.expect("pump");
    notify.worker.pass().await.expect("pass");
    let new: Vec<String> = fake.texts().split_off(before);
    assert_eq!(new.len(), 1, "only the critical one: {new:?}");
    assert!(new[0].contains("SOLUSDT data 40 bars old"));
    // An hour later the mute is over.
    clock.advance(Duration::minutes(61));
    let stale = NewEvent::new(clock.now(), EventKind::StaleData, Severity::Warning, "ETHUSDT data is 3 bars old")
        .dedup("stale_data:ETHUSDT");
    app.store.append_events(vec![stale]).await.expect("append");
    notify.consumer.pump().await.expect("pump");
    notify.worker.pass().await.expect("pass");
    assert_eq!(arrived(&fake, "ETHUSDT data is 3 bars old"), 1);
    let muted = app
        .store
        .read_events(&EventQuery { kinds: vec![EventKind::NotificationsMuted], ..Default::default() })
        .await
        .expect("events");
    assert_eq!(muted.len(), 1, "the mute is an event");
    assert_eq!(muted[0].event.payload["issuer"], json!("telegram"));
}

#[tokio::test]
async fn a_restarted_poller_neither_replays_nor_loses_a_command() {
    let db = fresh_sqlite_url();
    let fake = FakeTelegram::start(TOKEN).await;
    let (app, clock) = app(&fake, db.url(), db.dir()).await;
    let first = app.chat_poller().expect("poller").expect("telegram is configured");
    fake.push_text(CHAT, "/version");
    assert_eq!(first.poll_once().await.expect("poll"), Polled::Handled(1));
    assert_eq!(fake.texts().len(), 1);
    drop(first);
    // A new process: a command sent while it was down is handled, the old one is not handled again.
    fake.push_text(CHAT, "/help");
    clock.advance(Duration::minutes(5));
    let second = app.chat_poller().expect("poller").expect("telegram is configured");
    assert_eq!(second.poll_once().await.expect("poll"), Polled::Handled(1));
    let texts = fake.texts();
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(texts[1].contains("/mute"), "the help: {}", texts[1]);
    let offsets: Vec<i64> =
        fake.calls_of("getupdates").iter().map(|c| c.params["offset"].as_i64().unwrap_or(0)).collect();
    assert_eq!(offsets, [0, 2], "the restarted poller starts after the handled update");
}

#[tokio::test]
async fn profit_and_health_answer_with_their_figures() {
    let db = fresh_sqlite_url();
    let fake = FakeTelegram::start(TOKEN).await;
    let (app, _clock) = app(&fake, db.url(), db.dir()).await;
    let poller = app.chat_poller().expect("poller").expect("telegram is configured");
    fake.push_text(CHAT, "/profit");
    fake.push_text(CHAT, "/health");
    assert_eq!(poller.poll_once().await.expect("poll"), Polled::Handled(2));
    let texts = fake.texts();
    let profit = &texts[0];
    for want in
        ["realized P&amp;L", "unrealized P&amp;L", "trades", "win rate", "profit factor", "max drawdown", "best symbol"]
    {
        assert!(profit.contains(want), "{want} missing from {profit}");
    }
    let health = &texts[1];
    for want in ["database</b> reachable", "exchange</b> reachable", "BTCUSDT</b> data", "ETHUSDT</b> data"] {
        assert!(health.contains(want), "{want} missing from {health}");
    }
}

#[tokio::test]
async fn a_message_over_discords_limits_arrives_in_parts_each_accepted() {
    let db = test_store(Backend::Sqlite).await;
    let fake = FakeDiscord::start().await;
    let clock = Arc::new(ManualClock::new(t0()));
    let n = NotifyConfig {
        discord: Some(DiscordConfig {
            webhooks: DiscordWebhooks { alerts: Some(fake.webhook(2, "alerts-token")), ..Default::default() },
            critical_role_id: None,
        }),
        ..Default::default()
    };
    let (consumer, worker) = pipeline(&db.store, clock.clone(), &n);
    let long: Vec<String> = (0..300).map(|i| format!("drift line {i:03}: {}", "x".repeat(60))).collect();
    let e = NewEvent::new(clock.now(), EventKind::ReconcileDrift, Severity::Critical, long.join("\n"));
    db.store.append_events(vec![e]).await.expect("append");
    consumer.pump().await.expect("pump");
    worker.pass().await.expect("pass");
    let posts = fake.posts();
    assert!(posts.len() > 1, "split");
    assert!(
        posts.iter().all(|p| p.status == 200),
        "Discord accepted every part: {:?}",
        posts.iter().map(|p| p.status).collect::<Vec<_>>()
    );
    let text: String = posts
        .iter()
        .flat_map(|p| p.payload["embeds"].as_array().cloned().unwrap_or_default())
        .filter_map(|e| e["description"].as_str().map(str::to_owned))
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(text, long.join("\n"), "the whole body, in order");
}

#[tokio::test]
async fn the_health_job_prunes_old_sent_deliveries_and_keeps_pending_ones() {
    let db = fresh_sqlite_url();
    let fake = FakeTelegram::start(TOKEN).await;
    let (app, clock) = app(&fake, db.url(), db.dir()).await;
    let notify = app.notifications().expect("notifications");
    let old = NewEvent::new(clock.now(), EventKind::SafeModeOn, Severity::Critical, "drawdown 21 %");
    app.store.append_events(vec![old]).await.expect("append");
    notify.consumer.pump().await.expect("pump");
    notify.worker.pass().await.expect("pass");
    let sent_before: i64 = app
        .store
        .delivery_counts()
        .await
        .expect("counts")
        .iter()
        .filter(|c| c.status == DeliveryStatus::Sent)
        .map(|c| c.count)
        .sum();
    assert!(sent_before >= 2, "telegram and the log");
    clock.advance(Duration::days(31));
    let bar = app.current_bar();
    assert!(app.runtime.fire_named("health", bar).await.is_some(), "the health job ran");
    let counts = app.store.delivery_counts().await.expect("counts");
    assert!(counts.iter().all(|c| c.status != DeliveryStatus::Sent), "pruned after 30 days: {counts:?}");
}

#[tokio::test]
async fn with_two_chats_a_retry_after_one_failed_does_not_send_the_other_twice() {
    let db = test_store(Backend::Sqlite).await;
    let fake = FakeTelegram::start(TOKEN).await;
    let clock = Arc::new(ManualClock::new(t0()));
    let mut n = telegram(&fake.url);
    if let Some(t) = n.telegram.as_mut() {
        t.chat_ids = vec![CHAT, 222];
    }
    let (consumer, worker) = pipeline(&db.store, clock.clone(), &n);
    fake.fail_next_to(222, "sendmessage", crate::support::fake_telegram::Fault::RetryAfter(2));
    let e = NewEvent::new(clock.now(), EventKind::SafeModeOn, Severity::Critical, "drawdown 21 %");
    db.store.append_events(vec![e]).await.expect("append");
    consumer.pump().await.expect("pump");
    worker.pass().await.expect("pass");
    clock.advance(Duration::seconds(2));
    worker.pass().await.expect("pass");
    let to = |chat: i64| {
        fake.calls_of("sendmessage")
            .iter()
            .filter(|c| {
                c.params["chat_id"] == json!(chat) && c.params["text"].as_str().is_some_and(|t| t.contains("drawdown"))
            })
            .count()
    };
    assert_eq!(to(CHAT), 1, "the chat that got it first is not sent it again");
    assert_eq!(to(222), 2, "the one that failed is retried: {:?}", fake.calls_of("sendmessage"));
    assert!(db.store.pending(Channel::Telegram, 10).await.expect("pending").is_empty());
}

/// TLS: with `tls = "required"`, a server that does not offer STARTTLS gets nothing, not even the login: the
/// mail fails (and is retried later) instead of going out in clear.
#[tokio::test]
async fn required_tls_refuses_a_server_without_starttls_and_sends_nothing_in_clear() {
    use mcbot::config::EmailConfig;
    use mcbot_stages::ports::{Message, Route};
    let sink = crate::support::smtp_sink::SmtpSink::start().await;
    let email = |tls: &str| NotifyConfig {
        email: Some(EmailConfig {
            smtp_url: Some(format!("smtp://mcbot:smtp-pass-secret@{}", sink.addr)),
            tls: tls.into(),
            from: "mcbot@example.org".into(),
            to: vec!["owner@example.org".into()],
            ..Default::default()
        }),
        ..Default::default()
    };
    let clock = Arc::new(ManualClock::new(t0()));
    let message = Message {
        kind: EventKind::SafeModeOn,
        severity: Severity::Critical,
        title: "safe mode on".into(),
        body: "drawdown 21 %".into(),
        fields: vec![],
        ts: t0(),
        image_png: None,
        charts: Vec::new(),
    };
    let required = mcbot::notify::setup::notifiers(&email("required"), clock.clone(), Some(Channel::Email))
        .expect("email")
        .remove(0);
    let err = required.deliver(Route::Alerts, &message).await.expect_err("no STARTTLS offered: refused");
    assert!(!err.message.contains("smtp-pass-secret"), "{}", err.message);
    assert!(sink.mails().is_empty() && sink.logins().is_empty(), "nothing, not even the login, went out in clear");
    // The same server with opportunistic TLS takes it (the sink has no TLS to offer).
    let opportunistic =
        mcbot::notify::setup::notifiers(&email("opportunistic"), clock, Some(Channel::Email)).expect("email").remove(0);
    opportunistic.deliver(Route::Alerts, &message).await.expect("sent");
    assert_eq!(sink.mails().len(), 1);
}

/// An email channel for the sink at `url` (`smtp://` or `smtps://` with the password in it), trusting `ca_file`.
fn email_at(url: String, tls: &str, ca_file: Option<std::path::PathBuf>) -> NotifyConfig {
    NotifyConfig {
        email: Some(mcbot::config::EmailConfig {
            smtp_url: Some(url),
            tls: tls.into(),
            from: "mcbot@example.org".into(),
            to: vec!["owner@example.org".into()],
            ca_file,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Logs of everything this thread does until the guard drops.
fn capture_logs() -> (crate::notifications::Captured, tracing::subscriber::DefaultGuard) {
    let logs = crate::notifications::Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    (logs, tracing::subscriber::set_default(subscriber))
}

/// STARTTLS for real: the sink offers it with a certificate made by the test. A client that does not trust the
/// certificate stops at the handshake (nothing, not even the login, goes out; the delivery stays pending); with
/// the certificate in `notify.email.ca_file` the same delivery goes out on the next pass, upgraded before the
/// login, so AUTH, MAIL, RCPT and DATA all travel encrypted. The password shows in no log line.
#[tokio::test]
async fn starttls_upgrades_before_the_login_and_the_mail_travels_encrypted() {
    use crate::support::smtp_sink::{SinkTls, SmtpSink};
    let (logs, _guard) = capture_logs();
    let sink = SmtpSink::start_with(SinkTls::StartTls).await;
    let dir = tempfile::tempdir().expect("dir");
    let ca = dir.path().join("relay-ca.pem");
    std::fs::write(&ca, &sink.cert_pem).expect("write the certificate");
    let url = format!("smtp://mcbot:smtp-pass-secret@{}", sink.addr);
    let db = test_store(Backend::Sqlite).await;
    let clock = Arc::new(ManualClock::new(t0()));

    let (consumer, untrusting) = pipeline(&db.store, clock.clone(), &email_at(url.clone(), "required", None));
    let e = NewEvent::new(t0(), EventKind::SafeModeOn, Severity::Critical, "drawdown 21 %");
    db.store.append_events(vec![e]).await.expect("append");
    consumer.pump().await.expect("pump");
    untrusting.pass().await.expect("pass");
    assert!(sink.mails().is_empty() && sink.logins().is_empty(), "nothing went out: {:?}", sink.seen());
    let pending = db.store.pending(Channel::Email, 10).await.expect("pending");
    assert_eq!(pending.len(), 1, "kept for the next try");
    let why = pending[0].last_error.clone().unwrap_or_default();
    assert!(why.contains("certificate"), "refused at the handshake: {why}");
    assert!(!sink.handshakes().contains(&Ok(())), "no handshake succeeded: {:?}", sink.handshakes());

    let (_, trusting) = pipeline(&db.store, clock.clone(), &email_at(url, "required", Some(ca)));
    clock.advance(Duration::minutes(5));
    trusting.pass().await.expect("pass");
    let mails = sink.mails();
    assert_eq!(mails.len(), 1, "{:?}", sink.seen());
    assert!(mails[0].encrypted, "the mail came over TLS");
    assert!(mails[0].auth.is_some(), "logged in");
    assert!(mails[0].data.contains("drawdown 21 %"));
    assert_eq!(sink.handshakes().last(), Some(&Ok(())));
    let seen = sink.seen();
    let clear: Vec<&str> = seen.iter().filter(|s| !s.encrypted).map(|s| s.verb.as_str()).collect();
    assert_eq!(clear, ["EHLO", "STARTTLS", "EHLO", "STARTTLS"], "only the greeting and the upgrade in clear");
    let after: Vec<&str> = seen.iter().filter(|s| s.encrypted).map(|s| s.verb.as_str()).collect();
    for verb in ["EHLO", "AUTH", "MAIL", "RCPT", "DATA"] {
        assert!(after.contains(&verb), "{verb} over TLS: {after:?}");
    }
    assert!(db.store.pending(Channel::Email, 10).await.expect("pending").is_empty());
    let logged = String::from_utf8_lossy(&logs.0.lock().unwrap_or_else(|e| e.into_inner())).to_string();
    assert!(logged.contains("delivery"), "the failed try was logged: {logged}");
    assert!(!logged.contains("smtp-pass-secret"), "the password in the logs:\n{logged}");
}

/// `smtps://`: TLS from the first byte, the certificate trusted through `ca_file`; nothing is said in clear.
#[tokio::test]
async fn implicit_tls_sends_everything_encrypted() {
    use crate::support::smtp_sink::{SinkTls, SmtpSink};
    use mcbot_stages::ports::{Message, Route};
    let (logs, _guard) = capture_logs();
    let sink = SmtpSink::start_with(SinkTls::Implicit).await;
    let dir = tempfile::tempdir().expect("dir");
    let ca = dir.path().join("relay-ca.pem");
    std::fs::write(&ca, &sink.cert_pem).expect("write the certificate");
    let n = email_at(format!("smtps://mcbot:smtp-pass-secret@{}", sink.addr), "opportunistic", Some(ca));
    let clock = Arc::new(ManualClock::new(t0()));
    let email = mcbot::notify::setup::notifiers(&n, clock, Some(Channel::Email)).expect("email").remove(0);
    let message = Message {
        kind: EventKind::SafeModeOn,
        severity: Severity::Critical,
        title: "safe mode on".into(),
        body: "drawdown 21 %".into(),
        fields: vec![],
        ts: t0(),
        image_png: None,
        charts: Vec::new(),
    };
    email.deliver(Route::Alerts, &message).await.expect("sent over implicit TLS");
    assert_eq!(sink.mails().len(), 1);
    assert!(sink.mails()[0].encrypted && sink.mails()[0].auth.is_some());
    let seen = sink.seen();
    assert!(!seen.is_empty() && seen.iter().all(|s| s.encrypted), "{seen:?}");
    let logged = String::from_utf8_lossy(&logs.0.lock().unwrap_or_else(|e| e.into_inner())).to_string();
    assert!(!logged.contains("smtp-pass-secret"), "the password in the logs:\n{logged}");
}

/// A `ca_file` without a certificate in it is refused when the channel is built, not at the first alert.
#[tokio::test]
async fn a_ca_file_without_a_certificate_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("dir");
    let ca = dir.path().join("empty.pem");
    std::fs::write(&ca, "not a certificate\n").expect("write");
    let clock = Arc::new(ManualClock::new(t0()));
    for file in [ca, dir.path().join("missing.pem")] {
        let n = email_at("smtp://127.0.0.1:2525".into(), "required", Some(file.clone()));
        let err = mcbot::notify::setup::notifiers(&n, clock.clone(), Some(Channel::Email)).err().expect("refused");
        let text = err.to_string();
        assert!(text.contains("ca_file") && text.contains(&file.display().to_string()), "{text}");
    }
}

/// Run only as the child of the test below: installs the crash hook for the database and fake Telegram given in
/// the environment, then panics for real.
#[test]
#[ignore = "the child process of a_panic_is_recorded_and_sent_at_once_and_not_again_by_the_next_start"]
fn panicking_child() {
    let (Ok(url), Ok(api)) = (std::env::var("MCBOT_TEST_CRASH_DB"), std::env::var("MCBOT_TEST_CRASH_API")) else {
        return;
    };
    let report = mcbot::notify::lifecycle::CrashReport::new(url, telegram(&api), std::time::Duration::from_secs(3));
    mcbot::notify::lifecycle::install_panic_hook(report);
    let broken: Option<u32> = std::env::var("MCBOT_TEST_CRASH_NOTHING").ok().and_then(|v| v.parse().ok());
    let _ = broken.expect("the invariant this test breaks on purpose");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_is_recorded_and_sent_at_once_and_not_again_by_the_next_start() {
    let db = test_store(Backend::Sqlite).await;
    let fake = FakeTelegram::start(TOKEN).await;
    let exe = std::env::current_exe().expect("test binary");
    let (url, api) = (db.url.clone(), fake.url.clone());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(exe)
            .args(["--ignored", "--exact", "notify_rules::panicking_child", "--nocapture"])
            .env("MCBOT_TEST_CRASH_DB", url)
            .env("MCBOT_TEST_CRASH_API", api)
            .output()
            .expect("child runs")
    })
    .await
    .expect("joined");
    assert!(!out.status.success(), "the child panicked");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("crash reported to: telegram"), "{stderr}");
    let texts = fake.texts();
    assert_eq!(texts.len(), 1, "sent before the process died: {texts:?}");
    assert!(texts[0].contains("panicked") && texts[0].contains("the invariant this test breaks on purpose"));
    let crashed = db
        .store
        .read_events(&EventQuery { kinds: vec![EventKind::Crashed], ..Default::default() })
        .await
        .expect("events");
    assert_eq!(crashed.len(), 1, "the crash is in the event log");
    // The next process's consumer finds the crash already delivered on Telegram and does not send it twice.
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let (consumer, worker) = pipeline(&db.store, clock, &telegram(&fake.url));
    consumer.pump().await.expect("pump");
    worker.pass().await.expect("pass");
    assert_eq!(fake.texts().len(), 1, "{:?}", fake.texts());
}
