//! Telegram through teloxide's Bot API client: messages in HTML parse mode with every user-visible text escaped,
//! split at Telegram's 4096-character limit on line boundaries, charts through `sendPhoto`. The API URL is
//! configuration, so tests point it at a loopback fake. Flood control (`retry_after`) is handed to the delivery
//! worker, which never retries earlier.

use std::sync::Arc;

use async_trait::async_trait;
use mcbot_stages::ports::{Channel, ChannelNotifier, Message, NotifyError, Route, Severity};
use teloxide_core::payloads::{SendMessageSetters, SendPhotoSetters};
use teloxide_core::requests::{Request, Requester};
use teloxide_core::types::{ChatId, InlineKeyboardButton, InlineKeyboardMarkup, InputFile, ParseMode};
use teloxide_core::{ApiError, Bot, RequestError};

use super::secrets::Scrubber;

/// Telegram's limit of a message's text.
pub const TEXT_LIMIT: usize = 4096;
/// Telegram's limit of a photo's caption.
pub const CAPTION_LIMIT: usize = 1024;

/// Why the Telegram client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TelegramError {
    /// The API URL does not parse.
    #[error("notify.telegram.api_url is not a URL: {0}")]
    ApiUrl(String),
    /// The HTTP client could not be built.
    #[error("Telegram HTTP client: {0}")]
    Client(String),
}

/// The settings of the channel.
#[derive(Clone)]
pub struct TelegramSettings {
    /// Bot token (secret).
    pub token: String,
    /// Chats that receive messages and may command the bot.
    pub chat_ids: Vec<i64>,
    /// Bot API base URL, without a trailing slash.
    pub api_url: String,
    /// Whole-request time-out (a long poll adds its own timeout to it).
    pub request_timeout: std::time::Duration,
}

impl std::fmt::Debug for TelegramSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelegramSettings")
            .field("token", &"[redacted]")
            .field("chat_ids", &self.chat_ids)
            .field("api_url", &self.api_url)
            .finish()
    }
}

/// Builds the teloxide bot for `s`.
pub fn bot(s: &TelegramSettings) -> Result<Bot, TelegramError> {
    let url = reqwest::Url::parse(s.api_url.trim_end_matches('/')).map_err(|e| TelegramError::ApiUrl(e.to_string()))?;
    let client = reqwest::Client::builder()
        .timeout(s.request_timeout + std::time::Duration::from_secs(30))
        .connect_timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(|e| TelegramError::Client(e.without_url().to_string()))?;
    Ok(Bot::with_client(s.token.clone(), client).set_api_url(url))
}

/// Sorts a Bot API failure by what the worker does next, with secrets and URLs removed from its text.
pub fn classify(e: &RequestError, scrub: &Scrubber) -> NotifyError {
    match e {
        RequestError::RetryAfter(s) => {
            NotifyError::rate_limited(format!("flood control: retry after {s}"), s.duration())
        }
        RequestError::Network(n) => NotifyError::transient(scrub.scrub(&format!("network: {n}"))),
        RequestError::Io(io) => NotifyError::transient(scrub.scrub(&format!("I/O: {io}"))),
        RequestError::InvalidJson { .. } => NotifyError::transient("Telegram answered with an unreadable body"),
        RequestError::Api(ApiError::TerminatedByOtherGetUpdates) => {
            NotifyError::transient("another process polls this bot token (409 conflict)")
        }
        RequestError::Api(api) => NotifyError::rejected(scrub.scrub(&format!("Telegram refused: {api}"))),
        RequestError::MigrateToChatId(id) => {
            NotifyError::rejected(format!("the group moved to chat {id}: update chat_ids"))
        }
    }
}

/// `<`, `>`, `&` and `"` as HTML entities: everything else passes through HTML parse mode as text.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

fn marker(s: Severity) -> &'static str {
    match s {
        Severity::Info => "🟢",
        Severity::Warning => "🟡",
        Severity::Critical => "🔴",
        Severity::Emergency => "🚨",
    }
}

