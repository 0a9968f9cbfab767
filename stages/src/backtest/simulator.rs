//! The single-asset fill engine, as a per-bar state machine. Both backtest paths drive this one machine: the
//! vectorised kernel ([`simulate`]) feeds it precomputed signal flags, the event-driven path
//! ([`super::event::replay`]) feeds it one strategy decision per bar. So the fill arithmetic, the one thing that
//! must be identical between them, exists once.
//!
//! The arithmetic is REFERENCE_SPEC.md section 3, in its float operation order, so results match the reference
//! to the bit: buy `size = budget / (P x (1 + f))`, `fee = size x P x f`, `cash -= budget` (all-in: cash becomes
//! exactly 0); sell `notional = size x P`, `fee = notional x f`, `cash = cash + notional - fee`; equity at each
//! close `cash + size x close`.

use serde::Serialize;

use super::BacktestError;
use super::config::{Fill, SimConfig};
use super::metrics::{self, Curve};
use super::scan::next_true;
use crate::indicators::atr;
use crate::strategy::{Columns, Ohlcv, Signals};

/// What the bar-by-bar engines read: opens for fills, highs and lows for intrabar exits.
pub(crate) const BAR_BY_BAR: Columns = Columns { open: true, range: true, volume: false };

/// Why a trade ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitReason {
    /// The strategy's exit signal.
    Signal,
    /// The fixed stop-loss.
    StopLoss,
    /// The take-profit.
    TakeProfit,
    /// The ATR trailing stop.
    TrailingStop,
    /// Still open at the end: marked to the last close, no exit fee (spec section 4).
    Open,
}

/// One round trip (or an open position at the end).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trade {
    /// Bar whose fill opened the position.
    pub entry_bar: usize,
    /// Entry fill price (slippage included).
    pub entry_price: f64,
    /// Quantity bought.
    pub size: f64,
    /// Entry fee paid.
    pub entry_fee: f64,
    /// Cash committed (size x price + fee).
    pub cost: f64,
    /// Bar whose fill closed the position; `None` while open.
    pub exit_bar: Option<usize>,
    /// Exit fill price; the last close for an open trade.
    pub exit_price: f64,
    /// Exit fee; 0 for an open trade.
    pub exit_fee: f64,
    /// Cash back minus cash committed; for an open trade, its value at the last close minus cash committed.
    pub pnl: f64,
    /// Why it ended.
    pub exit: ExitReason,
}

impl Trade {
    /// True for a completed round trip.
    pub fn is_closed(&self) -> bool {
        self.exit_bar.is_some()
    }

    /// Closes held in the position: entry fill to exit fill (both fill models hold over `exit - entry` closes),
    /// or to the end for an open trade.
    pub fn bars_held(&self, n_bars: usize) -> usize {
        self.exit_bar.unwrap_or(n_bars).saturating_sub(self.entry_bar)
    }
}

/// What one single-asset run produced.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Simulation {
    /// Starting cash.
    pub init_cash: f64,
    /// Trades in entry order (at most the last is open).
    pub trades: Vec<Trade>,
    /// Equity at every bar's close, after that bar's fills.
    pub equity: Vec<f64>,
}

/// An order waiting for its fill.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Order {
    /// Go long, committing this fraction of cash (>= 1 means all of it, exactly).
    Buy(f64),
    /// Sell the whole position.
    Sell,
}

/// An open position with its exit levels; shared by the single-asset and the portfolio engines.
#[derive(Debug, Clone)]
pub(crate) struct Position {
    pub(crate) trade: Trade,
    /// Fixed stop level (or -inf).
    stop: f64,
    /// Trailing stop level (or -inf).
    trail: f64,
    /// Take-profit level (or +inf).
    take: f64,
}

