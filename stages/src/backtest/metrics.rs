//! Performance statistics of an equity curve and its trades. Return, drawdown and Sharpe follow
//! REFERENCE_SPEC.md section 4 exactly (per-bar returns with `E[-1] = C0`, sample standard deviation, nominal
//! bars per year); the rest are the usual definitions, stated on each field.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::scan::{min_of, next_at_least};
use super::simulator::Trade;

/// What a trader reads to judge a backtest. Ratios that are undefined on the data (no losing trade, zero
/// variance) are `None` (JSON `null`), never infinite or NaN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Bars in the run.
    pub bars: usize,
    /// Round trips plus the open position, if any.
    pub trades: usize,
    /// Completed round trips.
    pub closed_trades: usize,
    /// Positions still open at the end (marked, not sold).
    pub open_trades: usize,
    /// Equity at the last close.
    pub final_equity: f64,
    /// `(final / initial - 1) x 100`.
    pub total_return_pct: f64,
    /// Compound annual growth over `bars / bars_per_year` years, in percent.
    pub cagr_pct: f64,
    /// Annualised mean / sample standard deviation of per-bar returns (risk-free 0).
    pub sharpe: Option<f64>,
    /// Annualised mean / downside deviation (root mean square of negative per-bar returns, target 0).
    pub sortino: Option<f64>,
    /// CAGR / max drawdown (both as fractions).
    pub calmar: Option<f64>,
    /// Largest fall from a running peak, in percent (positive).
    pub max_drawdown_pct: f64,
    /// Longest time under a previous peak, in bars (from the peak to the recovery, or to the end).
    pub max_drawdown_bars: usize,
    /// Winning closed trades / closed trades, in percent.
    pub win_rate_pct: Option<f64>,
    /// Gross profit / gross loss of closed trades.
    pub profit_factor: Option<f64>,
    /// Mean P&L of winning closed trades.
    pub avg_win: Option<f64>,
    /// Mean P&L of losing closed trades (negative).
    pub avg_loss: Option<f64>,
    /// Share of bar closes spent holding a position, in percent.
    pub exposure_pct: f64,
    /// Mean bars held per closed trade.
    pub avg_holding_bars: Option<f64>,
}

/// An equity curve read in chunks: a stored curve, or one the kernel generates on the fly from its flat and
/// long stretches ([`super::simulator::Stretches`]), so a sweep judges each combination without writing and
/// re-reading a million-bar curve. Both give the same values in the same chunks, so the same metrics to the bit.
pub trait Curve: Sync {
    /// Number of bars.
    fn len(&self) -> usize;

    /// True when there are no bars.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Values of bars `range` (within `0..len`): borrowed, or written into `buf` (at least `range.len()` long).
    fn chunk<'a>(&'a self, range: std::ops::Range<usize>, buf: &'a mut [f64]) -> &'a [f64];

    /// True when the values are in memory: reading them twice is cheap, so the return moments and the
    /// drawdown are two passes and the moments' parts run in parallel. A generated curve is read once, its
    /// chunks feeding both in one pass (a sweep is already parallel over its combinations).
    fn stored(&self) -> bool {
        false
    }
}

impl Curve for [f64] {
    fn len(&self) -> usize {
        <[f64]>::len(self)
    }

    fn stored(&self) -> bool {
        true
    }

    fn chunk<'a>(&'a self, range: std::ops::Range<usize>, _buf: &'a mut [f64]) -> &'a [f64] {
        &self[range]
    }
}

/// Bars a curve is read in at a time (a stack buffer's worth).
const CHUNK: usize = 1024;
/// Bars of one part of the return moments (parts run in parallel for a stored curve).
const PART: usize = 1 << 16;

/// Computes [`Metrics`] for a run that started with `init_cash`; `bars_per_year` annualises (the nominal
/// timeframe, even when bars are missing, as the spec says).
pub fn compute(equity: &[f64], init_cash: f64, trades: &[Trade], bars_per_year: f64) -> Metrics {
    compute_curve(equity, init_cash, trades, bars_per_year)
}

