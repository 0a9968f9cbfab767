//! Several symbols trading from one cash balance, as the live bot trades them.
//!
//! Each symbol keeps its own bars and signals (signals count that symbol's rows, like the spec's SMAs); the run
//! walks the union of all bar times. At a time when a symbol has a bar, its pending next-open order fills at that
//! bar's open and its stops act on that bar; at the close its decision is taken. Within one instant all sells
//! are filled before any buy, so freed cash is available. An entry commits `equity / N x weight` of cash (N =
//! number of symbols, equity marked at the latest known closes), capped by the cash available; with one symbol
//! that is all the cash, so the result equals [`super::simulate`] exactly.

use serde::Serialize;

use super::BacktestError;
use super::config::{Fill, SimConfig};
use super::simulator::{BAR_BY_BAR, ExitReason, Order, Position, Trade};
use crate::indicators::atr;
use crate::strategy::{Ohlcv, Signals};

/// A finished multi-symbol run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PortfolioRun {
    /// Starting cash.
    pub init_cash: f64,
    /// The union of all symbols' bar times (seconds since the epoch), one equity value each.
    pub time: Vec<i64>,
    /// Portfolio equity at each time, after that instant's fills, positions marked at their latest close.
    pub equity: Vec<f64>,
    /// Trades as `(symbol index, trade)`; bar indices are the symbol's own rows.
    pub trades: Vec<(usize, Trade)>,
}

struct Book<'a> {
    bars: &'a Ohlcv,
    signals: &'a Signals,
    atr: Option<Vec<f64>>,
    next: usize,
    pos: Option<Position>,
    pending: Option<Order>,
    last_close: f64,
}

/// Runs every symbol's signals against one shared cash balance.
pub fn simulate_portfolio(inputs: &[(Ohlcv, Signals)], cfg: &SimConfig) -> Result<PortfolioRun, BacktestError> {
    cfg.validate()?;
    if inputs.is_empty() || inputs.iter().any(|(b, _)| b.is_empty()) {
        return Err(BacktestError::NoData);
    }
    if inputs.iter().any(|(b, _)| !b.has(BAR_BY_BAR)) {
        return Err(BacktestError::Columns(BAR_BY_BAR));
    }
    for (b, s) in inputs {
        let covered = s.entries.len().min(s.exits.len());
        if covered < b.len() || s.weights.as_ref().is_some_and(|w| w.len() < b.len()) {
            return Err(BacktestError::Length { bars: b.len(), signals: covered });
        }
    }
    let mut time: Vec<i64> = inputs.iter().flat_map(|(b, _)| b.time[..b.len()].iter().copied()).collect();
    time.sort_unstable();
    time.dedup();

    let mut books: Vec<Book<'_>> = inputs
        .iter()
        .map(|(bars, signals)| Book {
            bars,
            signals,
            atr: cfg.trailing_atr.map(|t| atr(&bars.high, &bars.low, &bars.close, t.period)),
            next: 0,
            pos: None,
            pending: None,
            last_close: f64::NAN,
        })
        .collect();
    let n_sym = books.len() as f64;
    let mut cash = cfg.init_cash;
    let mut equity = Vec::with_capacity(time.len());
    let mut trades = Vec::new();
    let mut here: Vec<usize> = Vec::with_capacity(books.len());

    for &now in &time {
        here.clear();
        here.extend((0..books.len()).filter(|&i| books[i].bars.time.get(books[i].next) == Some(&now)));
        // open: pending sells, then pending buys, then stops
        for sell_pass in [true, false] {
            for &i in &here {
                let order = books[i].pending;
                if matches!(order, Some(Order::Sell)) == sell_pass && order.is_some() {
                    books[i].pending = None;
                    let t = books[i].next;
                    let price = books[i].bars.open[t];
                    execute(&mut books, i, t, order, price, &mut cash, &mut trades, cfg, n_sym);
                }
            }
        }
        if cfg.has_stops() {
            for &i in &here {
                let b = &mut books[i];
                let t = b.next;
                let exit = b.pos.as_ref().and_then(|p| p.intrabar_exit(b.bars.open[t], b.bars.high[t], b.bars.low[t]));
                if let Some((price, reason)) = exit
                    && let Some(pos) = b.pos.take()
                {
                    let (trade, notional, fee) = pos.close(t, price, reason, cfg);
                    cash = cash + notional - fee;
                    trades.push((i, trade));
                }
            }
        }
        // close: decisions (filled now with fill model `close`, else queued), sells before buys
        for &i in &here {
            let b = &mut books[i];
            let t = b.next;
            b.last_close = b.bars.close[t];
            let order = if b.pos.is_some() {
                b.signals.exits[t].then_some(Order::Sell)
            } else if b.signals.entries[t] {
                Some(Order::Buy(b.signals.weights.as_ref().map_or(1.0, |w| w[t])))
            } else {
                None
            };
            match cfg.fill {
                Fill::NextOpen => b.pending = order.filter(|_| t + 1 < b.bars.len()),
                Fill::Close => b.pending = order,
            }
        }
        if cfg.fill == Fill::Close {
            for sell_pass in [true, false] {
                for &i in &here {
                    let order = books[i].pending;
                    if matches!(order, Some(Order::Sell)) == sell_pass && order.is_some() {
                        books[i].pending = None;
                        let t = books[i].next;
                        let price = books[i].bars.close[t];
                        execute(&mut books, i, t, order, price, &mut cash, &mut trades, cfg, n_sym);
                    }
                }
            }
        }
        let held: f64 = books.iter().filter_map(|b| b.pos.as_ref().map(|p| p.trade.size * b.last_close)).sum();
        equity.push(cash + held);
        for &i in &here {
            let b = &mut books[i];
            let t = b.next;
            if let (Some(p), Some(a), Some(tr)) = (b.pos.as_mut(), &b.atr, cfg.trailing_atr) {
                p.trail_with(b.bars.close[t], a[t], tr.multiple);
            }
            b.next += 1;
        }
    }
    for (i, b) in books.into_iter().enumerate() {
        if let Some(pos) = b.pos {
            trades.push((i, pos.mark_open(b.last_close)));
        }
    }
    Ok(PortfolioRun { init_cash: cfg.init_cash, time, equity, trades })
}

