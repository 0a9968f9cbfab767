//! `mcbot preflight`: the live guards, checked exactly as a start in mode live checks them, printed one per row
//! with ✓ or ✗ and why. Exit 0 only when every guard passes, so a deployment script can gate on it. The README's
//! "Going live" checklist lists the same guards in the same order.

use std::sync::Arc;

use mcbot_stages::Clock;
use mcbot_stages::ports::Store;
use serde_json::json;

use crate::app::{AppError, guard_venue};
use crate::cli::Output;
use crate::config::Config;
use crate::live::{GuardEnv, assess};
use crate::output::{print_json, table};
use crate::store::SqlStore;

/// Runs the guards and prints them; returns the exit code (0 all pass, 1 any fails).
pub async fn run(cfg: Config, store: SqlStore, clock: Arc<dyn Clock>, output: Output) -> Result<u8, AppError> {
    let store: Arc<dyn Store> = Arc::new(store);
    let venue = guard_venue(&cfg, clock.clone(), store.clone())?;
    let verdict = assess(&cfg, &GuardEnv::from_process(), &venue, store, clock).await;
    let passed = verdict.passed();
    match output {
        Output::Json => {
            let doc = json!({
                "passed": passed,
                "mode": cfg.mode.as_str(),
                "checked_at": verdict.checked_at,
                "checks": verdict.checks,
                "confirmation_file_content": crate::live::expected_confirmation(&cfg),
            });
            print_json(&doc).map_err(AppError::Runtime)?;
        }
        Output::Text => {
            let rows = verdict
                .checks
                .iter()
                .map(|c| vec![if c.ok { "✓" } else { "✗" }.to_owned(), c.name.to_owned(), c.detail.clone()]);
            println!("{}", table(&["", "guard", "finding"], rows));
            if passed {
                println!("{}", crate::live::start_message(&cfg, &verdict));
            } else {
                let n = verdict.checks.iter().filter(|c| !c.ok).count();
                println!("{n} guard(s) not met: mode live would trade paper");
            }
        }
    }
    Ok(if passed { 0 } else { 1 })
}
