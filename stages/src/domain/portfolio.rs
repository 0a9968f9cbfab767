use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::{Fill, Side, Symbol};

/// A long spot position. Average entry price carries cost basis for stop-loss, take-profit and realised P&L.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// The pair.
    pub symbol: Symbol,
    /// Base quantity held.
    pub qty: Decimal,
    /// Average entry price (quote per base), fees excluded.
    pub avg_price: Decimal,
    /// P&L realised by sells so far, fees included, in quote.
    pub realized_pnl: Decimal,
}

impl Position {
    /// An empty position.
    pub fn flat(symbol: Symbol) -> Self {
        Self { symbol, qty: Decimal::ZERO, avg_price: Decimal::ZERO, realized_pnl: Decimal::ZERO }
    }

    /// Folds a fill into the position: buys average the entry in, sells realise P&L against it.
    pub fn apply(&mut self, fill: &Fill) {
        match fill.side {
            Side::Buy => {
                let qty = self.qty + fill.qty;
                if qty > Decimal::ZERO {
                    self.avg_price = (self.qty * self.avg_price + fill.qty * fill.price) / qty;
                }
                self.qty = qty;
                self.realized_pnl -= fill.fee;
            }
            Side::Sell => {
                let sold = fill.qty.min(self.qty);
                self.realized_pnl += sold * (fill.price - self.avg_price) - fill.fee;
                self.qty -= sold;
                if self.qty.is_zero() {
                    self.avg_price = Decimal::ZERO;
                }
            }
        }
    }

    /// Value at `price`.
    pub fn value(&self, price: Decimal) -> Decimal {
        self.qty * price
    }

    /// Unrealised return at `price`, as a fraction of cost; zero when flat.
    pub fn unrealized_return(&self, price: Decimal) -> Decimal {
        if self.qty.is_zero() || self.avg_price.is_zero() {
            Decimal::ZERO
        } else {
            price / self.avg_price - Decimal::ONE
        }
    }
}

/// Free and locked amounts of one asset on the exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balance {
    /// Asset code, e.g. `USDT`.
    pub asset: String,
    /// Available.
    pub free: Decimal,
    /// Held by open orders.
    pub locked: Decimal,
}

impl Balance {
    /// Free plus locked.
    pub fn total(&self) -> Decimal {
        self.free + self.locked
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ClientOrderId;
    use rust_decimal_macros::dec;

    fn fill(side: Side, qty: Decimal, price: Decimal, fee: Decimal) -> Fill {
        Fill {
            trade_id: "t".into(),
            client_order_id: ClientOrderId::from_stored("c".into()),
            symbol: Symbol::new("BTCUSDT").unwrap(),
            side,
            qty,
            price,
            fee,
            ts: chrono::DateTime::from_timestamp(0, 0).unwrap(),
        }
    }

    #[test]
    fn buys_average_and_sells_realise() {
        let mut p = Position::flat(Symbol::new("BTCUSDT").unwrap());
        p.apply(&fill(Side::Buy, dec!(1), dec!(100), dec!(0.1)));
        p.apply(&fill(Side::Buy, dec!(1), dec!(200), dec!(0.2)));
        assert_eq!(p.avg_price, dec!(150));
        p.apply(&fill(Side::Sell, dec!(2), dec!(160), dec!(0.32)));
        assert_eq!(p.qty, dec!(0));
        assert_eq!(p.realized_pnl, dec!(20) - dec!(0.62));
        assert_eq!(p.unrealized_return(dec!(1)), dec!(0));
    }
}
