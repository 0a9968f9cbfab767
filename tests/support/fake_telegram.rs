//! A loopback Telegram Bot API on 127.0.0.1 port 0: `POST /bot<token>/<method>` with method names matched
//! case-insensitively, JSON or multipart bodies, answers in the `{"ok":..}` envelope. It serves getUpdates
//! (honouring `offset`), sendMessage, sendPhoto (resolving `attach://` parts), answerCallbackQuery,
//! editMessageText, setMyCommands and getMe, and injects faults on demand: 429 with `retry_after`, 409 conflict.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::multipart;

/// A fault for the next call of a method.
#[derive(Debug, Clone)]
pub enum Fault {
    /// 429 flood control with `parameters.retry_after`.
    RetryAfter(u32),
    /// 409: another getUpdates poller.
    Conflict,
}

/// A call as the fake saw it.
#[derive(Debug, Clone)]
pub struct Call {
    /// Lower-case method name.
    pub method: String,
    /// Its parameters (multipart fields as strings).
    pub params: Value,
    /// The bytes of an uploaded photo.
    pub photo: Option<Vec<u8>>,
}

#[derive(Default)]
struct Inner {
    calls: Vec<Call>,
    updates: Vec<Value>,
    next_update: i64,
    faults: VecDeque<(String, Option<i64>, Fault)>,
    next_message: i64,
}

struct Shared {
    token: String,
    inner: Mutex<Inner>,
}

