//! Backtest speed on the reference's seeded 1M-bar series: one SMA 10/30 backtest (signals + simulation +
//! metrics, as the reference times itself) and the 90-combination sweep (fast 5..50:5 x slow 20..200:20).
//!
//! Targets: under 10 ms and under 1 s. Anchors measured on the same 2-vCPU machine class: vectorbt 1.2 (numba)
//! 190 ms and 15.5 s. The bench first checks parity with the reference result, then prints its own medians and
//! the speed-up over the anchors, then runs criterion.
//!
//! The series is generated once into the target directory with
//! `python3 ../shared/bench/reference_backtest.py --synthetic 1000000 --write-csv FILE`; without ../shared (or
//! python3 with numpy) the bench says so and exits.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Instant;

use criterion::Criterion;
use mcbot::commands::backtest::data;
use mcbot_stages::backtest::{self, SimConfig, sweep};
use mcbot_stages::domain::Timeframe;
use mcbot_stages::strategy::{SmaCross, SmaCrossParams};

const ANCHOR_SINGLE_S: f64 = 0.190;
const ANCHOR_SWEEP_S: f64 = 15.5;
const REFERENCE_FINAL_EQUITY: f64 = 2712.153958030671;
const REFERENCE_TRADES: usize = 15923;

fn shared_dir() -> PathBuf {
    std::env::var_os("MCBOT_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"))
}

fn series_path() -> Option<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let out = target.join("synthetic-1000000-seed12345-1m.csv");
    if out.is_file() {
        return Some(out);
    }
    let script = shared_dir().join("bench/reference_backtest.py");
    if !script.is_file() {
        eprintln!("skipping: {} not found (../shared absent; set MCBOT_SHARED_DIR)", script.display());
        return None;
    }
    let _ = std::fs::create_dir_all(&target);
    let tmp = out.with_extension("tmp");
    let ok = std::process::Command::new("python3")
        .arg(&script)
        .args(["--synthetic", "1000000", "--write-csv"])
        .arg(&tmp)
        .status()
        .is_ok_and(|s| s.success());
    if ok && std::fs::rename(&tmp, &out).is_ok() {
        Some(out)
    } else {
        eprintln!("skipping: could not generate the 1M-bar series (python3 with numpy needed)");
        None
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let Some(path) = series_path() else { return };
    let series = match data::load(&path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("skipping: {e}");
            return;
        }
    };
    let bars = series.bars;
    let tf: Timeframe = "1m".parse().unwrap_or_else(|_| unreachable!("1m is a timeframe"));
    let cfg = SimConfig::default();
    let rule = SmaCross::new(SmaCrossParams { fast: 10, slow: 30 });

    // parity first: a fast wrong answer is worth nothing
    let report = backtest::run(&bars, &rule, &cfg, tf.bars_per_year()).expect("valid reference backtest");
    let rel = (report.metrics.final_equity - REFERENCE_FINAL_EQUITY).abs() / REFERENCE_FINAL_EQUITY;
    assert_eq!(report.metrics.trades, REFERENCE_TRADES, "trade count differs from the reference");
    assert!(rel <= 1e-9, "final equity {} vs reference {REFERENCE_FINAL_EQUITY}", report.metrics.final_equity);
    println!(
        "parity: {} trades, final equity {} (rel diff {rel:e})",
        report.metrics.trades, report.metrics.final_equity
    );

    let ranges: Vec<sweep::ParamRange> =
        ["fast=5..50:5", "slow=20..200:20"].iter().map(|r| r.parse().expect("valid range")).collect();
    let grid = sweep::grid(&BTreeMap::new(), &ranges);
    let run_sweep = || sweep::sweep(&bars, "sma-cross", &grid, sweep::Shard::default(), &cfg, tf).expect("valid sweep");

    let single: Vec<f64> = (0..30)
        .map(|_| {
            let t = Instant::now();
            black_box(backtest::run(&bars, &rule, &cfg, tf.bars_per_year()).expect("runs"));
            t.elapsed().as_secs_f64()
        })
        .collect();
    let sweeps: Vec<f64> = (0..7)
        .map(|_| {
            let t = Instant::now();
            let r = black_box(run_sweep());
            assert_eq!(r.combos, 90);
            t.elapsed().as_secs_f64()
        })
        .collect();
    let (s, w) = (median(single), median(sweeps));
    println!(
        "single backtest, 1M bars: median {:.2} ms (target < 10 ms), {:.1}x faster than vectorbt's {:.0} ms",
        s * 1e3,
        ANCHOR_SINGLE_S / s,
        ANCHOR_SINGLE_S * 1e3
    );
    println!(
        "90-combination sweep, 1M bars, {} threads: median {:.0} ms (target < 1 s), {:.1}x faster than vectorbt's {:.1} s",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        w * 1e3,
        ANCHOR_SWEEP_S / w,
        ANCHOR_SWEEP_S
    );

    let mut c = Criterion::default().configure_from_args();
    c.bench_function("backtest_sma_cross_1m_bars", |b| {
        b.iter(|| backtest::run(black_box(&bars), &rule, &cfg, tf.bars_per_year()).expect("runs"))
    });
    let mut g = c.benchmark_group("sweep");
    g.sample_size(10);
    g.bench_function("sma_cross_90_combinations_1m_bars", |b| b.iter(run_sweep));
    g.finish();
    c.final_summary();
}