/// The message as Telegram HTML lines: a bold title, the body, the figures, the time. Each line is complete
/// HTML (its tags close on it), so splitting between lines never breaks markup.
pub fn html_lines(m: &Message) -> Vec<String> {
    let mut lines = vec![format!("{} <b>{}</b>", marker(m.severity), escape(&m.title))];
    lines.extend(m.body.lines().filter(|l| !l.trim().is_empty()).map(escape));
    for (k, v) in &m.fields {
        lines.push(format!("<b>{}</b> <code>{}</code>", escape(k), escape(v)));
    }
    lines.push(format!("<i>{} · {}</i>", m.ts.format("%Y-%m-%d %H:%M:%S UTC"), m.severity.as_str()));
    lines
}

/// Joins lines into chunks of at most `limit` characters, breaking between lines; a single longer line (plain
/// text only, never one with markup) is cut between characters that are not inside an entity.
pub fn split(lines: &[String], limit: usize) -> Vec<String> {
    let mut chunks = Vec::new();
    let mut cur = String::new();
    let mut cur_len = 0;
    let push = |piece: &str, cur: &mut String, cur_len: &mut usize, chunks: &mut Vec<String>| {
        let n = piece.chars().count();
        if *cur_len > 0 && *cur_len + 1 + n > limit {
            chunks.push(std::mem::take(cur));
            *cur_len = 0;
        }
        if *cur_len > 0 {
            cur.push('\n');
            *cur_len += 1;
        }
        cur.push_str(piece);
        *cur_len += n;
    };
    for line in lines {
        if line.chars().count() <= limit {
            push(line, &mut cur, &mut cur_len, &mut chunks);
            continue;
        }
        let mut piece = String::new();
        let mut n = 0;
        let mut in_entity = false;
        for c in line.chars() {
            // An entity is at most 6 characters (`&quot;`): cut early enough that it fits.
            if n >= limit.saturating_sub(6) && !in_entity {
                push(&piece, &mut cur, &mut cur_len, &mut chunks);
                piece.clear();
                n = 0;
            }
            match c {
                '&' => in_entity = true,
                ';' => in_entity = false,
                _ => {}
            }
            piece.push(c);
            n += 1;
        }
        if !piece.is_empty() {
            push(&piece, &mut cur, &mut cur_len, &mut chunks);
        }
    }
    if !cur.is_empty() {
        chunks.push(cur);
    }
    chunks
}

/// How many (message, chat) deliveries the channel remembers, so a retry skips the chats already served.
const SERVED_MEMORY: usize = 1024;

/// Telegram as a delivery channel: every message goes to every configured chat. One delivery row covers all the
/// chats (the outbox keeps order, cooldowns and counts per channel); when one chat fails after another got the
/// message, the retry skips the chats this process already served, so they do not get it twice.
pub struct TelegramChannel {
    bot: Bot,
    chats: Vec<ChatId>,
    scrub: Arc<Scrubber>,
    served: std::sync::Mutex<std::collections::VecDeque<(u64, i64)>>,
}

impl TelegramChannel {
    /// The channel for `s`; `scrub` knows every secret of the configuration.
    pub fn new(s: &TelegramSettings, scrub: Arc<Scrubber>) -> Result<Self, TelegramError> {
        Ok(Self {
            bot: bot(s)?,
            chats: s.chat_ids.iter().map(|c| ChatId(*c)).collect(),
            scrub,
            served: std::sync::Mutex::default(),
        })
    }