/// The fake server.
pub struct FakeTelegram {
    /// Base URL (`http://127.0.0.1:PORT`): the bot's `api_url`.
    pub url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeTelegram {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeTelegram {
    /// Starts a fake that accepts `token`.
    pub async fn start(token: &str) -> Self {
        let shared = Arc::new(Shared { token: token.to_owned(), inner: Mutex::default() });
        let app = axum::Router::new().fallback(handle).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, shared, task }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.shared.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.inner().calls.clone()
    }

    /// Calls of one method (lower case).
    pub fn calls_of(&self, method: &str) -> Vec<Call> {
        self.calls().into_iter().filter(|c| c.method == method).collect()
    }

    /// Texts sent with sendMessage, in order.
    pub fn texts(&self) -> Vec<String> {
        self.calls_of("sendmessage").iter().filter_map(|c| c.params["text"].as_str().map(str::to_owned)).collect()
    }

    /// The next call of `method` fails with `fault`.
    pub fn fail_next(&self, method: &str, fault: Fault) {
        self.inner().faults.push_back((method.to_ascii_lowercase(), None, fault));
    }

    /// The next call of `method` addressed to `chat_id` fails with `fault`.
    pub fn fail_next_to(&self, chat_id: i64, method: &str, fault: Fault) {
        self.inner().faults.push_back((method.to_ascii_lowercase(), Some(chat_id), fault));
    }

    /// Queues a text message from `chat_id`.
    pub fn push_text(&self, chat_id: i64, text: &str) {
        let mut i = self.inner();
        i.next_update += 1;
        let id = i.next_update;
        i.updates.push(json!({"update_id": id, "message": {
            "message_id": 1000 + id, "date": 1_700_000_000,
            "from": {"id": chat_id, "is_bot": false, "first_name": "Owner"},
            "chat": {"id": chat_id, "type": "private", "first_name": "Owner"},
            "text": text,
            "entities": [{"type": "bot_command", "offset": 0, "length": text.split(' ').next().map_or(0, str::len)}]
        }}));
    }

    /// Queues a button press with `data` from `chat_id` on message `message_id`.
    pub fn push_callback(&self, chat_id: i64, message_id: i64, data: &str) {
        let mut i = self.inner();
        i.next_update += 1;
        let id = i.next_update;
        i.updates.push(json!({"update_id": id, "callback_query": {
            "id": format!("cb{id}"),
            "from": {"id": chat_id, "is_bot": false, "first_name": "Owner"},
            "chat_instance": "1",
            "data": data,
            "message": {"message_id": message_id, "date": 1_700_000_000,
                        "chat": {"id": chat_id, "type": "private"}, "text": "confirm?"}
        }}));
    }
}

fn envelope(result: Value) -> Response {
    (StatusCode::OK, axum::Json(json!({"ok": true, "result": result}))).into_response()
}

fn error(status: StatusCode, description: &str, parameters: Option<Value>) -> Response {
    let mut body = json!({"ok": false, "error_code": status.as_u16(), "description": description});
    if let Some(p) = parameters {
        body["parameters"] = p;
    }
    (status, axum::Json(body)).into_response()
}

async fn handle(State(shared): State<Arc<Shared>>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path();
    let Some(rest) = path.strip_prefix("/bot") else { return error(StatusCode::NOT_FOUND, "Not Found", None) };
    let Some((token, method)) = rest.rsplit_once('/') else { return error(StatusCode::NOT_FOUND, "Not Found", None) };
    if token != shared.token {
        return error(StatusCode::UNAUTHORIZED, "Unauthorized", None);
    }
    let method = method.to_ascii_lowercase();
    let ctype = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let mut photo = None;
    let params: Value = if ctype.starts_with("multipart/form-data") {
        let parts = multipart::boundary(&ctype).map(|b| multipart::parse(&body, &b)).unwrap_or_default();
        let mut map = serde_json::Map::new();
        for p in &parts {
            if p.filename.is_none() {
                map.insert(p.name.clone(), json!(String::from_utf8_lossy(&p.data)));
            }
        }
        if let Some(target) = map.get("photo").and_then(|v| v.as_str()).and_then(|v| v.strip_prefix("attach://")) {
            photo = parts.iter().find(|p| p.name == target).map(|p| p.data.clone());
        }
        Value::Object(map)
    } else if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(_) => return error(StatusCode::BAD_REQUEST, "Bad Request: body is not JSON", None),
        }
    };
    let chat = params.get("chat_id").cloned().unwrap_or(json!(0));
    let chat_id = chat.as_i64().or_else(|| chat.as_str().and_then(|s| s.parse().ok())).unwrap_or(0);
    let mut inner = shared.inner.lock().unwrap_or_else(|e| e.into_inner());
    inner.calls.push(Call { method: method.clone(), params: params.clone(), photo: photo.clone() });
    if let Some(pos) = inner.faults.iter().position(|(m, c, _)| *m == method && c.is_none_or(|c| c == chat_id)) {
        let (_, _, fault) = inner.faults.remove(pos).unwrap_or_else(|| (String::new(), None, Fault::Conflict));
        return match fault {
            Fault::RetryAfter(s) => error(
                StatusCode::TOO_MANY_REQUESTS,
                &format!("Too Many Requests: retry after {s}"),
                Some(json!({"retry_after": s})),
            ),
            Fault::Conflict => error(
                StatusCode::CONFLICT,
                "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running",
                None,
            ),
        };
    }
    let mut message = |text: Value| {
        inner.next_message += 1;
        json!({"message_id": inner.next_message, "date": 1_700_000_000,
               "chat": {"id": chat_id, "type": "private"}, "text": text})
    };
    match method.as_str() {
        "getme" => envelope(json!({"id": 1, "is_bot": true, "first_name": "mcbot", "username": "mcbot_test_bot"})),
        "getupdates" => {
            let offset = params.get("offset").and_then(Value::as_i64).unwrap_or(0);
            inner.updates.retain(|u| u["update_id"].as_i64().unwrap_or(0) >= offset);
            envelope(json!(inner.updates.clone()))
        }
        "sendmessage" => {
            if params.get("text").and_then(Value::as_str).is_none_or(|t| t.chars().count() > 4096 || t.is_empty()) {
                return error(StatusCode::BAD_REQUEST, "Bad Request: message text is empty or too long", None);
            }
            let m = message(params["text"].clone());
            envelope(m)
        }
        "sendphoto" => {
            if photo.is_none() {
                return error(StatusCode::BAD_REQUEST, "Bad Request: there is no photo in the request", None);
            }
            let mut m = message(json!(null));
            m["photo"] = json!([{"file_id": "f1", "file_unique_id": "u1", "width": 90, "height": 90}]);
            envelope(m)
        }
        "editmessagetext" | "editmessagereplymarkup" => {
            let m = message(params.get("text").cloned().unwrap_or(json!("")));
            envelope(m)
        }
        "answercallbackquery" | "setmycommands" | "deletewebhook" => envelope(json!(true)),
        _ => error(StatusCode::NOT_FOUND, "Not Found: method not found", None),
    }
}
