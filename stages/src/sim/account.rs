//! The simulated account shared by the mock exchange and the paper fill engine: balances kept exactly,
//! idempotent client order ids, market orders filled by walking price levels with a fee in quote.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use crate::domain::{Balance, ClientOrderId, Fill, Instrument, Order, OrderIntent, OrderStatus, Side};
use crate::ports::{ExchangeError, OrderAck};

/// Balances and orders of one simulated account.
#[derive(Debug, Default)]
pub struct SimAccount {
    balances: BTreeMap<String, Decimal>,
    orders: HashMap<ClientOrderId, OrderAck>,
    trade_seq: u64,
    prefix: &'static str,
}

impl SimAccount {
    /// An account holding `cash` of `quote`; trade and order ids start with `prefix`.
    pub fn new(quote: &str, cash: Decimal, prefix: &'static str) -> Self {
        let mut acc = Self { prefix, ..Default::default() };
        acc.balances.insert(quote.to_owned(), cash);
        acc
    }

    /// Books fills recorded earlier (a restart, or another process sharing the store, rebuilds the account from
    /// it). The orders they belong to become known as filled, so placing one of them again returns it instead of
    /// filling it twice.
    pub fn restore(&mut self, instruments: &[Instrument], fills: &[Fill]) {
        for fill in fills {
            if let Some(inst) = instruments.iter().find(|i| i.symbol == fill.symbol) {
                self.book(inst, fill);
                self.remember(fill);
            }
        }
        self.trade_seq = self.trade_seq.max(fills.len() as u64);
    }

    /// Adds a stored fill to the order it belongs to, creating the order (filled) the first time.
    fn remember(&mut self, fill: &Fill) {
        let ack = self.orders.entry(fill.client_order_id.clone()).or_insert_with(|| OrderAck {
            order: Order {
                client_order_id: fill.client_order_id.clone(),
                run_id: String::new(),
                symbol: fill.symbol.clone(),
                side: fill.side,
                qty: Decimal::ZERO,
                filled_qty: Decimal::ZERO,
                avg_price: None,
                status: OrderStatus::Filled,
                exchange_order_id: None,
                created_at: fill.ts,
                reason: "restored from the stored fills".into(),
            },
            fills: Vec::new(),
        });
        if ack.fills.iter().any(|f| f.trade_id == fill.trade_id) {
            return;
        }
        let o = &mut ack.order;
        let notional = o.avg_price.unwrap_or_default() * o.filled_qty + fill.notional();
        o.filled_qty += fill.qty;
        o.qty = o.qty.max(o.filled_qty);
        o.avg_price = (!o.filled_qty.is_zero()).then(|| (notional / o.filled_qty).normalize());
        ack.fills.push(fill.clone());
    }

    /// Non-zero balances.
    pub fn balances(&self) -> Vec<Balance> {
        self.balances
            .iter()
            .filter(|(_, v)| !v.is_zero())
            .map(|(asset, v)| Balance { asset: asset.clone(), free: *v, locked: Decimal::ZERO })
            .collect()
    }

    /// An order by client id.
    pub fn order(&self, id: &ClientOrderId) -> Option<OrderAck> {
        self.orders.get(id).cloned()
    }

    /// Cancels an order by client id: one still open ends `Canceled` with what it filled; one already final is
    /// returned as it is. `None` when the account never saw the id.
    pub fn cancel(&mut self, id: &ClientOrderId) -> Option<OrderAck> {
        let ack = self.orders.get_mut(id)?;
        if !ack.order.status.is_final() {
            ack.order.status = OrderStatus::Canceled;
        }
        Some(ack.clone())
    }

    /// Orders not final.
    pub fn open_orders(&self) -> Vec<Order> {
        self.orders.values().filter(|a| !a.order.status.is_final()).map(|a| a.order.clone()).collect()
    }

    fn book(&mut self, inst: &Instrument, fill: &Fill) {
        let sign = if fill.side == Side::Buy { Decimal::ONE } else { -Decimal::ONE };
        *self.balances.entry(inst.base.clone()).or_default() += sign * fill.qty;
        *self.balances.entry(inst.quote.clone()).or_default() -= sign * fill.notional() + fill.fee;
    }