/// [`compute`] over any [`Curve`].
pub fn compute_curve<C: Curve + ?Sized>(equity: &C, init_cash: f64, trades: &[Trade], bars_per_year: f64) -> Metrics {
    let n = equity.len();
    let mut one = [0.0f64; 1];
    let final_equity = if n > 0 { equity.chunk(n - 1..n, &mut one)[0] } else { init_cash };
    let nf = n as f64;
    let (moments, (worst, longest)) = if equity.stored() {
        (return_moments(equity, init_cash), drawdown(equity))
    } else {
        one_pass(equity, init_cash)
    };
    let (mean, ss, down_sq) = (moments.mean, moments.m2, moments.down);
    let ann = bars_per_year.sqrt();
    let mean = if n > 0 { mean } else { 0.0 };
    let sd = if n > 1 { (ss / (nf - 1.0)).sqrt() } else { f64::NAN };
    let sharpe = (sd > 0.0).then(|| mean / sd * ann);
    let dd = if n > 0 { (down_sq / nf).sqrt() } else { 0.0 };
    let sortino = (dd > 0.0).then(|| mean / dd * ann);

    let max_dd = -worst;
    let years = nf / bars_per_year;
    let growth = final_equity / init_cash;
    let cagr = if years > 0.0 && growth > 0.0 { growth.powf(1.0 / years) - 1.0 } else { -1.0 };
    let calmar = (max_dd > 0.0).then(|| cagr / max_dd);

    let closed: Vec<&Trade> = trades.iter().filter(|t| t.is_closed()).collect();
    let wins: Vec<f64> = closed.iter().map(|t| t.pnl).filter(|p| *p > 0.0).collect();
    let losses: Vec<f64> = closed.iter().map(|t| t.pnl).filter(|p| *p < 0.0).collect();
    let mean_of = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    let gross_win: f64 = wins.iter().sum();
    let gross_loss: f64 = -losses.iter().sum::<f64>();
    let held: usize = trades.iter().map(|t| t.bars_held(n)).sum();
    let closed_held: usize = closed.iter().map(|t| t.bars_held(n)).sum();

    Metrics {
        bars: n,
        trades: trades.len(),
        closed_trades: closed.len(),
        open_trades: trades.len() - closed.len(),
        final_equity,
        total_return_pct: (final_equity / init_cash - 1.0) * 100.0,
        cagr_pct: cagr * 100.0,
        sharpe,
        sortino,
        calmar,
        max_drawdown_pct: max_dd * 100.0,
        max_drawdown_bars: longest,
        win_rate_pct: (!closed.is_empty()).then(|| wins.len() as f64 / closed.len() as f64 * 100.0),
        profit_factor: (gross_loss > 0.0).then(|| gross_win / gross_loss),
        avg_win: mean_of(&wins),
        avg_loss: mean_of(&losses),
        exposure_pct: if n > 0 { (held.min(n) as f64) / nf * 100.0 } else { 0.0 },
        avg_holding_bars: (!closed.is_empty()).then(|| closed_held as f64 / closed.len() as f64),
    }
}

/// Deepest fall from a running peak (a fraction, <= 0) and the longest time under a peak, in bars.
fn drawdown<C: Curve + ?Sized>(equity: &C) -> (f64, usize) {
    let n = equity.len();
    let mut dd = Drawdown::default();
    let mut buf = [0.0f64; CHUNK];
    let mut c0 = 0;
    while c0 < n {
        let c1 = (c0 + CHUNK).min(n);
        dd.feed(c0, equity.chunk(c0..c1, &mut buf));
        c0 = c1;
    }
    dd.finish(n)
}

/// The drawdown scan, fed chunk by chunk: stretch by stretch between running peaks. The deepest point of a
/// stretch is its lowest equity (division is monotonic), so one division per stretch gives exactly the
/// reference's min over all bars of `E/peak - 1`; the longest stretch under a peak is the longest drawdown (to
/// the end when never recovered).
#[derive(Debug, Clone, Copy)]
struct Drawdown {
    peak: f64,
    peak_at: usize,
    /// Lowest value since the peak.
    low: f64,
    last: f64,
    worst: f64,
    longest: usize,
}

impl Default for Drawdown {
    fn default() -> Self {
        Self { peak: f64::NAN, peak_at: 0, low: f64::INFINITY, last: f64::NAN, worst: 0.0, longest: 0 }
    }
}

impl Drawdown {
    /// Bars `c0..c0 + vals.len()`, the chunk after the last one fed.
    fn feed(&mut self, c0: usize, vals: &[f64]) {
        let mut i = 0;
        if c0 == 0 {
            let Some(&first) = vals.first() else { return };
            (self.peak, self.peak_at) = (first, 0);
            i = 1;
        }
        while let Some(k) = next_at_least(&vals[i..], self.peak) {
            let j = i + k;
            let m = min_of(&vals[i..j]);
            self.low = if m < self.low { m } else { self.low };
            let t = c0 + j;
            if t > self.peak_at + 1 {
                self.worst = self.worst.min(self.low / self.peak - 1.0);
                self.longest = self.longest.max(t - 1 - self.peak_at);
            }
            (self.peak, self.peak_at, self.low) = (vals[j], t, f64::INFINITY);
            i = j + 1;
        }
        let m = min_of(&vals[i..]);
        self.low = if m < self.low { m } else { self.low };
        if let Some(&v) = vals.last() {
            self.last = v;
        }
    }

