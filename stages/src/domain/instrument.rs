use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::Symbol;

/// The exchange's trading rules for one symbol; every order is rounded to them at the Execution boundary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instrument {
    /// The pair.
    pub symbol: Symbol,
    /// Base asset (what is bought), e.g. `BTC`.
    pub base: String,
    /// Quote asset (what is paid), e.g. `USDT`.
    pub quote: String,
    /// Price increment.
    pub tick_size: Decimal,
    /// Quantity increment.
    pub step_size: Decimal,
    /// Smallest order value in quote currency the exchange accepts.
    pub min_notional: Decimal,
}

impl Instrument {
    /// Rounds a price to the tick, to nearest.
    pub fn round_price(&self, price: Decimal) -> Decimal {
        round_to(price, self.tick_size, false)
    }

    /// Rounds a quantity down to the step: never buy more than was sized, never sell more than is held.
    pub fn floor_qty(&self, qty: Decimal) -> Decimal {
        round_to(qty, self.step_size, true)
    }
}

fn round_to(x: Decimal, inc: Decimal, floor: bool) -> Decimal {
    if inc <= Decimal::ZERO {
        return x;
    }
    let units = x / inc;
    let units = if floor { units.floor() } else { units.round() };
    (units * inc).normalize()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn btc() -> Instrument {
        Instrument {
            symbol: Symbol::new("BTCUSDT").unwrap(),
            base: "BTC".into(),
            quote: "USDT".into(),
            tick_size: dec!(0.01),
            step_size: dec!(0.00001),
            min_notional: dec!(10),
        }
    }

    #[test]
    fn rounds_to_tick_and_step() {
        let i = btc();
        assert_eq!(i.round_price(dec!(43210.12567)), dec!(43210.13));
        assert_eq!(i.floor_qty(dec!(0.123456789)), dec!(0.12345));
        assert_eq!(i.floor_qty(dec!(0.000009)), dec!(0));
    }
}
