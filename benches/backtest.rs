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

/// In process against vectorbt, measured side by side in the same run.
const TARGET_VS_VECTORBT: f64 = 40.0;

/// vectorbt's time for the same backtest on the same series, measured now by the reference script (`--impl vbt`,
/// which compiles numba before it times): the median of seven runs; `None` when vectorbt is not installed.
fn vectorbt_now() -> Option<f64> {
    let script = shared_dir().join("bench/reference_backtest.py");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .args(["--synthetic", "1000000", "--impl", "vbt", "--repeat", "7"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let times: Vec<f64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["impl"].as_str().is_some_and(|i| i.starts_with("vbt")))
        .filter_map(|v| v["seconds"].as_f64())
        .collect();
    (out.status.success() && !times.is_empty()).then(|| median(times))
}

/// Whole-process targets: the `mcbot` binary run as a user runs it, on the series stored as typed Parquet.
const TARGET_PROCESS_S: f64 = 0.060;
const TARGET_ONE_SHOT_RATIO: f64 = 1.5;
const TARGET_SWEEP_S: f64 = 0.250;
const TARGET_PROCESS_SWEEP_S: f64 = 0.300;
const TARGET_SINGLE_RSS_MB: f64 = 60.0;
const TARGET_SWEEP_RSS_MB: f64 = 150.0;

/// The 1M-bar series in the typed (DECIMAL) Parquet candle store, imported once beside the CSV.
fn typed_series(csv: &Path) -> Option<PathBuf> {
    use mcbot::market_data::{CandleStore, import_csv};
    let dir = csv.parent()?.join("typed-candles");
    let store = CandleStore::new(&dir);
    let symbol = mcbot_stages::domain::Symbol::new("SYN_USD").ok()?;
    let tf: Timeframe = "1m".parse().ok()?;
    let path = store.path("csv", &symbol, tf).ok()?;
    if !path.is_file()
        && let Err(e) = import_csv(&store, "csv", csv, &symbol, tf)
    {
        eprintln!("skipping the one-shot figures: import failed: {e}");
        return None;
    }
    Some(path)
}

/// Runs `mcbot` with `args` (plus `--output json`) `n` times: wall seconds of each, and the last JSON document.
fn process_runs(args: &[&str], n: usize) -> (Vec<f64>, serde_json::Value) {
    let mut walls = Vec::with_capacity(n);
    let mut last = serde_json::Value::Null;
    for _ in 0..n {
        let t = Instant::now();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_mcbot"))
            .args(["--output", "json", "backtest"])
            .args(args)
            .output()
            .expect("mcbot runs");
        walls.push(t.elapsed().as_secs_f64());
        assert!(out.status.success(), "mcbot failed: {}", String::from_utf8_lossy(&out.stderr));
        last = serde_json::from_slice(&out.stdout).expect("one JSON document");
    }
    (walls, last)
}

/// Peak resident set of `mcbot` runs in MB, from GNU time (`/usr/bin/time -f %M`), when installed: the median
/// of five, as one run's peak varies by a few MB with where the threads' transient buffers happen to overlap.
fn peak_rss_mb(args: &[&str]) -> Option<f64> {
    let mut peaks = Vec::new();
    for _ in 0..5 {
        let out = std::process::Command::new("/usr/bin/time")
            .args(["-f", "%M", env!("CARGO_BIN_EXE_mcbot"), "--output", "json", "backtest"])
            .args(args)
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stderr);
        peaks.push(text.lines().last()?.trim().parse::<f64>().ok()? / 1024.0);
    }
    Some(median(peaks))
}

fn ratio_line(what: &str, got: f64, target: f64, unit: &str) {
    let verdict = if got <= target { "meets" } else { "MISSES" };
    println!("{what}: {got:.1} {unit} (target < {target:.0} {unit}; {:.2}x the target, {verdict})", got / target);
}

