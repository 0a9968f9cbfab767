//! The control API of the admin server over a real loopback socket: every `/api/v1` route needs the bearer token
//! (401 and a rate-limited warning event otherwise), the probes and metrics need none, and each call is a spine
//! command with issuer `http`, recorded like the CLI's.

use std::sync::Arc;

use mcbot::admin::{AdminState, router};
use mcbot::control_api::ControlApi;
use mcbot::metrics::Exporter;
use mcbot::store::SqlStore;
use mcbot_stages::ManualClock;
use mcbot_stages::control::mutate_state;
use mcbot_stages::domain::{Symbol, Timeframe};
use mcbot_stages::ports::{EventKind, EventQuery, Store, TradingMode};
use serde_json::{Value, json};

use crate::support::db::fresh_sqlite_url;

const TOKEN: &str = "s3cret-control-token-0123";

struct Server {
    base: String,
    http: reqwest::Client,
    store: Arc<SqlStore>,
    clock: Arc<ManualClock>,
    _server: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start(db: &crate::support::db::SqliteTestDb, token: Option<&str>) -> Self {
        let store = Arc::new(SqlStore::open(db.url()).await.unwrap());
        let clock = Arc::new(ManualClock::new("2026-03-01T10:00:10Z".parse().unwrap()));
        let recorder = mcbot::metrics::recorder().unwrap();
        let dyn_store: Arc<dyn Store> = store.clone();
        let state = AdminState {
            exporter: Arc::new(Exporter::new(recorder.handle(), clock.clone())),
            store: dyn_store.clone(),
            clock: clock.clone(),
            symbols: vec![Symbol::new("BTCUSDT").unwrap()],
            timeframe: Timeframe::from_minutes(60).unwrap(),
            max_stale_bars: 1,
            control: Some(Arc::new(ControlApi::new(token, dyn_store, clock.clone(), None, "live"))),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move { axum::serve(listener, router(state)).await.unwrap() });
        Self { base, http: reqwest::Client::new(), store, clock, _server: server }
    }

