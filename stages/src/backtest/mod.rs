//! Backtesting: the fast vectorised engine, the event-driven replay of a strategy, the multi-symbol shared-cash
//! portfolio, metrics, parameter sweeps and validation against overfitting.
//!
//! Floats are used here on purpose: a backtest is a statistics engine over millions of bars, and the reference it
//! must match to the bit (REFERENCE_SPEC.md) is defined in f64. Prices enter as f64 columns converted once at the
//! edge ([`crate::strategy::Ohlcv`]), and the live path keeps exact `Decimal` money.
//!
//! - [`simulator`]: the fill engine (one state machine for both paths) and [`simulate`], the kernel;
//! - [`event`]: [`replay`], a `&dyn Strategy` bar by bar (the quick-filter gate and the pipeline replay use it);
//! - [`portfolio`]: several symbols sharing one cash balance;
//! - [`metrics`]: return, CAGR, Sharpe, Sortino, Calmar, drawdown, trade statistics;
//! - [`sweep`]: parameter grids in parallel, shardable across machines;
//! - [`validation`]: IS/OOS, walk-forward, CPCV, PBO, deflated Sharpe, verdicts.

pub mod buffers;
pub mod config;
pub mod event;
pub mod metrics;
pub mod portfolio;
pub mod scan;
pub mod simulator;
pub mod sweep;
pub mod synthetic;
pub mod validation;

use std::time::Instant;

pub use config::{Fill, SimConfig, TrailingAtr};
pub use event::replay;
pub use metrics::Metrics;
pub use portfolio::{PortfolioRun, simulate_portfolio};
pub use simulator::{ExitReason, Simulation, Trade, simulate};

use crate::domain::{Candle, Symbol};
use crate::strategy::{Ohlcv, SignalRule, Strategy};

/// Why a backtest could not run. All are the caller's input (exit code 2 at the CLI), except none: a backtest
/// of valid input always completes.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BacktestError {
    /// A fill/cost setting is out of range.
    #[error("invalid backtest setting: {0}")]
    Config(String),
    /// No bars to run on.
    #[error("no bars to backtest")]
    NoData,
    /// Signals do not cover the bars.
    #[error("signals cover {signals} bars but there are {bars}")]
    Length {
        /// Bars in the data.
        bars: usize,
        /// Bars covered by the signals.
        signals: usize,
    },
    /// A sweep or validation setting is unusable.
    #[error("{0}")]
    Grid(String),
}

/// One finished single-asset backtest: metrics, trades and equity, plus the time it took.
#[derive(Debug, Clone)]
pub struct Report {
    /// The statistics.
    pub metrics: Metrics,
    /// Trades and equity curve.
    pub simulation: Simulation,
    /// Wall time of signals + simulation + metrics (file reading excluded), as the reference times itself.
    pub seconds: f64,
}

/// Runs `rule` over `bars` with the kernel and computes its metrics: the library call behind `mcbot backtest`
/// for one symbol.
pub fn run(bars: &Ohlcv, rule: &dyn SignalRule, cfg: &SimConfig, bars_per_year: f64) -> Result<Report, BacktestError> {
    let started = Instant::now();
    let signals = rule.signals(bars);
    let simulation = simulate(bars, &signals, cfg)?;
    let metrics = metrics::compute(&simulation.equity, simulation.init_cash, &simulation.trades, bars_per_year);
    Ok(Report { metrics, simulation, seconds: started.elapsed().as_secs_f64() })
}

/// Backtests any `&dyn Strategy` bar by bar over one symbol's candles (the event-driven path, same fill model as
/// the kernel) and computes its metrics: what the Analysis stage's quick-filter gate calls on a recent window.
/// `history` caps the candles shown per call, as the live pipeline's fetch window does.
pub fn run_strategy(
    strategy: &dyn Strategy,
    symbol: &Symbol,
    candles: &[Candle],
    cfg: &SimConfig,
    bars_per_year: f64,
    history: Option<usize>,
) -> Result<Report, BacktestError> {
    let started = Instant::now();
    let simulation = replay(strategy, symbol, candles, cfg, history)?;
    let metrics = metrics::compute(&simulation.equity, simulation.init_cash, &simulation.trades, bars_per_year);
    Ok(Report { metrics, simulation, seconds: started.elapsed().as_secs_f64() })
}

