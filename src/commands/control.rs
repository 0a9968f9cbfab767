//! `mcbot pause|resume|kill|reset-safe-mode|reset-breaker`: commands against the database a running scheduler
//! uses. Each is applied to the trading state's current version with its event, so it never overwrites a
//! concurrent change; a running cycle sees it before its next order.

use mcbot_stages::Clock;
use mcbot_stages::control::{Command, CommandError, Issuer, issue};
use mcbot_stages::ports::Store;
use serde_json::json;

use crate::app::AppError;
use crate::cli::Output;

/// Issues `command` from the command line; prints the resulting state as text, or returns it as the JSON
/// document for the caller to print once, with whatever follows the command (a kill's cancellations) added. A
/// command that does not apply (pausing a paused bot) is a usage error (exit 2) that changes nothing.
pub async fn run(
    store: &dyn Store,
    clock: &dyn Clock,
    command: Command,
    reason: &str,
    output: Output,
) -> Result<(u8, serde_json::Value), AppError> {
    match issue(store, &command, Issuer::Cli, reason, clock.now()).await {
        Ok(outcome) => {
            let st = &outcome.state;
            let doc = json!({"command": command, "state": st, "event_ids": outcome.event_ids});
            if output == Output::Text {
                let breakers: Vec<&str> = st.tripped.keys().map(String::as_str).collect();
                println!(
                    "done: trading {}{}, safe mode {}, breakers {}",
                    st.trading.as_str(),
                    if st.flatten { " (closing all positions at the next cycle)" } else { "" },
                    if st.safe_mode { "on" } else { "off" },
                    if breakers.is_empty() { "none".to_owned() } else { breakers.join(", ") },
                );
            }
            Ok((0, doc))
        }
        Err(CommandError::NotApplicable(why)) => {
            eprintln!("error: nothing changed: {why}");
            Ok((2, json!({"error": format!("nothing changed: {why}"), "exit_code": 2})))
        }
        Err(CommandError::Store(e)) => Err(AppError::Store(e)),
    }
}

/// After a kill: cancels every order the bot has open at the venue, booking what each had filled. An order the
/// venue does not know is left to reconciliation (it may still show up), and a cancel that fails is reported;
/// entries stay blocked either way, because the bot is halted. Text is printed; the JSON document is returned.
pub async fn cancel_open_orders(app: &crate::app::App, output: Output) -> Result<(u8, serde_json::Value), AppError> {
    let (canceled, failed) = cancel_all(app.store.as_ref(), app.exchange.as_ref(), app.clock.as_ref()).await?;
    if output == Output::Text {
        println!("open orders canceled: {}", if canceled.is_empty() { "none".into() } else { canceled.join(", ") });
        for f in &failed {
            eprintln!("not canceled: {f}");
        }
    }
    Ok((u8::from(!failed.is_empty()), json!({"canceled": canceled, "not_canceled": failed})))
}

/// Cancels every open order of the bot at the venue, booking each cancellation with its event: the ids
/// canceled, and the ones that were not with why. Shared by `mcbot kill` and the chat's `/kill`.
pub async fn cancel_all(
    store: &dyn Store,
    exchange: &dyn mcbot_stages::ports::Exchange,
    clock: &dyn Clock,
) -> Result<(Vec<String>, Vec<String>), mcbot_stages::ports::StoreError> {
    use mcbot_stages::pipeline::booking;
    use mcbot_stages::ports::{EventKind, Severity};
    let mut canceled = Vec::new();
    let mut failed = Vec::new();
    for order in store.open_orders().await? {
        match exchange.cancel_order(&order.symbol, &order.client_order_id).await {
            Ok(Some(ack)) => {
                let now = clock.now();
                booking::record_ack(store, None, &ack, order.status, now).await?;
                let msg = format!("order {} canceled by kill ({} filled)", order.client_order_id, ack.order.filled_qty);
                let mut event = booking::order_event(now, EventKind::OrderCanceled, Severity::Warning, &ack.order, msg);
                event.run_id = Some(order.run_id.clone());
                store.append_events(vec![event]).await?;
                canceled.push(order.client_order_id.to_string());
            }
            Ok(None) => {
                failed.push(format!("{}: unknown to the venue (left to reconciliation)", order.client_order_id))
            }
            Err(e) => failed.push(format!("{}: {e}", order.client_order_id)),
        }
    }
    Ok((canceled, failed))
}