    async fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let mut req = match method {
            "GET" => self.http.get(url),
            _ => self.http.post(url),
        };
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let code = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (code, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn events(&self, kind: EventKind) -> Vec<mcbot_stages::ports::Event> {
        self.store.read_events(&EventQuery { kinds: vec![kind], ..Default::default() }).await.unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_token_every_control_call_is_401_and_reported_once_a_minute() {
    let db = fresh_sqlite_url();
    let s = Server::start(&db, Some(TOKEN)).await;
    let paths = ["/api/v1/status", "/api/v1/kill", "/api/v1/pause", "/api/v1/resume", "/api/v1/reset-safe-mode"];
    for path in paths.into_iter().chain(["/api/v1/reset-breaker"]) {
        let method = if path.ends_with("status") { "GET" } else { "POST" };
        for token in [None, Some("wrong"), Some(&TOKEN[..TOKEN.len() - 1]), Some("")] {
            let (code, doc) = s.call(method, path, token, Some(json!({"reason": "x", "flatten": true}))).await;
            assert_eq!(code, 401, "{method} {path} with {token:?}: {doc}");
        }
    }
    let (code, _) = s.call("GET", "/api/v1/nothing-here", None, None).await;
    assert_eq!(code, 401, "unknown control paths need the token too");
    let state = s.store.load_state().await.unwrap();
    assert_eq!(state.trading, TradingMode::Active, "nothing changed");
    let warned = s.events(EventKind::UnauthorizedApi).await;
    assert_eq!(warned.len(), 1, "rate-limited: one event for 25 refusals within a minute");
    assert_eq!(warned[0].event.severity, mcbot_stages::ports::Severity::Warning);
    assert!(!warned[0].event.message.contains(TOKEN), "{warned:?}");
    s.clock.set("2026-03-01T10:01:11Z".parse().unwrap());
    s.call("POST", "/api/v1/pause", Some("wrong"), None).await;
    let warned = s.events(EventKind::UnauthorizedApi).await;
    assert_eq!(warned.len(), 2, "a minute later, the next one is reported");
    assert_eq!(warned[1].event.payload["refused"], 25, "with the count since the last report: {warned:?}");

    // The probes and metrics need no token.
    for path in ["/healthz", "/readyz", "/metrics"] {
        let (code, doc) = s.call("GET", path, None, None).await;
        assert!(code == 200 || (path == "/readyz" && code == 503), "{path}: {code} {doc}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_configured_token_the_control_api_refuses_everything() {
    let db = fresh_sqlite_url();
    let s = Server::start(&db, None).await;
    for token in [None, Some(""), Some("anything")] {
        let (code, _) = s.call("POST", "/api/v1/kill", token, None).await;
        assert_eq!(code, 401);
    }
    assert_eq!(s.store.load_state().await.unwrap().trading, TradingMode::Active);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_call_is_a_command_with_issuer_http() {
    let db = fresh_sqlite_url();
    let s = Server::start(&db, Some(TOKEN)).await;
    let t = Some(TOKEN);

    let (code, doc) = s.call("GET", "/api/v1/status", t, None).await;
    assert_eq!(code, 200, "{doc}");
    assert_eq!((doc["trading"].as_str(), doc["entries_allowed"].as_bool()), (Some("active"), Some(true)), "{doc}");

    let (code, doc) = s.call("POST", "/api/v1/pause", t, Some(json!({"reason": "maintenance"}))).await;
    assert_eq!((code, doc["trading"].as_str()), (200, Some("entries_paused")), "{doc}");
    let paused = s.events(EventKind::TradingPaused).await;
    assert_eq!(paused[0].event.payload["issuer"], "http");
    assert_eq!(paused[0].event.payload["reason"], "maintenance");
    let (code, doc) = s.call("POST", "/api/v1/pause", t, None).await;
    assert_eq!(code, 409, "pausing twice is refused: {doc}");

    let (code, doc) = s.call("POST", "/api/v1/resume", t, Some(json!({"reason": "done"}))).await;
    assert_eq!((code, doc["trading"].as_str()), (200, Some("active")), "{doc}");

    let (code, doc) = s.call("POST", "/api/v1/kill", t, Some(json!({"reason": "panic", "flatten": true}))).await;
    assert_eq!(code, 200, "{doc}");
    let state = s.store.load_state().await.unwrap();
    assert_eq!((state.trading, state.flatten), (TradingMode::Halted, true));
    let killed = s.events(EventKind::TradingKilled).await;
    assert_eq!(killed[0].event.payload["issuer"], "http");
    let (_, doc) = s.call("GET", "/api/v1/status", t, None).await;
    assert_eq!(doc["entries_allowed"], false, "{doc}");

    let (code, doc) = s.call("POST", "/api/v1/reset-safe-mode", t, None).await;
    assert_eq!(code, 400, "a reason is required: {doc}");
    let (code, doc) = s.call("POST", "/api/v1/reset-safe-mode", t, Some(json!({"reason": "checked"}))).await;
    assert_eq!(code, 409, "safe mode is not on: {doc}");
    mutate_state(s.store.as_ref(), None, |st| {
        st.safe_mode = true;
        st.safe_mode_reason = Some("drawdown".into());
        Vec::new()
    })
    .await
    .unwrap();
    let (code, doc) = s.call("POST", "/api/v1/reset-safe-mode", t, Some(json!({"reason": "checked the books"}))).await;
    assert_eq!(code, 200, "{doc}");
    let off = s.events(EventKind::SafeModeOff).await;
    assert_eq!(
        (off[0].event.payload["issuer"].as_str(), off[0].event.payload["reason"].as_str()),
        (Some("http"), Some("checked the books"))
    );

    // A latched breaker is reset by name, with a reason.
    mutate_state(s.store.as_ref(), None, |st| {
        st.tripped.insert("api_failures".into(), "5 consecutive exchange failures".into());
        Vec::new()
    })
    .await
    .unwrap();
    let (code, _) = s.call("POST", "/api/v1/reset-breaker", t, Some(json!({"breaker": "api_failures"}))).await;
    assert_eq!(code, 400, "the reason is required");
    let body = json!({"breaker": "daily_loss", "reason": "x"});
    let (code, doc) = s.call("POST", "/api/v1/reset-breaker", t, Some(body)).await;
    assert_eq!(code, 409, "not tripped: {doc}");
    let body = json!({"breaker": "api_failures", "reason": "venue back"});
    let (code, doc) = s.call("POST", "/api/v1/reset-breaker", t, Some(body)).await;
    assert_eq!(code, 200, "{doc}");
    assert!(s.store.load_state().await.unwrap().tripped.is_empty());
    let cleared = s.events(EventKind::BreakerCleared).await;
    assert_eq!(cleared[0].event.payload["issuer"], "http", "{cleared:?}");

    let (code, doc) = s.call("POST", "/api/v1/pause", t, Some(json!({"reason": 5}))).await;
    assert_eq!(code, 400, "a malformed body is refused: {doc}");
    assert!(s.events(EventKind::UnauthorizedApi).await.is_empty(), "the right token is never reported");
}