#[cfg(test)]
mod perf_probe {
    use super::*;
    use crate::backtest::synthetic::{SeriesSpec, ohlcv};
    use crate::strategy::{Signals, SmaCross, SmaCrossParams};

    #[test]
    #[ignore]
    fn probe() {
        let bars = ohlcv(&SeriesSpec { bars: 1_000_000, seed: 1, vol: 0.001, ..Default::default() });
        let cfg = SimConfig::default();
        let rule = SmaCross::new(SmaCrossParams { fast: 10, slow: 30 });
        fn sma_reg(x: &[f64], w: usize, out: &mut [f64]) {
            const L: usize = 8;
            let n = x.len();
            let defined = n - w + 1;
            let wf = w as f64;
            let mut j = 0;
            while j + L <= defined {
                let mut a: [f64; L] = x[j..j + L].try_into().unwrap();
                for k in 1..w {
                    let s: &[f64; L] = x[j + k..j + k + L].try_into().unwrap();
                    for l in 0..L {
                        a[l] += s[l];
                    }
                }
                for l in 0..L {
                    out[w - 1 + j + l] = a[l] / wf;
                }
                j += L;
            }
            for j in j..defined {
                out[w - 1 + j] = x[j..j + w].iter().sum::<f64>() / wf;
            }
        }
        let mut buf = vec![0.0; bars.len()];
        let mut buf2 = vec![0.0; bars.len()];
        for _ in 0..5 {
            let t = Instant::now();
            for (o, c) in buf.iter_mut().zip(&bars.close) {
                *o = 2.0 * c;
            }
            let a = t.elapsed();
            let s: f64 = buf2.iter().zip(&buf).map(|(a, b)| a * b).fold(0.0, |x, y| x.max(y));
            eprintln!("read 8MB + write 8MB: {a:?}; read 16MB: {:?} {s}", t.elapsed() - a);
        }
        for _ in 0..3 {
            let t = Instant::now();
            sma_reg(&bars.close, 30, &mut buf2);
            crate::indicators::sma_into(&bars.close, 30, &mut buf);
            eprintln!("reg {:?} same {}", t.elapsed(), buf[29..] == buf2[29..]);
        }
        for _ in 0..3 {
            let t = Instant::now();
            crate::indicators::sma_into(&bars.close, 30, &mut buf);
            let a = t.elapsed();
            let v = vec![1.0f64; bars.len()];
            let b = t.elapsed();
            let sum: f64 = v.iter().sum();
            let c = t.elapsed();
            eprintln!("sma30 into reused buffer {:?}, fresh 8MB fill {:?}, sum pass {:?} {sum}", a, b - a, c - b);
        }
        let mut times = vec![Vec::new(); 4];
        for _ in 0..30 {
            let t = Instant::now();
            let (e, x) = crate::indicators::sma_crossings(&bars.close, 10, 30);
            let t1 = t.elapsed();
            let sig = Signals { entries: e, exits: x, weights: None };
            let sim = simulate(&bars, &sig, &cfg).unwrap();
            let t2 = t.elapsed();
            let m = metrics::compute(&sim.equity, sim.init_cash, &sim.trades, 525600.0);
            let t3 = t.elapsed();
            std::hint::black_box(m);
            drop((sig, sim));
            let t4 = Instant::now();
            let r = run(&bars, &rule, &cfg, 525600.0).unwrap();
            let t5 = t4.elapsed();
            std::hint::black_box(r);
            for (i, d) in [t1, t2 - t1, t3 - t2, t5].into_iter().enumerate() {
                times[i].push(d.as_secs_f64() * 1e3);
            }
        }
        for (name, mut v) in ["cross", "sim", "metrics", "run"].into_iter().zip(times) {
            v.sort_by(f64::total_cmp);
            eprintln!("{name}: min {:.2} median {:.2} ms", v[0], v[v.len() / 2]);
        }
    }
}
