use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::{ClientOrderId, Symbol};

/// Buy or sell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// Increase the position.
    Buy,
    /// Reduce the position.
    Sell,
}

impl Side {
    /// Lower-case name, as stored and as used in client order id legs.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Buy => "buy",
            Side::Sell => "sell",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "buy" => Some(Side::Buy),
            "sell" => Some(Side::Sell),
            _ => None,
        }
    }
}

/// What Execution wants to do before risk approval: a market order of `qty` base units.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderIntent {
    /// The pair.
    pub symbol: Symbol,
    /// Direction.
    pub side: Side,
    /// Base quantity, already rounded to the step.
    pub qty: Decimal,
    /// The price the order was sized at (last close), for notional checks and slippage accounting.
    pub ref_price: Decimal,
    /// True when the order only reduces exposure: such orders stay allowed when entries are halted.
    pub reduce_only: bool,
    /// Why this order exists, in words a trader reads.
    pub reason: String,
}

impl OrderIntent {
    /// Quote value at the reference price.
    pub fn notional(&self) -> Decimal {
        self.qty * self.ref_price
    }
}

/// Lifecycle of an order as the bot records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Recorded locally, not yet acknowledged by the exchange: the outcome is unknown until looked up.
    PendingNew,
    /// Accepted and resting.
    New,
    /// Partly executed.
    PartiallyFilled,
    /// Fully executed.
    Filled,
    /// Cancelled before full execution.
    Canceled,
    /// Refused by the exchange.
    Rejected,
}

impl OrderStatus {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::PendingNew => "pending_new",
            OrderStatus::New => "new",
            OrderStatus::PartiallyFilled => "partially_filled",
            OrderStatus::Filled => "filled",
            OrderStatus::Canceled => "canceled",
            OrderStatus::Rejected => "rejected",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        [
            OrderStatus::PendingNew,
            OrderStatus::New,
            OrderStatus::PartiallyFilled,
            OrderStatus::Filled,
            OrderStatus::Canceled,
            OrderStatus::Rejected,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }

    /// True once nothing more can happen to the order.
    pub fn is_final(self) -> bool {
        matches!(self, OrderStatus::Filled | OrderStatus::Canceled | OrderStatus::Rejected)
    }
}

/// An order as placed and tracked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// Deterministic id; unique in the store and at the exchange.
    pub client_order_id: ClientOrderId,
    /// The run that placed it.
    pub run_id: String,
    /// The pair.
    pub symbol: Symbol,
    /// Direction.
    pub side: Side,
    /// Requested base quantity.
    pub qty: Decimal,
    /// Executed base quantity.
    pub filled_qty: Decimal,
    /// Volume-weighted fill price, if anything filled.
    pub avg_price: Option<Decimal>,
    /// Current state.
    pub status: OrderStatus,
    /// The exchange's own id, once known.
    pub exchange_order_id: Option<String>,
    /// When the bot created it.
    pub created_at: DateTime<Utc>,
    /// Why it was placed.
    pub reason: String,
}

/// One execution of (part of) an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fill {
    /// The exchange's trade id; unique, so a fill read twice is stored once.
    pub trade_id: String,
    /// The order it belongs to.
    pub client_order_id: ClientOrderId,
    /// The pair.
    pub symbol: Symbol,
    /// Direction.
    pub side: Side,
    /// Executed base quantity.
    pub qty: Decimal,
    /// Execution price.
    pub price: Decimal,
    /// Fee, in the quote asset.
    pub fee: Decimal,
    /// Execution time.
    pub ts: DateTime<Utc>,
}

impl Fill {
    /// Quote value exchanged, before fee.
    pub fn notional(&self) -> Decimal {
        self.qty * self.price
    }
}
