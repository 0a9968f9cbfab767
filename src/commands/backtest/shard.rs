//! Sweep shards on disk: `mcbot backtest --sweep ... --shard K/N --out DIR` writes one shard's rows to
//! `DIR/shard-K-of-N.json`, and `mcbot backtest merge DIR...` puts the N shards back together into exactly the
//! sweep an unsharded run reports (same rows, same order, same table). A cluster that already exists (a
//! Kubernetes indexed job, one pod per completion index) spreads a big grid without a scheduler written here.
//!
//! Each file names the sweep it belongs to (data file, bars, timeframe, strategy, parameters, ranges, fill and
//! cost settings); a merge refuses shards of different sweeps, a shard given twice and a missing shard, so a
//! half-finished cluster run never prints a table that looks complete.
//!
//! Metrics are stored as text written by Rust's shortest round-trip float formatting and read back with Rust's
//! exact parser, so a merged row carries the very bits its shard computed (a JSON number could come back one
//! unit in the last place off and reorder a tie).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mcbot_stages::backtest::Metrics;
use mcbot_stages::backtest::sweep::{Shard, SweepResult, SweepRow};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{CommandError, SweepOutput};

/// The format tag at the top of every shard file; a merge refuses other versions.
pub const FORMAT: &str = "mcbot-sweep-shard/1";

/// What makes two shards parts of one sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepIdentity {
    /// Input file name.
    pub file: String,
    /// Bars in it.
    pub bars: usize,
    /// Timeframe.
    pub timeframe: String,
    /// Strategy.
    pub strategy: String,
    /// Fixed `--param` values.
    pub params: BTreeMap<String, String>,
    /// The `--sweep` ranges as given.
    pub ranges: Vec<String>,
    /// Fill and cost settings, as JSON.
    pub config: Value,
    /// Combinations in the full grid.
    pub grid_size: usize,
}

/// One shard's results as written to `DIR/shard-K-of-N.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardFile {
    /// [`FORMAT`].
    pub format: String,
    /// The sweep this shard belongs to.
    pub sweep: SweepIdentity,
    /// This shard.
    pub shard: ShardId,
    /// Combinations of this shard the strategy rejected.
    pub skipped: usize,
    /// The first rejection in grid order: its grid index and reason.
    pub first_skip: Option<(usize, String)>,
    /// Compute time of this shard.
    pub seconds: f64,
    /// Results in grid order; metrics as exact text.
    pub rows: Vec<StoredRow>,
}

/// A shard's position, `index` of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardId {
    /// 0-based.
    pub index: usize,
    /// Number of shards.
    pub count: usize,
}

/// A sweep row with its metrics as text (see the module notes).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredRow {
    /// Position in the full grid.
    pub index: usize,
    /// The parameters.
    pub params: BTreeMap<String, String>,
    /// Metric name to its value as text (`null` when undefined).
    pub metrics: BTreeMap<String, Option<String>>,
}

fn bad(path: &Path, why: impl std::fmt::Display) -> CommandError {
    CommandError::Usage(format!("{}: {why}", path.display()))
}

fn metrics_to_text(m: &Metrics) -> Result<BTreeMap<String, Option<String>>, String> {
    let Value::Object(map) = serde_json::to_value(m).map_err(|e| e.to_string())? else {
        return Err("metrics are not an object".into());
    };
    map.into_iter()
        .map(|(k, v)| match v {
            Value::Null => Ok((k, None)),
            Value::Number(n) => {
                let text = if let Some(u) = n.as_u64() {
                    u.to_string()
                } else if let Some(i) = n.as_i64() {
                    i.to_string()
                } else {
                    n.as_f64().map(|f| f.to_string()).ok_or_else(|| format!("{k}: not a number"))?
                };
                Ok((k, Some(text)))
            }
            other => Err(format!("{k}: unexpected value {other}")),
        })
        .collect()
}

fn metrics_from_text(m: &BTreeMap<String, Option<String>>) -> Result<Metrics, String> {
    let mut map = serde_json::Map::new();
    for (k, v) in m {
        let value = match v {
            None => Value::Null,
            Some(t) => {
                if let Ok(u) = t.parse::<u64>() {
                    Value::from(u)
                } else {
                    let f: f64 = t.parse().map_err(|_| format!("metric {k}: {t:?} is not a number"))?;
                    serde_json::Number::from_f64(f).map(Value::Number).ok_or_else(|| format!("metric {k}: {t}"))?
                }
            }
        };
        map.insert(k.clone(), value);
    }
    serde_json::from_value(Value::Object(map)).map_err(|e| format!("metrics: {e}"))
}

