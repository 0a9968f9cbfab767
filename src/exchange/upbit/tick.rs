//! KRW price units ("호가 단위"): on Upbit's KRW market the price increment depends on the price itself, and an
//! order off the grid is refused (`invalid_price_bid` / `invalid_price_ask`). The table has changed several
//! times, so it lives in configuration; the default is the one in force since 2025-07-31.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// One row of the table: prices at or above `from` (and below the next row's `from`) move in steps of `tick`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TickBand {
    /// Lower bound of the band, inclusive (KRW).
    pub from: Decimal,
    /// Price increment inside the band (KRW).
    pub tick: Decimal,
}

/// The whole price-unit table. Kept as data so a policy change is a config edit, not a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TickTable(Vec<TickBand>);

/// Why a configured table cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TickTableError {
    /// No rows.
    #[error("the KRW tick table is empty")]
    Empty,
    /// A tick that is zero or negative, or a band start off its own grid (rounding would leave the band).
    #[error("tick band from {from}: tick {tick} must be positive and divide the band start")]
    BadBand {
        /// Band start.
        from: Decimal,
        /// Its tick.
        tick: Decimal,
    },
}

/// How a price off the grid is moved onto it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rounding {
    /// Down: a buy never pays more than the caller asked.
    Down,
    /// Up: a sell never receives less than the caller asked.
    Up,
}

impl Default for TickTable {
    /// Upbit's KRW table in force since 2025-07-31 (docs.upbit.com, "원화 마켓 주문 가격 단위").
    fn default() -> Self {
        let rows: [(i64, u32, i64, u32); 17] = [
            (2_000_000, 0, 1_000, 0),
            (1_000_000, 0, 1_000, 0),
            (500_000, 0, 500, 0),
            (100_000, 0, 100, 0),
            (50_000, 0, 50, 0),
            (10_000, 0, 10, 0),
            (5_000, 0, 5, 0),
            (1_000, 0, 1, 0),
            (100, 0, 1, 0),
            (10, 0, 1, 1),
            (1, 0, 1, 2),
            (1, 1, 1, 3),
            (1, 2, 1, 4),
            (1, 3, 1, 5),
            (1, 4, 1, 6),
            (1, 5, 1, 7),
            (0, 0, 1, 8),
        ];
        Self(
            rows.iter()
                .map(|&(f, fs, t, ts)| TickBand { from: Decimal::new(f, fs), tick: Decimal::new(t, ts) })
                .collect(),
        )
    }
}

impl TickTable {
    /// Builds a table from rows in any order, checking that every band is usable.
    pub fn new(mut bands: Vec<TickBand>) -> Result<Self, TickTableError> {
        if bands.is_empty() {
            return Err(TickTableError::Empty);
        }
        for b in &bands {
            if b.tick <= Decimal::ZERO || b.from < Decimal::ZERO || !(b.from % b.tick).is_zero() {
                return Err(TickTableError::BadBand { from: b.from, tick: b.tick });
            }
        }
        bands.sort_by_key(|b| std::cmp::Reverse(b.from));
        Ok(Self(bands))
    }

    /// Checks a table read from configuration (serde bypasses [`TickTable::new`]).
    pub fn validate(&self) -> Result<(), TickTableError> {
        Self::new(self.0.clone()).map(|_| ())
    }

    /// The increment that applies at `price`.
    pub fn tick_for(&self, price: Decimal) -> Decimal {
        // Rows may come from config unsorted: take the band with the highest start at or below the price.
        self.0
            .iter()
            .filter(|b| b.from <= price)
            .max_by(|a, b| a.from.cmp(&b.from))
            .or_else(|| self.0.iter().min_by(|a, b| a.from.cmp(&b.from)))
            .map_or(Decimal::ONE, |b| b.tick)
    }

    /// Moves `price` onto the grid in the given direction; a price already on it is unchanged.
    pub fn round(&self, price: Decimal, rounding: Rounding) -> Decimal {
        let tick = self.tick_for(price);
        if tick <= Decimal::ZERO {
            return price;
        }
        let units = price / tick;
        let units = match rounding {
            Rounding::Down => units.floor(),
            Rounding::Up => units.ceil(),
        };
        (units * tick).normalize()
    }

    /// True when `price` is a valid order price.
    pub fn is_on_grid(&self, price: Decimal) -> bool {
        let tick = self.tick_for(price);
        tick > Decimal::ZERO && (price % tick).is_zero()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn ticks_follow_the_2025_table() {
        let t = TickTable::default();
        assert!(t.validate().is_ok());
        for (price, tick) in [
            (dec!(150_000_000), dec!(1000)),
            (dec!(1_500_000), dec!(1000)),
            (dec!(999_999), dec!(500)),
            (dec!(100_000), dec!(100)),
            (dec!(99_999), dec!(50)),
            (dec!(49_999), dec!(10)),
            (dec!(5_000), dec!(5)),
            (dec!(4_999), dec!(1)),
            (dec!(100), dec!(1)),
            (dec!(99.9), dec!(0.1)),
            (dec!(5), dec!(0.01)),
            (dec!(0.5), dec!(0.001)),
            (dec!(0.00001), dec!(0.0000001)),
            (dec!(0.000009), dec!(0.00000001)),
        ] {
            assert_eq!(t.tick_for(price), tick, "{price}");
        }
    }

    #[test]
    fn rounding_moves_onto_the_grid_in_the_safe_direction() {
        let t = TickTable::default();
        assert_eq!(t.round(dec!(80_012_345), Rounding::Down), dec!(80_012_000));
        assert_eq!(t.round(dec!(80_012_345), Rounding::Up), dec!(80_013_000));
        assert_eq!(t.round(dec!(80_012_000), Rounding::Up), dec!(80_012_000));
        assert_eq!(t.round(dec!(12_345.6), Rounding::Down), dec!(12_340));
        assert_eq!(t.round(dec!(7_003), Rounding::Up), dec!(7_005));
        assert_eq!(t.round(dec!(1_999_999.5), Rounding::Up), dec!(2_000_000));
        assert_eq!(t.round(dec!(45.67), Rounding::Down), dec!(45.6));
        assert!(t.is_on_grid(dec!(80_012_000)));
        assert!(!t.is_on_grid(dec!(80_012_500)));
        assert!(t.is_on_grid(dec!(7_005)));
        assert!(!t.is_on_grid(dec!(7_003)));
    }

    #[test]
    fn bad_tables_are_refused() {
        assert_eq!(TickTable::new(vec![]), Err(TickTableError::Empty));
        assert!(TickTable::new(vec![TickBand { from: dec!(0), tick: dec!(0) }]).is_err());
        assert!(TickTable::new(vec![TickBand { from: dec!(1050), tick: dec!(100) }]).is_err());
        let unsorted = TickTable::new(vec![
            TickBand { from: dec!(0), tick: dec!(1) },
            TickBand { from: dec!(1000), tick: dec!(10) },
        ])
        .unwrap();
        assert_eq!(unsorted.tick_for(dec!(1500)), dec!(10));
        assert_eq!(unsorted.tick_for(dec!(999)), dec!(1));
    }
}
