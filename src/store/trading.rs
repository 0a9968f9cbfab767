//! Orders, fills and positions: the record of what the bot did, keyed so that a retried run or a fill read twice
//! is stored once.

use super::query::Row;
use chrono::{DateTime, Utc};
use mcbot_stages::domain::{ClientOrderId, Fill, Order, OrderStatus, Position, Side};
use mcbot_stages::ports::StoreError;

use super::SqlStore;
use super::codec::Cols;
use super::query::{Q, Sql};

static ORDER_BY_ID: Sql = Sql::new(
    "SELECT client_order_id, run_id, symbol, side, qty, filled_qty, avg_price, status, \
     exchange_order_id, created_at, reason FROM orders WHERE client_order_id = $1",
);
static OPEN_ORDERS: Sql = Sql::new(
    "SELECT client_order_id, run_id, symbol, side, qty, filled_qty, avg_price, status, \
     exchange_order_id, created_at, reason FROM orders \
     WHERE status IN ('pending_new', 'new', 'partially_filled') ORDER BY created_at, client_order_id",
);
static ORDERS_OF_RUN: Sql = Sql::new(
    "SELECT client_order_id, run_id, symbol, side, qty, filled_qty, avg_price, status, \
     exchange_order_id, created_at, reason FROM orders WHERE run_id = $1 ORDER BY created_at, client_order_id",
);
static FILLS_BETWEEN: Sql = Sql::new(
    "SELECT symbol, trade_id, client_order_id, side, qty, price, fee, ts FROM fills \
     WHERE ts >= $1 AND ts < $2 ORDER BY ts, symbol, trade_id",
);
static POSITIONS: Sql = Sql::new("SELECT symbol, qty, avg_price, realized_pnl FROM positions ORDER BY symbol");

/// The fixed statements, for the catalogue.
pub(crate) static STATEMENTS: &[&Sql] = &[&ORDER_BY_ID, &OPEN_ORDERS, &ORDERS_OF_RUN, &FILLS_BETWEEN, &POSITIONS];

impl SqlStore {
    /// See [`mcbot_stages::ports::Store::order`].
    pub(crate) async fn order_impl(&self, id: &ClientOrderId) -> Result<Option<Order>, StoreError> {
        let row =
            Q::fixed(&ORDER_BY_ID).bind(id.as_str()).fetch_optional(&self.pool).await.map_err(self.err("order"))?;
        row.as_ref().map(order_from_row).transpose()
    }

    /// See [`mcbot_stages::ports::Store::open_orders`]; oldest first.
    pub(crate) async fn open_orders_impl(&self) -> Result<Vec<Order>, StoreError> {
        let rows = Q::fixed(&OPEN_ORDERS).fetch_all(&self.pool).await.map_err(self.err("open_orders"))?;
        rows.iter().map(order_from_row).collect()
    }

    /// See [`mcbot_stages::ports::Store::orders_of_run`]; oldest first.
    pub(crate) async fn orders_of_run_impl(&self, run_id: &str) -> Result<Vec<Order>, StoreError> {
        let rows =
            Q::fixed(&ORDERS_OF_RUN).bind(run_id).fetch_all(&self.pool).await.map_err(self.err("orders_of_run"))?;
        rows.iter().map(order_from_row).collect()
    }

    /// See [`mcbot_stages::ports::Store::fills_between`].
    pub(crate) async fn fills_between_impl(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Fill>, StoreError> {
        let rows = Q::fixed(&FILLS_BETWEEN)
            .bind(from)
            .bind(to)
            .fetch_all(&self.pool)
            .await
            .map_err(self.err("fills_between"))?;
        rows.iter().map(fill_from_row).collect()
    }

    /// See [`mcbot_stages::ports::Store::positions`]; by symbol.
    pub(crate) async fn positions_impl(&self) -> Result<Vec<Position>, StoreError> {
        let rows = Q::fixed(&POSITIONS).fetch_all(&self.pool).await.map_err(self.err("positions"))?;
        rows.iter().map(position_from_row).collect()
    }
}

/// A `positions` row (read with `qty, avg_price, realized_pnl`).
pub(crate) fn position_from_row(row: &Row) -> Result<Position, StoreError> {
    let c = Cols::new(row, "positions");
    Ok(Position {
        symbol: c.symbol("symbol")?,
        qty: c.decimal("qty")?,
        avg_price: c.decimal("avg_price")?,
        realized_pnl: c.decimal("realized_pnl")?,
    })
}

fn order_from_row(row: &Row) -> Result<Order, StoreError> {
    let c = Cols::new(row, "orders");
    Ok(Order {
        client_order_id: ClientOrderId::from_stored(c.text("client_order_id")?),
        run_id: c.text("run_id")?,
        symbol: c.symbol("symbol")?,
        side: c.named("side", Side::parse)?,
        qty: c.decimal("qty")?,
        filled_qty: c.decimal("filled_qty")?,
        avg_price: c.opt_decimal("avg_price")?,
        status: c.named("status", OrderStatus::parse)?,
        exchange_order_id: c.opt_text("exchange_order_id")?,
        created_at: c.time("created_at")?,
        reason: c.text("reason")?,
    })
}

fn fill_from_row(row: &Row) -> Result<Fill, StoreError> {
    let c = Cols::new(row, "fills");
    Ok(Fill {
        trade_id: c.text("trade_id")?,
        client_order_id: ClientOrderId::from_stored(c.text("client_order_id")?),
        symbol: c.symbol("symbol")?,
        side: c.named("side", Side::parse)?,
        qty: c.decimal("qty")?,
        price: c.decimal("price")?,
        fee: c.decimal("fee")?,
        ts: c.time("ts")?,
    })
}
