//! Binance failures sorted by what the caller does next: HTTP statuses and the `{"code":-2010,"msg":...}` error
//! codes are mapped once here, so the adapter and the pipeline never interpret raw codes.

use std::time::Duration;

use chrono::{DateTime, Utc};
use mcbot_stages::ports::ExchangeError;

/// What the caller of a failed Binance request does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    /// Nothing happened at the exchange: the same request may be sent again after the delay.
    RetryAfter(Duration),
    /// An order-changing request may or may not have taken effect: look the order up by client order id first.
    LookUpOrder,
    /// The request is wrong and will fail again the same way.
    DoNotRetry,
    /// Stop trading and alert a person (ban, credentials, configuration).
    Stop,
}

/// Every way a Binance request fails.
#[derive(Debug, thiserror::Error)]
pub enum BinanceError {
    /// HTTP 429 (or `-1003`): too much weight; nothing was done.
    #[error("rate limited by Binance, retry after {retry_after:?}")]
    RateLimited {
        /// From the `Retry-After` header.
        retry_after: Duration,
    },
    /// HTTP 418: the IP is banned for ignoring 429s; no request may be sent before `until`.
    #[error("IP banned by Binance until {until}")]
    Banned {
        /// When the ban ends (clock time).
        until: DateTime<Utc>,
    },
    /// `-1021`: the request timestamp fell outside recvWindow even after a resync of the clock offset.
    #[error("timestamp outside recvWindow: {0}")]
    Timestamp(String),
    /// `-2010 Duplicate order sent.`: the client order id is taken; the earlier order is looked up.
    #[error("duplicate client order id: {0}")]
    DuplicateOrder(String),
    /// `-2013` / `-2011 Unknown order sent.`: Binance has no such order.
    #[error("no such order: {0}")]
    NoSuchOrder(String),
    /// Any other 4xx with a Binance code: bad symbol, filter failure, insufficient balance, market closed...
    #[error("rejected by Binance (code {code}): {msg}")]
    Rejected {
        /// Binance error code (or the HTTP status when the body had none).
        code: i64,
        /// Binance's message.
        msg: String,
    },
    /// `-1022`, `-2014`, `-2015`, HTTP 401/403: keys, IP whitelist or permissions are wrong.
    #[error("credentials refused by Binance (code {code}): {msg}")]
    Auth {
        /// Binance error code or HTTP status.
        code: i64,
        /// Binance's message.
        msg: String,
    },
    /// The adapter is not configured for what was asked (e.g. a signed call without keys).
    #[error("Binance adapter misconfigured: {0}")]
    Config(String),
    /// HTTP 5xx or `-1007` on a request that changes nothing: try again later.
    #[error("Binance server error (HTTP {status}): {msg}")]
    Server {
        /// HTTP status.
        status: u16,
        /// Body or reason.
        msg: String,
    },
    /// The request failed on the way (connect refused, time-out, connection dropped) and changes nothing.
    #[error("transport failure: {0}")]
    Transport(String),
    /// An order-changing request failed after it may have reached Binance (5xx, time-out, dropped or
    /// unreadable response): the order may exist.
    #[error("order outcome unknown: {0}")]
    OutcomeUnknown(String),
    /// An order whose outcome was unknown, and which Binance still has no record of after every lookup and
    /// resubmission: it was not placed, and may be sent again under the same client order id (a later attempt
    /// looks the id up before sending anything).
    #[error("order not placed: {0}")]
    NotPlaced(String),
    /// A payload that does not parse into the expected shape.
    #[error("malformed payload from {endpoint}: {detail}")]
    Malformed {
        /// Which endpoint answered it.
        endpoint: &'static str,
        /// What was wrong.
        detail: String,
    },
}

/// The retry delay used when Binance gives none.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

impl BinanceError {
    /// What the caller does next.
    pub fn next_step(&self) -> NextStep {
        match self {
            BinanceError::RateLimited { retry_after } => NextStep::RetryAfter(*retry_after),
            BinanceError::Timestamp(_)
            | BinanceError::Server { .. }
            | BinanceError::Transport(_)
            | BinanceError::NotPlaced(_) => NextStep::RetryAfter(DEFAULT_RETRY_AFTER),
            BinanceError::DuplicateOrder(_) | BinanceError::OutcomeUnknown(_) => NextStep::LookUpOrder,
            BinanceError::NoSuchOrder(_) | BinanceError::Rejected { .. } | BinanceError::Malformed { .. } => {
                NextStep::DoNotRetry
            }
            BinanceError::Banned { .. } | BinanceError::Auth { .. } | BinanceError::Config(_) => NextStep::Stop,
        }
    }