/// The file name of shard `index` of `count`.
pub fn file_name(shard: Shard) -> String {
    format!("shard-{}-of-{}.json", shard.index, shard.count)
}

/// Writes `out` (one shard of the sweep described by `params` and `ranges`) into `dir`, creating it.
pub fn write(
    dir: &Path,
    out: &SweepOutput,
    params: &BTreeMap<String, String>,
    ranges: &[String],
    config: &impl Serialize,
) -> Result<PathBuf, CommandError> {
    let io =
        |e: &dyn std::fmt::Display| CommandError::Output { path: dir.display().to_string(), message: e.to_string() };
    let shard = out.result.shard;
    // The rejected combinations are this shard's grid positions that have no row (any other failure aborts).
    let done: std::collections::BTreeSet<usize> = out.result.rows.iter().map(|r| r.index).collect();
    let first_skipped = (shard.index..out.result.grid_size).step_by(shard.count).find(|i| !done.contains(i));
    let first_skip = first_skipped.zip(out.result.first_skip_reason.clone());
    let rows = out
        .result
        .rows
        .iter()
        .map(|r| Ok(StoredRow { index: r.index, params: r.params.clone(), metrics: metrics_to_text(&r.metrics)? }))
        .collect::<Result<Vec<_>, String>>()
        .map_err(|e| io(&e))?;
    let file = ShardFile {
        format: FORMAT.into(),
        sweep: SweepIdentity {
            file: out.file.clone(),
            bars: out.bars,
            timeframe: out.timeframe.clone(),
            strategy: out.strategy.clone(),
            params: params.clone(),
            ranges: ranges.to_vec(),
            config: serde_json::to_value(config).map_err(|e| io(&e))?,
            grid_size: out.result.grid_size,
        },
        shard: ShardId { index: shard.index, count: shard.count },
        skipped: out.result.skipped,
        first_skip,
        seconds: out.result.seconds,
        rows,
    };
    std::fs::create_dir_all(dir).map_err(|e| io(&e))?;
    let path = dir.join(file_name(shard));
    let text = serde_json::to_string_pretty(&file).map_err(|e| io(&e))?;
    // Written beside and renamed into place: a pod killed mid-write leaves no half file for the merge to read.
    let tmp = dir.join(format!(".{}.tmp", file_name(shard)));
    std::fs::write(&tmp, text).map_err(|e| io(&e))?;
    std::fs::rename(&tmp, &path).map_err(|e| io(&e))?;
    Ok(path)
}

/// Every shard file named by `inputs`: a directory contributes its `shard-*-of-*.json` files, a file itself.
fn shard_paths(inputs: &[PathBuf]) -> Result<Vec<PathBuf>, CommandError> {
    let mut out = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let entries = std::fs::read_dir(input).map_err(|e| bad(input, e))?;
            let mut found: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("shard-") && n.ends_with(".json"))
                })
                .collect();
            if found.is_empty() {
                return Err(bad(input, "no shard-K-of-N.json files in this directory"));
            }
            found.sort();
            out.extend(found);
        } else if input.is_file() {
            out.push(input.clone());
        } else {
            return Err(bad(input, "no such file or directory"));
        }
    }
    Ok(out)
}

fn read(path: &Path) -> Result<ShardFile, CommandError> {
    let text = std::fs::read_to_string(path).map_err(|e| bad(path, e))?;
    let file: ShardFile = serde_json::from_str(&text).map_err(|e| bad(path, format!("not a sweep shard file: {e}")))?;
    if file.format != FORMAT {
        return Err(bad(path, format!("format {:?}, expected {FORMAT:?}", file.format)));
    }
    if file.shard.count == 0 || file.shard.index >= file.shard.count {
        return Err(bad(path, format!("shard {}/{} is out of range", file.shard.index, file.shard.count)));
    }
    Ok(file)
}

