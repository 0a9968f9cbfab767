//! A loopback Discord webhook on 127.0.0.1 port 0: `POST /api/webhooks/{id}/{token}` (optionally `/api/v10/...`)
//! with a JSON body or multipart (`payload_json` + `files[n]`, every `attachment://` name checked against the
//! uploaded files), Discord's limits enforced with its 400 body, `X-RateLimit-*` headers on every answer, and
//! 429s with `Retry-After` and a JSON `retry_after` on demand or when the bucket is exhausted.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::multipart;

/// A request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Post {
    /// Webhook token from the path.
    pub token: String,
    /// The JSON payload.
    pub payload: Value,
    /// Uploaded files: (form name, file name, bytes).
    pub files: Vec<(String, String, Vec<u8>)>,
    /// Wall-clock arrival.
    pub at: Instant,
    /// Answer status.
    pub status: u16,
}

#[derive(Default)]
struct Inner {
    posts: Vec<Post>,
    /// Remaining 429s to answer, each with (Retry-After header, body retry_after).
    limited: VecDeque<(String, f64)>,
    /// After this many accepted requests, answer with `X-RateLimit-Remaining: 0` and this reset-after.
    bucket: Option<(usize, f64)>,
    accepted: usize,
    /// Refuse every request with a 401 whose message quotes the path (as some proxies do): the token with it.
    echo_path: bool,
}

/// The fake server.
pub struct FakeDiscord {
    /// Base URL (`http://127.0.0.1:PORT`).
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeDiscord {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeDiscord {
    /// Starts the fake.
    pub async fn start() -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = axum::Router::new().fallback(handle).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, inner, task }
    }

    /// The URL of webhook `id` with `token`.
    pub fn webhook(&self, id: u64, token: &str) -> String {
        format!("{}/api/webhooks/{id}/{token}", self.url)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every request.
    pub fn posts(&self) -> Vec<Post> {
        self.lock().posts.clone()
    }

    /// The next request is answered 429 with this `Retry-After` header and body `retry_after`.
    pub fn limit_next(&self, header: &str, body_secs: f64) {
        self.lock().limited.push_back((header.to_owned(), body_secs));
    }

    /// Refuses every request with a 401 that quotes the request path, token included.
    pub fn refuse_quoting_the_path(&self) {
        self.lock().echo_path = true;
    }

    /// After `n` accepted requests the bucket reports nothing remaining, resetting after `secs`.
    pub fn bucket(&self, n: usize, secs: f64) {
        self.lock().bucket = Some((n, secs));
    }
}

fn bad(message: &str) -> Response {
    (StatusCode::BAD_REQUEST, axum::Json(json!({"code": 50035, "message": message}))).into_response()
}

fn check_limits(p: &Value, files: &[(String, String, Vec<u8>)]) -> Result<(), String> {
    if p.get("content").and_then(Value::as_str).is_some_and(|c| c.chars().count() > 2000) {
        return Err("content over 2000".into());
    }
    let embeds = p.get("embeds").and_then(Value::as_array).cloned().unwrap_or_default();
    if embeds.len() > 10 {
        return Err("more than 10 embeds".into());
    }
    let len = |v: &Value| v.as_str().map_or(0, |s| s.trim().chars().count());
    let mut total = 0;
    for e in &embeds {
        let fields = e.get("fields").and_then(Value::as_array).cloned().unwrap_or_default();
        if len(&e["title"]) > 256 || len(&e["description"]) > 4096 || fields.len() > 25 {
            return Err("embed over its limits".into());
        }
        total += len(&e["title"]) + len(&e["description"]) + len(&e["footer"]["text"]) + len(&e["author"]["name"]);
        for f in &fields {
            if len(&f["name"]) > 256 || len(&f["value"]) > 1024 || len(&f["name"]) == 0 || len(&f["value"]) == 0 {
                return Err("field over its limits".into());
            }
            total += len(&f["name"]) + len(&f["value"]);
        }
        if let Some(name) = e["image"]["url"].as_str().and_then(|u| u.strip_prefix("attachment://"))
            && !files.iter().any(|(_, f, _)| f == name)
        {
            return Err(format!("attachment://{name} was not uploaded"));
        }
    }
    if total > 6000 {
        return Err("embeds over 6000 characters".into());
    }
    if p.get("content").is_none() && embeds.is_empty() && files.is_empty() {
        return Err("Cannot send an empty message".into());
    }
    Ok(())
}

async fn handle(State(inner): State<Arc<Mutex<Inner>>>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path().replacen("/api/v10/", "/api/", 1);
    let Some(rest) = path.strip_prefix("/api/webhooks/") else {
        return (StatusCode::NOT_FOUND, axum::Json(json!({"code": 10015, "message": "Unknown Webhook"})))
            .into_response();
    };
    let token = rest.split('/').nth(1).unwrap_or_default().to_owned();
    let ctype = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let (payload, files) = if ctype.starts_with("multipart/form-data") {
        let parts = multipart::boundary(&ctype).map(|b| multipart::parse(&body, &b)).unwrap_or_default();
        let payload = parts
            .iter()
            .find(|p| p.name == "payload_json")
            .and_then(|p| serde_json::from_slice(&p.data).ok())
            .unwrap_or(json!({}));
        let files = parts
            .iter()
            .filter(|p| p.name.starts_with("files["))
            .map(|p| (p.name.clone(), p.filename.clone().unwrap_or_default(), p.data.clone()))
            .collect();
        (payload, files)
    } else {
        (serde_json::from_slice(&body).unwrap_or(json!({})), Vec::new())
    };
    let mut i = inner.lock().unwrap_or_else(|e| e.into_inner());
    if i.echo_path {
        let msg = format!("401: Unauthorized ({path})");
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({"code": 0, "message": msg}))).into_response();
    }
    let mut post = Post { token, payload: payload.clone(), files: files.clone(), at: Instant::now(), status: 0 };
    let rate = |remaining: usize, reset: f64| {
        [
            ("x-ratelimit-limit", "5".to_owned()),
            ("x-ratelimit-remaining", remaining.to_string()),
            ("x-ratelimit-reset-after", format!("{reset}")),
            ("x-ratelimit-bucket", "abcd1234".to_owned()),
        ]
    };
    if let Some((header, secs)) = i.limited.pop_front() {
        post.status = 429;
        i.posts.push(post);
        let mut resp = (
            StatusCode::TOO_MANY_REQUESTS,
            axum::Json(json!({"message": "You are being rate limited.", "retry_after": secs, "global": false})),
        )
            .into_response();
        let h = resp.headers_mut();
        for (k, v) in rate(0, secs) {
            h.insert(k, v.parse().expect("header"));
        }
        h.insert("retry-after", header.parse().expect("header"));
        h.insert("x-ratelimit-scope", "user".parse().expect("header"));
        return resp;
    }
    if let Err(why) = check_limits(&payload, &files) {
        post.status = 400;
        i.posts.push(post);
        return bad(&why);
    }
    i.accepted += 1;
    let (remaining, reset) = match i.bucket {
        Some((n, secs)) if i.accepted >= n => (0, secs),
        _ => (4, 1.0),
    };
    post.status = 200;
    i.posts.push(post);
    let mut resp = (
        StatusCode::OK,
        axum::Json(json!({"id": format!("{}", i.accepted), "channel_id": "2",
                          "content": payload.get("content").cloned().unwrap_or(json!("")),
                          "embeds": payload.get("embeds").cloned().unwrap_or(json!([]))})),
    )
        .into_response();
    for (k, v) in rate(remaining, reset) {
        resp.headers_mut().insert(k, v.parse().expect("header"));
    }
    resp
}