    /// `(worst, longest)` of an `n`-bar curve.
    fn finish(mut self, n: usize) -> (f64, usize) {
        if n == 0 {
            return (0.0, 0);
        }
        if n > self.peak_at + 1 {
            self.worst = self.worst.min(self.low / self.peak - 1.0);
            self.longest = self.longest.max(n - 1 - self.peak_at);
        }
        if self.last < self.peak {
            self.longest = self.longest.max(n - self.peak_at);
        }
        (self.worst, self.longest)
    }
}

/// Return moments and drawdown in one sequential pass over the chunks: the same parts and chunks, merged in the
/// same order, as [`return_moments`] and [`drawdown`], so the same bits.
fn one_pass<C: Curve + ?Sized>(equity: &C, init_cash: f64) -> (Moments, (f64, usize)) {
    let n = equity.len();
    let mut total = Moments::default();
    let mut dd = Drawdown::default();
    let mut prev = init_cash;
    let mut start = 0;
    while start < n {
        let end = (start + PART).min(n);
        let (part, last) = part_moments_with(equity, start..end, prev, |c0, vals| dd.feed(c0, vals));
        total = total.merge(part);
        prev = last;
        start = end;
    }
    (total, dd.finish(n))
}

/// Mean, sum of squared deviations and sum of squared negative parts of the per-bar returns, without
/// materialising the returns: parts of the curve in parallel, within a part chunks of returns computed into a
/// stack buffer (the division vectorises), each chunk's moments in eight lanes, all merged with Chan's formula.
/// Only Sharpe and Sortino read these, and those match the reference to about 1e-15, not to the bit.
fn return_moments<C: Curve + ?Sized>(equity: &C, init_cash: f64) -> Moments {
    let n = equity.len();
    let parts: Vec<Moments> = (0..n.div_ceil(PART))
        .into_par_iter()
        .map(|i| {
            let mut one = [0.0f64; 1];
            let prev = if i == 0 { init_cash } else { equity.chunk(i * PART - 1..i * PART, &mut one)[0] };
            part_moments_with(equity, i * PART..((i + 1) * PART).min(n), prev, |_, _| {}).0
        })
        .collect();
    parts.into_iter().fold(Moments::default(), Moments::merge)
}

/// Count, mean, sum of squared deviations and sum of squared negative parts of some returns.
#[derive(Debug, Clone, Copy, Default)]
struct Moments {
    count: f64,
    mean: f64,
    m2: f64,
    down: f64,
}

impl Moments {
    /// Chan et al.'s pairwise update: the moments of the union of two sets.
    fn merge(self, o: Moments) -> Moments {
        let total = self.count + o.count;
        if total == 0.0 {
            return self;
        }
        let delta = o.mean - self.mean;
        Moments {
            count: total,
            mean: self.mean + delta * o.count / total,
            m2: self.m2 + o.m2 + delta * delta * self.count * o.count / total,
            down: self.down + o.down,
        }
    }
}

/// Moments of the returns of bars `part` of `equity`, whose previous value is `prev`, and the part's last value;
/// each chunk of values is also handed to `also(first_bar, values)`.
fn part_moments_with<C: Curve + ?Sized>(
    equity: &C,
    part: std::ops::Range<usize>,
    prev: f64,
    mut also: impl FnMut(usize, &[f64]),
) -> (Moments, f64) {
    let mut acc = Moments::default();
    let mut vals = [0.0f64; CHUNK];
    let mut buf = [0.0f64; CHUNK];
    let mut prev = prev;
    let mut start = part.start;
    while start < part.end {
        let end = (start + CHUNK).min(part.end);
        let e = equity.chunk(start..end, &mut vals);
        also(start, e);
        let r = &mut buf[..end - start];
        r[0] = (e[0] - prev) / prev;
        for ((o, x), p) in r[1..].iter_mut().zip(&e[1..]).zip(e) {
            *o = (x - p) / p;
        }
        prev = e[e.len() - 1];
        let k = r.len() as f64;
        let mean = lanes(r, |x| x) / k;
        let chunk = Moments {
            count: k,
            mean,
            m2: lanes(r, |x| (x - mean) * (x - mean)),
            down: lanes(r, |x| x.min(0.0) * x.min(0.0)),
        };
        acc = acc.merge(chunk);
        start = end;
    }
    (acc, prev)
}

