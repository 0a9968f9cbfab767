//! Booking what the exchange says into the store, each change in one unit of work with the events that report
//! it: an order recorded before it is sent, an acknowledgement with its fills and the positions they move, an
//! order closed as never placed. Shared by Execution and reconciliation, so an order resolved later is booked
//! exactly like one filled at once, and a crash between two writes leaves neither.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::json;

use crate::domain::{Fill, Order, OrderStatus, Position};
use crate::ports::{EventKind, NewEvent, OrderAck, RunFence, Severity, Store, StoreError};

/// What booking an acknowledgement changed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Booked {
    /// Fills stored for the first time.
    pub new_fills: usize,
    /// The positions after the new fills, as stored.
    pub positions: Vec<Position>,
}

fn order_payload(o: &Order) -> serde_json::Value {
    json!({
        "client_order_id": o.client_order_id.as_str(),
        "side": o.side.as_str(),
        "qty": o.qty.to_string(),
        "filled_qty": o.filled_qty.to_string(),
        "avg_price": o.avg_price.map(|p| p.to_string()),
        "status": o.status.as_str(),
        "exchange_order_id": o.exchange_order_id,
    })
}

/// An event about `order`, with its run, symbol and figures.
pub fn order_event(
    now: DateTime<Utc>,
    kind: EventKind,
    severity: Severity,
    order: &Order,
    message: String,
) -> NewEvent {
    NewEvent::new(now, kind, severity, message)
        .run(order.run_id.clone())
        .symbol(&order.symbol)
        .payload(order_payload(order))
}

/// Records an order about to be sent, with its `order_placed` event; false if the id was already recorded.
/// `ref_price` is the price the order was sized at: with the fills it gives the slippage consumers measure.
pub async fn record_pending(
    store: &dyn Store,
    fence: Option<&RunFence>,
    order: &Order,
    ref_price: Option<Decimal>,
) -> Result<bool, StoreError> {
    let mut uow = store.begin().await?;
    if let Some(f) = fence {
        uow.fence(f).await?;
    }
    let inserted = uow.insert_order(order).await?;
    if inserted {
        let msg = format!("{} {} {} ({})", order.side.as_str(), order.qty, order.symbol, order.reason);
        let mut event = order_event(order.created_at, EventKind::OrderPlaced, Severity::Info, order, msg);
        if let (Some(price), Some(payload)) = (ref_price, event.payload.as_object_mut()) {
            payload.insert("ref_price".into(), json!(price.to_string()));
        }
        uow.append(event);
    }
    uow.commit().await?;
    Ok(inserted)
}

/// Marks a recorded order as being sent again under the same id (it was closed as never placed).
pub async fn reopen(store: &dyn Store, fence: Option<&RunFence>, order: &Order) -> Result<(), StoreError> {
    let mut again = order.clone();
    again.status = OrderStatus::PendingNew;
    let mut uow = store.begin().await?;
    if let Some(f) = fence {
        uow.fence(f).await?;
    }
    uow.update_order(&again).await?;
    uow.commit().await.map(drop)
}

/// Stores the exchange's view of an order and folds fills not seen before into the stored positions, all in one
/// unit of work with one `order_filled` event per new fill and the position's opened/changed/closed event.
/// `before` is the order's stored status (the caller read or wrote it), so an acknowledgement is reported once.
pub async fn record_ack(
    store: &dyn Store,
    fence: Option<&RunFence>,
    ack: &OrderAck,
    before: OrderStatus,
    now: DateTime<Utc>,
) -> Result<Booked, StoreError> {
    let mut uow = store.begin().await?;
    if let Some(f) = fence {
        uow.fence(f).await?;
    }
    uow.update_order(&ack.order).await?;
    let o = &ack.order;
    if before == OrderStatus::PendingNew && o.status != OrderStatus::PendingNew {
        let msg = format!("{} acknowledged: {}", o.client_order_id, o.status.as_str());
        uow.append(order_event(now, EventKind::OrderAcknowledged, Severity::Info, o, msg));
    }
    let mut booked = Booked::default();
    for fill in &ack.fills {
        if !uow.insert_fill(fill).await? {
            continue;
        }
        booked.new_fills += 1;
        let mut pos = uow.position(&fill.symbol).await?.unwrap_or_else(|| Position::flat(fill.symbol.clone()));
        let held = pos.qty;
        pos.apply(fill);
        uow.save_position(&pos).await?;
        uow.append(fill_event(now, o, fill));
        uow.append(position_event(now, o, fill, held, &pos));
        booked.positions.retain(|p| p.symbol != pos.symbol);
        booked.positions.push(pos);
    }
    uow.commit().await?;
    Ok(booked)
}

fn fill_event(now: DateTime<Utc>, order: &Order, fill: &Fill) -> NewEvent {
    let msg = format!("{} {} {} @ {} (fee {})", fill.side.as_str(), fill.qty, fill.symbol, fill.price, fill.fee);
    NewEvent::new(now, EventKind::OrderFilled, Severity::Info, msg)
        .run(order.run_id.clone())
        .symbol(&fill.symbol)
        .payload(json!({
            "client_order_id": fill.client_order_id.as_str(),
            "trade_id": fill.trade_id,
            "side": fill.side.as_str(),
            "qty": fill.qty.to_string(),
            "price": fill.price.to_string(),
            "fee": fill.fee.to_string(),
            "fill_ts": fill.ts,
        }))
}

fn position_event(now: DateTime<Utc>, order: &Order, fill: &Fill, held: Decimal, pos: &Position) -> NewEvent {
    let (kind, what) = if held.is_zero() && pos.qty > Decimal::ZERO {
        (EventKind::PositionOpened, "opened")
    } else if pos.qty.is_zero() {
        (EventKind::PositionClosed, "closed")
    } else {
        (EventKind::PositionChanged, "changed")
    };
    let msg = format!(
        "{} position {what}: {held} -> {} (avg {}, realized P&L {})",
        pos.symbol, pos.qty, pos.avg_price, pos.realized_pnl
    );
    NewEvent::new(now, kind, Severity::Info, msg).run(order.run_id.clone()).symbol(&pos.symbol).payload(json!({
        "qty_before": held.to_string(),
        "qty": pos.qty.to_string(),
        "avg_price": pos.avg_price.to_string(),
        "realized_pnl": pos.realized_pnl.to_string(),
        "fee": fill.fee.to_string(),
    }))
}

/// Closes an order that never reached the exchange (`Rejected` before matching, `Canceled` when it was never
/// sent), saying why, with its event. A `Canceled` order without fills is placed again under the same id if its
/// cycle is retried.
#[allow(clippy::too_many_arguments)]
pub async fn close_unplaced(
    store: &dyn Store,
    fence: Option<&RunFence>,
    mut order: Order,
    status: OrderStatus,
    why: &str,
    kind: EventKind,
    severity: Severity,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    order.status = status;
    order.reason.push_str(&format!("; {why}"));
    let mut uow = store.begin().await?;
    if let Some(f) = fence {
        uow.fence(f).await?;
    }
    uow.update_order(&order).await?;
    let msg = format!("order {} {}: {why}", order.client_order_id, status.as_str());
    uow.append(order_event(now, kind, severity, &order, msg));
    uow.commit().await.map(drop)
}