    /// Classifies a non-2xx answer. `mutation` is true for requests that change orders, whose 5xx means the
    /// outcome is unknown rather than "try again".
    pub fn from_response(
        status: u16,
        body: &[u8],
        retry_after: Option<Duration>,
        now: DateTime<Utc>,
        mutation: bool,
    ) -> Self {
        let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
        let (code, msg) = match parsed {
            Some(b) => (b.code, b.msg),
            None => (i64::from(status), String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned()),
        };
        match status {
            429 => BinanceError::RateLimited { retry_after: retry_after.unwrap_or(DEFAULT_RETRY_AFTER) },
            418 => {
                // Bans last 2 minutes to 3 days; assume the shortest if Binance did not say.
                let wait = retry_after.unwrap_or(Duration::from_secs(120));
                let until = now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::seconds(120));
                BinanceError::Banned { until }
            }
            401 | 403 => BinanceError::Auth { code, msg },
            s if s >= 500 => {
                if mutation {
                    BinanceError::OutcomeUnknown(format!("HTTP {s}: {msg}"))
                } else {
                    BinanceError::Server { status: s, msg }
                }
            }
            _ => Self::from_code(status, code, msg, retry_after, mutation),
        }
    }

    fn from_code(status: u16, code: i64, msg: String, retry_after: Option<Duration>, mutation: bool) -> Self {
        match code {
            -1003 => BinanceError::RateLimited { retry_after: retry_after.unwrap_or(DEFAULT_RETRY_AFTER) },
            -1021 => BinanceError::Timestamp(msg),
            -1022 | -2014 | -2015 => BinanceError::Auth { code, msg },
            -1007 if mutation => BinanceError::OutcomeUnknown(msg),
            -1007 => BinanceError::Server { status, msg },
            -2010 if msg.contains("Duplicate order") => BinanceError::DuplicateOrder(msg),
            -2013 => BinanceError::NoSuchOrder(msg),
            -2011 if msg.contains("Unknown order") => BinanceError::NoSuchOrder(msg),
            _ => BinanceError::Rejected { code, msg },
        }
    }

    /// A payload that failed to parse.
    pub fn malformed(endpoint: &'static str, detail: impl std::fmt::Display) -> Self {
        BinanceError::Malformed { endpoint, detail: detail.to_string() }
    }
}

#[derive(serde::Deserialize)]
struct ErrorBody {
    code: i64,
    msg: String,
}

impl From<BinanceError> for ExchangeError {
    fn from(e: BinanceError) -> Self {
        let message = e.to_string();
        match e {
            BinanceError::RateLimited { retry_after } => ExchangeError::Retryable { retry_after, message },
            BinanceError::Timestamp(_)
            | BinanceError::Server { .. }
            | BinanceError::Transport(_)
            | BinanceError::NotPlaced(_) => ExchangeError::Retryable { retry_after: DEFAULT_RETRY_AFTER, message },
            BinanceError::Banned { until } => ExchangeError::Fatal(format!("banned until {until}")),
            BinanceError::Auth { .. } | BinanceError::Config(_) => ExchangeError::Fatal(message),
            BinanceError::DuplicateOrder(_) | BinanceError::OutcomeUnknown(_) => ExchangeError::Unknown(message),
            BinanceError::NoSuchOrder(_) | BinanceError::Rejected { .. } => ExchangeError::Rejected(message),
            BinanceError::Malformed { .. } => ExchangeError::Malformed(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    fn classify(status: u16, body: &str, mutation: bool) -> BinanceError {
        BinanceError::from_response(status, body.as_bytes(), Some(Duration::from_secs(7)), now(), mutation)
    }

    #[test]
    fn statuses_and_codes_map_to_what_the_caller_does_next() {
        let e = classify(429, r#"{"code":-1003,"msg":"Too much request weight used"}"#, false);
        assert_eq!(e.next_step(), NextStep::RetryAfter(Duration::from_secs(7)));
        assert!(
            matches!(ExchangeError::from(e), ExchangeError::Retryable { retry_after, .. } if retry_after.as_secs() == 7)
        );

        let e = classify(418, r#"{"code":-1003,"msg":"Way too much request weight used; IP banned until 1."}"#, false);
        assert!(matches!(e, BinanceError::Banned { until } if until == now() + chrono::Duration::seconds(7)));
        assert!(matches!(ExchangeError::from(e), ExchangeError::Fatal(m) if m.contains("banned until")));

        let e = classify(503, "<html>Service Unavailable</html>", true);
        assert_eq!(e.next_step(), NextStep::LookUpOrder);
        assert!(matches!(ExchangeError::from(e), ExchangeError::Unknown(_)));
        assert!(matches!(classify(503, "", false), BinanceError::Server { status: 503, .. }));

        let e = classify(400, r#"{"code":-2010,"msg":"Duplicate order sent."}"#, true);
        assert!(matches!(e, BinanceError::DuplicateOrder(_)));
        let e = classify(400, r#"{"code":-2010,"msg":"Account has insufficient balance for requested action."}"#, true);
        assert!(matches!(ExchangeError::from(e), ExchangeError::Rejected(_)));
        let e = classify(400, r#"{"code":-1013,"msg":"Filter failure: LOT_SIZE"}"#, true);
        assert_eq!(e.next_step(), NextStep::DoNotRetry);
        assert!(matches!(
            classify(400, r#"{"code":-2013,"msg":"Order does not exist."}"#, false),
            BinanceError::NoSuchOrder(_)
        ));
        assert!(matches!(classify(400, r#"{"code":-1021,"msg":"Timestamp..."}"#, true), BinanceError::Timestamp(_)));
        let e = classify(401, r#"{"code":-2015,"msg":"Invalid API-key, IP, or permissions for action."}"#, false);
        assert_eq!(e.next_step(), NextStep::Stop);
        assert!(matches!(classify(400, r#"{"code":-1007,"msg":"Timeout"}"#, true), BinanceError::OutcomeUnknown(_)));
        // A 4xx whose body is not Binance's error JSON is still a typed rejection.
        assert!(matches!(classify(400, "garbage", false), BinanceError::Rejected { code: 400, .. }));
    }

    #[test]
    fn an_order_binance_never_took_may_be_sent_again() {
        let e = BinanceError::NotPlaced("no order under the id after 3 lookups".into());
        assert_eq!(e.next_step(), NextStep::RetryAfter(DEFAULT_RETRY_AFTER));
        assert!(
            matches!(ExchangeError::from(e), ExchangeError::Retryable { message, .. } if message.contains("not placed"))
        );
    }

    #[test]
    fn malformed_maps_to_malformed() {
        let e = BinanceError::malformed("klines", "expected a string");
        assert!(matches!(ExchangeError::from(e), ExchangeError::Malformed(m) if m.contains("klines")));
    }
}
