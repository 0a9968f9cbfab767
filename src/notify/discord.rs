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

/// Discord's limits of one webhook message.
pub mod limits {
    /// Characters of `content`.
    pub const CONTENT: usize = 2000;
    /// Embeds per message.
    pub const EMBEDS: usize = 10;
    /// Characters of all embeds of one message together.
    pub const EMBED_TOTAL: usize = 6000;
    /// Fields per embed.
    pub const FIELDS: usize = 25;
    /// Characters of an embed title.
    pub const TITLE: usize = 256;
    /// Characters of an embed description.
    pub const DESCRIPTION: usize = 4096;
    /// Characters of a field name.
    pub const FIELD_NAME: usize = 256;
    /// Characters of a field value.
    pub const FIELD_VALUE: usize = 1024;
}

/// `text` in pieces of at most `max` characters, broken at line ends where a line fits, else between characters.
fn pieces(text: &str, max: usize) -> Vec<String> {
    let max = max.max(1);
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut n = 0;
    for line in text.lines() {
        let mut rest: Vec<char> = line.chars().collect();
        loop {
            let sep = usize::from(n > 0);
            if n + sep + rest.len() <= max {
                if sep == 1 {
                    cur.push('\n');
                }
                n += sep + rest.len();
                cur.extend(rest);
                break;
            }
            if n > 0 {
                out.push(std::mem::take(&mut cur));
                n = 0;
                continue;
            }
            let tail = rest.split_off(max);
            out.push(rest.into_iter().collect());
            rest = tail;
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// One embed under construction and its character count (title, description, fields, footer).
struct Embed {
    json: Value,
    chars: usize,
    fields: usize,
}

/// The webhook bodies of a message, each within Discord's limits: a long body continues in further embeds, more
/// than 25 fields (or a long value) too, and more than 10 embeds or 6000 characters continue in a further
/// message. Only the first carries the role mention and the chart.
pub fn payloads(m: &Message, role: Option<&str>, with_image: bool) -> Vec<Value> {
    use limits::*;
    let ts = m.ts.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let footer = format!("mcbot · {}", m.severity.as_str());
    let title = cut(&m.title, TITLE);
    let base_chars = footer.chars().count();
    let new_embed = |title: &str| Embed {
        json: json!({"title": title, "color": colour(m.severity), "timestamp": ts, "footer": {"text": footer}}),
        chars: title.chars().count() + base_chars,
        fields: 0,
    };
    let cont = cut(&format!("{title} (continued)"), TITLE);
    let mut embeds = vec![new_embed(&title)];
    // The body: the first piece in the first embed, the rest in continuation embeds.
    let budget = DESCRIPTION.min(EMBED_TOTAL - TITLE - base_chars);
    for (i, d) in pieces(&m.body, budget).into_iter().enumerate() {
        if i > 0 {
            embeds.push(new_embed(&cont));
        }
        if let Some(e) = embeds.last_mut() {
            e.chars += d.chars().count();
            e.json["description"] = json!(d);
        }
    }
    // The fields: a long value in several fields of the same name, 25 to an embed, none pushing one over 6000.
    for (k, v) in &m.fields {
        let name = cut(k, FIELD_NAME);
        let values = if v.is_empty() { vec!["-".to_owned()] } else { pieces(v, FIELD_VALUE) };
        for value in values {
            let n = name.chars().count() + value.chars().count();
            let full = embeds.last().is_none_or(|e| e.fields >= FIELDS || e.chars + n > EMBED_TOTAL);
            if full {
                embeds.push(new_embed(&cont));
            }
            if let Some(e) = embeds.last_mut() {
                if !e.json["fields"].is_array() {
                    e.json["fields"] = json!([]);
                }
                if let Some(a) = e.json["fields"].as_array_mut() {
                    a.push(json!({"name": name, "value": value, "inline": true}));
                }
                e.fields += 1;
                e.chars += n;
            }
        }
    }
    if with_image && let Some(first) = embeds.first_mut() {
        first.json["image"] = json!({"url": "attachment://chart.png"});
    }
    // Embeds into messages: at most 10 and 6000 characters each.
    let mut bodies: Vec<Vec<Value>> = Vec::new();
    let mut chars = 0;
    for e in embeds {
        let full = bodies.last().is_none_or(|b| b.len() >= EMBEDS || chars + e.chars > EMBED_TOTAL);
        if full {
            bodies.push(Vec::new());
            chars = 0;
        }
        chars += e.chars;
        if let Some(b) = bodies.last_mut() {
            b.push(e.json);
        }
    }
    bodies
        .into_iter()
        .enumerate()
        .map(|(i, embeds)| {
            let mut body = json!({"username": "mcbot", "embeds": embeds, "allowed_mentions": {"parse": []}});
            if i == 0 {
                if let Some(role) = role.filter(|_| m.severity >= Severity::Critical) {
                    body["content"] = json!(cut(&format!("<@&{role}>"), CONTENT));
                    body["allowed_mentions"] = json!({"parse": [], "roles": [role]});
                }
                if with_image {
                    body["attachments"] = json!([{"id": 0, "filename": "chart.png"}]);
                }
            }
            body
        })
        .collect()
}

/// The first webhook body of a message (the whole message when it fits in one).
pub fn payload(m: &Message, role: Option<&str>, with_image: bool) -> Value {
    payloads(m, role, with_image).into_iter().next().unwrap_or_default()
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
        // Files: the single chart of a plain message, then a report's charts; the embed shows the first.
        let mut files: Vec<(String, &[u8])> = Vec::new();
        if let Some(png) = &m.image_png {
            files.push(("chart.png".to_owned(), png));
        }
        files.extend(m.charts.iter().map(|c| (c.name.clone(), c.png.as_slice())));
        let bodies = payloads(m, self.settings.critical_role_id.as_deref(), !files.is_empty());
        for (i, body) in bodies.into_iter().enumerate() {
            // Only the first part carries the charts.
            self.post(bucket, url, body, if i == 0 { &files } else { &[] }).await?;
        }
        Ok(())
    }
}

impl DiscordChannel {
    /// One webhook call, its rate-limit headers read whatever the outcome.
    async fn post(
        &self,
        bucket: Route,
        url: &str,
        mut body: Value,
        files: &[(String, &[u8])],
    ) -> Result<(), NotifyError> {
        let now = self.clock.now();
        let until = self.blocked.lock().unwrap_or_else(|p| p.into_inner()).get(&bucket).copied();
        if let Some(until) = until.filter(|u| *u > now) {
            let wait = (until - now).to_std().unwrap_or_default();
            return Err(NotifyError::rate_limited("Discord rate limit: waiting for the bucket to reset", wait));
        }
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

    /// Characters Discord counts in one embed.
    fn embed_chars(e: &Value) -> usize {
        let len = |v: &Value| v.as_str().map_or(0, |s| s.chars().count());
        len(&e["title"])
            + len(&e["description"])
            + len(&e["footer"]["text"])
            + e["fields"].as_array().map_or(0, |f| f.iter().map(|f| len(&f["name"]) + len(&f["value"])).sum())
    }

    #[test]
    fn a_message_over_discords_limits_is_split_and_nothing_is_lost() {
        let mut m = msg(Severity::Critical);
        m.body = (0..400).map(|i| format!("line {i:03} {}", "b".repeat(40))).collect::<Vec<_>>().join("\n");
        m.fields = (0..60).map(|i| (format!("f{i}"), "v".repeat(if i == 0 { 2500 } else { 300 }))).collect();
        let bodies = payloads(&m, Some("42"), true);
        assert!(bodies.len() > 1, "split into several messages");
        let mut description = Vec::new();
        let mut values: Vec<(String, usize)> = Vec::new();
        for (i, b) in bodies.iter().enumerate() {
            let embeds = b["embeds"].as_array().unwrap();
            assert!(embeds.len() <= limits::EMBEDS);
            assert!(embeds.iter().map(embed_chars).sum::<usize>() <= limits::EMBED_TOTAL, "message {i}");
            assert!(b.get("content").is_none_or(|c| c.as_str().unwrap().chars().count() <= limits::CONTENT));
            assert_eq!(b.get("content").is_some(), i == 0, "the role is pinged once");
            assert_eq!(b.get("attachments").is_some(), i == 0, "the chart comes once");
            for e in embeds {
                assert!(e["title"].as_str().unwrap().chars().count() <= limits::TITLE);
                if let Some(d) = e["description"].as_str() {
                    assert!(d.chars().count() <= limits::DESCRIPTION);
                    description.push(d.to_owned());
                }
                let fields = e["fields"].as_array().cloned().unwrap_or_default();
                assert!(fields.len() <= limits::FIELDS);
                for f in fields {
                    let v = f["value"].as_str().unwrap();
                    assert!(v.chars().count() <= limits::FIELD_VALUE);
                    values.push((f["name"].as_str().unwrap().to_owned(), v.chars().count()));
                }
            }
        }
        assert_eq!(description.join("\n"), m.body, "the body arrives whole, in order");
        let f0: usize = values.iter().filter(|(n, _)| n == "f0").map(|(_, c)| c).sum();
        assert_eq!(f0, 2500, "a long value continues in fields of the same name");
        assert_eq!(values.iter().filter(|(n, _)| n != "f0").count(), 59, "every field arrives");
        // A message within the limits stays one.
        let mut small = msg(Severity::Info);
        small.body = "short".into();
        small.fields.truncate(3);
        assert_eq!(payloads(&small, None, false).len(), 1);
    }

    #[test]
    fn embeds_keep_discords_limits_and_ping_nobody() {
        let p = payload(&msg(Severity::Warning), Some("42"), false);
        let e = &p["embeds"][0];
        let total: usize = p["embeds"].as_array().unwrap().iter().map(embed_chars).sum();
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
