//! Logging via tracing: pretty for a terminal, JSON lines for collectors. Every line inside a job or stage
//! carries the run id from its span. Logs go to stderr so stdout stays the command's output.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::config::LogFormat;

/// Installs the global subscriber; `RUST_LOG` overrides `level`. Calling it twice is harmless. Colour codes are
/// written only when stderr is a terminal, so a log file or collector gets plain text.
pub fn init(format: LogFormat, level: &str) {
    let level = std::env::var("RUST_LOG").ok().filter(|l| !l.trim().is_empty()).unwrap_or_else(|| level.to_owned());
    let filter = EnvFilter::try_new(filter_directives(&level)).unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::stderr().is_terminal();
    let fmt = tracing_subscriber::fmt::layer().with_ansi(ansi).with_writer(std::io::stderr);
    // Log lines are also the breadcrumbs of error tracking (a no-op while it is off).
    let registry = tracing_subscriber::registry().with(crate::error_tracking::tracing_layer()).with(filter);
    let _already_set = match format {
        LogFormat::Pretty => registry.with(fmt.with_target(false)).try_init(),
        LogFormat::Json => {
            registry.with(fmt.json().flatten_event(true).with_current_span(true).with_span_list(true)).try_init()
        }
    };
}

/// The scheduler library logs each job it adds and each tick at info; those lines say nothing an operator acts
/// on, so they are kept to warnings unless the filter names the library (`info,tokio_cron_scheduler=info`).
pub fn filter_directives(level: &str) -> String {
    if level.contains("tokio_cron_scheduler") { level.to_owned() } else { format!("{level},tokio_cron_scheduler=warn") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cron_library_is_kept_to_warnings_unless_named() {
        assert_eq!(filter_directives("info"), "info,tokio_cron_scheduler=warn");
        assert_eq!(filter_directives("debug,tokio_cron_scheduler=info"), "debug,tokio_cron_scheduler=info");
    }
}
