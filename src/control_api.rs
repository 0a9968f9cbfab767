//! The control API of the admin HTTP server: the off switch that works from anywhere the owner can reach.
//!
//! `POST /api/v1/kill` (`{"reason": "...", "flatten": true}`), `/pause`, `/resume`, `/reset-safe-mode` (a reason
//! is required), `/reset-breaker` (`{"breaker": "daily_loss", "reason": "..."}`) and `GET /api/v1/status`. Each call is a spine command with issuer `http`, recorded as an event
//! like the CLI's and the chat's. Every route here needs `Authorization: Bearer <token>` with the token of
//! `http.api_token` (a secret, normally from `MCBOT_HTTP__API_TOKEN_FILE`), compared in constant time; a wrong or
//! missing token gets 401 and a warning event (at most one a minute, the others counted in it and in
//! `mcbot_api_unauthorized_total`). Without a configured token every call is refused. `/healthz`, `/readyz` and
//! `/metrics` are outside this module and need no token.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Duration, Utc};
use mcbot_stages::Clock;
use mcbot_stages::control::{Command, CommandError, Issuer, issue};
use mcbot_stages::ports::{EventKind, Exchange, NewEvent, Severity, Store};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// How often an unauthorized call is reported as an event at most.
const WARN_EVERY: i64 = 60;

/// What the control routes need.
pub struct ControlApi {
    /// SHA-256 of the configured token; `None` refuses every call.
    token: Option<[u8; 32]>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    /// The venue, for cancelling open orders on a kill (none: left to the next cycle and reconciliation).
    exchange: Option<Arc<dyn Exchange>>,
    /// The mode, for the status document.
    mode: String,
    /// Last unauthorized-call event, and calls refused since.
    warned: Mutex<(Option<DateTime<Utc>>, u64)>,
}

impl ControlApi {
    /// The API with `token` (unset or empty: every call is refused).
    pub fn new(
        token: Option<&str>,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        exchange: Option<Arc<dyn Exchange>>,
        mode: &str,
    ) -> Self {
        let token = token.filter(|t| !t.is_empty()).map(|t| Sha256::digest(t.as_bytes()).into());
        Self { token, store, clock, exchange, mode: mode.to_owned(), warned: Mutex::new((None, 0)) }
    }

    /// True when `header` is `Bearer <the token>`. Both sides are hashed first, so the comparison takes the same
    /// time whatever the length or the first wrong byte of the guess.
    fn authorized(&self, header: Option<&str>) -> bool {
        let Some(want) = &self.token else { return false };
        let Some(given) = header.and_then(|h| h.strip_prefix("Bearer ")) else { return false };
        let given: [u8; 32] = Sha256::digest(given.trim().as_bytes()).into();
        bool::from(given.ct_eq(want))
    }

    /// Records a refused call: an event at most once a minute (with the count of the refused ones since).
    async fn refused(&self, method: &Method, path: &str, why: &str) {
        metrics::counter!(crate::metrics::names::API_UNAUTHORIZED).increment(1);
        let now = self.clock.now();
        let report = {
            let mut w = self.warned.lock().unwrap_or_else(|p| p.into_inner());
            w.1 += 1;
            match w.0 {
                Some(last) if now - last < Duration::seconds(WARN_EVERY) => None,
                _ => {
                    let n = std::mem::take(&mut w.1);
                    w.0 = Some(now);
                    Some(n)
                }
            }
        };
        tracing::warn!(%method, path, "control API call refused: {why}");
        if let Some(n) = report {
            let event = NewEvent::new(
                now,
                EventKind::UnauthorizedApi,
                Severity::Warning,
                format!("control API {method} {path} refused: {why} ({n} refused call(s) since the last report)"),
            )
            .payload(json!({"path": path, "method": method.as_str(), "refused": n}))
            .dedup("unauthorized_api");
            if let Err(e) = self.store.append_events(vec![event]).await {
                tracing::error!("unauthorized API call not recorded: {e}");
            }
        }
    }
}

/// The control routes, each behind the token check.
pub fn router(api: Arc<ControlApi>) -> Router {
    Router::new()
        .route("/api/v1/status", get(status))
        .route("/api/v1/kill", post(kill))
        .route("/api/v1/pause", post(pause))
        .route("/api/v1/resume", post(resume))
        .route("/api/v1/reset-safe-mode", post(reset_safe_mode))
        .route("/api/v1/reset-breaker", post(reset_breaker))
        .route("/api/v1/{*rest}", get(not_found).post(not_found))
        .route_layer(axum::middleware::from_fn_with_state(api.clone(), bearer))
        .with_state(api)
}

async fn bearer(State(api): State<Arc<ControlApi>>, req: Request, next: Next) -> Response {
    let header = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if api.authorized(header) {
        return next.run(req).await;
    }
    let why = match (&api.token, header) {
        (None, _) => "no token is configured (http.api_token)",
        (_, None) => "no bearer token",
        _ => "wrong token",
    };
    api.refused(req.method(), req.uri().path(), why).await;
    let body = json!({"error": "unauthorized"}).to_string();
    (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer"), (header::CONTENT_TYPE, "application/json")], body)
        .into_response()
}

async fn not_found() -> Response {
    answer(StatusCode::NOT_FOUND, json!({"error": "no such control endpoint"}))
}

fn answer(code: StatusCode, doc: Value) -> Response {
    (code, [(header::CONTENT_TYPE, "application/json")], format!("{doc}\n")).into_response()
}

/// A command's body: why, and for a kill whether to close every position.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    reason: Option<String>,
    #[serde(default)]
    flatten: bool,
    /// The breaker to reset (`reset-breaker`).
    breaker: Option<String>,
}

