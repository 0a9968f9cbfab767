//! How a backtest fills orders and what it costs: the reference spec's fill model plus the usual extras
//! (slippage, stop-loss, take-profit, ATR trailing stop), validated once before a run.

use serde::{Deserialize, Serialize};

use super::BacktestError;
use crate::strategy::Columns;

/// When a signal decided at the close of bar `t` is filled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fill {
    /// At the open of bar `t+1` (the reference model, and what the live pipeline does: it decides after the
    /// close and its market order fills in the next bar). A signal on the last bar is never filled.
    #[default]
    NextOpen,
    /// At the close of bar `t` itself: optimistic (the decision needs that close), offered for comparison.
    Close,
}

impl std::str::FromStr for Fill {
    type Err = BacktestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "next-open" => Ok(Self::NextOpen),
            "close" => Ok(Self::Close),
            other => Err(BacktestError::Config(format!("fill {other:?}: expected next-open or close"))),
        }
    }
}

/// A trailing stop `multiple` ATRs below the highest `close - multiple x ATR` seen since entry.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrailingAtr {
    /// ATR period (Wilder).
    pub period: usize,
    /// Distance of the stop below the close, in ATRs.
    pub multiple: f64,
}

/// Everything that decides fills and costs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimConfig {
    /// Starting cash (quote currency).
    pub init_cash: f64,
    /// Fee as a fraction of notional, paid from cash on each side.
    pub fee: f64,
    /// Adverse price move per fill as a fraction: buys fill at `P x (1 + s)`, sells at `P x (1 - s)`.
    pub slippage: f64,
    /// When signals fill.
    pub fill: Fill,
    /// Exit when the price falls this fraction below the entry fill (checked against each bar's low).
    pub stop_loss: Option<f64>,
    /// Exit when the price rises this fraction above the entry fill (checked against each bar's high).
    pub take_profit: Option<f64>,
    /// ATR trailing stop.
    pub trailing_atr: Option<TrailingAtr>,
}

impl Default for SimConfig {
    /// The reference spec: 10 000 cash, 0.1 % fee, no slippage, next-open fills, no stops.
    fn default() -> Self {
        Self {
            init_cash: 10_000.0,
            fee: 0.001,
            slippage: 0.0,
            fill: Fill::NextOpen,
            stop_loss: None,
            take_profit: None,
            trailing_atr: None,
        }
    }
}

impl SimConfig {
    /// Checks every number is usable, so a run never produces NaN equity from a bad flag.
    pub fn validate(&self) -> Result<(), BacktestError> {
        let bad = |what: &str, v: f64, rule: &str| Err(BacktestError::Config(format!("{what} {v}: {rule}")));
        if !(self.init_cash.is_finite() && self.init_cash > 0.0) {
            return bad("cash", self.init_cash, "must be a positive number");
        }
        if !(0.0..1.0).contains(&self.fee) {
            return bad("fee", self.fee, "must be in [0, 1)");
        }
        if !(0.0..1.0).contains(&self.slippage) {
            return bad("slippage", self.slippage, "must be in [0, 1)");
        }
        if let Some(s) = self.stop_loss.filter(|s| !(*s > 0.0 && *s < 1.0)) {
            return bad("stop-loss", s, "must be in (0, 1)");
        }
        if let Some(s) = self.take_profit.filter(|s| !(s.is_finite() && *s > 0.0)) {
            return bad("take-profit", s, "must be a positive number");
        }
        if let Some(t) = self.trailing_atr {
            if t.period == 0 {
                return bad("trailing ATR period", 0.0, "must be at least 1");
            }
            if !(t.multiple.is_finite() && t.multiple > 0.0) {
                return bad("trailing ATR multiple", t.multiple, "must be a positive number");
            }
        }
        Ok(())
    }

    /// True when any intrabar exit is configured (the kernel then checks each bar's range).
    pub fn has_stops(&self) -> bool {
        self.stop_loss.is_some() || self.take_profit.is_some() || self.trailing_atr.is_some()
    }

    /// The price columns the fills read besides close: opens for next-open fills and for stops (a gap through a
    /// stop fills at the open), highs and lows for stops.
    pub fn columns(&self) -> Columns {
        Columns { open: self.fill == Fill::NextOpen || self.has_stops(), range: self.has_stops(), volume: false }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_unusable_numbers() {
        assert!(SimConfig::default().validate().is_ok());
        for c in [
            SimConfig { init_cash: 0.0, ..Default::default() },
            SimConfig { init_cash: f64::NAN, ..Default::default() },
            SimConfig { fee: 1.0, ..Default::default() },
            SimConfig { slippage: -0.1, ..Default::default() },
            SimConfig { stop_loss: Some(1.5), ..Default::default() },
            SimConfig { take_profit: Some(0.0), ..Default::default() },
            SimConfig { trailing_atr: Some(TrailingAtr { period: 0, multiple: 2.0 }), ..Default::default() },
        ] {
            assert!(c.validate().is_err(), "{c:?}");
        }
        assert_eq!("close".parse::<Fill>().unwrap(), Fill::Close);
        assert!("open".parse::<Fill>().is_err());
    }
}
