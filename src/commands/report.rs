//! `mcbot report daily|weekly|monthly [--date D] [--send] [--out DIR]`: any period's report on demand, from the
//! same code as the report jobs. Printed as text (or every figure with `--output json`), written as files with
//! `--out`, and delivered through the configured channels with `--send`. It stores nothing: the jobs keep the
//! record of what was reported.

use std::path::PathBuf;

use chrono::NaiveDate;
use clap::ValueEnum;
use mcbot_schedules::jobs::report_event;
use mcbot_schedules::reports::{Period, build_report, period_bounds, text};

use crate::app::{App, AppError};
use crate::cli::Output;
use crate::output::print_json;

/// The period on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PeriodArg {
    /// The UTC day.
    Daily,
    /// The ISO week (Monday to Sunday).
    Weekly,
    /// The calendar month.
    Monthly,
}

impl From<PeriodArg> for Period {
    fn from(p: PeriodArg) -> Self {
        match p {
            PeriodArg::Daily => Period::Daily,
            PeriodArg::Weekly => Period::Weekly,
            PeriodArg::Monthly => Period::Monthly,
        }
    }
}

/// `report` arguments.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Which period.
    #[arg(value_enum)]
    pub period: PeriodArg,
    /// A day (YYYY-MM-DD) inside the period to report; default: the period that ended last.
    #[arg(long)]
    pub date: Option<NaiveDate>,
    /// Deliver it through the configured channels (Telegram, Discord, email) now.
    #[arg(long)]
    pub send: bool,
    /// Write the text, the JSON with every figure and the charts (PNG) into this directory.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Produces, prints, writes and sends the report.
pub async fn run(app: &App, args: &ReportArgs, output: Output) -> Result<(), AppError> {
    let period = Period::from(args.period);
    let (start, end) = match args.date {
        Some(d) => period.containing(d),
        None => period_bounds(period, app.clock.now()),
    };
    let settings = crate::reports::settings(&app.cfg);
    let report = build_report(app.store.as_ref(), &settings, period, start, end).await?;
    let mut written = Vec::new();
    if let Some(dir) = &args.out {
        written =
            crate::reports::write_files(&report, &settings.quote, dir).map_err(|e| AppError::Runtime(e.to_string()))?;
    }
    if args.send {
        let mut event = report_event(&report, &settings.quote, None).map_err(|e| AppError::Runtime(e.to_string()))?;
        event.ts = app.clock.now();
        mcbot_stages::ports::Store::append_events(app.store.as_ref(), vec![event]).await?;
        crate::commands::run_once::deliver_before_exit(app).await?;
    }
    match output {
        Output::Json => print_json(&report).map_err(AppError::Runtime)?,
        Output::Text => {
            println!("{}", text::render(&report, &settings.quote));
            for p in written {
                println!("wrote {}", p.display());
            }
        }
    }
    Ok(())
}
