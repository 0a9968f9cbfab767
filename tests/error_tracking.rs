//! Error tracking against a loopback fake Sentry ingest endpoint that decodes the envelopes the SDK posts:
//! the real scheduler reports a failing job as one error with its tags and fingerprint, sends cron check-ins
//! (in progress, then ok for a job that succeeds and error for one that fails), and no secret appears in
//! anything it sends; a process that panics has its panic captured and flushed before it exits.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use mcbot_stages::ports::{EventKind, NewEvent, Severity, Store};
use serde_json::Value;

use crate::support::cli::{command, workdir};
use crate::support::fake_binance::{FakeBinance, FakeConfig, Fault};

/// One item of an envelope: its type and its JSON payload.
#[derive(Debug, Clone)]
struct Item {
    ty: String,
    payload: Value,
}

/// What the fake received: every raw body and the decoded items.
#[derive(Default)]
struct Received {
    bodies: Vec<String>,
    items: Vec<Item>,
}

/// Decodes an envelope (develop.sentry.dev/sdk/envelopes): a header line, then per item a header line and a
/// payload of `length` bytes (or up to the newline when the header has no length).
fn decode(body: &[u8]) -> Result<Vec<Item>, String> {
    let mut rest = body;
    let line = |rest: &mut &[u8]| -> Option<Vec<u8>> {
        if rest.is_empty() {
            return None;
        }
        let end = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
        let l = rest[..end].to_vec();
        *rest = rest.get(end + 1..).unwrap_or_default();
        Some(l)
    };
    let header = line(&mut rest).ok_or("empty envelope")?;
    serde_json::from_slice::<Value>(&header).map_err(|e| format!("envelope header: {e}"))?;
    let mut items = Vec::new();
    while let Some(h) = line(&mut rest) {
        if h.is_empty() {
            continue;
        }
        let h: Value = serde_json::from_slice(&h).map_err(|e| format!("item header: {e}"))?;
        let ty = h["type"].as_str().ok_or("item without type")?.to_owned();
        let payload = match h["length"].as_u64() {
            Some(n) => {
                let n = usize::try_from(n).map_err(|e| e.to_string())?;
                let p = rest.get(..n).ok_or("short item")?.to_vec();
                rest = rest.get(n..).unwrap_or_default();
                if rest.first() == Some(&b'\n') {
                    rest = &rest[1..];
                }
                p
            }
            None => line(&mut rest).unwrap_or_default(),
        };
        let payload = serde_json::from_slice(&payload).unwrap_or(Value::Null);
        items.push(Item { ty, payload });
    }
    Ok(items)
}

