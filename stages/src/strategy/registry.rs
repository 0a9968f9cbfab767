//! Strategies by name: the one place that turns a configured or command-line `name` plus `key=value` parameters
//! into a strategy, so the pipeline, `mcbot backtest` and `mcbot validate` accept exactly the same spellings and
//! reject a typo with a message naming it (a misspelt parameter silently left at its default would backtest
//! something other than what the trader asked for).

use std::collections::BTreeMap;
use std::str::FromStr;

use super::{
    BollingerRsi, BollingerRsiParams, Columns, DonchianBreakout, DonchianParams, SignalRule, SmaCross, SmaCrossParams,
    Strategy, Tsmom, TsmomParams, VolBreakout, VolBreakoutParams,
};
use crate::domain::Timeframe;

/// Names [`build`] knows, with the parameters each accepts (shown in error messages and `--help`).
pub const STRATEGIES: &[(&str, &[&str])] = &[
    ("sma-cross", &["fast", "slow"]),
    ("donchian", &["entry", "exit"]),
    ("vol-breakout", &["k"]),
    ("bollinger-rsi", &["period", "k", "rsi_period", "oversold", "overbought"]),
    ("tsmom", &["lookback", "threshold", "target_vol", "vol_lookback"]),
];

/// Why a strategy could not be built; each variant names the offending strategy or parameter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// No strategy has this name.
    #[error("unknown strategy {name:?}; known: {known}")]
    UnknownStrategy {
        /// The name asked for.
        name: String,
        /// The known names, comma-separated.
        known: String,
    },
    /// The strategy has no such parameter.
    #[error("strategy {strategy}: unknown parameter {param:?}; known: {known}")]
    UnknownParam {
        /// The strategy.
        strategy: String,
        /// The parameter asked for.
        param: String,
        /// The parameters it accepts, comma-separated.
        known: String,
    },
    /// The parameter exists but its value does not parse or is out of range.
    #[error("strategy {strategy}: parameter {param}={value:?}: {reason}")]
    InvalidParam {
        /// The strategy.
        strategy: String,
        /// The parameter.
        param: String,
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// The price columns strategy `name`'s signals read besides time and close (all of them for an unknown name,
/// whose error comes from [`build_rule`]); a loader reads just these.
pub fn columns(name: &str) -> Columns {
    match name {
        "sma-cross" | "bollinger-rsi" | "tsmom" => Columns::CLOSE,
        "donchian" => Columns { range: true, ..Columns::CLOSE },
        "vol-breakout" => Columns { open: true, range: true, ..Columns::CLOSE },
        _ => Columns::ALL,
    }
}

/// Builds a strategy for the pipeline's Analysis stage (or anything that only needs `targets`).
pub fn build(name: &str, params: &BTreeMap<String, String>, tf: Timeframe) -> Result<Box<dyn Strategy>, RegistryError> {
    build_rule(name, params, tf).map(|r| r as Box<dyn Strategy>)
}

/// Builds a strategy with its vectorised face, for the fast backtest kernel and sweeps. Every strategy here has
/// one.
pub fn build_rule(
    name: &str,
    params: &BTreeMap<String, String>,
    tf: Timeframe,
) -> Result<Box<dyn SignalRule>, RegistryError> {
    let Some((canonical, known)) = STRATEGIES.iter().find(|(n, _)| *n == name) else {
        let known = STRATEGIES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ");
        return Err(RegistryError::UnknownStrategy { name: name.to_owned(), known });
    };
    if let Some(param) = params.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(RegistryError::UnknownParam {
            strategy: (*canonical).to_owned(),
            param: param.clone(),
            known: known.join(", "),
        });
    }
    let p = Params { strategy: canonical, map: params };
    Ok(match *canonical {
        "sma-cross" => {
            let d = SmaCrossParams::default();
            let (fast, slow) = (p.positive("fast", d.fast)?, p.positive("slow", d.slow)?);
            if fast >= slow {
                return Err(p.invalid("fast", &fast.to_string(), format!("must be less than slow ({slow})")));
            }
            Box::new(SmaCross::new(SmaCrossParams { fast, slow }))
        }
        "donchian" => {
            let d = DonchianParams::default();
            Box::new(DonchianBreakout::new(DonchianParams {
                entry: p.positive("entry", d.entry)?,
                exit: p.positive("exit", d.exit)?,
            }))
        }
        "vol-breakout" => {
            let k = p.non_negative("k", VolBreakoutParams::default().k)?;
            Box::new(VolBreakout::new(VolBreakoutParams { k }))
        }
        "bollinger-rsi" => {
            let d = BollingerRsiParams::default();
            Box::new(BollingerRsi::new(BollingerRsiParams {
                period: p.positive("period", d.period)?,
                k: p.non_negative("k", d.k)?,
                rsi_period: p.positive("rsi_period", d.rsi_period)?,
                oversold: p.non_negative("oversold", d.oversold)?,
                overbought: p.non_negative("overbought", d.overbought)?,
            }))
        }
        _ => {
            let d = TsmomParams::default();
            let target_vol = match p.map.get("target_vol").map(String::as_str) {
                None | Some("none") => d.target_vol,
                Some(_) => Some(p.positive_f64("target_vol")?),
            };
            let params = TsmomParams {
                lookback: p.positive("lookback", d.lookback)?,
                threshold: p.parse("threshold", d.threshold)?,
                target_vol,
                vol_lookback: p.parse("vol_lookback", d.vol_lookback)?,
            };
            if params.target_vol.is_some() && params.vol_lookback < 2 {
                let v = params.vol_lookback.to_string();
                return Err(p.invalid("vol_lookback", &v, "must be at least 2 with target_vol".into()));
            }
            Box::new(Tsmom::new(params, tf.bars_per_year()))
        }
    })
}

