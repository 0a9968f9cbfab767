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

    /// Books fills recorded earlier (a restart rebuilds the account from the store).
    pub fn restore(&mut self, instruments: &[Instrument], fills: &[Fill]) {
        for fill in fills {
            if let Some(inst) = instruments.iter().find(|i| i.symbol == fill.symbol) {
                self.book(inst, fill);
            }
        }
        self.trade_seq = self.trade_seq.max(fills.len() as u64);
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
            trade_id: format!("{}-{}", self.prefix, self.trade_seq),
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
