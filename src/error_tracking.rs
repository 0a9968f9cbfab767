//! Error tracking with Sentry: off unless a DSN is configured (`sentry.dsn`, `MCBOT_SENTRY__DSN(_FILE)`, or the
//! `SENTRY_DSN(_FILE)` every Sentry SDK reads).
//!
//! - Failures come from the event log (a consumer, like notifications): every event of critical severity or
//!   above becomes one Sentry event, tagged with job, stage, symbol, mode, venue, run id and error kind, and
//!   fingerprinted by its root cause (event kind + error kind + stage or job), so a failure repeated every bar
//!   is one Sentry issue with many events. The log lines leading up to it are its breadcrumbs.
//! - Panics are captured by the SDK's panic integration, whose handler also waits (at most
//!   `sentry.shutdown_timeout_ms`) until the event is sent, before the process goes on to die.
//! - Every scheduled job sends cron check-ins (in progress, then ok or error with its duration) with its
//!   schedule as the monitor's configuration, so Sentry notices a job that stops running even when the
//!   process is down.
//! - Secrets (API keys, tokens, webhook URLs, database URLs, the DSN) are scrubbed from everything sent; no
//!   personal data is sent.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use mcbot_schedules::{EventHandler, RunEnd, RunObserver, RunStart};
use mcbot_stages::ports::{Event, JobStatus, Severity};
use sentry::protocol::{MonitorCheckIn, MonitorCheckInStatus, MonitorConfig, MonitorSchedule};

use crate::config::{Config, ConfigError, Mode};

/// Why error tracking could not start; exit 2 (a configuration problem).
#[derive(Debug, thiserror::Error)]
pub enum ErrorTrackingError {
    /// The DSN is not a Sentry DSN (its text is never shown: it is a secret).
    #[error("sentry.dsn is not a valid DSN ({0}); expected https://<key>@<host>/<project>")]
    BadDsn(String),
    /// The DSN could not be read from the environment or its file.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// The DSN in force: the config key (or its `MCBOT_SENTRY__DSN` override), else `SENTRY_DSN` / `SENTRY_DSN_FILE`.
pub fn dsn(cfg: &Config) -> Result<Option<String>, ConfigError> {
    if let Some(d) = cfg.sentry.dsn.clone().filter(|d| !d.trim().is_empty()) {
        return Ok(Some(d));
    }
    Ok(crate::config::secret_from_env("SENTRY_DSN")?.filter(|d| !d.trim().is_empty()))
}

/// The release: version and the git commit it was built from.
pub fn release() -> String {
    format!("mcbot@{}+{}", env!("CARGO_PKG_VERSION"), option_env!("BUILD_GIT_COMMIT").unwrap_or("unknown"))
}

/// The venue label of the running configuration (`sim` in mode mock).
pub fn venue(cfg: &Config) -> String {
    match cfg.mode {
        Mode::Mock => "sim".to_owned(),
        _ => format!("{:?}", cfg.exchange.venue).to_lowercase(),
    }
}

/// Replaces secrets in text sent to Sentry: every configured secret value, plus anything shaped like one
/// (credentials in a URL, a Discord webhook, a Telegram bot token, a Sentry key).
#[derive(Debug, Clone)]
pub struct Scrubber {
    values: Vec<String>,
}

static PATTERNS: LazyLock<Vec<(regex::Regex, &'static str)>> = LazyLock::new(|| {
    [
        // user:password@ in any URL.
        (r"([a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@", "${1}[redacted]@"),
        // A key without password (a Sentry DSN's public key).
        (r"(https?://)[0-9a-f]{16,}@", "${1}[redacted]@"),
        (r"https://(?:canary\.|ptb\.)?discord(?:app)?\.com/api/webhooks/[^\s\x22']+", "[redacted]"),
        (r"\b\d{6,12}:[A-Za-z0-9_-]{30,}\b", "[redacted]"),
    ]
    .into_iter()
    .filter_map(|(p, r)| regex::Regex::new(p).ok().map(|re| (re, r)))
    .collect()
});

