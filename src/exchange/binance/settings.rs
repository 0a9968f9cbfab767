//! `[exchange.binance]`: where Binance is, which credentials sign requests, and how hard the adapter may push.
//! Every URL is configuration so tests (and the testnet) point the same code at another host.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A credential that never prints: `Debug` and `Serialize` show `[redacted]`, so a logged or dumped config
/// cannot leak it. Read it with [`Secret::expose`] only where a request is signed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential read from the environment or a `*_FILE`.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The credential itself, for signing; never log the result.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("[redacted]")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// The Binance spot adapter's settings. Defaults are the production endpoints and conservative limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BinanceSettings {
    /// REST base URL without the `/api/v3` path, e.g. `https://api.binance.com`.
    pub rest_url: String,
    /// WebSocket base URL, e.g. `wss://stream.binance.com:9443`; the combined stream lives at `/stream`.
    pub ws_url: String,
    /// API key for signed endpoints; market data needs none.
    pub api_key: Option<Secret>,
    /// HMAC secret for signed endpoints.
    pub api_secret: Option<Secret>,
    /// How long after its timestamp a signed request stays valid at Binance (max 60 000).
    pub recv_window_ms: u64,
    /// Request weight the adapter allows itself per minute; Binance's IP limit is 6 000, and other programs
    /// on the same IP share it, so stay well below.
    pub weight_budget_per_min: u32,
    /// Longest wait for the weight budget or a 429 back-off before a call gives up with a retryable error.
    pub max_limit_wait_ms: u64,
    /// Whole-request time-out. An order whose request times out has an unknown outcome and is looked up.
    pub request_timeout_ms: u64,
    /// Time-out for opening a connection; a connect failure means nothing was sent.
    pub connect_timeout_ms: u64,
    /// Look the client order id up before the first submission, so an id placed by an earlier process (a
    /// restart with an order in flight) is never placed again. Costs 4 weight per order.
    pub lookup_before_place: bool,
    /// Submissions of one order (same client order id) when the outcome was unknown and a lookup found nothing.
    pub order_submit_attempts: u32,
    /// Lookups by client order id after an unknown outcome, before giving up with `Unknown`.
    pub order_lookup_attempts: u32,
    /// Pause between those lookups, giving the matching engine time to publish the order.
    pub order_lookup_delay_ms: u64,
    /// The kline WebSocket stream.
    pub stream: StreamSettings,
}

impl Default for BinanceSettings {
    fn default() -> Self {
        Self {
            rest_url: "https://api.binance.com".into(),
            ws_url: "wss://stream.binance.com:9443".into(),
            api_key: None,
            api_secret: None,
            recv_window_ms: 5_000,
            weight_budget_per_min: 3_000,
            max_limit_wait_ms: 65_000,
            request_timeout_ms: 10_000,
            connect_timeout_ms: 5_000,
            lookup_before_place: true,
            order_submit_attempts: 2,
            order_lookup_attempts: 3,
            order_lookup_delay_ms: 500,
            stream: StreamSettings::default(),
        }
    }
}

impl BinanceSettings {
    /// Request time-out as a duration.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// Connect time-out as a duration.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
}

/// Settings of the kline WebSocket stream that feeds the candle cache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamSettings {
    /// Subscribe to 1m klines and build the target timeframe from them on UTC boundaries, instead of
    /// subscribing to the target interval directly (bars then appear as soon as their last minute closes).
    pub aggregate_from_1m: bool,
    /// Closed bars loaded over REST when the stream starts, so the cache can serve a lookback at once.
    pub warmup_bars: usize,
    /// Closed bars kept per symbol.
    pub cache_bars: usize,
    /// How often the client pings the server and checks the connection for silence.
    pub ping_interval_ms: u64,
    /// No frame at all for this long means the connection is dead: reconnect.
    pub idle_timeout_ms: u64,
    /// First reconnect delay; doubled per failed attempt.
    pub reconnect_base_ms: u64,
    /// Cap of the reconnect delay.
    pub reconnect_max_ms: u64,
    /// Binance cuts connections after 24 h; reconnect on our terms before that (on the injected clock).
    pub max_connection_age_secs: u64,
    /// Seed of the reconnect jitter; `None` draws one from the OS. Tests fix it.
    pub jitter_seed: Option<u64>,
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            aggregate_from_1m: false,
            warmup_bars: 500,
            cache_bars: 1_500,
            ping_interval_ms: 30_000,
            idle_timeout_ms: 90_000,
            reconnect_base_ms: 500,
            reconnect_max_ms: 30_000,
            max_connection_age_secs: 23 * 3_600 + 30 * 60,
            jitter_seed: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = BinanceSettings {
            api_key: Some(Secret::new("my-key")),
            api_secret: Some(Secret::new("my-secret")),
            ..BinanceSettings::default()
        };
        let debug = format!("{s:?}");
        assert!(!debug.contains("my-key") && !debug.contains("my-secret"), "{debug}");
        let json = serde_json::to_string(&s).unwrap();
        assert!(!json.contains("my-secret"), "{json}");
    }

    #[test]
    fn settings_parse_with_defaults_and_refuse_unknown_keys() {
        let s: BinanceSettings = toml::from_str("rest_url = \"http://127.0.0.1:1\"\napi_secret = \"x\"").unwrap();
        assert_eq!(s.rest_url, "http://127.0.0.1:1");
        assert_eq!(s.api_secret.as_ref().map(Secret::expose), Some("x"));
        assert_eq!(s.ws_url, BinanceSettings::default().ws_url);
        assert!(toml::from_str::<BinanceSettings>("rest_urll = \"x\"").is_err());
    }
}
