//! Upbit failures, sorted by what the caller does next, and their mapping onto the port's [`ExchangeError`].

use std::time::Duration;

use mcbot_stages::ports::ExchangeError;

/// Everything that can go wrong talking to Upbit.
#[derive(Debug, thiserror::Error)]
pub enum UpbitError {
    /// A private endpoint was called without both keys configured.
    #[error("Upbit access_key and secret_key are required for {0}")]
    MissingCredentials(&'static str),
    /// The JWT could not be built (a bad key).
    #[error("cannot sign the Upbit request: {0}")]
    Signing(String),
    /// The request never left (connection refused, DNS, TLS): certainly not executed.
    #[error("{endpoint}: cannot reach Upbit: {message}")]
    Connect {
        /// Endpoint, e.g. `POST /v1/orders`.
        endpoint: String,
        /// Cause.
        message: String,
    },
    /// Sent, but no complete answer (time-out, connection reset): an order may or may not exist.
    #[error("{endpoint}: no answer from Upbit: {message}")]
    NoResponse {
        /// Endpoint.
        endpoint: String,
        /// Cause.
        message: String,
    },
    /// 429: the rate-limit group is exhausted.
    #[error("{endpoint}: Upbit rate limit hit (retry after {retry_after:?})")]
    RateLimited {
        /// Endpoint.
        endpoint: String,
        /// Wait before calling the group again.
        retry_after: Duration,
    },
    /// 418 (or a block still running): requests are refused for a while; repeated 429s escalate to this.
    #[error("Upbit blocked this client for {retry_after:?}: {message}")]
    Banned {
        /// How long the block lasts.
        retry_after: Duration,
        /// Body or reason.
        message: String,
    },
    /// 5xx: the server failed; for an order request, it may have been accepted before failing.
    #[error("{endpoint}: Upbit server error {status}: {body}")]
    Server {
        /// Endpoint.
        endpoint: String,
        /// HTTP status.
        status: u16,
        /// First bytes of the body.
        body: String,
    },
    /// A 4xx answer with Upbit's `{"error":{"name","message"}}` body.
    #[error("{endpoint}: Upbit refused ({status} {name}): {message}")]
    Api {
        /// Endpoint.
        endpoint: String,
        /// HTTP status.
        status: u16,
        /// Upbit's error name, e.g. `insufficient_funds_bid`, `invalid_query_payload`.
        name: String,
        /// Upbit's message.
        message: String,
    },
    /// The answer does not parse into what the endpoint promises.
    #[error("{endpoint}: malformed Upbit payload: {message}")]
    Malformed {
        /// Endpoint.
        endpoint: String,
        /// Parser message.
        message: String,
    },
    /// Refused before sending: the request breaks a market rule (below minimum, unsupported timeframe...).
    #[error("{0}")]
    Invalid(String),
    /// The settings cannot work (bad URL, bad tick table).
    #[error(transparent)]
    Settings(#[from] super::settings::SettingsError),
}

impl UpbitError {
    /// True when the request may have been executed although no success was seen: an order must then be looked
    /// up by its identifier before anything is retried.
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, UpbitError::NoResponse { .. } | UpbitError::Server { .. })
    }

    /// True for a 404 (no such order).
    pub fn is_not_found(&self) -> bool {
        matches!(self, UpbitError::Api { status: 404, .. })
    }

    /// Upbit's error name, when it sent one.
    pub fn api_name(&self) -> Option<&str> {
        match self {
            UpbitError::Api { name, .. } => Some(name),
            _ => None,
        }
    }
}

/// Delay suggested for transient failures without a server hint.
const TRANSIENT_RETRY: Duration = Duration::from_secs(1);

impl From<UpbitError> for ExchangeError {
    fn from(e: UpbitError) -> Self {
        let message = e.to_string();
        match e {
            UpbitError::MissingCredentials(_)
            | UpbitError::Signing(_)
            | UpbitError::Banned { .. }
            | UpbitError::Settings(_) => ExchangeError::Fatal(message),
            UpbitError::Connect { .. } | UpbitError::NoResponse { .. } | UpbitError::Server { .. } => {
                ExchangeError::Retryable { retry_after: TRANSIENT_RETRY, message }
            }
            UpbitError::RateLimited { retry_after, .. } => ExchangeError::Retryable { retry_after, message },
            UpbitError::Api { status: 401 | 403, .. } => ExchangeError::Fatal(message),
            UpbitError::Api { .. } | UpbitError::Invalid(_) => ExchangeError::Rejected(message),
            UpbitError::Malformed { .. } => ExchangeError::Malformed(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_what_the_caller_does_next() {
        let api = |status, name: &str| UpbitError::Api {
            endpoint: "e".into(),
            status,
            name: name.into(),
            message: "m".into(),
        };
        assert!(matches!(ExchangeError::from(api(401, "jwt_verification")), ExchangeError::Fatal(_)));
        assert!(matches!(ExchangeError::from(api(400, "insufficient_funds_bid")), ExchangeError::Rejected(_)));
        let rl = UpbitError::RateLimited { endpoint: "e".into(), retry_after: Duration::from_millis(1500) };
        assert!(matches!(
            ExchangeError::from(rl),
            ExchangeError::Retryable { retry_after, .. } if retry_after == Duration::from_millis(1500)
        ));
        let ban = UpbitError::Banned { retry_after: Duration::from_secs(60), message: "x".into() };
        assert!(matches!(ExchangeError::from(ban), ExchangeError::Fatal(_)));
        let m = UpbitError::Malformed { endpoint: "e".into(), message: "x".into() };
        assert!(matches!(ExchangeError::from(m), ExchangeError::Malformed(_)));
        assert!(UpbitError::Server { endpoint: "e".into(), status: 502, body: String::new() }.outcome_unknown());
        assert!(!api(400, "x").outcome_unknown());
        assert!(api(404, "order_not_found").is_not_found());
    }
}
