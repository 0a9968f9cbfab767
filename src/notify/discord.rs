//! Discord webhooks over reqwest: one embed per message, coloured by severity, with its figures as fields and
//! its time; charts as multipart files referenced by `attachment://`; nobody is pinged (`allowed_mentions`
//! empty) unless a role is configured for critical messages. A webhook per route, a missing one falls back to the
//! alerts webhook. Rate limits are read from the headers: a 429's `Retry-After` and an exhausted bucket's
//! `X-RateLimit-Reset-After` both hold the next request back (without sending it) until the time is over.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mcbot_stages::Clock;
use mcbot_stages::ports::{Channel, ChannelNotifier, Message, NotifyError, Route, Severity};
use serde_json::{Value, json};

use super::secrets::Scrubber;

/// Why the Discord client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum DiscordError {
    /// The HTTP client could not be built.
    #[error("Discord HTTP client: {0}")]
    Client(String),
}

/// The settings of the channel.
#[derive(Clone, Default)]
pub struct DiscordSettings {
    /// Webhook URL per route (secret: the URL carries the webhook's token).
    pub webhooks: BTreeMap<Route, String>,
    /// A role pinged by critical and emergency messages.
    pub critical_role_id: Option<String>,
    /// Whole-request time-out.
    pub request_timeout: std::time::Duration,
}

impl std::fmt::Debug for DiscordSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiscordSettings").field("webhooks", &self.webhooks.keys().collect::<Vec<_>>()).finish()
    }
}

/// The embed colour of a severity (0xRRGGBB).
pub fn colour(s: Severity) -> u32 {
    match s {
        Severity::Info => 0x2E_CC71,
        Severity::Warning => 0xF1_C40F,
        Severity::Critical => 0xE7_4C3C,
        Severity::Emergency => 0x8E_44AD,
    }
}

/// `text` cut to `max` characters (Discord counts characters), with an ellipsis when cut.
fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut s: String = text.chars().take(max.saturating_sub(1)).collect();
    s.push('…');
    s
}

/// The webhook body of a message, within Discord's limits (title 256, description 4096, 25 fields of 256/1024,
/// 6000 characters in all).
pub fn payload(m: &Message, role: Option<&str>, with_image: bool) -> Value {
    let title = cut(&m.title, 256);
    let mut budget = 6000usize.saturating_sub(title.chars().count() + 40);
    let description = cut(&m.body, 4096.min(budget));
    budget = budget.saturating_sub(description.chars().count());
    let mut fields = Vec::new();
    for (k, v) in m.fields.iter().take(25) {
        let (name, value) = (cut(k, 256), cut(if v.is_empty() { "-" } else { v }, 1024));
        let n = name.chars().count() + value.chars().count();
        if n > budget {
            break;
        }
        budget -= n;
        fields.push(json!({"name": name, "value": value, "inline": true}));
    }
    let mut embed = json!({
        "title": title,
        "color": colour(m.severity),
        "timestamp": m.ts.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "fields": fields,
        "footer": {"text": format!("mcbot · {}", m.severity.as_str())},
    });
    if !description.is_empty() {
        embed["description"] = json!(description);
    }
    if with_image {
        embed["image"] = json!({"url": "attachment://chart.png"});
    }
    let mut body = json!({"username": "mcbot", "embeds": [embed], "allowed_mentions": {"parse": []}});
    if let Some(role) = role.filter(|_| m.severity >= Severity::Critical) {
        body["content"] = json!(format!("<@&{role}>"));
        body["allowed_mentions"] = json!({"parse": [], "roles": [role]});
    }
    if with_image {
        body["attachments"] = json!([{"id": 0, "filename": "chart.png"}]);
    }
    body
}

/// Discord as a delivery channel.
pub struct DiscordChannel {
    client: reqwest::Client,
    settings: DiscordSettings,
    scrub: Arc<Scrubber>,
    clock: Arc<dyn Clock>,
    /// Per webhook: no request before this time (a 429, or a bucket with nothing remaining).
    blocked: Mutex<HashMap<Route, DateTime<Utc>>>,
}

impl DiscordChannel {
    /// The channel for `s`; `scrub` knows every secret of the configuration; `clock` times the rate limits.
    pub fn new(s: DiscordSettings, scrub: Arc<Scrubber>, clock: Arc<dyn Clock>) -> Result<Self, DiscordError> {
        let client = reqwest::Client::builder()
            .timeout(s.request_timeout)
            .build()
            .map_err(|e| DiscordError::Client(e.without_url().to_string()))?;
        Ok(Self { client, settings: s, scrub, clock, blocked: Mutex::default() })
    }

    /// The webhook of `route`, else the alerts webhook, with the route whose rate limit it shares.
    fn webhook(&self, route: Route) -> Option<(Route, &str)> {
        let hooks = &self.settings.webhooks;
        hooks
            .get(&route)
            .map(|u| (route, u.as_str()))
            .or_else(|| hooks.get(&Route::Alerts).map(|u| (Route::Alerts, u.as_str())))
    }

    fn block(&self, route: Route, until: DateTime<Utc>) {
        let mut b = self.blocked.lock().unwrap_or_else(|p| p.into_inner());
        let e = b.entry(route).or_insert(until);
        *e = (*e).max(until);
    }
}

/// Seconds from a header (`1`, `0.5`).
fn header_secs(h: &reqwest::header::HeaderMap, name: &str) -> Option<f64> {
    h.get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<f64>().ok()).filter(|s| *s >= 0.0)
}