    /// Executes a market order against `levels` (best first, (price, qty)); the last level absorbs whatever the
    /// listed depth cannot, so an order always fills completely, at a conservative price. Placing an id twice
    /// returns the first order.
    #[allow(clippy::too_many_arguments)]
    pub fn execute(
        &mut self,
        id: &ClientOrderId,
        run_id: &str,
        intent: &OrderIntent,
        inst: &Instrument,
        levels: &[(Decimal, Decimal)],
        fee_rate: Decimal,
        now: DateTime<Utc>,
    ) -> Result<OrderAck, ExchangeError> {
        if let Some(existing) = self.orders.get(id) {
            return Ok(existing.clone());
        }
        if intent.qty <= Decimal::ZERO || inst.floor_qty(intent.qty) != intent.qty {
            return Err(ExchangeError::Rejected(format!("quantity {} violates step {}", intent.qty, inst.step_size)));
        }
        let Some(&(last_price, _)) = levels.last() else {
            return Err(ExchangeError::Retryable {
                retry_after: std::time::Duration::from_secs(1),
                message: format!("no liquidity for {}", intent.symbol),
            });
        };
        let (mut left, mut notional) = (intent.qty, Decimal::ZERO);
        for &(price, qty) in levels {
            let take = left.min(qty);
            notional += take * price;
            left -= take;
            if left.is_zero() {
                break;
            }
        }
        notional += left * last_price;
        // The volume-weighted price of the levels walked: exact, not rounded to the tick (each level is on it).
        let price = (notional / intent.qty).normalize();
        if notional < inst.min_notional {
            return Err(ExchangeError::Rejected(format!("notional {notional} below minimum {}", inst.min_notional)));
        }
        let fee = notional * fee_rate;
        let held = |asset: &str| self.balances.get(asset).copied().unwrap_or_default();
        let (need, have, asset) = match intent.side {
            Side::Buy => (notional + fee, held(&inst.quote), &inst.quote),
            Side::Sell => (intent.qty, held(&inst.base), &inst.base),
        };
        if have < need {
            return Err(ExchangeError::Rejected(format!("insufficient {asset}: need {need}, have {have}")));
        }
        self.trade_seq += 1;
        let fill = Fill {
            // Named after the order (one fill per order here): unique without a counter, so two processes
            // sharing one account never mint the same trade id, and a re-placed order maps to its first fill.
            trade_id: format!("{}-{}", self.prefix, id),
            client_order_id: id.clone(),
            symbol: intent.symbol.clone(),
            side: intent.side,
            qty: intent.qty,
            price,
            fee,
            ts: now,
        };
        self.book(inst, &fill);
        let order = Order {
            client_order_id: id.clone(),
            run_id: run_id.to_owned(),
            symbol: intent.symbol.clone(),
            side: intent.side,
            qty: intent.qty,
            filled_qty: intent.qty,
            avg_price: Some(price),
            status: OrderStatus::Filled,
            exchange_order_id: Some(format!("{}-order-{}", self.prefix, self.trade_seq)),
            created_at: now,
            reason: intent.reason.clone(),
        };
        let ack = OrderAck { order, fills: vec![fill] };
        self.orders.insert(id.clone(), ack.clone());
        Ok(ack)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Symbol;
    use rust_decimal_macros::dec;

    fn open_order(id: &ClientOrderId, filled: Decimal, status: OrderStatus) -> OrderAck {
        let order = Order {
            client_order_id: id.clone(),
            run_id: "r".into(),
            symbol: Symbol::new("BTCUSDT").unwrap(),
            side: Side::Buy,
            qty: dec!(2),
            filled_qty: filled,
            avg_price: None,
            status,
            exchange_order_id: Some("sim-order-1".into()),
            created_at: DateTime::from_timestamp(1_704_067_200, 0).unwrap(),
            reason: "t".into(),
        };
        OrderAck { order, fills: Vec::new() }
    }

    #[test]
    fn cancel_closes_an_open_order_keeps_a_final_one_and_knows_no_stranger() {
        let mut acc = SimAccount::new("USDT", dec!(1000), "sim");
        let open = ClientOrderId::from_stored("open-1".into());
        let part = ClientOrderId::from_stored("part-1".into());
        let done = ClientOrderId::from_stored("done-1".into());
        acc.orders.insert(open.clone(), open_order(&open, dec!(0), OrderStatus::New));
        acc.orders.insert(part.clone(), open_order(&part, dec!(0.5), OrderStatus::PartiallyFilled));
        acc.orders.insert(done.clone(), open_order(&done, dec!(2), OrderStatus::Filled));
        let before = acc.balances();

        let c = acc.cancel(&open).unwrap();
        assert_eq!(c.order.status, OrderStatus::Canceled);
        let c = acc.cancel(&part).unwrap();
        assert_eq!((c.order.status, c.order.filled_qty), (OrderStatus::Canceled, dec!(0.5)), "keeps what it filled");
        assert!(acc.open_orders().is_empty());
        assert_eq!(acc.cancel(&done).unwrap().order.status, OrderStatus::Filled, "a final order stays as it is");
        assert_eq!(acc.cancel(&open).unwrap().order.status, OrderStatus::Canceled, "cancelling twice is the same");
        assert!(acc.cancel(&ClientOrderId::from_stored("never".into())).is_none());
        assert_eq!(acc.balances(), before, "a cancel moves no money");
    }
}