impl Position {
    /// Buys at `price` (before slippage) committing `budget` of cash; `atr` is the ATR known when the order was
    /// decided (NaN when no trailing stop or not yet defined).
    pub(crate) fn open(t: usize, price: f64, budget: f64, cfg: &SimConfig, atr: f64) -> Self {
        let f = cfg.fee;
        let p = price * (1.0 + cfg.slippage);
        let size = budget / (p * (1.0 + f));
        let fee = size * p * f;
        let stop = cfg.stop_loss.map_or(f64::NEG_INFINITY, |s| p * (1.0 - s));
        let take = cfg.take_profit.map_or(f64::INFINITY, |s| p * (1.0 + s));
        let trail = cfg.trailing_atr.map_or(f64::NEG_INFINITY, |tr| f64::NEG_INFINITY.max(p - tr.multiple * atr));
        let trade = Trade {
            entry_bar: t,
            entry_price: p,
            size,
            entry_fee: fee,
            cost: budget,
            exit_bar: None,
            exit_price: f64::NAN,
            exit_fee: 0.0,
            pnl: 0.0,
            exit: ExitReason::Open,
        };
        Self { trade, stop, trail, take }
    }

    /// Sells everything at `price` (before slippage); returns the trade and `(notional, fee)` for the caller's
    /// `cash = cash + notional - fee` (the spec's operation order).
    pub(crate) fn close(self, t: usize, price: f64, reason: ExitReason, cfg: &SimConfig) -> (Trade, f64, f64) {
        let p = price * (1.0 - cfg.slippage);
        let mut trade = self.trade;
        let notional = trade.size * p;
        let fee = notional * cfg.fee;
        trade.exit_bar = Some(t);
        trade.exit_price = p;
        trade.exit_fee = fee;
        trade.pnl = (notional - fee) - trade.cost;
        trade.exit = reason;
        (trade, notional, fee)
    }

    /// The still-open trade marked at the last close (no exit fee, spec section 4).
    pub(crate) fn mark_open(self, last_close: f64) -> Trade {
        let mut trade = self.trade;
        trade.exit_price = last_close;
        trade.pnl = trade.size * last_close - trade.cost;
        trade
    }

    /// Raises the trailing stop after a close.
    pub(crate) fn trail_with(&mut self, close: f64, atr: f64, multiple: f64) {
        self.trail = self.trail.max(close - multiple * atr);
    }

    /// Intrabar exit of a bar with this open/high/low, pessimistic when the bar's order of events is unknown: a
    /// stop is assumed hit before a take-profit in the same bar, and a gap through a level fills at the open,
    /// not at the level. Levels are on slipped prices; the exit slips once more in [`Position::close`].
    pub(crate) fn intrabar_exit(&self, o: f64, h: f64, l: f64) -> Option<(f64, ExitReason)> {
        let stop = self.stop.max(self.trail);
        let reason = if self.stop >= self.trail { ExitReason::StopLoss } else { ExitReason::TrailingStop };
        if o <= stop {
            Some((o, reason))
        } else if l <= stop {
            Some((stop, reason))
        } else if o >= self.take {
            Some((o, ExitReason::TakeProfit))
        } else if h >= self.take {
            Some((self.take, ExitReason::TakeProfit))
        } else {
            None
        }
    }
}

/// The per-bar state machine. Call [`Simulator::open_bar`], decide with [`Simulator::is_long`] known, then
/// [`Simulator::close_bar`], for t = 0..n.
///
/// It reads opens, highs and lows at every bar of a position (its intrabar exit check), so its bars must hold
/// them.
pub struct Simulator<'a> {
    bars: &'a Ohlcv,
    cfg: &'a SimConfig,
    atr: Option<Vec<f64>>,
    n: usize,
    cash: f64,
    pos: Option<Position>,
    pending: Option<Order>,
    trades: Vec<Trade>,
    equity: Vec<f64>,
}

impl<'a> Simulator<'a> {
    /// A simulator over `bars`; fails on an invalid config.
    pub fn new(bars: &'a Ohlcv, cfg: &'a SimConfig) -> Result<Self, BacktestError> {
        cfg.validate()?;
        if !bars.has(BAR_BY_BAR) {
            return Err(BacktestError::Columns(BAR_BY_BAR));
        }
        let n = bars.len();
        let atr = cfg.trailing_atr.map(|t| atr(&bars.high[..n], &bars.low[..n], &bars.close[..n], t.period));
        Ok(Self {
            bars,
            cfg,
            atr,
            n,
            cash: cfg.init_cash,
            pos: None,
            pending: None,
            trades: Vec::new(),
            equity: Vec::with_capacity(n),
        })
    }

    /// Whether a position is open (decisions are conditioned on this, as the reference's "ignore an entry while
    /// long and an exit while flat").
    #[inline]
    pub fn is_long(&self) -> bool {
        self.pos.is_some()
    }

