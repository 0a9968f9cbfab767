//! The portfolio as the pipeline sees it at one instant: cash, positions and their marks.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::Serialize;

use crate::domain::{Position, Symbol};

/// Cash, positions and mark prices; equity and weights derive from them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Book {
    /// Quote balance (free + locked).
    pub cash: Decimal,
    /// Positions by symbol (flat ones included: they carry realised P&L).
    pub positions: BTreeMap<Symbol, Position>,
    /// Latest price per symbol.
    pub marks: BTreeMap<Symbol, Decimal>,
}

impl Book {
    /// Base quantity held.
    pub fn qty(&self, s: &Symbol) -> Decimal {
        self.positions.get(s).map_or(Decimal::ZERO, |p| p.qty)
    }

    /// Marked value of one position; a position without a mark is valued at its entry price.
    pub fn value(&self, s: &Symbol) -> Decimal {
        self.positions.get(s).map_or(Decimal::ZERO, |p| p.value(self.marks.get(s).copied().unwrap_or(p.avg_price)))
    }

    /// Cash plus marked positions.
    pub fn equity(&self) -> Decimal {
        self.cash + self.positions.keys().map(|s| self.value(s)).sum::<Decimal>()
    }

    /// Fraction of equity held in `s`.
    pub fn weight(&self, s: &Symbol) -> Decimal {
        let eq = self.equity();
        if eq <= Decimal::ZERO { Decimal::ZERO } else { self.value(s) / eq }
    }

    /// Symbols with a non-zero position.
    pub fn held(&self) -> impl Iterator<Item = &Position> {
        self.positions.values().filter(|p| p.qty > Decimal::ZERO)
    }
}
