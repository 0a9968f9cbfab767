//! The quick-filter gate (optional per strategy): before a strategy may open positions, its backtest over the
//! recent window, with the same code and fill model, must clear configured bars. A strategy that stopped working
//! recently is kept from new entries (it may still exit) until it recovers.

use serde::{Deserialize, Serialize};

use crate::backtest::config::SimConfig;
use crate::backtest::{event, metrics};
use crate::domain::{Candle, Symbol};
use crate::strategy::Strategy;

/// Gate thresholds, as configured under `[strategy.gate]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuickFilter {
    /// Off by default: a gate needs `window_bars` of history per symbol every cycle.
    pub enabled: bool,
    /// Bars of recent history backtested.
    pub window_bars: usize,
    /// Minimum total return over the window, in %.
    pub min_return_pct: f64,
    /// Minimum share of winning closed trades, in %.
    pub min_win_rate_pct: f64,
    /// Minimum gross profit / gross loss.
    pub min_profit_factor: f64,
    /// Minimum annualised Sharpe ratio.
    pub min_sharpe: f64,
    /// Maximum drawdown over the window, in %.
    pub max_drawdown_pct: f64,
}

impl Default for QuickFilter {
    fn default() -> Self {
        Self {
            enabled: false,
            window_bars: 500,
            min_return_pct: 3.0,
            min_win_rate_pct: 35.0,
            min_profit_factor: 1.3,
            min_sharpe: 0.8,
            max_drawdown_pct: 20.0,
        }
    }
}

impl QuickFilter {
    /// Backtests `strategy` on `candles` (the window) and returns why it fails the gate, if it does. A window
    /// without closed trades fails: no evidence is not good evidence.
    pub fn check(
        &self,
        strategy: &dyn Strategy,
        symbol: &Symbol,
        candles: &[Candle],
        bars_per_year: f64,
    ) -> Option<String> {
        let window = &candles[candles.len().saturating_sub(self.window_bars)..];
        let sim = match event::replay(strategy, symbol, window, &SimConfig::default(), Some(strategy.warmup())) {
            Ok(s) => s,
            Err(e) => return Some(format!("gate backtest failed: {e}")),
        };
        let m = metrics::compute(&sim.equity, sim.init_cash, &sim.trades, bars_per_year);
        let mut fails = Vec::new();
        if m.total_return_pct < self.min_return_pct {
            fails.push(format!("return {:.2}% < {}%", m.total_return_pct, self.min_return_pct));
        }
        match m.win_rate_pct {
            Some(w) if w >= self.min_win_rate_pct => {}
            w => fails.push(format!("win rate {} < {}%", show(w), self.min_win_rate_pct)),
        }
        match m.profit_factor {
            Some(p) if p >= self.min_profit_factor => {}
            p => fails.push(format!("profit factor {} < {}", show(p), self.min_profit_factor)),
        }
        match m.sharpe {
            Some(s) if s >= self.min_sharpe => {}
            s => fails.push(format!("sharpe {} < {}", show(s), self.min_sharpe)),
        }
        if m.max_drawdown_pct > self.max_drawdown_pct {
            fails.push(format!("drawdown {:.2}% > {}%", m.max_drawdown_pct, self.max_drawdown_pct));
        }
        (!fails.is_empty())
            .then(|| format!("quick-filter gate over {} bars failed: {}", window.len(), fails.join(", ")))
    }
}

fn show(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_owned(), |x| format!("{x:.2}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backtest::synthetic::{SeriesSpec, candles};
    use crate::strategy::{SmaCross, SmaCrossParams};

    #[test]
    fn noise_fails_and_a_lenient_gate_passes() {
        let strategy = SmaCross::new(SmaCrossParams { fast: 5, slow: 20 });
        let series = candles(&SeriesSpec::default());
        let s = Symbol::new("BTCUSDT").unwrap();
        let strict = QuickFilter { enabled: true, min_return_pct: 1e9, ..Default::default() };
        let why = strict.check(&strategy, &s, &series, 8760.0).unwrap();
        assert!(why.contains("return") && why.contains("quick-filter"), "{why}");
        let lenient = QuickFilter {
            enabled: true,
            min_return_pct: -100.0,
            min_win_rate_pct: 0.0,
            min_profit_factor: 0.0,
            min_sharpe: -1e9,
            max_drawdown_pct: 100.0,
            ..Default::default()
        };
        assert_eq!(lenient.check(&strategy, &s, &series, 8760.0), None);
    }
}