impl Scrubber {
    /// Scrubs `values` (4 characters or longer) and the patterns.
    pub fn new(values: impl IntoIterator<Item = String>) -> Self {
        let mut values: Vec<String> = values.into_iter().filter(|v| v.len() >= 4).collect();
        // Longest first, so a secret containing another is replaced whole.
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        values.dedup();
        Self { values }
    }

    /// The secrets of `cfg` and of the environment (variables named like a token, key, secret, password,
    /// webhook or DSN, and database URLs).
    pub fn from_config(cfg: &Config, dsn: Option<&str>) -> Self {
        let mut values: Vec<String> = [
            cfg.exchange.binance.api_key.as_ref().map(|s| s.expose().to_owned()),
            cfg.exchange.binance.api_secret.as_ref().map(|s| s.expose().to_owned()),
            cfg.exchange.upbit.access_key.as_ref().map(|s| s.expose().to_owned()),
            cfg.exchange.upbit.secret_key.as_ref().map(|s| s.expose().to_owned()),
            cfg.database.url.clone(),
            dsn.map(str::to_owned),
        ]
        .into_iter()
        .flatten()
        .collect();
        const SECRET_WORDS: [&str; 8] =
            ["TOKEN", "SECRET", "KEY", "PASSWORD", "WEBHOOK", "DSN", "DATABASE_URL", "CHAT_ID"];
        for (name, value) in std::env::vars() {
            if SECRET_WORDS.iter().any(|w| name.to_ascii_uppercase().contains(w)) {
                values.push(value);
            }
        }
        Self::new(values)
    }

    /// `text` with every secret replaced by `[redacted]`.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for v in &self.values {
            if out.contains(v.as_str()) {
                out = out.replace(v.as_str(), "[redacted]");
            }
            // The same value as it appears inside JSON text (quotes and backslashes escaped).
            let escaped = serde_json::to_string(v).unwrap_or_default();
            let escaped = escaped.trim_matches('"');
            if escaped != v && out.contains(escaped) {
                out = out.replace(escaped, "[redacted]");
            }
        }
        for (re, with) in PATTERNS.iter() {
            out = re.replace_all(&out, *with).into_owned();
        }
        out
    }

    /// The event with every string in it scrubbed (message, exception values, breadcrumbs, tags, extra).
    pub fn scrub_event(&self, event: sentry::protocol::Event<'static>) -> Option<sentry::protocol::Event<'static>> {
        let text = serde_json::to_string(&event).ok()?;
        let clean = self.scrub(&text);
        if clean == text {
            return Some(event);
        }
        // An event that cannot be rebuilt after scrubbing is dropped rather than sent with a secret.
        serde_json::from_str(&clean).ok()
    }
}

/// Error tracking while it runs; dropping it flushes queued events (bounded by `sentry.shutdown_timeout_ms`).
pub struct ErrorTracking {
    guard: sentry::ClientInitGuard,
    timeout: Duration,
}

