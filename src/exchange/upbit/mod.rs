//! Upbit (KRW markets) over REST: a raw client named after the endpoints ([`rest`]) and the `Exchange` adapter
//! on top ([`UpbitExchange`]).
//!
//! - Auth: JWT (HS256) with `access_key`, a fresh `nonce` and the SHA-512 `query_hash` of the parameters ([`auth`]).
//! - Rate limits: the `Remaining-Req` header is obeyed per group; 429 is retryable, 418 stops every request for
//!   the block ([`rate_limit`]).
//! - Market rules: the KRW price-unit table (config) and minimum order total are applied before sending ([`tick`]).
//! - Idempotence: our client order id is Upbit's `identifier`, which Upbit never accepts twice; an order whose
//!   answer was lost, or a duplicate refusal, is resolved by looking the identifier up.
//! - Numbers: JSON numbers and number strings are read from their text into `Decimal` ([`numbers`]).

pub mod auth;
pub mod error;
mod exchange;
pub mod numbers;
pub mod rate_limit;
pub mod rest;
pub mod settings;
pub mod tick;
pub mod wire;

pub use error::UpbitError;
pub use exchange::UpbitExchange;
pub use rate_limit::{Pause, TokioPause};
pub use settings::{ApiSecret, UpbitSettings};
pub use tick::{Rounding, TickBand, TickTable};
