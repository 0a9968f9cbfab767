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
pub use simulator::{CurveRun, ExitReason, Simulation, Trade, simulate, simulate_curve};

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
    /// The bars lack a column the fills read (they were loaded for another configuration).
    #[error("the bars were loaded without a column these fills read ({0:?})")]
    Columns(crate::strategy::Columns),
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