/// Sum of `f(x)` in eight independent lanes (the compiler vectorises it; the order differs from a plain sum).
#[inline]
fn lanes(xs: &[f64], f: impl Fn(f64) -> f64) -> f64 {
    let mut acc = [0.0f64; 8];
    let chunks = xs.chunks_exact(8);
    let rest: f64 = chunks.remainder().iter().map(|r| f(*r)).sum();
    for c in chunks {
        for (a, r) in acc.iter_mut().zip(c) {
            *a += f(*r);
        }
    }
    acc.iter().sum::<f64>() + rest
}

/// Per-bar returns of an equity curve (`E[-1] = init_cash`), the series validation statistics work on.
pub fn returns(equity: &[f64], init_cash: f64) -> Vec<f64> {
    let Some(&first) = equity.first() else { return Vec::new() };
    let mut out = Vec::with_capacity(equity.len());
    out.push((first - init_cash) / init_cash);
    out.extend(equity[1..].iter().zip(equity).map(|(e, prev)| (e - prev) / prev));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backtest::simulator::ExitReason;

    fn trade(entry: usize, exit: Option<usize>, pnl: f64) -> Trade {
        Trade {
            entry_bar: entry,
            entry_price: 1.0,
            size: 1.0,
            entry_fee: 0.0,
            cost: 1.0,
            exit_bar: exit,
            exit_price: 1.0,
            exit_fee: 0.0,
            pnl,
            exit: if exit.is_some() { ExitReason::Signal } else { ExitReason::Open },
        }
    }

    #[test]
    fn by_hand() {
        // equity 100 -> 110 -> 99 -> 121 (start 100): returns 0, 0.1, -0.1, 0.2222..
        let e = [100.0, 110.0, 99.0, 121.0];
        let trades = [trade(0, Some(2), 10.0), trade(2, Some(3), -5.0), trade(3, None, 1.0)];
        let m = compute(&e, 100.0, &trades, 4.0);
        let r = [0.0, 0.1, -0.1, 22.0 / 99.0];
        let mean = r.iter().sum::<f64>() / 4.0;
        let sd = (r.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 3.0).sqrt();
        assert!((m.sharpe.unwrap() - mean / sd * 2.0).abs() < 1e-12);
        assert!((m.sortino.unwrap() - mean / (0.01f64 / 4.0).sqrt() * 2.0).abs() < 1e-12);
        assert!((m.total_return_pct - 21.0).abs() < 1e-12);
        assert!((m.cagr_pct - 21.0).abs() < 1e-9, "one year of 4 bars: {}", m.cagr_pct);
        assert!((m.max_drawdown_pct - 10.0).abs() < 1e-12);
        assert_eq!(m.max_drawdown_bars, 1);
        assert!((m.calmar.unwrap() - 2.1).abs() < 1e-9);
        assert_eq!((m.trades, m.closed_trades, m.open_trades), (3, 2, 1));
        assert_eq!(
            (m.win_rate_pct, m.profit_factor, m.avg_win, m.avg_loss),
            (Some(50.0), Some(2.0), Some(10.0), Some(-5.0))
        );
        // held closes: 2 + 1 + (4 - 3) = 4 of 4
        assert_eq!(m.exposure_pct, 100.0);
        assert_eq!(m.avg_holding_bars, Some(1.5));
    }

    #[test]
    fn undefined_ratios_are_none_and_an_unrecovered_drawdown_lasts_to_the_end() {
        let m = compute(&[100.0, 100.0, 100.0], 100.0, &[], 8760.0);
        assert_eq!((m.sharpe, m.sortino, m.calmar, m.win_rate_pct, m.profit_factor), (None, None, None, None, None));
        let m = compute(&[100.0, 120.0, 90.0, 100.0, 110.0], 100.0, &[], 8760.0);
        assert_eq!(m.max_drawdown_bars, 4, "peak at bar 1, never recovered");
        assert!((m.max_drawdown_pct - 25.0).abs() < 1e-12);
    }

    #[test]
    fn returns_start_from_initial_cash() {
        assert_eq!(returns(&[100.0, 110.0], 100.0), vec![0.0, 0.1]);
    }
}
