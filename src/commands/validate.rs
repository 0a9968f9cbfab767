//! `mcbot validate`: is the edge of a parameter grid real? Backtests every combination once (the sweep engine),
//! then runs IS/OOS, walk-forward and/or CPCV over their per-bar returns, with PBO and the deflated Sharpe
//! ratio, and prints a pass / caution / fail verdict per threshold (conventional defaults; each configurable).

use std::path::PathBuf;

use mcbot_stages::backtest::metrics;
use mcbot_stages::backtest::sweep::{self, ParamRange};
use mcbot_stages::backtest::validation::{self, Method, Report, Settings, Status, Thresholds, Trials};
use serde::Serialize;

use crate::commands::backtest::{CommandError, SimArgs, load_all};
use crate::output::{print_json, table};

/// `mcbot validate` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ValidateArgs {
    /// Candle file (.csv or .parquet).
    #[arg(long)]
    pub data: PathBuf,
    /// Strategy, fills and costs (the fixed parameters; swept ones come from --sweep).
    #[command(flatten)]
    pub sim: SimArgs,
    /// Parameter grid: NAME=FROM..TO:STEP or NAME=A,B,C (repeatable; at least two combinations).
    #[arg(long = "sweep", required = true)]
    pub sweep: Vec<String>,
    /// is-oos, wfa, cpcv or all.
    #[arg(long, default_value = "all", value_parser = ["is-oos", "wfa", "cpcv", "all"])]
    pub method: String,
    /// IS/OOS: in-sample fraction.
    #[arg(long, default_value_t = 0.7)]
    pub is_fraction: f64,
    /// WFA: out-of-sample windows.
    #[arg(long, default_value_t = 5)]
    pub folds: usize,
    /// WFA: in-sample window length in out-of-sample windows.
    #[arg(long, default_value_t = 4)]
    pub is_ratio: usize,
    /// CPCV: groups.
    #[arg(long, default_value_t = 6)]
    pub groups: usize,
    /// CPCV: test groups per split.
    #[arg(long, default_value_t = 2)]
    pub test_groups: usize,
    /// CPCV: bars purged on each side of a test group (default 1 % of the bars).
    #[arg(long)]
    pub purge: Option<usize>,
    /// CPCV: bars embargoed after a test group (default 1 % of the bars).
    #[arg(long)]
    pub embargo: Option<usize>,
    /// PBO: CSCV blocks (even, up to 20).
    #[arg(long, default_value_t = 16)]
    pub pbo_blocks: usize,
    /// Threshold: IS->OOS Sharpe degradation below this.
    #[arg(long, default_value_t = 0.30)]
    pub max_degradation: f64,
    /// Threshold: WFA stitched OOS Sharpe (and CPCV mean path Sharpe) above this.
    #[arg(long, default_value_t = 1.0)]
    pub min_oos_sharpe: f64,
    /// Threshold: share of WFA windows with a positive OOS return above this.
    #[arg(long, default_value_t = 0.70)]
    pub min_consistency: f64,
    /// Threshold: PBO below this.
    #[arg(long, default_value_t = 0.30)]
    pub max_pbo: f64,
    /// Threshold: deflated Sharpe (annualised, above the expected best-of-N luck) above this.
    #[arg(long, default_value_t = 1.0)]
    pub min_dsr: f64,
    /// A miss by less than this fraction of a threshold is "caution", not "fail".
    #[arg(long, default_value_t = 0.20)]
    pub caution_margin: f64,
}

/// What `mcbot validate` reports.
#[derive(Debug, Clone, Serialize)]
pub struct ValidateOutput {
    /// Input file.
    pub file: String,
    /// Strategy.
    pub strategy: String,
    /// Parameters of each trial, by trial index.
    pub trial_params: Vec<std::collections::BTreeMap<String, String>>,
    /// Combinations the strategy rejected (e.g. fast >= slow).
    pub skipped: usize,
    /// Thresholds applied.
    pub thresholds: Thresholds,
    /// The statistics and the verdict.
    #[serde(flatten)]
    pub report: Report,
}

