//! `[exchange.upbit]` configuration: where Upbit is, the API keys, time-outs and the KRW market rules. Every URL
//! is configuration so tests point the adapter at a loopback fake and regional sites work unchanged.

use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::tick::{TickTable, TickTableError};

/// An API credential: readable by the signer, never printed by `Debug` or written back by `Serialize`, so a log
/// line or a dumped config cannot leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiSecret(String);

impl ApiSecret {
    /// Wraps a credential read from config, the environment or a mounted file.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The credential itself, for signing only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Serialize for ApiSecret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("[redacted]")
    }
}

impl<'de> Deserialize<'de> for ApiSecret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self)
    }
}

/// Upbit adapter settings. Defaults are production values, so only the keys need configuring for live use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpbitSettings {
    /// REST base URL without the `/v1` path (`https://api.upbit.com`; `https://sg-api.upbit.com` for Singapore).
    pub rest_url: String,
    /// Access key (`MCBOT_EXCHANGE__UPBIT__ACCESS_KEY` or `..._FILE`); needed only for account and order calls.
    pub access_key: Option<ApiSecret>,
    /// Secret key, used raw (not base64-decoded) as the HMAC key of the JWT.
    pub secret_key: Option<ApiSecret>,
    /// Time-out of one HTTP request; an order request that times out is looked up by its identifier.
    pub request_timeout_ms: u64,
    /// Quote currency of the markets traded (`KRW`).
    pub quote: String,
    /// Smallest order total Upbit accepts in the quote currency (5 000 KRW).
    pub min_order_total: Decimal,
    /// Volume increment: Upbit accepts up to 8 decimals.
    pub volume_step: Decimal,
    /// The price-unit table (see `tick.rs`).
    pub tick_table: TickTable,
    /// How many times an order whose outcome is unknown is looked up before giving up.
    pub lookup_attempts: u32,
    /// After a market order is accepted, how many times its state is polled for fills before returning.
    pub fill_polls: u32,
    /// Pause between those polls.
    pub fill_poll_interval_ms: u64,
    /// How long all requests stop after a 418 (temporary block) without a `Retry-After`.
    pub ban_secs: u64,
    /// Wait after a 429 without a `Retry-After` header.
    pub rate_limit_backoff_ms: u64,
}

impl Default for UpbitSettings {
    fn default() -> Self {
        Self {
            rest_url: "https://api.upbit.com".into(),
            access_key: None,
            secret_key: None,
            request_timeout_ms: 10_000,
            quote: "KRW".into(),
            min_order_total: Decimal::from(5_000),
            volume_step: Decimal::new(1, 8),
            tick_table: TickTable::default(),
            lookup_attempts: 3,
            fill_polls: 5,
            fill_poll_interval_ms: 200,
            ban_secs: 60,
            rate_limit_backoff_ms: 1_000,
        }
    }
}

/// A setting that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The base URL does not parse.
    #[error("exchange.upbit.rest_url {0:?} is not an http(s) URL")]
    RestUrl(String),
    /// The tick table is unusable.
    #[error("exchange.upbit.tick_table: {0}")]
    TickTable(#[from] TickTableError),
    /// A number out of range.
    #[error("exchange.upbit.{key}: {message}")]
    Invalid {
        /// Key.
        key: &'static str,
        /// What is wrong.
        message: &'static str,
    },
}

impl UpbitSettings {
    /// Checks the settings at start-up, so a typo fails before the first request rather than at the first trade.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let url = self.rest_url.trim_end_matches('/');
        if !(url.starts_with("http://") || url.starts_with("https://")) || reqwest::Url::parse(url).is_err() {
            return Err(SettingsError::RestUrl(self.rest_url.clone()));
        }
        self.tick_table.validate()?;
        if self.request_timeout_ms == 0 {
            return Err(SettingsError::Invalid { key: "request_timeout_ms", message: "must be positive" });
        }
        if self.volume_step <= Decimal::ZERO {
            return Err(SettingsError::Invalid { key: "volume_step", message: "must be positive" });
        }
        if self.min_order_total < Decimal::ZERO {
            return Err(SettingsError::Invalid { key: "min_order_total", message: "must not be negative" });
        }
        Ok(())
    }

    /// True when both keys are set, so account and order endpoints can be called.
    pub fn has_credentials(&self) -> bool {
        self.access_key.as_ref().is_some_and(|k| !k.expose().is_empty())
            && self.secret_key.as_ref().is_some_and(|k| !k.expose().is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_production_and_valid() {
        let s = UpbitSettings::default();
        assert_eq!(s.rest_url, "https://api.upbit.com");
        assert!(s.validate().is_ok());
        assert!(!s.has_credentials());
    }

    #[test]
    fn secrets_never_print() {
        let s: UpbitSettings = toml::from_str(
            "access_key = \"AK-visible\"\nsecret_key = \"SK-hidden-123\"\nrest_url = \"http://127.0.0.1:1\"",
        )
        .unwrap();
        assert!(s.has_credentials());
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("SK-hidden-123") && !dbg.contains("AK-visible"), "{dbg}");
        let json = serde_json::to_string(&s).unwrap();
        assert!(!json.contains("SK-hidden-123"), "{json}");
        assert_eq!(s.secret_key.as_ref().map(ApiSecret::expose), Some("SK-hidden-123"));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        assert!(toml::from_str::<UpbitSettings>("secret = \"x\"").is_err());
        let s: UpbitSettings = toml::from_str("rest_url = \"ftp://x\"").unwrap();
        assert!(s.validate().is_err());
        let s: UpbitSettings = toml::from_str("tick_table = [{ from = \"0\", tick = \"0\" }]").unwrap();
        assert!(matches!(s.validate(), Err(SettingsError::TickTable(_))));
        let s: UpbitSettings =
            toml::from_str("tick_table = [{ from = \"0\", tick = \"1\" }]\nmin_order_total = \"5000\"").unwrap();
        assert!(s.validate().is_ok());
    }
}