    /// Fraction of equity held in the position at the last marked close (1 when all in).
    pub fn weight(&self) -> f64 {
        match (&self.pos, self.equity.last()) {
            (Some(p), Some(e)) if *e > 0.0 => p.trade.size * self.bars.close[self.equity.len() - 1] / e,
            (Some(_), _) => 1.0,
            _ => 0.0,
        }
    }

    /// Start of bar `t`: fills a pending next-open order, then lets stops act on the bar's range.
    #[inline]
    pub fn open_bar(&mut self, t: usize) {
        if let Some(order) = self.pending.take() {
            self.fill(t, order, self.bars.open[t], ExitReason::Signal);
        }
        if self.pos.is_some() && self.cfg.has_stops() {
            self.check_stops(t);
        }
    }

    /// End of bar `t` with the strategy's decision: fills it at the close (fill model `close`) or queues it for
    /// the next open, then marks equity and moves the trailing stop.
    #[inline]
    pub fn close_bar(&mut self, t: usize, order: Option<Order>) {
        if let Some(order) = order {
            match self.cfg.fill {
                Fill::Close => self.fill(t, order, self.bars.close[t], ExitReason::Signal),
                Fill::NextOpen if t + 1 < self.n => self.pending = Some(order),
                Fill::NextOpen => {}
            }
        }
        let c = self.bars.close[t];
        let held = self.pos.as_ref().map_or(0.0, |p| p.trade.size);
        self.equity.push(self.cash + held * c);
        if let (Some(p), Some(atr), Some(tr)) = (self.pos.as_mut(), &self.atr, self.cfg.trailing_atr) {
            p.trail_with(c, atr[t], tr.multiple);
        }
    }

    fn fill(&mut self, t: usize, order: Order, price: f64, reason: ExitReason) {
        match (order, self.pos.is_some()) {
            (Order::Buy(weight), false) => {
                let budget = if weight >= 1.0 { self.cash } else { self.cash * weight.max(0.0) };
                // the trailing stop starts from the ATR known when the order was decided
                let decided = if self.cfg.fill == Fill::NextOpen { t.saturating_sub(1) } else { t };
                let atr = self.atr.as_ref().map_or(f64::NAN, |a| a[decided]);
                self.cash -= budget;
                self.pos = Some(Position::open(t, price, budget, self.cfg, atr));
            }
            (Order::Sell, true) => self.sell(t, price, reason),
            _ => {} // an entry while long or an exit while flat is ignored
        }
    }

    fn sell(&mut self, t: usize, price: f64, reason: ExitReason) {
        let Some(pos) = self.pos.take() else { return };
        let (trade, notional, fee) = pos.close(t, price, reason, self.cfg);
        self.cash = self.cash + notional - fee;
        self.trades.push(trade);
    }

    fn check_stops(&mut self, t: usize) {
        let exit =
            self.pos.as_ref().and_then(|p| p.intrabar_exit(self.bars.open[t], self.bars.high[t], self.bars.low[t]));
        if let Some((price, reason)) = exit {
            self.sell(t, price, reason);
        }
    }

    /// Ends the run: an open position is marked to the last close, not sold (spec section 4).
    pub fn finish(mut self) -> Simulation {
        if let Some(pos) = self.pos.take() {
            self.trades.push(pos.mark_open(self.bars.close[self.n - 1]));
        }
        Simulation { init_cash: self.cfg.init_cash, trades: self.trades, equity: self.equity }
    }
}
/// The vectorised single-asset kernel: runs precomputed entry/exit flags through the fill engine. Without
/// intrabar exits it takes [`simulate_plain`], which jumps from signal to signal; with stops it steps the
/// [`Simulator`] bar by bar. Both give the same result where both apply (tested).
pub fn simulate(bars: &Ohlcv, signals: &Signals, cfg: &SimConfig) -> Result<Simulation, BacktestError> {
    check_inputs(bars, signals, cfg)?;
    if !cfg.has_stops() {
        cfg.validate()?;
        let (trades, curve) = plain_run(bars, signals, cfg);
        return Ok(Simulation { init_cash: cfg.init_cash, trades, equity: curve.materialize() });
    }
    simulate_stepped(bars, signals, cfg)
}

