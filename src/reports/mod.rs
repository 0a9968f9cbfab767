//! Reports on the binary's side: the settings a report takes from the configuration, its charts (plotters), and
//! the files `mcbot report --out DIR` writes. The figures and the text are computed in
//! `mcbot_schedules::reports`, the same code the report jobs run.

pub mod charts;
pub mod chat;

use std::path::{Path, PathBuf};

use mcbot_schedules::reports::{Report, ReportSettings, text};
use mcbot_stages::domain::Symbol;

use crate::config::Config;

/// Errors of writing report files.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A file could not be written.
    #[error("cannot write {path}: {message}")]
    Write {
        /// Which file.
        path: String,
        /// Why.
        message: String,
    },
}

/// The report settings of a configuration: timeframe and quote of the market, the drawdown limit of the risk
/// section, and BTC and ETH against the quote as benchmarks (as the venue spells the pair when it is among the
/// traded symbols, e.g. `KRW-BTC` on Upbit; `BTC<quote>` otherwise).
pub fn settings(cfg: &Config) -> ReportSettings {
    let quote = cfg.market.quote.clone();
    let benchmarks = ["BTC", "ETH"]
        .iter()
        .filter_map(|base| {
            let concat = format!("{base}{quote}");
            let dashed = format!("{quote}-{base}");
            cfg.market
                .symbols
                .iter()
                .find(|s| s.as_str() == concat || s.as_str() == dashed)
                .cloned()
                .or_else(|| Symbol::new(&concat).ok())
        })
        .collect();
    ReportSettings {
        timeframe: cfg.market.timeframe,
        quote,
        benchmarks,
        max_drawdown_pct: cfg.risk.max_drawdown_pct,
        unattributed: "unattributed".to_owned(),
    }
}

/// Writes `<period>-<start>.txt`, `.json` (every figure) and one PNG per chart into `dir`; the paths written.
pub fn write_files(report: &Report, quote: &str, dir: &Path) -> Result<Vec<PathBuf>, ReportError> {
    let fail = |p: &Path, e: &dyn std::fmt::Display| ReportError::Write {
        path: p.display().to_string(),
        message: e.to_string(),
    };
    std::fs::create_dir_all(dir).map_err(|e| fail(dir, &e))?;
    let stem = format!("{}-{}", report.period.as_str(), report.start.format("%Y-%m-%d"));
    let mut written = Vec::new();
    let txt = dir.join(format!("{stem}.txt"));
    std::fs::write(&txt, text::render(report, quote) + "\n").map_err(|e| fail(&txt, &e))?;
    written.push(txt);
    let json = dir.join(format!("{stem}.json"));
    let doc = serde_json::to_string_pretty(report).map_err(|e| fail(&json, &e))?;
    std::fs::write(&json, doc + "\n").map_err(|e| fail(&json, &e))?;
    written.push(json);
    for c in charts::all(report) {
        let p = dir.join(format!("{stem}-{}", c.name));
        std::fs::write(&p, &c.png).map_err(|e| fail(&p, &e))?;
        written.push(p);
    }
    Ok(written)
}
