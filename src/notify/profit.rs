//! The figures `/profit` answers with, computed from the stored fills, positions and equity snapshots alone: a
//! trade is a round trip from flat to flat on one symbol, its P&L the sells' proceeds over the average cost,
//! less every fee paid on the way. Exact decimals throughout.

use std::collections::BTreeMap;

use mcbot_stages::domain::{Fill, Side};
use mcbot_stages::ports::EquitySnapshot;
use rust_decimal::Decimal;

/// What `/profit` reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profit {
    /// Closed round trips.
    pub trades: usize,
    /// Of which closed with a gain.
    pub wins: usize,
    /// Sum of the gains of winning trades.
    pub gross_win: Decimal,
    /// Sum of the losses of losing trades (positive).
    pub gross_loss: Decimal,
    /// Net P&L of closed trades per symbol.
    pub by_symbol: BTreeMap<String, Decimal>,
    /// Largest fall from a running equity peak, in %.
    pub max_drawdown_pct: Decimal,
}

impl Profit {
    /// Wins over trades, in %; `None` before the first closed trade.
    pub fn win_rate_pct(&self) -> Option<Decimal> {
        let n = Decimal::from(self.trades);
        (self.trades > 0).then(|| (Decimal::from(self.wins) / n * Decimal::ONE_HUNDRED).round_dp(1))
    }

    /// Gross win over gross loss; `None` without a losing trade (it would be infinite).
    pub fn profit_factor(&self) -> Option<Decimal> {
        (self.gross_loss > Decimal::ZERO).then(|| (self.gross_win / self.gross_loss).round_dp(2))
    }

    /// The symbol whose closed trades made the most, if any made anything.
    pub fn best_symbol(&self) -> Option<(&str, Decimal)> {
        self.by_symbol
            .iter()
            .max_by_key(|(_, p)| **p)
            .filter(|(_, p)| **p > Decimal::ZERO)
            .map(|(s, p)| (s.as_str(), *p))
    }
}

/// The figures of `fills` (any order) and `equity` (oldest first).
pub fn figures(fills: &[Fill], equity: &[EquitySnapshot]) -> Profit {
    let mut sorted: Vec<&Fill> = fills.iter().collect();
    sorted.sort_by_key(|f| f.ts);
    // Per symbol: open quantity, its average cost, and the P&L of the trade in progress.
    let mut open: BTreeMap<&str, (Decimal, Decimal, Decimal)> = BTreeMap::new();
    let mut p = Profit::default();
    for f in sorted {
        let (qty, avg, pnl) = open.entry(f.symbol.as_str()).or_default();
        match f.side {
            Side::Buy => {
                let cost = *qty * *avg + f.qty * f.price;
                *qty += f.qty;
                if !qty.is_zero() {
                    *avg = cost / *qty;
                }
                *pnl -= f.fee;
            }
            Side::Sell => {
                if qty.is_zero() {
                    continue;
                }
                let sold = f.qty.min(*qty);
                *pnl += (f.price - *avg) * sold - f.fee;
                *qty -= sold;
                if qty.is_zero() {
                    let result = std::mem::take(pnl);
                    *avg = Decimal::ZERO;
                    p.trades += 1;
                    if result > Decimal::ZERO {
                        p.wins += 1;
                        p.gross_win += result;
                    } else {
                        p.gross_loss -= result;
                    }
                    *p.by_symbol.entry(f.symbol.as_str().to_owned()).or_default() += result;
                }
            }
        }
    }
    let mut peak = Decimal::ZERO;
    for s in equity {
        peak = peak.max(s.equity);
        if peak > Decimal::ZERO {
            let dd = ((Decimal::ONE - s.equity / peak) * Decimal::ONE_HUNDRED).round_dp(2);
            p.max_drawdown_pct = p.max_drawdown_pct.max(dd);
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Duration};
    use mcbot_stages::domain::{ClientOrderId, Symbol};
    use rust_decimal_macros::dec;

    use super::*;

    fn fill(i: i64, sym: &str, side: Side, qty: Decimal, price: Decimal, fee: Decimal) -> Fill {
        Fill {
            trade_id: format!("t{i}"),
            client_order_id: ClientOrderId::from_stored(format!("c{i}")),
            symbol: Symbol::new(sym).unwrap(),
            side,
            qty,
            price,
            fee,
            ts: DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default() + Duration::minutes(i),
        }
    }

    #[test]
    fn round_trips_make_trades_with_their_fees_and_the_drawdown_is_peak_to_trough() {
        let fills = [
            // BTC: buy 1 @100 and 1 @110 (avg 105), sell 2 @120: +30, fees 1+1+2 → +26.
            fill(1, "BTCUSDT", Side::Buy, dec!(1), dec!(100), dec!(1)),
            fill(2, "BTCUSDT", Side::Buy, dec!(1), dec!(110), dec!(1)),
            fill(3, "BTCUSDT", Side::Sell, dec!(2), dec!(120), dec!(2)),
            // ETH: buy 2 @50, sell 1 @40 and 1 @45: -10 - 5, fees 0.5 each → -16.5.
            fill(4, "ETHUSDT", Side::Buy, dec!(2), dec!(50), dec!(0.5)),
            fill(5, "ETHUSDT", Side::Sell, dec!(1), dec!(40), dec!(0.5)),
            fill(6, "ETHUSDT", Side::Sell, dec!(1), dec!(45), dec!(0.5)),
            // XRP still open: no trade yet.
            fill(7, "XRPUSDT", Side::Buy, dec!(10), dec!(1), dec!(0)),
        ];
        let t = DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        let eq = |e: Decimal| EquitySnapshot { ts: t, equity: e, cash: e };
        let p = figures(&fills, &[eq(dec!(1000)), eq(dec!(1200)), eq(dec!(900)), eq(dec!(1300))]);
        assert_eq!((p.trades, p.wins), (2, 1));
        assert_eq!(p.gross_win, dec!(26));
        assert_eq!(p.gross_loss, dec!(16.5));
        assert_eq!(p.win_rate_pct(), Some(dec!(50.0)));
        assert_eq!(p.profit_factor(), Some(dec!(1.58)));
        assert_eq!(p.best_symbol(), Some(("BTCUSDT", dec!(26))));
        assert_eq!(p.max_drawdown_pct, dec!(25.00), "1200 down to 900");
        assert_eq!(figures(&[], &[]).win_rate_pct(), None);
    }
}