impl ErrorTracking {
    /// Starts the Sentry client when a DSN is configured; `None` (error tracking off) otherwise.
    pub fn init(cfg: &Config) -> Result<Option<Self>, ErrorTrackingError> {
        let Some(dsn) = dsn(cfg)? else { return Ok(None) };
        let parsed: sentry::types::Dsn = dsn.parse().map_err(|e| ErrorTrackingError::BadDsn(format!("{e}")))?;
        let scrubber = Arc::new(Scrubber::from_config(cfg, Some(&dsn)));
        let mut options = sentry::ClientOptions::new();
        options.dsn = Some(parsed);
        options.release = Some(release().into());
        options.environment =
            Some(cfg.sentry.environment.clone().unwrap_or_else(|| cfg.mode.as_str().to_owned()).into());
        options.send_default_pii = false;
        // The consumer's own stack says nothing about a failure read from the log (panics keep theirs).
        options.attach_stacktrace = false;
        options.max_breadcrumbs = 50;
        options.shutdown_timeout = Duration::from_millis(cfg.sentry.shutdown_timeout_ms);
        let s = scrubber.clone();
        options.before_send = Some(Arc::new(move |event| s.scrub_event(event)));
        let s = scrubber.clone();
        options.before_breadcrumb = Some(Arc::new(move |mut b| {
            b.message = b.message.map(|m| s.scrub(&m));
            let data = std::mem::take(&mut b.data);
            b.data = data
                .into_iter()
                .map(|(k, v)| {
                    let text = s.scrub(&v.to_string());
                    (k, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
                })
                .collect();
            Some(b)
        }));
        let guard = sentry::init(options);
        sentry::Hub::main().configure_scope(|scope| {
            scope.set_tag("mode", cfg.mode.as_str());
            scope.set_tag("venue", venue(cfg));
        });
        Ok(Some(Self { guard, timeout: Duration::from_millis(cfg.sentry.shutdown_timeout_ms) }))
    }

    /// Sends what is queued, waiting at most the configured time; true when everything went out.
    pub fn flush(&self) -> bool {
        self.guard.flush(Some(self.timeout))
    }
}

/// Makes every runtime thread report to the process's main hub, so tags set once and the breadcrumbs of all
/// threads belong to the events captured on any of them. Called on each runtime thread's start.
pub fn bind_thread_to_main_hub() {
    // The guard would restore the thread's own hub when dropped; the thread keeps the main hub for its life.
    std::mem::forget(sentry::HubSwitchGuard::new(sentry::Hub::main()));
}

/// The tracing layer that turns log lines into Sentry breadcrumbs (info and above); errors are reported from
/// the event log and panics, not from log lines, so a failure is reported once.
pub fn tracing_layer<S>() -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    // No performance tracing: spans are not turned into Sentry spans.
    sentry::integrations::tracing::layer().span_filter(|_| false).event_filter(|md| match *md.level() {
        tracing::Level::ERROR | tracing::Level::WARN | tracing::Level::INFO => {
            sentry::integrations::tracing::EventFilter::Breadcrumb
        }
        _ => sentry::integrations::tracing::EventFilter::Ignore,
    })
}

/// The root cause of an event: what the fingerprint groups by, and the tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// The event kind (`job_failed`, `stage_halted`, `order_outcome_unknown`, ...).
    pub event_kind: String,
    /// The failure kind, when the event carries one (`exchange`, `store`, `timeout`, ...).
    pub error_kind: Option<String>,
    /// The job, when known (from the payload, or the run id's prefix).
    pub job: Option<String>,
    /// The stage, when known.
    pub stage: Option<String>,
}

const STAGES: [&str; 4] = ["risk_check", "data_collection", "analysis", "execution"];

/// Reads the cause of `event` from its kind, payload and run id. Stage and job names are taken only when they
/// are known words, so a fingerprint never depends on free text.
pub fn cause(event: &Event) -> Cause {
    let ev = &event.event;
    let text = |k: &str| ev.payload.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    let job = text("job").or_else(|| {
        ev.run_id.as_deref().and_then(|r| r.split(['@', ':', '#']).next()).filter(|j| !j.is_empty()).map(str::to_owned)
    });
    let mut stage = text("stage").filter(|s| STAGES.contains(&s.as_str()));
    if stage.is_none() {
        // A job failure's message names the stage first ("trading-cycle failed: data: data_collection: ...").
        stage = STAGES.iter().find(|s| ev.message.contains(&format!("{s}:"))).map(|s| (*s).to_owned());
    }
    Cause { event_kind: ev.kind.as_str().to_owned(), error_kind: text("kind"), job, stage }
}