    fn served(&self) -> std::sync::MutexGuard<'_, std::collections::VecDeque<(u64, i64)>> {
        self.served.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn send_to(&self, chat: ChatId, m: &Message) -> Result<(), NotifyError> {
        let lines = html_lines(m);
        if let Some(png) = &m.image_png {
            let caption = split(&lines, CAPTION_LIMIT).into_iter().next().unwrap_or_default();
            let photo = InputFile::memory(png.clone()).file_name("chart.png");
            self.bot
                .send_photo(chat, photo)
                .caption(caption)
                .parse_mode(ParseMode::Html)
                .send()
                .await
                .map_err(|e| classify(&e, &self.scrub))?;
            if lines.iter().map(|l| l.chars().count() + 1).sum::<usize>() <= CAPTION_LIMIT {
                return Ok(());
            }
        }
        let chunks = split(&lines, TEXT_LIMIT);
        let last = chunks.len().saturating_sub(1);
        for (i, chunk) in chunks.into_iter().enumerate() {
            let mut req = self.bot.send_message(chat, chunk).parse_mode(ParseMode::Html);
            if i == last && m.severity == Severity::Emergency {
                // An emergency repeats until someone acknowledges it: the button does, like /ack.
                let ack = InlineKeyboardButton::callback("Acknowledge", "ack");
                req = req.reply_markup(InlineKeyboardMarkup::new(vec![vec![ack]]));
            }
            req.send().await.map_err(|e| classify(&e, &self.scrub))?;
        }
        // A report's charts follow its text, one photo each with its caption.
        for c in &m.charts {
            let photo = InputFile::memory(c.png.clone()).file_name(c.name.clone());
            let caption = split(&[escape(&c.caption)], CAPTION_LIMIT).into_iter().next().unwrap_or_default();
            self.bot
                .send_photo(chat, photo)
                .caption(caption)
                .parse_mode(ParseMode::Html)
                .send()
                .await
                .map_err(|e| classify(&e, &self.scrub))?;
        }
        Ok(())
    }
}

#[async_trait]
impl ChannelNotifier for TelegramChannel {
    fn channel(&self) -> Channel {
        Channel::Telegram
    }

    async fn deliver(&self, _route: Route, m: &Message) -> Result<(), NotifyError> {
        let key = fingerprint(m);
        for chat in &self.chats {
            if self.chats.len() > 1 && self.served().contains(&(key, chat.0)) {
                continue;
            }
            self.send_to(*chat, m).await?;
            if self.chats.len() > 1 {
                let mut served = self.served();
                if served.len() >= SERVED_MEMORY {
                    served.pop_front();
                }
                served.push_back((key, chat.0));
            }
        }
        Ok(())
    }
}

/// A message's identity for the served memory: its kind, time, title and body.
fn fingerprint(m: &Message) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (m.kind.as_str(), m.ts, &m.title, &m.body).hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use mcbot_stages::ports::EventKind;

    use super::*;

    #[test]
    fn html_is_escaped() {
        assert_eq!(escape("P&L <5> \"x\""), "P&amp;L &lt;5&gt; &quot;x&quot;");
        let m = Message {
            kind: EventKind::StaleData,
            severity: Severity::Warning,
            title: "a <b> title".into(),
            body: "x & y".into(),
            fields: vec![("fee".into(), "<1>".into())],
            ts: chrono::DateTime::from_timestamp(0, 0).unwrap_or_default(),
            image_png: None,
            charts: Vec::new(),
        };
        let lines = html_lines(&m);
        assert_eq!(lines[0], "🟡 <b>a &lt;b&gt; title</b>");
        assert_eq!(lines[1], "x &amp; y");
        assert_eq!(lines[2], "<b>fee</b> <code>&lt;1&gt;</code>");
    }

    #[test]
    fn long_messages_split_between_lines_and_never_inside_an_entity() {
        let lines: Vec<String> = (0..300).map(|i| format!("<b>line</b> {i:04} {}", "x".repeat(20))).collect();
        let chunks = split(&lines, TEXT_LIMIT);
        assert!(chunks.len() > 1);
        assert!(chunks.iter().all(|c| c.chars().count() <= TEXT_LIMIT));
        assert_eq!(chunks.join("\n"), lines.join("\n"), "nothing lost or reordered");
        assert!(chunks.iter().all(|c| c.matches("<b>").count() == c.matches("</b>").count()));
        let long = vec![escape(&"a&".repeat(5000))];
        let chunks = split(&long, TEXT_LIMIT);
        assert!(chunks.iter().all(|c| c.chars().count() <= TEXT_LIMIT));
        assert!(chunks.iter().all(|c| !c.ends_with("&am") && !c.starts_with("p;")));
        assert_eq!(chunks.concat(), long[0]);
    }
}
