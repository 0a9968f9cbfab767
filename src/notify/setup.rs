//! Builds the notification parts from the configuration: routing, the channels each route reaches, the retry
//! policy, the secret scrubber and the channel adapters.

use std::collections::BTreeMap;
use std::sync::Arc;

use mcbot_stages::Clock;
use mcbot_stages::ports::{Channel, ChannelNotifier, EventKind, Route, Severity};

use super::discord::{DiscordChannel, DiscordError, DiscordSettings};
use super::email::{EmailChannel, EmailError, EmailSettings};
use super::route::{ChannelRule, Routing};
use super::secrets::Scrubber;
use super::telegram::{TelegramChannel, TelegramError, TelegramSettings};
use super::worker::{FollowUpRules, RetryPolicy};
use super::{Fatigue, LogChannel};
use crate::config::NotifyConfig;

/// Why a channel could not be set up (exit 2: the configuration is wrong).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// Telegram.
    #[error(transparent)]
    Telegram(#[from] TelegramError),
    /// Discord.
    #[error(transparent)]
    Discord(#[from] DiscordError),
    /// Email.
    #[error(transparent)]
    Email(#[from] EmailError),
}

/// Every secret of the notification settings, for scrubbing error texts.
pub fn scrubber(cfg: &NotifyConfig) -> Scrubber {
    let mut s = Vec::new();
    if let Some(t) = &cfg.telegram {
        s.extend(t.token.clone());
    }
    if let Some(d) = &cfg.discord {
        let w = &d.webhooks;
        for url in [&w.trades, &w.alerts, &w.reports].into_iter().flatten() {
            s.push(url.clone());
            // The token is the last path segment; an error may quote it without the rest of the URL.
            s.extend(url.trim_end_matches('/').rsplit('/').next().map(str::to_owned));
        }
    }
    if let Some(e) = &cfg.email {
        s.extend(e.smtp_url.clone());
        s.extend(e.password.clone());
        if let Some(p) = e
            .smtp_url
            .as_deref()
            .and_then(|u| reqwest::Url::parse(u).ok())
            .and_then(|u| u.password().map(str::to_owned))
        {
            s.push(p);
        }
    }
    Scrubber::new(s)
}

/// Routing from `notify.alert_min_severity` and `notify.routes`.
pub fn routing(cfg: &NotifyConfig) -> Routing {
    let mut overrides = BTreeMap::new();
    for (kind, route) in &cfg.routes {
        if let Some(kind) = EventKind::parse(kind) {
            overrides.insert(kind, Route::parse(route));
        }
    }
    Routing { alert_min: cfg.alert_min_severity, overrides }
}

/// The channels that are on and the routes each carries.
pub fn channel_rules(cfg: &NotifyConfig) -> Vec<ChannelRule> {
    let all = vec![Route::Trades, Route::Alerts, Route::Reports];
    let mut rules = Vec::new();
    if cfg.telegram.is_some() {
        rules.push(ChannelRule { channel: Channel::Telegram, routes: all.clone(), alert_min: Severity::Info });
    }
    if cfg.discord.is_some() {
        rules.push(ChannelRule { channel: Channel::Discord, routes: all, alert_min: Severity::Info });
    }
    if let Some(e) = &cfg.email {
        rules.push(ChannelRule {
            channel: Channel::Email,
            routes: vec![Route::Alerts, Route::Reports],
            alert_min: e.alert_min_severity,
        });
    }
    rules.push(ChannelRule {
        channel: Channel::Log,
        routes: vec![Route::Alerts, Route::Reports],
        alert_min: Severity::Info,
    });
    rules
}

/// The fatigue rules.
pub fn fatigue(cfg: &NotifyConfig) -> Fatigue {
    Fatigue { cooldown: chrono::Duration::seconds(i64::try_from(cfg.cooldown_secs).unwrap_or(i64::MAX / 1000)) }
}

/// When alerts are grouped, repeated and escalated.
pub fn follow_up_rules(cfg: &NotifyConfig) -> FollowUpRules {
    let secs = |v: u64| chrono::Duration::seconds(i64::try_from(v).unwrap_or(i64::MAX / 1000));
    FollowUpRules {
        group_window: secs(cfg.group_window_secs),
        repeat_every: secs(cfg.repeat_emergency_secs),
        escalate_after: secs(cfg.escalate_after_secs),
    }
}

/// The retry policy.
pub fn policy(cfg: &NotifyConfig) -> RetryPolicy {
    let ms = |v: u64| chrono::Duration::milliseconds(i64::try_from(v).unwrap_or(i64::MAX / 1000));
    RetryPolicy {
        base: ms(cfg.retry_base_ms),
        max: ms(cfg.retry_max_secs.saturating_mul(1000)),
        max_attempts: i32::try_from(cfg.max_attempts).unwrap_or(i32::MAX),
        fallback: Channel::parse(&cfg.fallback),
    }
}

/// Telegram's settings, when the channel is on.
pub fn telegram_settings(cfg: &NotifyConfig) -> Option<TelegramSettings> {
    let t = cfg.telegram.as_ref()?;
    Some(TelegramSettings {
        token: t.token.clone().unwrap_or_default(),
        chat_ids: t.chat_ids.clone(),
        api_url: t.api_url.clone(),
        request_timeout: std::time::Duration::from_millis(cfg.request_timeout_ms),
    })
}

/// The channel adapters of the channels that are on (the log always), optionally only `only`.
pub fn notifiers(
    cfg: &NotifyConfig,
    clock: Arc<dyn Clock>,
    only: Option<Channel>,
) -> Result<Vec<Arc<dyn ChannelNotifier>>, SetupError> {
    let scrub = Arc::new(scrubber(cfg));
    let timeout = std::time::Duration::from_millis(cfg.request_timeout_ms);
    let wanted = |c: Channel| only.is_none_or(|o| o == c);
    let mut out: Vec<Arc<dyn ChannelNotifier>> = Vec::new();
    if let Some(s) = telegram_settings(cfg).filter(|_| wanted(Channel::Telegram)) {
        out.push(Arc::new(TelegramChannel::new(&s, scrub.clone())?));
    }
    if let Some(d) = cfg.discord.as_ref().filter(|_| wanted(Channel::Discord)) {
        let mut webhooks = BTreeMap::new();
        for (route, url) in [
            (Route::Trades, &d.webhooks.trades),
            (Route::Alerts, &d.webhooks.alerts),
            (Route::Reports, &d.webhooks.reports),
        ] {
            if let Some(u) = url.clone().filter(|u| !u.is_empty()) {
                webhooks.insert(route, u);
            }
        }
        let s = DiscordSettings { webhooks, critical_role_id: d.critical_role_id.clone(), request_timeout: timeout };
        out.push(Arc::new(DiscordChannel::new(s, scrub.clone(), clock)?));
    }
    if let Some(e) = cfg.email.as_ref().filter(|_| wanted(Channel::Email)) {
        let s = EmailSettings {
            smtp_url: e.smtp_url.clone().unwrap_or_default(),
            tls_required: e.tls == "required",
            user: e.user.clone(),
            password: e.password.clone(),
            from: e.from.clone(),
            to: e.to.clone(),
            timeout,
            ca_file: e.ca_file.clone(),
        };
        out.push(Arc::new(EmailChannel::new(&s, scrub)?));
    }
    if wanted(Channel::Log) {
        out.push(Arc::new(LogChannel));
    }
    Ok(out)
}