/// A fake Sentry on 127.0.0.1 port 0, project 42: answers 200 `{}` to every envelope and keeps it.
struct FakeSentry {
    port: u16,
    got: Arc<Mutex<Received>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeSentry {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn envelope(State(got): State<Arc<Mutex<Received>>>, body: Bytes) -> &'static str {
    let items = decode(&body).unwrap_or_else(|e| panic!("undecodable envelope ({e}): {body:?}"));
    let mut g = got.lock().unwrap();
    g.bodies.push(String::from_utf8_lossy(&body).into_owned());
    g.items.extend(items);
    "{}"
}

impl FakeSentry {
    async fn start() -> Self {
        let got = Arc::new(Mutex::new(Received::default()));
        let app = Router::new().route("/api/42/envelope/", post(envelope)).with_state(got.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { port, got, server }
    }

    fn dsn(&self) -> String {
        format!("http://{PUBLIC_KEY}@127.0.0.1:{}/42", self.port)
    }

    fn items(&self) -> Vec<Item> {
        self.got.lock().unwrap().items.clone()
    }

    fn bodies(&self) -> Vec<String> {
        self.got.lock().unwrap().bodies.clone()
    }
}

const PUBLIC_KEY: &str = "0123456789abcdef0123456789abcdef";
const API_KEY: &str = "plantedApiKey0123456789";
const API_SECRET: &str = "plantedApiSecret9876543210";
const WEBHOOK: &str = "https://discord.com/api/webhooks/111222333/planted-webhook-token";
const BOT_TOKEN: &str = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw";

fn check_ins(items: &[Item], slug: &str) -> Vec<String> {
    items
        .iter()
        .filter(|i| i.ty == "check_in" && i.payload["monitor_slug"] == slug)
        .map(|i| i.payload["status"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The real scheduler in paper mode: the venue's ticker endpoint refuses every request with an answer that
/// quotes secrets, so the health job fails each time; the trading cycle succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_job_is_one_tagged_fingerprinted_error_with_check_ins_and_nothing_secret_is_sent() {
    let sentry = FakeSentry::start().await;
    let fake = FakeBinance::start(FakeConfig::new(Arc::new(mcbot_stages::SystemClock))).await;
    let refusal = format!(r#"{{"code":-1121,"msg":"Invalid symbol; key {API_KEY} hook {WEBHOOK} bot {BOT_TOKEN}"}}"#);
    fake.fault_next_n(None, "/api/v3/ticker/price", Fault::Body { status: 400, body: refusal }, 10_000);
    let dir = workdir();
    // A failure from before error tracking was turned on: it is history, not sent.
    let url = mcbot::store::SqlStore::embedded_url(&dir.path().join("data"));
    let store = mcbot::app::open_store(&url).await.unwrap();
    let old = NewEvent::new(chrono::Utc::now(), EventKind::JobFailed, Severity::Critical, "ancient failure");
    store.append_events(vec![old]).await.unwrap();
    store.close().await;
    let env = [
        ("MCBOT_EXCHANGE__BINANCE__REST_URL", fake.rest_url.clone()),
        ("MCBOT_EXCHANGE__BINANCE__WS_URL", fake.ws_url.clone()),
        ("MCBOT_EXCHANGE__BINANCE__API_KEY", API_KEY.to_owned()),
        ("MCBOT_EXCHANGE__BINANCE__API_SECRET", API_SECRET.to_owned()),
        ("MCBOT_MARKET__SYMBOLS", r#"["BTCUSDT", "ETHUSDT"]"#.to_owned()),
        ("MCBOT_MARKET__TIMEFRAME", "1m".to_owned()),
        ("MCBOT_STRATEGY__PARAMS__LOOKBACK", "3".to_owned()),
        ("MCBOT_PIPELINE__LOOKBACK_BARS", "10".to_owned()),
        ("MCBOT_SCHEDULE__GRACE_SECS", "3600".to_owned()),
        ("DISCORD_WEBHOOK_URL", WEBHOOK.to_owned()),
        ("TELEGRAM_BOT_TOKEN", BOT_TOKEN.to_owned()),
        ("SENTRY_DSN", sentry.dsn()),
        ("RUST_LOG", "info".to_owned()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut child = command(dir.path(), &["scheduler", "--mode", "paper"], &env)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let started = tokio::task::spawn_blocking(move || BufReader::new(stdout).lines().map_while(Result::ok).next());
    assert!(started.await.unwrap().is_some_and(|l| l.starts_with("mcbot scheduler")));
    let done = |items: &[Item]| {
        let health = check_ins(items, "health");
        let cycle = check_ins(items, "trading-cycle");
        health.contains(&"error".to_owned())
            && cycle.contains(&"ok".to_owned())
            && items.iter().any(|i| i.ty == "event" && i.payload["tags"]["job"] == "health")
    };
    for _ in 0..1200 {
        if done(&sentry.items()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // The first cycle bought; the next one marks the position with the ticker, whose refusal quotes the
    // secrets: the cycle fails with that text in its error.
    let quoted = |items: &[Item]| {
        items.iter().any(|i| i.ty == "event" && i.payload["tags"]["job"] == "trading-cycle")
            && check_ins(items, "trading-cycle").contains(&"error".to_owned())
    };
    fake.advance_bar();
    for _ in 0..1200 {
        if quoted(&sentry.items()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let exit = tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
    assert_eq!(exit.code(), Some(0));
    let items = sentry.items();
    assert!(done(&items), "expected check-ins and an error, got {items:#?}");
    assert!(quoted(&items), "expected the failed cycle, got {items:#?}");

    // Check-ins: in progress first, then the outcome, with the schedule as the monitor's configuration.
    let health = check_ins(&items, "health");
    assert_eq!(health.first().map(String::as_str), Some("in_progress"), "{health:?}");
    assert_eq!(check_ins(&items, "trading-cycle").first().map(String::as_str), Some("in_progress"));
    let config = items
        .iter()
        .find(|i| i.ty == "check_in" && i.payload["monitor_slug"] == "health")
        .map(|i| i.payload["monitor_config"].clone())
        .unwrap();
    assert_eq!(config["schedule"]["value"], "*/5 * * * *", "{config}");
    assert_eq!(config["timezone"], "UTC");
    let finished = items
        .iter()
        .find(|i| i.ty == "check_in" && i.payload["monitor_slug"] == "health" && i.payload["status"] == "error")
        .unwrap();
    assert!(finished.payload["duration"].as_f64().is_some(), "{:?}", finished.payload);

    // The failure: one error per failed run, tagged, with the same fingerprint each time.
    let errors: Vec<&Value> =
        items.iter().filter(|i| i.ty == "event" && i.payload["tags"]["job"] == "health").map(|i| &i.payload).collect();
    let e = errors[0];
    // Error is the protocol's default level, which the SDK leaves out.
    assert!(e["level"].is_null() || e["level"] == "error", "{e}");
    for (tag, want) in
        [("error_kind", "exchange"), ("mode", "paper"), ("venue", "binance"), ("event_kind", "job_failed")]
    {
        assert_eq!(e["tags"][tag], want, "tag {tag}: {e}");
    }
    assert!(e["tags"]["run_id"].as_str().is_some_and(|r| r.starts_with("health@")), "{e}");
    assert_eq!(e["fingerprint"], serde_json::json!(["mcbot", "job_failed", "exchange", "health"]), "{e}");
    assert!(e["release"].as_str().is_some_and(|r| r.starts_with("mcbot@")), "{e}");
    assert_eq!(e["environment"], "paper");
    assert!(e["breadcrumbs"]["values"].as_array().is_some_and(|b| !b.is_empty()), "log lines as breadcrumbs: {e}");
    assert!(errors.iter().all(|x| x["fingerprint"] == e["fingerprint"]));

    // The cycle's error quoted the venue's answer: it arrives with the secrets replaced.
    let cycle = items
        .iter()
        .find(|i| i.ty == "event" && i.payload["tags"]["job"] == "trading-cycle")
        .map(|i| &i.payload)
        .unwrap();
    let message = cycle["message"].as_str().unwrap_or_default();
    assert!(message.contains("Invalid symbol") && message.contains("[redacted]"), "{cycle}");
    assert_ne!(cycle["fingerprint"], e["fingerprint"], "another cause, another issue");
    // Nothing secret anywhere in anything sent, and nothing from before error tracking was on.
    let history = items.iter().filter(|i| i.ty == "event" && i.payload["message"] == "ancient failure").count();
    assert_eq!(history, 0, "a failure from before error tracking was on was reported");
    for body in sentry.bodies() {
        for secret in [API_KEY, API_SECRET, "planted-webhook-token", "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw", PUBLIC_KEY] {
            assert!(!body.contains(secret), "{secret} was sent to Sentry:\n{body}");
        }
    }
}

/// Run by the next test in a child process: starts error tracking towards the fake given in the environment,
/// panics, and exits as soon as the panic was handled, without any orderly shutdown: only the flush in the
/// panic handling can have delivered the event.
#[test]
fn panicking_child() {
    let Ok(dsn) = std::env::var("MCBOT_TEST_PANIC_DSN") else { return };
    let mut cfg = mcbot::config::Config::default();
    cfg.sentry.dsn = Some(dsn);
    let tracking = mcbot::error_tracking::ErrorTracking::init(&cfg).unwrap().unwrap();
    std::mem::forget(tracking);
    // The process dies the moment the panic has been handled, as one that aborts on panic does.
    let handlers = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        handlers(info);
        std::process::exit(3);
    }));
    panic!("reconciliation invariant broken (planted {API_SECRET})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_is_captured_and_flushed_before_the_process_exits() {
    let sentry = FakeSentry::start().await;
    let dsn = sentry.dsn();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "error_tracking::panicking_child", "--nocapture", "--test-threads=1"])
            .env("MCBOT_TEST_PANIC_DSN", dsn)
            // A secret the process knows from its environment: the panic message quotes it, Sentry must not.
            .env("MCBOT_TEST_SECRET_HOLDER", API_SECRET)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let items = sentry.items();
    let panic = items
        .iter()
        .find(|i| i.ty == "event" && i.payload["exception"]["values"][0]["mechanism"]["type"] == "panic")
        .unwrap_or_else(|| panic!("no panic event in {items:#?}"));
    let value = panic.payload["exception"]["values"][0]["value"].as_str().unwrap_or_default();
    assert!(value.contains("reconciliation invariant broken"), "{value}");
    assert!(!value.contains(API_SECRET), "scrubbed: {value}");
}