/// Reads the shards in `inputs` and puts them back together into the full sweep, as an unsharded run reports
/// it (the shard is `0/1`; `seconds` is the shards' summed compute time).
pub fn merge(inputs: &[PathBuf]) -> Result<SweepOutput, CommandError> {
    let paths = shard_paths(inputs)?;
    let mut files: Vec<(PathBuf, ShardFile)> = Vec::new();
    for path in paths {
        let file = read(&path)?;
        files.push((path, file));
    }
    let Some((first_path, first)) = files.first() else {
        return Err(CommandError::Usage("merge needs at least one shard directory or file".into()));
    };
    let (identity, count) = (first.sweep.clone(), first.shard.count);
    let mut by_index: BTreeMap<usize, &PathBuf> = BTreeMap::new();
    for (path, file) in &files {
        if file.sweep != identity || file.shard.count != count {
            return Err(bad(
                path,
                format!(
                    "belongs to another sweep than {} ({} {} on {}, {} shards)",
                    first_path.display(),
                    file.sweep.strategy,
                    file.sweep.ranges.join(" "),
                    file.sweep.file,
                    file.shard.count
                ),
            ));
        }
        if let Some(other) = by_index.insert(file.shard.index, path) {
            return Err(bad(path, format!("shard {}/{count} is also in {}", file.shard.index, other.display())));
        }
    }
    let missing: Vec<String> = (0..count).filter(|i| !by_index.contains_key(i)).map(|i| i.to_string()).collect();
    if !missing.is_empty() {
        return Err(CommandError::Usage(format!(
            "incomplete sweep: shard(s) {} of {count} missing (have {})",
            missing.join(", "),
            by_index.keys().map(ToString::to_string).collect::<Vec<_>>().join(", ")
        )));
    }
    let (mut rows, mut skipped, mut seconds, mut first_skip) = (Vec::new(), 0, 0.0, None::<(usize, String)>);
    let mut seen = std::collections::BTreeSet::new();
    for (path, file) in &files {
        for row in &file.rows {
            if row.index >= identity.grid_size || row.index % count != file.shard.index || !seen.insert(row.index) {
                return Err(bad(
                    path,
                    format!("row {} does not belong to shard {}/{count}", row.index, file.shard.index),
                ));
            }
            let metrics = metrics_from_text(&row.metrics).map_err(|e| bad(path, e))?;
            rows.push(SweepRow { index: row.index, params: row.params.clone(), metrics });
        }
        skipped += file.skipped;
        seconds += file.seconds;
        if let Some((i, why)) = &file.first_skip
            && first_skip.as_ref().is_none_or(|(j, _)| i < j)
        {
            first_skip = Some((*i, why.clone()));
        }
    }
    if rows.len() + skipped != identity.grid_size {
        return Err(CommandError::Usage(format!(
            "the shards hold {} rows and {skipped} skipped combinations, but the grid has {}",
            rows.len(),
            identity.grid_size
        )));
    }
    rows.sort_by_key(|r| r.index);
    let best = rows.iter().max_by(|a, b| a.metrics.total_return_pct.total_cmp(&b.metrics.total_return_pct)).cloned();
    let shard = Shard::default();
    Ok(SweepOutput {
        file: identity.file,
        bars: identity.bars,
        timeframe: identity.timeframe,
        strategy: identity.strategy,
        shard: format!("{}/{}", shard.index, shard.count),
        result: SweepResult {
            grid_size: identity.grid_size,
            shard,
            combos: rows.len(),
            skipped,
            first_skip_reason: first_skip.map(|(_, why)| why),
            rows,
            seconds,
        },
        best,
        // The shards' compute time is the sweep's (they ran apart); reading and writing were theirs too.
        timings: super::Timings { indicators: seconds, ..Default::default() },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_text_round_trips_exactly() {
        let m = Metrics {
            bars: 10,
            trades: 3,
            closed_trades: 2,
            open_trades: 1,
            final_equity: 10_123.456_789_012_345,
            total_return_pct: 0.1 + 0.2,
            cagr_pct: -1.0e-300,
            sharpe: Some(1.0 / 3.0),
            sortino: None,
            calmar: Some(100.0),
            max_drawdown_pct: 5e-324,
            max_drawdown_bars: 4,
            win_rate_pct: Some(50.0),
            profit_factor: None,
            avg_win: Some(f64::MAX),
            avg_loss: Some(-f64::MIN_POSITIVE),
            exposure_pct: 33.333_333_333_333_336,
            avg_holding_bars: Some(2.5),
        };
        let back = metrics_from_text(&metrics_to_text(&m).unwrap()).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.total_return_pct.to_bits(), m.total_return_pct.to_bits());
    }
}