/// The body (empty is no reason), or why it is unreadable.
fn body(bytes: &Bytes) -> Result<Body, String> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Body::default());
    }
    serde_json::from_slice(bytes).map_err(|e| format!("body: {e}; expected {{\"reason\": \"...\"}}"))
}

fn bad_body(why: String) -> Response {
    answer(StatusCode::BAD_REQUEST, json!({"ok": false, "error": why}))
}

async fn run(api: &ControlApi, command: Command, reason: &str) -> Response {
    match issue(api.store.as_ref(), &command, Issuer::Http, reason, api.clock.now()).await {
        Ok(out) => answer(
            StatusCode::OK,
            json!({"ok": true, "command": command, "issuer": "http", "reason": reason,
                   "trading": out.state.trading.as_str(), "safe_mode": out.state.safe_mode,
                   "flatten": out.state.flatten, "event_ids": out.event_ids}),
        ),
        Err(CommandError::NotApplicable(why)) => answer(StatusCode::CONFLICT, json!({"ok": false, "error": why})),
        Err(CommandError::Store(e)) => {
            answer(StatusCode::SERVICE_UNAVAILABLE, json!({"ok": false, "error": e.to_string()}))
        }
    }
}

fn reason_or(b: &Body, default: &str) -> String {
    b.reason.clone().filter(|r| !r.trim().is_empty()).unwrap_or_else(|| default.to_owned())
}

async fn kill(State(api): State<Arc<ControlApi>>, bytes: Bytes) -> Response {
    let b = match body(&bytes) {
        Ok(b) => b,
        Err(why) => return bad_body(why),
    };
    let reason = reason_or(&b, "http");
    let response = run(&api, Command::Kill { cancel_orders: true, flatten: b.flatten }, &reason).await;
    if response.status() == StatusCode::OK
        && let Some(x) = &api.exchange
        && let Err(e) = crate::commands::control::cancel_all(api.store.as_ref(), x.as_ref(), api.clock.as_ref()).await
    {
        // Halted all the same; reconciliation finds what is still open.
        tracing::error!("kill over HTTP: open orders not cancelled: {e}");
    }
    response
}

async fn pause(State(api): State<Arc<ControlApi>>, bytes: Bytes) -> Response {
    match body(&bytes) {
        Ok(b) => run(&api, Command::Pause, &reason_or(&b, "http")).await,
        Err(why) => bad_body(why),
    }
}

async fn resume(State(api): State<Arc<ControlApi>>, bytes: Bytes) -> Response {
    match body(&bytes) {
        Ok(b) => run(&api, Command::Resume, &reason_or(&b, "http")).await,
        Err(why) => bad_body(why),
    }
}

async fn reset_safe_mode(State(api): State<Arc<ControlApi>>, bytes: Bytes) -> Response {
    match body(&bytes) {
        Ok(Body { reason: Some(r), .. }) if !r.trim().is_empty() => run(&api, Command::ResetSafeMode, &r).await,
        Ok(_) => answer(StatusCode::BAD_REQUEST, json!({"ok": false, "error": "a reason is required"})),
        Err(why) => bad_body(why),
    }
}

async fn reset_breaker(State(api): State<Arc<ControlApi>>, bytes: Bytes) -> Response {
    match body(&bytes) {
        Ok(Body { reason: Some(r), breaker: Some(name), .. }) if !r.trim().is_empty() => {
            run(&api, Command::ResetBreaker { name }, &r).await
        }
        Ok(_) => answer(StatusCode::BAD_REQUEST, json!({"ok": false, "error": "a breaker and a reason are required"})),
        Err(why) => bad_body(why),
    }
}

async fn status(State(api): State<Arc<ControlApi>>) -> Response {
    let store = api.store.as_ref();
    let state = match store.load_state().await {
        Ok(s) => s,
        Err(e) => return answer(StatusCode::SERVICE_UNAVAILABLE, json!({"error": e.to_string()})),
    };
    let positions: Vec<Value> = match store.positions().await {
        Ok(ps) => ps
            .into_iter()
            .filter(|p| !p.qty.is_zero())
            .map(|p| json!({"symbol": p.symbol, "qty": p.qty, "avg_price": p.avg_price}))
            .collect(),
        Err(e) => return answer(StatusCode::SERVICE_UNAVAILABLE, json!({"error": e.to_string()})),
    };
    let blocked = mcbot_stages::pipeline::risk::blocked_by(&state);
    answer(
        StatusCode::OK,
        json!({
            "mode": api.mode,
            "trading": state.trading.as_str(),
            "entries_allowed": blocked.is_empty(),
            "blocked_by": blocked,
            "safe_mode": state.safe_mode,
            "safe_mode_reason": state.safe_mode_reason,
            "flatten": state.flatten,
            "breakers_tripped": state.tripped,
            "live": state.live,
            "cash": state.cash,
            "peak_equity": state.peak_equity,
            "last_bar": state.last_bar,
            "positions": positions,
        }),
    )
}
