//! Writing results: trade lists, equity curves and sweep tables as CSV or Parquet (by file extension), through
//! polars so both formats come from one DataFrame. Sweep results can also be JSON.

use std::fs::File;
use std::path::Path;

use polars::prelude::*;

use super::{CommandError, SweepOutput, TradeRow};

fn out_err(path: &Path, e: impl std::fmt::Display) -> CommandError {
    CommandError::Output { path: path.display().to_string(), message: e.to_string() }
}

/// Writes `df` as .csv or .parquet according to `path`.
fn write(path: &Path, mut df: DataFrame) -> Result<(), CommandError> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    let file = || File::create(path).map_err(|e| out_err(path, e));
    match ext.as_str() {
        "csv" => CsvWriter::new(file()?).include_header(true).finish(&mut df).map_err(|e| out_err(path, e)),
        "parquet" | "pq" => ParquetWriter::new(file()?).finish(&mut df).map(|_| ()).map_err(|e| out_err(path, e)),
        other => Err(CommandError::Usage(format!(
            "{}: unsupported extension {other:?}: use .csv or .parquet",
            path.display()
        ))),
    }
}

fn col<T, P>(name: &str, values: Vec<T>) -> Column
where
    Series: NamedFrom<Vec<T>, P>,
    P: ?Sized,
{
    Series::new(name.into(), values).into()
}

/// The trade list, in the reference's columns
/// (`entry_time,entry_bar,entry_price,size,entry_fee,exit_time,exit_bar,exit_price,exit_fee,pnl,status`) plus
/// `exit_reason`, `cost` and `file`.
pub fn write_trades(path: &Path, trades: &[TradeRow]) -> Result<(), CommandError> {
    let t = |f: &dyn Fn(&TradeRow) -> f64| trades.iter().map(f).collect::<Vec<f64>>();
    let status: Vec<&str> = trades.iter().map(|r| if r.trade.is_closed() { "closed" } else { "open" }).collect();
    let reason: Vec<String> = trades
        .iter()
        .map(|r| {
            serde_json::to_value(r.trade.exit).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
        })
        .collect();
    let df = DataFrame::new(
        trades.len(),
        vec![
            col("entry_time", trades.iter().map(|r| r.entry_time.clone()).collect::<Vec<_>>()),
            col("entry_bar", trades.iter().map(|r| r.trade.entry_bar as u64).collect::<Vec<_>>()),
            col("entry_price", t(&|r| r.trade.entry_price)),
            col("size", t(&|r| r.trade.size)),
            col("entry_fee", t(&|r| r.trade.entry_fee)),
            col("exit_time", trades.iter().map(|r| r.exit_time.clone()).collect::<Vec<_>>()),
            col("exit_bar", trades.iter().map(|r| r.trade.exit_bar.map(|b| b as u64)).collect::<Vec<_>>()),
            col("exit_price", t(&|r| r.trade.exit_price)),
            col("exit_fee", t(&|r| r.trade.exit_fee)),
            col("pnl", t(&|r| r.trade.pnl)),
            col("status", status),
            col("exit_reason", reason),
            col("cost", t(&|r| r.trade.cost)),
            col("file", trades.iter().map(|r| r.file.clone()).collect::<Vec<_>>()),
        ],
    )
    .map_err(|e| out_err(path, e))?;
    write(path, df)
}

/// The equity curve with its drawdown: `time,equity,drawdown_pct`.
pub fn write_equity(path: &Path, time: &[i64], equity: &[f64], _init_cash: f64) -> Result<(), CommandError> {
    let mut peak = f64::NEG_INFINITY;
    let dd: Vec<f64> = equity
        .iter()
        .map(|e| {
            peak = peak.max(*e);
            (1.0 - e / peak) * 100.0
        })
        .collect();
    let times: Vec<String> = time.iter().map(|t| super::iso(*t)).collect();
    let df =
        DataFrame::new(equity.len(), vec![col("time", times), col("equity", equity.to_vec()), col("drawdown_pct", dd)])
            .map_err(|e| out_err(path, e))?;
    write(path, df)
}

/// The sweep table: one row per combination, its parameters as columns, then the metrics.
pub fn write_sweep(path: &Path, out: &SweepOutput) -> Result<(), CommandError> {
    if path.extension().and_then(|e| e.to_str()) == Some("json") {
        let text = serde_json::to_string_pretty(out).map_err(|e| out_err(path, e))?;
        return std::fs::write(path, text).map_err(|e| out_err(path, e));
    }
    let rows = &out.result.rows;
    let names: Vec<String> = rows.first().map(|r| r.params.keys().cloned().collect()).unwrap_or_default();
    let mut cols = vec![col("index", rows.iter().map(|r| r.index as u64).collect::<Vec<_>>())];
    for n in &names {
        cols.push(col(n, rows.iter().map(|r| r.params.get(n).cloned().unwrap_or_default()).collect::<Vec<_>>()));
    }
    let f = |name: &str, g: &dyn Fn(&mcbot_stages::backtest::Metrics) -> f64| {
        col(name, rows.iter().map(|r| g(&r.metrics)).collect::<Vec<_>>())
    };
    let o = |name: &str, g: &dyn Fn(&mcbot_stages::backtest::Metrics) -> Option<f64>| {
        col(name, rows.iter().map(|r| g(&r.metrics)).collect::<Vec<_>>())
    };
    cols.extend([
        col("trades", rows.iter().map(|r| r.metrics.trades as u64).collect::<Vec<_>>()),
        f("final_equity", &|m| m.final_equity),
        f("total_return_pct", &|m| m.total_return_pct),
        f("cagr_pct", &|m| m.cagr_pct),
        o("sharpe", &|m| m.sharpe),
        o("sortino", &|m| m.sortino),
        f("max_drawdown_pct", &|m| m.max_drawdown_pct),
        o("win_rate_pct", &|m| m.win_rate_pct),
        o("profit_factor", &|m| m.profit_factor),
        f("exposure_pct", &|m| m.exposure_pct),
    ]);
    let df = DataFrame::new(rows.len(), cols).map_err(|e| out_err(path, e))?;
    write(path, df)
}
