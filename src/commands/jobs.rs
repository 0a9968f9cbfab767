//! `mcbot jobs`: the jobs and their next fire times (UTC).

use crate::app::{App, AppError};
use crate::cli::Output;
use crate::output::{print_json, table};

/// Prints the job list.
pub fn run(app: &App, output: Output) -> Result<(), AppError> {
    let views = app.runtime.views();
    match output {
        Output::Json => print_json(&views).map_err(AppError::Runtime),
        Output::Text => {
            let rows = views.iter().map(|v| {
                vec![v.name.clone(), v.schedule.clone(), v.next_fire.map_or_else(|| "-".into(), |t| t.to_rfc3339())]
            });
            println!("{}", table(&["job", "schedule (UTC, with seconds)", "next fire"], rows));
            Ok(())
        }
    }
}