/// The Sentry event for a bot event: level by severity, tags, fingerprint by cause.
pub fn sentry_event(event: &Event, scrubber: &Scrubber) -> sentry::protocol::Event<'static> {
    let ev = &event.event;
    let c = cause(event);
    let level = match ev.severity {
        Severity::Info => sentry::Level::Info,
        Severity::Warning => sentry::Level::Warning,
        Severity::Critical => sentry::Level::Error,
        Severity::Emergency => sentry::Level::Fatal,
    };
    let mut tags = std::collections::BTreeMap::new();
    tags.insert("event_kind".to_owned(), c.event_kind.clone());
    if let Some(k) = &c.error_kind {
        tags.insert("error_kind".to_owned(), k.clone());
    }
    if let Some(j) = &c.job {
        tags.insert("job".to_owned(), j.clone());
    }
    if let Some(s) = &c.stage {
        tags.insert("stage".to_owned(), s.clone());
    }
    if let Some(s) = &ev.symbol {
        tags.insert("symbol".to_owned(), s.as_str().to_owned());
    }
    if let Some(r) = &ev.run_id {
        tags.insert("run_id".to_owned(), r.clone());
    }
    let place = c.stage.clone().or(c.job.clone()).unwrap_or_else(|| "-".to_owned());
    let fingerprint = vec![
        "mcbot".into(),
        c.event_kind.clone().into(),
        c.error_kind.clone().unwrap_or_else(|| "-".to_owned()).into(),
        place.into(),
    ];
    let mut extra = std::collections::BTreeMap::new();
    extra.insert("event_id".to_owned(), serde_json::json!(event.id));
    extra.insert("payload".to_owned(), serde_json::Value::String(scrubber.scrub(&ev.payload.to_string())));
    sentry::protocol::Event {
        level,
        message: Some(scrubber.scrub(&ev.message)),
        logger: Some("mcbot.events".into()),
        tags,
        fingerprint: fingerprint.into(),
        extra,
        ..Default::default()
    }
}

/// The consumer that sends failures from the event log to Sentry.
pub struct SentryEvents {
    scrubber: Scrubber,
}

impl SentryEvents {
    /// The consumer, scrubbing with `scrubber` (the client scrubs again before sending).
    pub fn new(scrubber: Scrubber) -> Self {
        Self { scrubber }
    }
}

#[async_trait]
impl EventHandler for SentryEvents {
    fn name(&self) -> &str {
        "sentry"
    }

    async fn handle(&self, events: &[Event]) -> Result<(), String> {
        let hub = sentry::Hub::main();
        for e in events.iter().filter(|e| e.event.severity >= Severity::Critical) {
            hub.capture_event(sentry_event(e, &self.scrubber));
        }
        Ok(())
    }
}

/// The job runtime's observer that sends cron check-ins: in progress when a run starts, ok or error (with its
/// duration) when it ends, each with the job's schedule so Sentry creates and updates the monitor itself.
#[derive(Debug, Default)]
pub struct CronMonitors {
    open: Mutex<HashMap<String, sentry::types::Uuid>>,
    environment: Option<String>,
}

impl CronMonitors {
    /// Check-ins for `environment` (the Sentry environment, normally the mode).
    pub fn new(environment: Option<String>) -> Self {
        Self { open: Mutex::new(HashMap::new()), environment }
    }

    fn send(&self, check_in: MonitorCheckIn) {
        if let Some(client) = sentry::Hub::main().client() {
            let mut envelope = sentry::Envelope::new();
            envelope.add_item(check_in);
            client.send_envelope(envelope);
        }
    }
}

/// The job's cron expression in the five-field crontab form Sentry reads: seconds dropped (the bot's schedules
/// fire at a fixed second of the minute).
pub fn crontab(expr: &str) -> Option<String> {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    (fields.len() == 6).then(|| fields[1..].join(" "))
}

/// The monitor configuration of a job: its schedule, UTC, a check-in margin and a maximum runtime.
pub fn monitor_config(expr: &str) -> Option<MonitorConfig> {
    Some(MonitorConfig {
        schedule: MonitorSchedule::Crontab { value: crontab(expr)? },
        checkin_margin: Some(2),
        max_runtime: Some(30),
        timezone: Some("UTC".into()),
        failure_issue_threshold: Some(1),
        recovery_threshold: Some(1),
    })
}

