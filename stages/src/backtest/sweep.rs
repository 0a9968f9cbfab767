//! Parameter sweeps: a grid of parameter combinations backtested in parallel over cores, and split into shards
//! so a large grid can run across machines (e.g. Kubernetes indexed jobs, one shard per completion index).
//!
//! Each combination runs exactly what `mcbot backtest` runs with those parameters (the kernel is fast enough
//! that nothing needs sharing between combinations), so a sweep row equals the single run exactly.

use std::collections::BTreeMap;
use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use super::BacktestError;
use super::config::SimConfig;
use super::metrics::Metrics;
use super::simulator::{Simulation, simulate, simulate_curve};
use crate::domain::Timeframe;
use crate::strategy::Ohlcv;
use crate::strategy::registry::{self, RegistryError};

/// One swept parameter and its values, e.g. `fast=5..50:5` (inclusive range with step), `k=0.5..2:0.25`, or
/// `fast=5,10,20` (a list).
#[derive(Debug, Clone, PartialEq)]
pub struct ParamRange {
    /// Parameter name, as the strategy spells it.
    pub name: String,
    /// Values as text, ready for the strategy registry.
    pub values: Vec<String>,
}

impl std::str::FromStr for ParamRange {
    type Err = BacktestError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| {
            BacktestError::Grid(format!("sweep {spec:?}: {why} (expected NAME=FROM..TO:STEP or NAME=A,B,C)"))
        };
        let (name, rest) = spec.split_once('=').ok_or_else(|| bad("no '='"))?;
        let name = name.trim();
        if name.is_empty() {
            return Err(bad("empty name"));
        }
        let values = if let Some((from, rest)) = rest.split_once("..") {
            let (to, step) = rest.split_once(':').ok_or_else(|| bad("no ':STEP'"))?;
            let ints = [from, to, step].iter().all(|s| s.trim().parse::<i64>().is_ok());
            let num = |s: &str| s.trim().parse::<f64>().map_err(|_| bad(&format!("{s:?} is not a number")));
            let (a, b, st) = (num(from)?, num(to)?, num(step)?);
            if !(st > 0.0 && a <= b && st.is_finite() && a.is_finite() && b.is_finite()) {
                return Err(bad("need FROM <= TO and STEP > 0"));
            }
            let count = ((b - a) / st + 1e-9).floor() as usize + 1;
            if count > 100_000 {
                return Err(bad("more than 100000 values"));
            }
            (0..count)
                .map(|i| {
                    let v = a + st * i as f64;
                    if ints { format!("{}", v.round() as i64) } else { format!("{}", (v * 1e9).round() / 1e9) }
                })
                .collect()
        } else {
            rest.split(',').map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()).collect::<Vec<_>>()
        };
        if values.is_empty() {
            return Err(bad("no values"));
        }
        Ok(Self { name: name.to_owned(), values })
    }
}

/// The cartesian product of the ranges over `base` parameters, first range outermost (a stable order, so
/// shard `i` of `n` is the same set on every machine).
pub fn grid(base: &BTreeMap<String, String>, ranges: &[ParamRange]) -> Vec<BTreeMap<String, String>> {
    let mut out = vec![base.clone()];
    for r in ranges {
        out = out
            .into_iter()
            .flat_map(|p| {
                r.values.iter().map(move |v| {
                    let mut q = p.clone();
                    q.insert(r.name.clone(), v.clone());
                    q
                })
            })
            .collect();
    }
    out
}

/// Shard `index` of `count` (0-based, as Kubernetes' `JOB_COMPLETION_INDEX`): takes every `count`-th
/// combination starting at `index`, which balances fast and slow combinations across shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Shard {
    /// This shard, `0..count`.
    pub index: usize,
    /// Number of shards.
    pub count: usize,
}

impl Default for Shard {
    fn default() -> Self {
        Self { index: 0, count: 1 }
    }
}

impl std::str::FromStr for Shard {
    type Err = BacktestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BacktestError::Grid(format!("shard {s:?}: expected I/N with 0 <= I < N"));
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Self { index, count })
    }
}

impl Shard {
    /// This shard's part of `items`, with each item's index in the full grid.
    pub fn select<T: Clone>(&self, items: &[T]) -> Vec<(usize, T)> {
        items.iter().cloned().enumerate().filter(|(i, _)| i % self.count == self.index).collect()
    }
}

/// One combination's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SweepRow {
    /// Position in the full grid (stable across shards, so shard outputs merge by it).
    pub index: usize,
    /// The parameters.
    pub params: BTreeMap<String, String>,
    /// Its statistics.
    pub metrics: Metrics,
}

/// A finished sweep (one shard of it).
#[derive(Debug, Clone, Serialize)]
pub struct SweepResult {
    /// Combinations in the full grid.
    pub grid_size: usize,
    /// Which shard this is.
    pub shard: Shard,
    /// Combinations run here.
    pub combos: usize,
    /// Combinations the strategy rejected (e.g. `fast >= slow`), with the reason of the first.
    pub skipped: usize,
    /// The first rejection, to tell a typo from an expected skip.
    pub first_skip_reason: Option<String>,
    /// Results in grid order.
    pub rows: Vec<SweepRow>,
    /// Wall time of signals + simulations + metrics.
    pub seconds: f64,
}

