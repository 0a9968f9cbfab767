//! `mcbot pause|resume|kill|reset-safe-mode|reset-breaker`: commands against the database a running scheduler
//! uses. Each is applied to the trading state's current version with its event, so it never overwrites a
//! concurrent change; a running cycle sees it before its next order.

use mcbot_stages::Clock;
use mcbot_stages::control::{Command, CommandError, Issuer, issue};
use mcbot_stages::ports::Store;
use serde_json::json;

use crate::app::AppError;
use crate::cli::Output;
use crate::output::print_json;

/// Issues `command` from the command line and prints the resulting state. A command that does not apply
/// (pausing a paused bot) is a usage error (exit 2) that changes nothing.
pub async fn run(
    store: &dyn Store,
    clock: &dyn Clock,
    command: Command,
    reason: &str,
    output: Output,
) -> Result<u8, AppError> {
    match issue(store, &command, Issuer::Cli, reason, clock.now()).await {
        Ok(outcome) => {
            let st = &outcome.state;
            if output == Output::Json {
                let doc = json!({"command": command, "state": st, "event_ids": outcome.event_ids});
                print_json(&doc).map_err(AppError::Runtime)?;
            } else {
                let breakers: Vec<&str> = st.tripped.keys().map(String::as_str).collect();
                println!(
                    "done: trading {}{}, safe mode {}, breakers {}",
                    st.trading.as_str(),
                    if st.flatten { " (closing all positions at the next cycle)" } else { "" },
                    if st.safe_mode { "on" } else { "off" },
                    if breakers.is_empty() { "none".to_owned() } else { breakers.join(", ") },
                );
            }
            Ok(0)
        }
        Err(CommandError::NotApplicable(why)) => {
            eprintln!("error: nothing changed: {why}");
            Ok(2)
        }
        Err(CommandError::Store(e)) => Err(AppError::Store(e)),
    }
}