impl RunObserver for CronMonitors {
    fn run_started(&self, run: &RunStart<'_>) {
        if sentry::Hub::main().client().is_none() {
            return;
        }
        let id = sentry::types::random_uuid();
        if let Ok(mut open) = self.open.lock() {
            open.insert(run.run_id.to_owned(), id);
        }
        self.send(MonitorCheckIn {
            check_in_id: id,
            monitor_slug: run.job.to_owned(),
            status: MonitorCheckInStatus::InProgress,
            environment: self.environment.clone(),
            duration: None,
            monitor_config: monitor_config(run.schedule),
        });
    }

    fn run_finished(&self, run: &RunEnd<'_>) {
        let Some(id) = self.open.lock().ok().and_then(|mut open| open.remove(run.run_id)) else { return };
        let status = match run.status {
            JobStatus::Succeeded | JobStatus::Skipped => MonitorCheckInStatus::Ok,
            JobStatus::Failed | JobStatus::Running => MonitorCheckInStatus::Error,
        };
        self.send(MonitorCheckIn {
            check_in_id: id,
            monitor_slug: run.job.to_owned(),
            status,
            environment: self.environment.clone(),
            duration: Some(run.duration.as_secs_f64()),
            monitor_config: monitor_config(run.schedule),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcbot_stages::ports::{EventKind, NewEvent};

    #[test]
    fn secrets_and_secret_shapes_are_scrubbed() {
        let s = Scrubber::new(["sk-live-abcdef".to_owned(), "ab".to_owned()]);
        let text = "key sk-live-abcdef db postgres://bot:hunter2@db:5432/x hook \
                    https://discord.com/api/webhooks/123/AbC-dEf token 123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw ab";
        let clean = s.scrub(text);
        for secret in ["sk-live-abcdef", "hunter2", "webhooks/123", "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"] {
            assert!(!clean.contains(secret), "{secret} left in {clean}");
        }
        assert!(clean.ends_with(" ab"), "short values are left alone: {clean}");
        assert!(clean.contains("postgres://[redacted]@db:5432/x"), "{clean}");
    }

    #[test]
    fn the_fingerprint_is_the_root_cause_not_the_message() {
        let t = chrono::Utc::now();
        let failed = |msg: &str, run: &str| Event {
            id: 1,
            event: NewEvent::new(t, EventKind::JobFailed, Severity::Critical, msg)
                .run(run)
                .payload(serde_json::json!({"job": "trading-cycle", "kind": "exchange", "attempt": 1})),
        };
        let s = Scrubber::new(Vec::new());
        let a = sentry_event(&failed("trading-cycle failed: data_collection: 502 at 10:00", "trading-cycle@1"), &s);
        let b = sentry_event(&failed("trading-cycle failed: data_collection: 503 at 11:00", "trading-cycle@2"), &s);
        assert_eq!(a.fingerprint, b.fingerprint, "the same cause every bar is one issue");
        assert_eq!(a.fingerprint.len(), 4);
        assert_eq!(a.tags.get("stage").map(String::as_str), Some("data_collection"));
        assert_eq!(a.tags.get("error_kind").map(String::as_str), Some("exchange"));
        assert_eq!(a.tags.get("job").map(String::as_str), Some("trading-cycle"));
        let c = sentry_event(&failed("trading-cycle failed: execution: refused", "trading-cycle@3"), &s);
        assert_ne!(a.fingerprint, c.fingerprint, "another stage is another issue");
    }

    #[test]
    fn cron_expressions_become_five_field_crontabs() {
        assert_eq!(crontab("30 */5 * * * *").as_deref(), Some("*/5 * * * *"));
        assert_eq!(crontab("0 15 0 1 * *").as_deref(), Some("15 0 1 * *"));
        assert_eq!(crontab("* * *"), None);
    }
}
