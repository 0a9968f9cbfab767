use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// A trading pair as the exchange names it (e.g. `BTCUSDT`), validated once at the boundary.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Symbol(String);

/// Why a string is not a symbol.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid symbol {0:?}: expected 2-20 characters of A-Z, 0-9, '-' or '_'")]
pub struct SymbolError(pub String);

impl Symbol {
    /// Parses a symbol; upper-case letters, digits, `-` and `_` only, so it is safe in ids, SQL and file names.
    pub fn new(s: &str) -> Result<Self, SymbolError> {
        let ok = (2..=20).contains(&s.len())
            && s.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if ok { Ok(Self(s.to_owned())) } else { Err(SymbolError(s.to_owned())) }
    }

    /// The symbol text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Symbol {
    type Error = SymbolError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Symbol::new(&s)
    }
}

impl From<Symbol> for String {
    fn from(s: Symbol) -> String {
        s.0
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The id of one run of one job, derived from the job and its scheduled time, so a retried or duplicated run
/// of the same bar has the same id and everything keyed on it (orders above all) is placed once.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RunId(String);

impl RunId {
    /// `job@2024-01-01T00:00:00Z`.
    pub fn new(job: &str, scheduled_at: DateTime<Utc>) -> Self {
        Self(format!("{job}@{}", scheduled_at.to_rfc3339_opts(SecondsFormat::Secs, true)))
    }

    /// Rebuilds a run id read back from storage.
    pub fn from_stored(s: String) -> Self {
        Self(s)
    }

    /// The id text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A client order id that is a pure function of (run, symbol, leg): a restarted run recomputes the same id, and
/// the exchange and the store both refuse a second order with it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ClientOrderId(String);

impl ClientOrderId {
    /// Derives the id: `mcb-` and 28 hex digits of a stable 128-bit FNV-1a hash, within Binance's 36 characters
    /// and its `^[a-zA-Z0-9-_]{1,36}$` rule.
    pub fn derive(run: &RunId, symbol: &Symbol, leg: &str) -> Self {
        let mut h: u128 = 0x6c62272e07bb014262b821756295c58d;
        for b in run.as_str().bytes().chain([0]).chain(symbol.as_str().bytes()).chain([0]).chain(leg.bytes()) {
            h ^= u128::from(b);
            h = h.wrapping_mul(0x0000000001000000000000000000013B);
        }
        Self(format!("mcb-{:028x}", h >> 16))
    }

    /// Rebuilds an id read back from storage or from the exchange.
    pub fn from_stored(s: String) -> Self {
        Self(s)
    }

    /// The id text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClientOrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_are_validated() {
        assert!(Symbol::new("BTCUSDT").is_ok());
        assert!(Symbol::new("KRW-BTC").is_ok());
        assert_eq!(Symbol::new("btc"), Err(SymbolError("btc".into())));
        assert!(Symbol::new("B").is_err());
        assert!(Symbol::new("BTC;DROP").is_err());
    }

    #[test]
    fn client_order_ids_are_deterministic_and_distinct() {
        let t = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let run = RunId::new("trading-cycle", t);
        assert_eq!(run.as_str(), "trading-cycle@2023-11-14T22:13:20Z");
        let btc = Symbol::new("BTCUSDT").unwrap();
        let eth = Symbol::new("ETHUSDT").unwrap();
        let a = ClientOrderId::derive(&run, &btc, "buy");
        assert_eq!(a, ClientOrderId::derive(&run, &btc, "buy"));
        assert_ne!(a, ClientOrderId::derive(&run, &btc, "sell"));
        assert_ne!(a, ClientOrderId::derive(&run, &eth, "buy"));
        assert_ne!(a, ClientOrderId::derive(&RunId::new("trading-cycle", t + chrono::Duration::hours(1)), &btc, "buy"));
        assert_eq!(a.as_str().len(), 32);
    }
}