/// Bars to run on, signals covering them, and the columns the fills read.
fn check_inputs(bars: &Ohlcv, signals: &Signals, cfg: &SimConfig) -> Result<(), BacktestError> {
    let n = bars.len();
    if n == 0 {
        return Err(BacktestError::NoData);
    }
    if signals.entries.len() < n || signals.exits.len() < n || signals.weights.as_ref().is_some_and(|w| w.len() < n) {
        return Err(BacktestError::Length { bars: n, signals: signals.entries.len().min(signals.exits.len()) });
    }
    if !bars.has(cfg.columns()) {
        return Err(BacktestError::Columns(cfg.columns()));
    }
    Ok(())
}

/// The kernel as a bar-by-bar loop over the [`Simulator`] (any config, stops included).
pub fn simulate_stepped(bars: &Ohlcv, signals: &Signals, cfg: &SimConfig) -> Result<Simulation, BacktestError> {
    let n = bars.len();
    let mut sim = Simulator::new(bars, cfg)?;
    let (entries, exits) = (&signals.entries[..n], &signals.exits[..n]);
    for t in 0..n {
        sim.open_bar(t);
        let order = if sim.is_long() {
            exits[t].then_some(Order::Sell)
        } else if entries[t] {
            Some(Order::Buy(signals.weights.as_ref().map_or(1.0, |w| w[t])))
        } else {
            None
        };
        sim.close_bar(t, order);
    }
    Ok(sim.finish())
}

/// The kernel without intrabar exits, in the reference's shape: (1) walk the flags to find every fill bar (an
/// entry flag while flat, an exit flag while long; no prices needed), (2) gather the fill prices in one batch, so
/// their cache misses overlap instead of stalling one by one, (3) run the cash chain over the trades with
/// [`Position`], the same arithmetic as the [`Simulator`], (4) describe the equity as flat and long stretches
/// (`cash` while flat, `cash + size x close` while long), which [`Stretches`] writes out in a loop the compiler
/// vectorises, or hands to the metrics chunk by chunk. Callers have checked lengths and config.
fn plain_run<'a>(bars: &'a Ohlcv, signals: &Signals, cfg: &SimConfig) -> (Vec<Trade>, Stretches<'a>) {
    let n = bars.len();
    let next_open = cfg.fill == Fill::NextOpen;
    // close fills never read the opens (which may not have been loaded)
    let (open, close) = (if next_open { &bars.open[..n] } else { &[][..] }, &bars.close[..n]);
    let (entries, exits) = (&signals.entries[..n], &signals.exits[..n]);

    // (1) fill bars: (decision bar, fill bar) of each entry, and the fill bar of its exit if it has one
    let mut legs: Vec<(usize, usize, Option<usize>)> = Vec::new();
    let mut t = 0; // first bar whose close may decide, while flat
    while t < n {
        let Some(decided) = next_true(&entries[t..]).map(|k| t + k) else { break };
        let f = if next_open { decided + 1 } else { decided };
        if f >= n {
            break;
        }
        // exits are decided from the fill bar's close (next-open) or the bar after (close: that bar decided
        // the entry)
        let from = if next_open { f } else { f + 1 };
        let exit = exits.get(from..).and_then(next_true).map(|k| from + k);
        let g = exit.map(|x| if next_open { x + 1 } else { x }).filter(|g| *g < n);
        legs.push((decided, f, g));
        match g {
            None => break,
            // next-open: flat from g's open, and g's close may decide again; close: g's decision was the exit
            Some(g) => t = if next_open { g } else { g + 1 },
        }
    }
    // (2) prices, gathered together
    let fill_price = |bar: usize| if next_open { open[bar] } else { close[bar] };
    let prices: Vec<(f64, Option<f64>)> = legs.iter().map(|&(_, f, g)| (fill_price(f), g.map(fill_price))).collect();

    // (3) the cash chain, and (4) equity stretch by stretch
    let mut stretches = Vec::with_capacity(2 * legs.len() + 1);
    let mut trades = Vec::with_capacity(legs.len());
    let mut cash = cfg.init_cash;
    let mut from = 0;
    for (&(decided, f, g), &(p_in, p_out)) in legs.iter().zip(&prices) {
        stretches.push(Stretch { end: f, cash, size: None });
        let weight = signals.weights.as_ref().map_or(1.0, |w| w[decided]);
        let budget = if weight >= 1.0 { cash } else { cash * weight.max(0.0) };
        cash -= budget;
        let pos = Position::open(f, p_in, budget, cfg, f64::NAN);
        let end = g.unwrap_or(n);
        stretches.push(Stretch { end, cash, size: Some(pos.trade.size) });
        match (g, p_out) {
            (Some(g), Some(p)) => {
                let (trade, notional, fee) = pos.close(g, p, ExitReason::Signal, cfg);
                cash = cash + notional - fee;
                trades.push(trade);
            }
            _ => trades.push(pos.mark_open(close[n - 1])),
        }
        from = end;
    }
    if from < n {
        stretches.push(Stretch { end: n, cash, size: None });
    }
    let curve = Stretches { close, stretches };
    (trades, curve)
}