/// Fills one order of symbol `i` at `price`.
#[allow(clippy::too_many_arguments)]
fn execute(
    books: &mut [Book<'_>],
    i: usize,
    t: usize,
    order: Option<Order>,
    price: f64,
    cash: &mut f64,
    trades: &mut Vec<(usize, Trade)>,
    cfg: &SimConfig,
    n_sym: f64,
) {
    match order {
        Some(Order::Sell) => {
            if let Some(pos) = books[i].pos.take() {
                let (trade, notional, fee) = pos.close(t, price, ExitReason::Signal, cfg);
                *cash = *cash + notional - fee;
                trades.push((i, trade));
            }
        }
        Some(Order::Buy(weight)) if books[i].pos.is_none() => {
            let marked: f64 = books
                .iter()
                .filter_map(|b| {
                    b.pos
                        .as_ref()
                        .map(|p| p.trade.size * if b.last_close.is_nan() { p.trade.entry_price } else { b.last_close })
                })
                .sum();
            let budget = ((*cash + marked) / n_sym * weight.clamp(0.0, 1.0)).min(*cash);
            if budget > 0.0 {
                let decided = if cfg.fill == Fill::NextOpen { t.saturating_sub(1) } else { t };
                let a = books[i].atr.as_ref().map_or(f64::NAN, |a| a[decided]);
                *cash -= budget;
                books[i].pos = Some(Position::open(t, price, budget, cfg, a));
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backtest::simulate;
    use crate::backtest::synthetic::{SeriesSpec, ohlcv};
    use crate::strategy::{SignalRule, SmaCross, SmaCrossParams};

    #[test]
    fn one_symbol_equals_the_single_asset_kernel() {
        let bars = ohlcv(&SeriesSpec { bars: 2000, seed: 11, trend: 0.001, ..Default::default() });
        let sig = SmaCross::new(SmaCrossParams { fast: 5, slow: 20 }).signals(&bars);
        for cfg in [SimConfig::default(), SimConfig { fill: Fill::Close, stop_loss: Some(0.02), ..Default::default() }]
        {
            let single = simulate(&bars, &sig, &cfg).unwrap();
            let multi = simulate_portfolio(&[(bars.clone(), sig.clone())], &cfg).unwrap();
            assert!(single.trades.len() > 10);
            assert_eq!(multi.equity, single.equity);
            assert_eq!(multi.trades.into_iter().map(|(_, t)| t).collect::<Vec<_>>(), single.trades);
        }
    }

    #[test]
    fn two_symbols_share_cash_by_equal_weight() {
        // A: entry at bar 0 -> fills at open[1]; B (bars only at even times) enters at its bar 0 -> its bar 1
        let a = Ohlcv {
            time: vec![0, 1, 2, 3],
            open: vec![10.0; 4],
            high: vec![10.0; 4],
            low: vec![10.0; 4],
            close: vec![10.0, 10.0, 20.0, 20.0],
            volume: vec![1.0; 4],
        };
        let b = Ohlcv {
            time: vec![0, 2],
            open: vec![5.0, 5.0],
            high: vec![5.0, 5.0],
            low: vec![5.0, 5.0],
            close: vec![5.0, 5.0],
            volume: vec![1.0; 2],
        };
        let sa = Signals { entries: vec![true, false, false, false], exits: vec![false; 4], weights: None };
        let sb = Signals { entries: vec![true, false], exits: vec![false; 2], weights: None };
        let cfg = SimConfig { fee: 0.0, init_cash: 1000.0, ..Default::default() };
        let run = simulate_portfolio(&[(a, sa), (b, sb)], &cfg).unwrap();
        assert_eq!(run.time, vec![0, 1, 2, 3]);
        // t=1: A buys 1000/2 = 500 of cash -> 50 units; t=2: B buys min(cash 500, (500 + 50*10)/2 = 500) -> 100
        let (ta, tb) = (&run.trades[0].1, &run.trades[1].1);
        assert_eq!((ta.entry_bar, ta.size, tb.entry_bar, tb.size), (1, 50.0, 1, 100.0));
        // t=2: A closes 20 -> 1000 + 500 (B at 5 = 500) = 0 cash + 1000 + 500
        assert_eq!(run.equity, vec![1000.0, 1000.0, 1500.0, 1500.0]);
    }
}