/// Runs `f` on the simulation of every combination in parallel; a combination the registry rejects gives its
/// error instead.
pub fn evaluate<R, F>(
    bars: &Ohlcv,
    strategy: &str,
    combos: &[BTreeMap<String, String>],
    cfg: &SimConfig,
    tf: Timeframe,
    f: F,
) -> Vec<Result<R, BacktestError>>
where
    R: Send,
    F: Fn(&Simulation) -> R + Sync,
{
    let rules: Vec<Result<_, RegistryError>> = combos.iter().map(|p| registry::build_rule(strategy, p, tf)).collect();
    rules
        .into_par_iter()
        .map(|rule| {
            let rule = rule.map_err(|e| BacktestError::Grid(e.to_string()))?;
            simulate(bars, &rule.signals(bars), cfg).map(|s| f(&s))
        })
        .collect()
}

/// Sweeps `combos` (this shard's part) and computes every combination's metrics.
pub fn sweep(
    bars: &Ohlcv,
    strategy: &str,
    combos: &[BTreeMap<String, String>],
    shard: Shard,
    cfg: &SimConfig,
    tf: Timeframe,
) -> Result<SweepResult, BacktestError> {
    if bars.is_empty() {
        return Err(BacktestError::NoData);
    }
    registry::build_rule(strategy, &BTreeMap::new(), tf).map_err(|e| BacktestError::Grid(e.to_string()))?;
    let started = Instant::now();
    let mine = shard.select(combos);
    let params: Vec<_> = mine.iter().map(|(_, p)| p.clone()).collect();
    let bpy = tf.bars_per_year();
    // each combination's curve is judged by its stretches, never stored: the sweep keeps metrics only
    let rules: Vec<Result<_, RegistryError>> = params.iter().map(|p| registry::build_rule(strategy, p, tf)).collect();
    let results: Vec<Result<Metrics, BacktestError>> = rules
        .into_par_iter()
        .map(|rule| {
            let rule = rule.map_err(|e| BacktestError::Grid(e.to_string()))?;
            simulate_curve(bars, &rule.signals(bars), cfg).map(|run| run.metrics(bpy))
        })
        .collect();
    let (mut rows, mut skipped, mut first_skip_reason) = (Vec::new(), 0, None);
    for ((index, params), r) in mine.into_iter().zip(results) {
        match r {
            Ok(metrics) => rows.push(SweepRow { index, params, metrics }),
            Err(BacktestError::Grid(why)) => {
                skipped += 1;
                first_skip_reason.get_or_insert(why);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(SweepResult {
        grid_size: combos.len(),
        shard,
        combos: rows.len(),
        skipped,
        first_skip_reason,
        rows,
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backtest::run;
    use crate::backtest::synthetic::{SeriesSpec, ohlcv};

    #[test]
    fn ranges_parse() {
        let r: ParamRange = "fast=5..50:5".parse().unwrap();
        assert_eq!(r.values, (1..=10).map(|i| (i * 5).to_string()).collect::<Vec<_>>());
        let r: ParamRange = "k=0.5..1.25:0.25".parse().unwrap();
        assert_eq!(r.values, vec!["0.5", "0.75", "1", "1.25"]);
        let r: ParamRange = "slow = 20, 40".parse().unwrap();
        assert_eq!((r.name.as_str(), r.values), ("slow", vec!["20".to_owned(), "40".to_owned()]));
        for bad in ["fast", "fast=5..50", "fast=50..5:5", "fast=5..50:0", "=1,2", "fast=a..b:1"] {
            assert!(bad.parse::<ParamRange>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_reference_grid_has_90_valid_combinations_and_shards_partition_it() {
        let ranges = ["fast=5..50:5".parse().unwrap(), "slow=20..200:20".parse().unwrap()];
        let g = grid(&BTreeMap::new(), &ranges);
        assert_eq!(g.len(), 100);
        assert_eq!((g[0]["fast"].as_str(), g[0]["slow"].as_str(), g[1]["slow"].as_str()), ("5", "20", "40"));
        let shards: Vec<Shard> = ["0/3", "1/3", "2/3"].iter().map(|s| s.parse().unwrap()).collect();
        let mut all: Vec<usize> = shards.iter().flat_map(|s| s.select(&g).into_iter().map(|(i, _)| i)).collect();
        all.sort_unstable();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        for bad in ["3/3", "1", "a/b", "0/0"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }

    #[test]
    fn sweep_rows_equal_single_runs_and_invalid_combos_are_skipped() {
        let bars = ohlcv(&SeriesSpec { bars: 3000, seed: 5, trend: 0.001, ..Default::default() });
        let tf: Timeframe = "1h".parse().unwrap();
        let ranges = ["fast=10..30:10".parse().unwrap(), "slow=20..40:20".parse().unwrap()];
        let g = grid(&BTreeMap::new(), &ranges);
        let cfg = SimConfig::default();
        let res = sweep(&bars, "sma-cross", &g, Shard::default(), &cfg, tf).unwrap();
        // (10,20) (10,40) (20,40) (30,40) valid; (20,20) (30,20) skipped
        assert_eq!((res.combos, res.skipped), (4, 2));
        assert!(res.first_skip_reason.unwrap().contains("less than slow"));
        for row in &res.rows {
            let rule = registry::build_rule("sma-cross", &row.params, tf).unwrap();
            let single = run(&bars, rule.as_ref(), &cfg, tf.bars_per_year()).unwrap();
            assert_eq!(row.metrics, single.metrics, "{:?}", row.params);
        }
        let other = sweep(
            &bars,
            "donchian",
            &grid(&BTreeMap::new(), &["entry=10,20".parse().unwrap()]),
            Shard::default(),
            &cfg,
            tf,
        )
        .unwrap();
        assert_eq!(other.combos, 2);
        assert!(sweep(&bars, "nope", &g, Shard::default(), &cfg, tf).is_err());
    }
}