/// Typed access to one strategy's raw parameters.
struct Params<'a> {
    strategy: &'a str,
    map: &'a BTreeMap<String, String>,
}

impl Params<'_> {
    fn invalid(&self, param: &str, value: &str, reason: String) -> RegistryError {
        RegistryError::InvalidParam {
            strategy: self.strategy.to_owned(),
            param: param.to_owned(),
            value: value.to_owned(),
            reason,
        }
    }

    fn parse<T: FromStr>(&self, key: &str, default: T) -> Result<T, RegistryError>
    where
        T::Err: std::fmt::Display,
    {
        match self.map.get(key) {
            None => Ok(default),
            Some(v) => v.trim().parse().map_err(|e: T::Err| self.invalid(key, v, e.to_string())),
        }
    }

    fn positive(&self, key: &str, default: usize) -> Result<usize, RegistryError> {
        let v = self.parse(key, default)?;
        if v == 0 { Err(self.invalid(key, "0", "must be at least 1".into())) } else { Ok(v) }
    }

    fn non_negative(&self, key: &str, default: f64) -> Result<f64, RegistryError> {
        let v: f64 = self.parse(key, default)?;
        if v.is_finite() && v >= 0.0 {
            Ok(v)
        } else {
            Err(self.invalid(key, &v.to_string(), "must be a finite number >= 0".into()))
        }
    }

    fn positive_f64(&self, key: &str) -> Result<f64, RegistryError> {
        let v = self.non_negative(key, 0.0)?;
        if v > 0.0 { Ok(v) } else { Err(self.invalid(key, "0", "must be > 0".into())) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn tf() -> Timeframe {
        "1h".parse().unwrap()
    }

    #[test]
    fn builds_every_listed_strategy_with_defaults() {
        for (name, _) in STRATEGIES {
            let s = build(name, &BTreeMap::new(), tf()).unwrap();
            assert_eq!(s.name(), *name);
        }
    }

    #[test]
    fn errors_name_the_culprit() {
        let e = build("sma-crossover", &BTreeMap::new(), tf()).err().unwrap();
        assert!(e.to_string().contains("\"sma-crossover\"") && e.to_string().contains("sma-cross"), "{e}");
        let e = build("sma-cross", &params(&[("fsat", "3")]), tf()).err().unwrap();
        assert!(matches!(&e, RegistryError::UnknownParam { param, .. } if param == "fsat"), "{e}");
        assert!(e.to_string().contains("fast, slow"), "{e}");
        let e = build("sma-cross", &params(&[("fast", "x")]), tf()).err().unwrap();
        assert!(e.to_string().contains("fast=\"x\""), "{e}");
        let e = build("sma-cross", &params(&[("fast", "30"), ("slow", "30")]), tf()).err().unwrap();
        assert!(e.to_string().contains("less than slow"), "{e}");
        assert!(build("donchian", &params(&[("entry", "0")]), tf()).is_err());
        assert!(build("vol-breakout", &params(&[("k", "-1")]), tf()).is_err());
        assert!(build("tsmom", &params(&[("target_vol", "0.4"), ("vol_lookback", "1")]), tf()).is_err());
    }

    #[test]
    fn parameters_reach_the_strategy() {
        let s = build("sma-cross", &params(&[("fast", "5"), ("slow", "50")]), tf()).unwrap();
        assert_eq!(s.warmup(), 51);
        let s = build("tsmom", &params(&[("lookback", "7"), ("target_vol", "none")]), tf()).unwrap();
        assert_eq!(s.warmup(), 8);
    }
}
