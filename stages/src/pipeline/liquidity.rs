//! The liquidity gate: before an order, its slippage is estimated by walking the order book for its size; an
//! order that would move the price more than the configured limit is reduced to what the book carries within
//! the limit, or skipped.

use rust_decimal::Decimal;

use crate::domain::{OrderBook, Side};

/// Estimated slippage of a market order of `qty` as a fraction of the mid price (spread included), or `None`
/// when the listed depth cannot fill it.
pub fn slippage(book: &OrderBook, side: Side, qty: Decimal) -> Option<Decimal> {
    if qty <= Decimal::ZERO {
        return Some(Decimal::ZERO);
    }
    let mid = mid(book)?;
    let levels = match side {
        Side::Buy => &book.asks,
        Side::Sell => &book.bids,
    };
    let (mut left, mut notional) = (qty, Decimal::ZERO);
    for &(price, size) in levels {
        let take = left.min(size);
        notional += take * price;
        left -= take;
        if left.is_zero() {
            let vwap = notional / qty;
            return Some(((vwap - mid) / mid).abs());
        }
    }
    None
}

/// The largest quantity whose slippage stays within `limit` (a fraction), walking level by level and taking a
/// part of the first level that would cross the limit.
pub fn max_qty_within(book: &OrderBook, side: Side, limit: Decimal) -> Decimal {
    let Some(mid) = mid(book) else { return Decimal::ZERO };
    let levels = match side {
        Side::Buy => &book.asks,
        Side::Sell => &book.bids,
    };
    // Along one level the average moves monotonically towards that level's price, so solve for the quantity at
    // which the average reaches the bound: (notional + x * p) / (qty + x) = bound.
    let bound = match side {
        Side::Buy => mid * (Decimal::ONE + limit),
        Side::Sell => mid * (Decimal::ONE - limit),
    };
    let (mut qty, mut notional) = (Decimal::ZERO, Decimal::ZERO);
    for &(price, size) in levels {
        let within = match side {
            Side::Buy => price <= bound,
            Side::Sell => price >= bound,
        };
        if within {
            qty += size;
            notional += size * price;
            continue;
        }
        let x = ((bound * qty - notional) / (price - bound)).max(Decimal::ZERO);
        if x < size {
            qty += x;
            break;
        }
        // The whole level fits under the bound on average: take it and look at the next one.
        qty += size;
        notional += size * price;
    }
    qty
}

fn mid(book: &OrderBook) -> Option<Decimal> {
    let (bid, ask) = (book.bids.first()?.0, book.asks.first()?.0);
    let m = (bid + ask) / Decimal::TWO;
    (m > Decimal::ZERO).then_some(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn book() -> OrderBook {
        OrderBook {
            bids: vec![(dec!(99.9), dec!(1)), (dec!(99.5), dec!(1)), (dec!(98), dec!(10))],
            asks: vec![(dec!(100.1), dec!(1)), (dec!(100.5), dec!(1)), (dec!(102), dec!(10))],
        }
    }

    #[test]
    fn slippage_by_hand() {
        // mid 100; buying 2: vwap (100.1 + 100.5) / 2 = 100.3 -> 0.3 %
        assert_eq!(slippage(&book(), Side::Buy, dec!(2)), Some(dec!(0.003)));
        assert_eq!(slippage(&book(), Side::Sell, dec!(1)), Some(dec!(0.001)));
        assert_eq!(slippage(&book(), Side::Buy, dec!(13)), None, "deeper than the book");
        assert_eq!(slippage(&book(), Side::Buy, dec!(0)), Some(dec!(0)), "nothing to fill moves nothing");
    }

    #[test]
    fn largest_size_within_the_limit() {
        let q = max_qty_within(&book(), Side::Buy, dec!(0.003));
        assert_eq!(q, dec!(2), "exactly two levels average to +0.3 %");
        let q = max_qty_within(&book(), Side::Buy, dec!(0.004));
        // (200.6 + 102x) / (2 + x) = 100.4 -> x = 0.2 / 1.6 = 0.125
        assert_eq!(q, dec!(2.125));
        assert!(slippage(&book(), Side::Buy, q).unwrap() <= dec!(0.004));
        assert_eq!(max_qty_within(&book(), Side::Sell, dec!(0.0005)), dec!(0), "even the best bid is too far");
    }
}