fn millis(secs: f64) -> chrono::Duration {
    // Rounded up: waiting a millisecond longer is safe, a millisecond early is a second 429.
    chrono::Duration::milliseconds((secs * 1000.0).ceil().min(86_400_000.0) as i64)
}

#[async_trait]
impl ChannelNotifier for DiscordChannel {
    fn channel(&self) -> Channel {
        Channel::Discord
    }

    async fn deliver(&self, route: Route, m: &Message) -> Result<(), NotifyError> {
        let Some((bucket, url)) = self.webhook(route) else {
            return Err(NotifyError::rejected(format!(
                "no Discord webhook for {} and none for alerts",
                route.as_str()
            )));
        };
        let now = self.clock.now();
        let until = self.blocked.lock().unwrap_or_else(|p| p.into_inner()).get(&bucket).copied();
        if let Some(until) = until.filter(|u| *u > now) {
            let wait = (until - now).to_std().unwrap_or_default();
            return Err(NotifyError::rate_limited("Discord rate limit: waiting for the bucket to reset", wait));
        }
        // Files: the single chart of a plain message, then a report's charts; the embed shows the first.
        let mut files: Vec<(String, &[u8])> = Vec::new();
        if let Some(png) = &m.image_png {
            files.push(("chart.png".to_owned(), png));
        }
        files.extend(m.charts.iter().map(|c| (c.name.clone(), c.png.as_slice())));
        let mut body = payload(m, self.settings.critical_role_id.as_deref(), !files.is_empty());
        if let Some((first, _)) = files.first() {
            body["embeds"][0]["image"] = json!({"url": format!("attachment://{first}")});
            let list: Vec<Value> =
                files.iter().enumerate().map(|(i, (name, _))| json!({"id": i, "filename": name})).collect();
            body["attachments"] = json!(list);
        }
        let req = self.client.post(url).query(&[("wait", "true")]);
        let req = if files.is_empty() {
            req.json(&body)
        } else {
            let mut form = reqwest::multipart::Form::new().text("payload_json", body.to_string());
            for (i, (name, png)) in files.iter().enumerate() {
                let part = reqwest::multipart::Part::bytes(png.to_vec())
                    .file_name(name.clone())
                    .mime_str("image/png")
                    .map_err(|e| NotifyError::rejected(e.without_url().to_string()))?;
                form = form.part(format!("files[{i}]"), part);
            }
            req.multipart(form)
        };
        let resp =
            req.send().await.map_err(|e| NotifyError::transient(self.scrub.scrub(&e.without_url().to_string())))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let now = self.clock.now();
        if header_secs(&headers, "x-ratelimit-remaining") == Some(0.0)
            && let Some(after) = header_secs(&headers, "x-ratelimit-reset-after")
        {
            self.block(bucket, now + millis(after));
        }
        if status.is_success() {
            return Ok(());
        }
        let text = resp.text().await.unwrap_or_default();
        if status.as_u16() == 429 {
            let body_after =
                serde_json::from_str::<Value>(&text).ok().and_then(|v| v.get("retry_after").and_then(Value::as_f64));
            let after = [header_secs(&headers, "retry-after"), body_after].into_iter().flatten().fold(1.0, f64::max);
            self.block(bucket, now + millis(after));
            return Err(NotifyError::rate_limited(
                format!("Discord 429: retry after {after} s"),
                millis(after).to_std().unwrap_or_default(),
            ));
        }
        let detail = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_default();
        let msg = self.scrub.scrub(&format!("Discord answered {status}: {detail}"));
        if status.is_server_error() { Err(NotifyError::transient(msg)) } else { Err(NotifyError::rejected(msg)) }
    }
}

#[cfg(test)]
mod tests {
    use mcbot_stages::ports::EventKind;

    use super::*;

    fn msg(sev: Severity) -> Message {
        Message {
            kind: EventKind::SafeModeOn,
            severity: sev,
            title: "t".repeat(300),
            body: "b".repeat(5000),
            fields: (0..40).map(|i| (format!("f{i}"), "v".repeat(900))).collect(),
            ts: DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default(),
            image_png: None,
            charts: Vec::new(),
        }
    }

    #[test]
    fn embeds_keep_discords_limits_and_ping_nobody() {
        let p = payload(&msg(Severity::Warning), Some("42"), false);
        let e = &p["embeds"][0];
        let total = e["title"].as_str().unwrap().chars().count()
            + e["description"].as_str().unwrap().chars().count()
            + e["fields"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["name"].as_str().unwrap().chars().count() + f["value"].as_str().unwrap().chars().count())
                .sum::<usize>()
            + e["footer"]["text"].as_str().unwrap().chars().count();
        assert!(total <= 6000, "{total}");
        assert_eq!(e["title"].as_str().unwrap().chars().count(), 256);
        assert_eq!(e["color"], json!(0xF1_C40F));
        assert_eq!(p["allowed_mentions"], json!({"parse": []}));
        assert!(p.get("content").is_none(), "a warning pings nobody");
        let p = payload(&msg(Severity::Critical), Some("42"), true);
        assert_eq!(p["content"], json!("<@&42>"));
        assert_eq!(p["allowed_mentions"], json!({"parse": [], "roles": ["42"]}));
        assert_eq!(p["embeds"][0]["image"]["url"], json!("attachment://chart.png"));
    }
}