/// One stretch of an equity curve: flat at `cash`, or long `size` with `cash` aside (`cash + size x close`).
#[derive(Debug, Clone, Copy)]
struct Stretch {
    /// The bar after its last.
    end: usize,
    cash: f64,
    size: Option<f64>,
}

/// The plain kernel's equity curve as its stretches, read on demand: the same values the stored curve holds
/// (the same expression over the same operands), without writing a million of them.
#[derive(Debug, Clone)]
pub struct Stretches<'a> {
    close: &'a [f64],
    stretches: Vec<Stretch>,
}

impl Stretches<'_> {
    /// Index of the stretch holding bar `t`.
    fn at(&self, t: usize) -> usize {
        self.stretches.partition_point(|s| s.end <= t)
    }

    /// Writes bars `range` into `out` (of the same length).
    fn fill(&self, range: std::ops::Range<usize>, out: &mut [f64]) {
        let mut t = range.start;
        let mut k = self.at(t);
        while t < range.end {
            let st = self.stretches[k];
            let end = st.end.min(range.end);
            let dst = &mut out[t - range.start..end - range.start];
            match st.size {
                None => dst.fill(st.cash),
                Some(size) => {
                    for (o, c) in dst.iter_mut().zip(&self.close[t..end]) {
                        *o = st.cash + size * c;
                    }
                }
            }
            t = end;
            k += 1;
        }
    }

    /// The whole curve, stored.
    fn materialize(&self) -> Vec<f64> {
        let n = self.stretches.last().map_or(0, |s| s.end);
        let mut equity = super::buffers::filled(n, 0.0);
        self.fill(0..n, &mut equity);
        equity
    }
}

impl Curve for Stretches<'_> {
    fn len(&self) -> usize {
        self.stretches.last().map_or(0, |s| s.end)
    }

    fn chunk<'a>(&'a self, range: std::ops::Range<usize>, buf: &'a mut [f64]) -> &'a [f64] {
        let out = &mut buf[..range.len()];
        self.fill(range, out);
        out
    }
}

/// A run's trades and its equity curve, stored (the bar-by-bar engine) or as stretches (the plain kernel).
#[derive(Debug, Clone)]
pub enum CurveRun<'a> {
    /// A stored curve.
    Stored(Simulation),
    /// Trades and the curve's stretches.
    Stretched {
        /// Starting cash.
        init_cash: f64,
        /// Trades in entry order.
        trades: Vec<Trade>,
        /// The equity curve.
        curve: Stretches<'a>,
    },
}

impl CurveRun<'_> {
    /// The trades, and the stored curve when `keep_curve` (else an empty one: nothing is written).
    pub fn into_parts(self, keep_curve: bool) -> (Vec<Trade>, Vec<f64>) {
        match self {
            Self::Stored(s) => (s.trades, if keep_curve { s.equity } else { Vec::new() }),
            Self::Stretched { trades, curve, .. } => {
                (trades, if keep_curve { curve.materialize() } else { Vec::new() })
            }
        }
    }

    /// The run's metrics (identical to [`metrics::compute`] over the stored curve).
    pub fn metrics(&self, bars_per_year: f64) -> metrics::Metrics {
        match self {
            Self::Stored(s) => metrics::compute(&s.equity, s.init_cash, &s.trades, bars_per_year),
            Self::Stretched { init_cash, trades, curve } => {
                metrics::compute_curve(curve, *init_cash, trades, bars_per_year)
            }
        }
    }
}