/// Everything `mcbot validate` does except printing.
pub fn execute(args: &ValidateArgs) -> Result<ValidateOutput, CommandError> {
    let series = load_all(std::slice::from_ref(&args.data))?;
    let [one] = series.as_slice() else { return Err(CommandError::Usage("one --data file".into())) };
    let cfg = args.sim.sim_config()?;
    let tf = args.sim.timeframe(&series)?;
    let method: Method = args.method.parse()?;
    let ranges: Vec<ParamRange> = args.sweep.iter().map(|r| r.parse()).collect::<Result<_, _>>()?;
    let combos = sweep::grid(&args.sim.param_map(), &ranges);
    crate::commands::backtest::check_warmup(one, &args.sim.strategy, &combos, tf)?;
    let results =
        sweep::evaluate(&one.bars, &args.sim.strategy, &combos, &cfg, tf, |s| metrics::returns(&s.equity, s.init_cash));
    let (mut trial_params, mut returns, mut skipped, mut first_err) = (Vec::new(), Vec::new(), 0, None);
    for (p, r) in combos.into_iter().zip(results) {
        match r {
            Ok(r) => {
                trial_params.push(p);
                returns.push(r);
            }
            Err(e) => {
                skipped += 1;
                first_err.get_or_insert(e);
            }
        }
    }
    if returns.len() < 2 {
        let why = first_err.map_or_else(String::new, |e| format!(" ({e})"));
        return Err(CommandError::Usage(format!(
            "validation needs at least 2 valid combinations, got {}{why}",
            returns.len()
        )));
    }
    let trials = Trials::new(returns, tf.bars_per_year())?;
    let settings = Settings {
        is_fraction: args.is_fraction,
        wfa_folds: args.folds,
        wfa_is_ratio: args.is_ratio,
        cpcv_groups: args.groups,
        cpcv_test_groups: args.test_groups,
        purge: args.purge,
        embargo: args.embargo,
        pbo_blocks: args.pbo_blocks,
    };
    let thresholds = Thresholds {
        max_degradation: args.max_degradation,
        min_oos_sharpe: args.min_oos_sharpe,
        min_consistency: args.min_consistency,
        max_pbo: args.max_pbo,
        min_dsr: args.min_dsr,
        caution_margin: args.caution_margin,
    };
    let report = validation::validate(&trials, method, &settings, &thresholds)?;
    Ok(ValidateOutput {
        file: one.name.clone(),
        strategy: args.sim.strategy.clone(),
        trial_params,
        skipped,
        thresholds,
        report,
    })
}

fn params(p: &std::collections::BTreeMap<String, String>) -> String {
    p.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
}

/// Runs `mcbot validate` and prints the verdict: one JSON document when `json`, else tables. The exit code is
/// the verdict, so a script can gate on it: 0 for PASS or CAUTION, 1 for FAIL.
pub fn run(args: &ValidateArgs, json: bool) -> Result<u8, CommandError> {
    let out = execute(args)?;
    let code = u8::from(out.report.verdict.overall == Status::Fail);
    if json {
        print_json(&out).map_err(|message| CommandError::Output { path: "stdout".into(), message })?;
        return Ok(code);
    }
    let r = &out.report;
    println!("{}: {} over {} trials x {} bars ({} skipped)", out.file, out.strategy, r.trials, r.bars, out.skipped);
    let name = |i: usize| out.trial_params.get(i).map(params).unwrap_or_default();
    if let Some(s) = &r.is_oos {
        println!("IS/OOS: chose {} (IS Sharpe {:.2}, OOS {:.2})", name(s.chosen), s.is_sharpe, s.oos_sharpe);
    }
    if let Some(w) = &r.wfa {
        let chosen: Vec<String> = w.folds.iter().map(|f| name(f.chosen)).collect();
        println!(
            "WFA: {} windows, chose [{}], stitched OOS return {:.2} %",
            w.folds.len(),
            chosen.join("; "),
            w.oos_return * 100.0
        );
    }
    if let Some(c) = &r.cpcv {
        let paths: Vec<String> = c.path_sharpes.iter().map(|s| format!("{s:.2}")).collect();
        println!(
            "CPCV: {} splits, purge {} / embargo {} bars, path Sharpes [{}]",
            c.splits,
            c.purge,
            c.embargo,
            paths.join(", ")
        );
    }
    println!(
        "Deflated Sharpe {:.2} (probability of a real edge {:.3}): best {} Sharpe {:.2} minus {:.2} expected of the \
         best of {} by luck",
        r.dsr.deflated_sharpe,
        r.dsr.probability,
        name(r.dsr.chosen),
        r.dsr.sharpe,
        r.dsr.expected_max_sharpe,
        r.dsr.trials
    );
    let rows = r
        .verdict
        .rows
        .iter()
        .map(|v| vec![v.check.clone(), format!("{:.4}", v.value), v.threshold.clone(), v.status.to_string()]);
    println!("{}", table(&["check", "value", "threshold", "status"], rows));
    let overall = match r.verdict.overall {
        Status::Pass => "PASS",
        Status::Caution => "CAUTION",
        Status::Fail => "FAIL",
    };
    println!("verdict: {overall}");
    Ok(code)
}