/// The one-shot figures: the whole process on typed Parquet (median of 10, as hyperfine reports), the kernel's
/// own time inside it against the warm median `warm_s`, the sweep in process (`sweep_s`) and as a process, and
/// the peak memory of both.
fn one_shot(csv: &Path, warm_s: f64, sweep_s: f64) {
    let Some(pq) = typed_series(csv) else { return };
    let pq = pq.to_string_lossy().into_owned();
    let single = ["--data", &pq, "--strategy", "sma-cross", "--param", "fast=10", "--param", "slow=30"];
    let sweep = ["--data", &pq, "--strategy", "sma-cross", "--sweep", "fast=5..50:5", "--sweep", "slow=20..200:20"];
    let (walls, doc) = process_runs(&single, 10);
    assert_eq!(doc["trades"].as_u64(), Some(REFERENCE_TRADES as u64), "the process gives the reference trades");
    ratio_line(
        "whole process, 1M bars from typed Parquet, median of 10",
        median(walls) * 1e3,
        TARGET_PROCESS_S * 1e3,
        "ms",
    );
    let docs: Vec<serde_json::Value> = (0..5).map(|_| process_runs(&single, 1).1).collect();
    let kernel = median(docs.iter().filter_map(|d| d["seconds"].as_f64()).collect());
    println!(
        "one-shot backtest's own time: median {:.2} ms = {:.2}x the warm {:.2} ms (target < {TARGET_ONE_SHOT_RATIO}x); timings {}",
        kernel * 1e3,
        kernel / warm_s,
        warm_s * 1e3,
        docs.last().map(|d| d["timings"].to_string()).unwrap_or_default()
    );
    ratio_line("90-combination sweep in process, median", sweep_s * 1e3, TARGET_SWEEP_S * 1e3, "ms");
    let (walls, doc) = process_runs(&sweep, 5);
    assert_eq!(doc["combos"].as_u64(), Some(90));
    ratio_line(
        "90-combination sweep, whole process, median of 5",
        median(walls) * 1e3,
        TARGET_PROCESS_SWEEP_S * 1e3,
        "ms",
    );
    match (peak_rss_mb(&single), peak_rss_mb(&sweep)) {
        (Some(a), Some(b)) => {
            ratio_line("peak RSS, single backtest, median of 5", a, TARGET_SINGLE_RSS_MB, "MB");
            ratio_line("peak RSS, 90-combination sweep, median of 5", b, TARGET_SWEEP_RSS_MB, "MB");
        }
        _ => println!("peak RSS: /usr/bin/time (GNU time) not installed, not measured"),
    }
    let data = shared_dir().join("data");
    if data.is_dir() {
        let dir = data.to_string_lossy().into_owned();
        let many = ["--data", &dir, "--sweep", "fast=5..50:5", "--sweep", "slow=20..200:20"];
        let (walls, doc) = process_runs(&many, 3);
        println!(
            "{} files x 90 combinations, whole process: median {:.0} ms; in process {:.1} files/s (reading {:.0} ms)",
            doc["file_count"],
            median(walls) * 1e3,
            doc["files_per_second"].as_f64().unwrap_or(0.0),
            doc["timings"]["load"].as_f64().unwrap_or(0.0) * 1e3
        );
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
    match vectorbt_now() {
        Some(v) => {
            let ratio = v / s;
            let verdict = if ratio >= TARGET_VS_VECTORBT { "meets" } else { "MISSES" };
            println!(
                "side by side: vectorbt {:.0} ms (median of 7, measured now), mcbot {:.2} ms: {ratio:.1}x \
                 (target at least {TARGET_VS_VECTORBT:.0}x, {verdict})",
                v * 1e3,
                s * 1e3
            );
        }
        None => println!("side by side: vectorbt not installed (pip install vectorbt), not measured"),
    }
    println!(
        "90-combination sweep, 1M bars, {} threads: median {:.0} ms (target < 1 s), {:.1}x faster than vectorbt's {:.1} s",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        w * 1e3,
        ANCHOR_SWEEP_S / w,
        ANCHOR_SWEEP_S
    );

    one_shot(&path, s, w);

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