/// [`simulate`] without storing the curve when the kernel can describe it by stretches (no intrabar exits):
/// what sweeps run, where only the metrics of each combination are kept.
pub fn simulate_curve<'a>(bars: &'a Ohlcv, signals: &Signals, cfg: &SimConfig) -> Result<CurveRun<'a>, BacktestError> {
    check_inputs(bars, signals, cfg)?;
    if cfg.has_stops() {
        return simulate_stepped(bars, signals, cfg).map(CurveRun::Stored);
    }
    cfg.validate()?;
    let (trades, curve) = plain_run(bars, signals, cfg);
    Ok(CurveRun::Stretched { init_cash: cfg.init_cash, trades, curve })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backtest::config::TrailingAtr;

    fn bars(open: &[f64], close: &[f64]) -> Ohlcv {
        Ohlcv {
            time: (0..open.len() as i64).collect(),
            open: open.to_vec(),
            high: open.iter().zip(close).map(|(o, c)| o.max(*c)).collect(),
            low: open.iter().zip(close).map(|(o, c)| o.min(*c)).collect(),
            close: close.to_vec(),
            volume: vec![1.0; open.len()],
        }
    }

    fn flags(n: usize, on: &[usize]) -> Vec<bool> {
        (0..n).map(|t| on.contains(&t)).collect()
    }

    #[test]
    fn next_open_round_trip_by_hand() {
        // entry signal at bar 0 fills at open[1] = 100; exit signal at bar 2 fills at open[3] = 110
        let b = bars(&[99.0, 100.0, 105.0, 110.0, 111.0], &[99.5, 104.0, 108.0, 111.0, 112.0]);
        let s = Signals { entries: flags(5, &[0, 1]), exits: flags(5, &[2]), weights: None };
        let cfg = SimConfig { init_cash: 1000.0, fee: 0.01, ..Default::default() };
        let sim = simulate(&b, &s, &cfg).unwrap();
        assert_eq!(sim.trades.len(), 1);
        let t = &sim.trades[0];
        let size = 1000.0 / (100.0 * 1.01);
        assert_eq!((t.entry_bar, t.exit_bar, t.size), (1, Some(3), size));
        assert_eq!(t.entry_fee, size * 100.0 * 0.01);
        let cash = 0.0 + size * 110.0 - size * 110.0 * 0.01;
        assert_eq!(t.pnl, cash - 1000.0);
        assert_eq!(sim.equity, vec![1000.0, size * 104.0, size * 108.0, cash, cash]);
    }

    #[test]
    fn signal_on_the_last_bar_never_fills_and_open_trades_are_marked() {
        let b = bars(&[10.0, 10.0, 12.0], &[10.0, 11.0, 13.0]);
        let s = Signals { entries: flags(3, &[0]), exits: flags(3, &[2]), weights: None };
        let sim = simulate(&b, &s, &SimConfig { fee: 0.0, ..Default::default() }).unwrap();
        let t = &sim.trades[0];
        assert_eq!((t.exit_bar, t.exit, t.exit_price, t.exit_fee), (None, ExitReason::Open, 13.0, 0.0));
        assert_eq!(t.pnl, 1000.0 * 13.0 - 10_000.0);
        assert_eq!(*sim.equity.last().unwrap(), 13_000.0);
    }

    #[test]
    fn close_fill_trades_on_the_signal_bar() {
        let b = bars(&[10.0, 10.0, 12.0, 12.0], &[10.0, 11.0, 13.0, 12.0]);
        let s = Signals { entries: flags(4, &[1]), exits: flags(4, &[2]), weights: None };
        let cfg = SimConfig { fee: 0.0, fill: Fill::Close, ..Default::default() };
        let sim = simulate(&b, &s, &cfg).unwrap();
        let t = &sim.trades[0];
        assert_eq!((t.entry_bar, t.entry_price, t.exit_bar, t.exit_price), (1, 11.0, Some(2), 13.0));
        assert_eq!(sim.equity, vec![10_000.0, 10_000.0, 10_000.0 / 11.0 * 13.0, 10_000.0 / 11.0 * 13.0]);
    }

    #[test]
    fn slippage_moves_both_fills_against_the_trader() {
        let b = bars(&[10.0, 10.0, 10.0], &[10.0, 10.0, 10.0]);
        let s = Signals { entries: flags(3, &[0]), exits: flags(3, &[1]), weights: None };
        let cfg = SimConfig { fee: 0.0, slippage: 0.01, ..Default::default() };
        let t = simulate(&b, &s, &cfg).unwrap().trades.remove(0);
        assert_eq!((t.entry_price, t.exit_price), (10.0 * 1.01, 10.0 * 0.99));
        assert!(t.pnl < 0.0);
    }

    #[test]
    fn weights_commit_a_fraction_of_cash() {
        let b = bars(&[10.0, 10.0, 20.0], &[10.0, 10.0, 20.0]);
        let s = Signals { entries: flags(3, &[0]), exits: flags(3, &[]), weights: Some(vec![0.25; 3]) };
        let sim = simulate(&b, &s, &SimConfig { fee: 0.0, ..Default::default() }).unwrap();
        assert_eq!(sim.equity, vec![10_000.0, 10_000.0, 7_500.0 + 250.0 * 20.0]);
    }

    #[test]
    fn stop_loss_take_profit_and_gaps() {
        // entry at open[1] = 100, stop 5 % -> 95; bar 2 trades down to 94 -> exit at 95
        let mut b = bars(&[100.0, 100.0, 99.0, 90.0], &[100.0, 99.0, 96.0, 91.0]);
        b.low[2] = 94.0;
        let s = Signals { entries: flags(4, &[0]), exits: flags(4, &[]), weights: None };
        let cfg = SimConfig { fee: 0.0, stop_loss: Some(0.05), ..Default::default() };
        let t = simulate(&b, &s, &cfg).unwrap().trades.remove(0);
        assert_eq!((t.exit_bar, t.exit_price, t.exit), (Some(2), 95.0, ExitReason::StopLoss));
        // a gap below the stop fills at the open
        let mut g = bars(&[100.0, 100.0, 90.0], &[100.0, 99.0, 91.0]);
        g.low[1] = 98.0;
        let t = simulate(&g, &s, &cfg).unwrap().trades.remove(0);
        assert_eq!((t.exit_bar, t.exit_price), (Some(2), 90.0));
        // take-profit 10 % -> 110 hit by bar 2's high
        let mut u = bars(&[100.0, 100.0, 101.0], &[100.0, 101.0, 102.0]);
        u.high[2] = 111.0;
        let cfg = SimConfig { fee: 0.0, take_profit: Some(0.1), ..Default::default() };
        let t = simulate(&u, &s, &cfg).unwrap().trades.remove(0);
        assert_eq!((t.exit_bar, t.exit_price, t.exit), (Some(2), 110.00000000000001, ExitReason::TakeProfit));
    }

    #[test]
    fn atr_trailing_stop_follows_the_close_up() {
        // constant range 2 (ATR 2 once seeded); the close climbs to 120 then the bar falls through 120 - 2*2
        let close = [100.0, 100.0, 110.0, 120.0, 119.0, 100.0];
        let open = [100.0, 100.0, 100.0, 110.0, 120.0, 119.0];
        let mut b = bars(&open, &close);
        for t in 0..6 {
            b.high[t] = open[t].max(close[t]) + 1.0;
            b.low[t] = open[t].min(close[t]) - 1.0;
        }
        let s = Signals { entries: flags(6, &[0]), exits: flags(6, &[]), weights: None };
        let cfg =
            SimConfig { fee: 0.0, trailing_atr: Some(TrailingAtr { period: 1, multiple: 2.0 }), ..Default::default() };
        let sim = simulate(&b, &s, &cfg).unwrap();
        let t = &sim.trades[0];
        // ATR(1) = true range: bar 3 TR = 12 -> trail 120 - 24 = 96; bar 4 TR = max(3, |120+1-120|..) = 3 ->
        // 119 - 6 = 113 -> trail 113; bar 5 opens 119, low 99 -> exit at 113
        assert_eq!((t.exit_bar, t.exit_price, t.exit), (Some(5), 113.0, ExitReason::TrailingStop));
    }

    #[test]
    fn the_plain_fast_path_equals_the_stepped_simulator() {
        use crate::backtest::synthetic::Rng;
        let mut rng = Rng::new(3);
        for case in 0..200 {
            let n = 1 + (rng.next_u64() % 60) as usize;
            let open: Vec<f64> = (0..n).map(|_| 10.0 + rng.uniform()).collect();
            let close: Vec<f64> = (0..n).map(|_| 10.0 + rng.uniform()).collect();
            let b = bars(&open, &close);
            let p = [0.05, 0.3, 0.8][case % 3];
            let s = Signals {
                entries: (0..n).map(|_| rng.uniform() < p).collect(),
                exits: (0..n).map(|_| rng.uniform() < p).collect(),
                weights: (case % 4 == 0).then(|| (0..n).map(|_| rng.uniform() * 1.2).collect()),
            };
            for fill in [Fill::NextOpen, Fill::Close] {
                let cfg = SimConfig { fill, slippage: if case % 2 == 0 { 0.0 } else { 0.001 }, ..Default::default() };
                let fast = simulate(&b, &s, &cfg).unwrap();
                assert_eq!(fast, simulate_stepped(&b, &s, &cfg).unwrap(), "case {case} {fill:?}");
            }
        }
    }

    #[test]
    fn stretched_curves_give_the_stored_curves_metrics_to_the_bit() {
        use crate::backtest::synthetic::Rng;
        let mut rng = Rng::new(7);
        // lengths around the chunk (1 024) and part (65 536) boundaries of the metrics
        for (case, n) in [1usize, 2, 1023, 1024, 1025, 5000, 65_537, 150_000].into_iter().enumerate() {
            let mut level = 100.0;
            let close: Vec<f64> = (0..n)
                .map(|_| {
                    level *= 1.0 + (rng.uniform() - 0.5) * 0.02;
                    level
                })
                .collect();
            let b = bars(&close, &close);
            let p = [0.001, 0.01, 0.2][case % 3];
            let s = Signals {
                entries: (0..n).map(|_| rng.uniform() < p).collect(),
                exits: (0..n).map(|_| rng.uniform() < p).collect(),
                weights: (case % 2 == 0).then(|| (0..n).map(|_| rng.uniform() * 1.2).collect()),
            };
            for fill in [Fill::NextOpen, Fill::Close] {
                let cfg = SimConfig { fill, ..Default::default() };
                let stored = simulate(&b, &s, &cfg).unwrap();
                let want = metrics::compute(&stored.equity, stored.init_cash, &stored.trades, 8760.0);
                let run = simulate_curve(&b, &s, &cfg).unwrap();
                let CurveRun::Stretched { curve, trades, .. } = &run else { panic!("no stops: stretches") };
                assert_eq!(trades, &stored.trades);
                let mut buf = vec![0.0; n];
                assert_eq!(curve.chunk(0..n, &mut buf), &stored.equity[..], "n {n} {fill:?}: the same values");
                assert_eq!(run.metrics(8760.0), want, "n {n} {fill:?}");
            }
        }
    }

    #[test]
    fn bars_without_the_columns_the_fills_read_are_refused() {
        let mut b = bars(&[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0]);
        (b.open, b.high, b.low, b.volume) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let s = Signals { entries: flags(3, &[0]), exits: flags(3, &[1]), weights: None };
        let close = SimConfig { fill: Fill::Close, ..Default::default() };
        assert_eq!(simulate(&b, &s, &close).unwrap().trades.len(), 1, "close fills need closes only");
        let next_open = SimConfig::default();
        assert!(matches!(simulate(&b, &s, &next_open), Err(BacktestError::Columns(c)) if c.open));
        b.open = vec![1.0, 2.0, 3.0];
        assert!(simulate(&b, &s, &next_open).is_ok());
        let stops = SimConfig { stop_loss: Some(0.1), ..Default::default() };
        assert!(matches!(simulate(&b, &s, &stops), Err(BacktestError::Columns(c)) if c.range));
        assert!(matches!(simulate_curve(&b, &s, &stops), Err(BacktestError::Columns(_))));
    }

    #[test]
    fn mismatched_lengths_are_an_error_not_a_panic() {
        let b = bars(&[1.0, 1.0], &[1.0, 1.0]);
        let s = Signals { entries: vec![false], exits: vec![false], weights: None };
        assert!(matches!(simulate(&b, &s, &SimConfig::default()), Err(BacktestError::Length { .. })));
        assert!(matches!(simulate(&Ohlcv::default(), &s, &SimConfig::default()), Err(BacktestError::NoData)));
    }
}
