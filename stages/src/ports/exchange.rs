use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use crate::domain::{
    Balance, Candle, ClientOrderId, Fill, Instrument, Order, OrderBook, OrderIntent, Symbol, Timeframe,
};
use crate::pipeline::pretrade::Approved;

/// Exchange failures sorted by what the caller does next.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// Transient (rate limit, 5xx, time-out before sending): try again after the delay.
    #[error("exchange temporarily unavailable (retry after {retry_after:?}): {message}")]
    Retryable {
        /// How long to wait before the next attempt.
        retry_after: Duration,
        /// What happened.
        message: String,
    },
    /// The request itself is wrong (bad symbol, filter violated, insufficient balance): do not retry it.
    #[error("exchange rejected the request: {0}")]
    Rejected(String),
    /// The order may or may not exist: look it up by client order id before anything else.
    #[error("order outcome unknown: {0}")]
    Unknown(String),
    /// The exchange answered something that cannot be parsed.
    #[error("malformed exchange payload: {0}")]
    Malformed(String),
    /// Credentials, bans or configuration: stop trading and alert.
    #[error("fatal exchange error: {0}")]
    Fatal(String),
}

impl ExchangeError {
    /// What failed, for grouping.
    pub fn kind(&self) -> super::FailureKind {
        use super::FailureKind;
        match self {
            ExchangeError::Retryable { .. } => FailureKind::Exchange,
            ExchangeError::Rejected(_) | ExchangeError::Fatal(_) => FailureKind::ExchangeFatal,
            ExchangeError::Unknown(_) => FailureKind::OrderOutcomeUnknown,
            ExchangeError::Malformed(_) => FailureKind::ExchangeMalformed,
        }
    }

    /// True when the same request may succeed later.
    pub fn retryable(&self) -> bool {
        matches!(self, ExchangeError::Retryable { .. })
    }
}

/// What the exchange says about an order it accepted, with any fills it produced at once.
#[derive(Debug, Clone)]
pub struct OrderAck {
    /// The order as the exchange now sees it.
    pub order: Order,
    /// Executions so far.
    pub fills: Vec<Fill>,
}

/// Market data, account and orders of one venue. Adapters: the embedded simulator, Binance spot, Upbit.
#[async_trait]
pub trait Exchange: Send + Sync {
    /// Venue name, for logs and metrics.
    fn name(&self) -> &str;

    /// Trading rules of a symbol.
    async fn instrument(&self, symbol: &Symbol) -> Result<Instrument, ExchangeError>;

    /// Up to `limit` closed bars whose close time is at or before `until`, oldest first. Never the forming bar.
    async fn closed_candles(
        &self,
        symbol: &Symbol,
        tf: Timeframe,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Candle>, ExchangeError>;

    /// Last traded price.
    async fn last_price(&self, symbol: &Symbol) -> Result<Decimal, ExchangeError>;

    /// The order book, up to `depth` levels a side.
    async fn order_book(&self, symbol: &Symbol, depth: usize) -> Result<OrderBook, ExchangeError>;

    /// All non-zero balances.
    async fn balances(&self) -> Result<Vec<Balance>, ExchangeError>;

    /// Places a market order under `client_order_id`. Placing the same id twice must not create a second order:
    /// the adapter returns the existing one. Only an order the pre-trade checks approved can be placed: an
    /// `Approved` is built by `pipeline::pretrade::approve` alone. The adapter still applies the venue's own
    /// rules (tick, step, minimum) before sending.
    ///
    /// ```
    /// # use mcbot_stages::domain::{ClientOrderId, OrderIntent};
    /// # use mcbot_stages::pipeline::pretrade::Approved;
    /// # use mcbot_stages::ports::Exchange;
    /// async fn place(ex: &dyn Exchange, id: &ClientOrderId, order: &Approved<OrderIntent>) {
    ///     let _ = ex.place_market_order(id, "run", order).await;
    /// }
    /// ```
    /// An intent that skipped the checks does not compile:
    /// ```compile_fail
    /// # use mcbot_stages::domain::{ClientOrderId, OrderIntent};
    /// # use mcbot_stages::ports::Exchange;
    /// async fn place(ex: &dyn Exchange, id: &ClientOrderId, order: &OrderIntent) {
    ///     let _ = ex.place_market_order(id, "run", order).await;
    /// }
    /// ```
    async fn place_market_order(
        &self,
        client_order_id: &ClientOrderId,
        run_id: &str,
        approved: &Approved<OrderIntent>,
    ) -> Result<OrderAck, ExchangeError>;

    /// Looks an order up by its client order id; `None` if the exchange never saw it.
    async fn order(&self, symbol: &Symbol, client_order_id: &ClientOrderId) -> Result<Option<OrderAck>, ExchangeError>;

    /// Orders still open.
    async fn open_orders(&self) -> Result<Vec<Order>, ExchangeError>;

    /// Cancels the order placed under `client_order_id` and returns it as the exchange now sees it, with its
    /// fills (a partly filled order keeps what it filled). `None` when the exchange never saw the id.
    ///
    /// Cancelling is idempotent: an order already final (filled, cancelled, rejected, expired) is not an error,
    /// its final state is returned. Errors keep the port's meaning: `Retryable` when the order is known to be
    /// still open (the cancel did not reach the exchange or did not take effect; sending it again is safe),
    /// `Unknown` when the cancel may or may not have taken effect and the order could not be read since
    /// (look it up, or cancel again), `Rejected` when the exchange refuses to cancel an order it still shows open.
    async fn cancel_order(
        &self,
        symbol: &Symbol,
        client_order_id: &ClientOrderId,
    ) -> Result<Option<OrderAck>, ExchangeError>;
}
