//! `mcbot run-once`: one cycle for the last closed bar. `--stage all` goes through the job ledger exactly like a
//! scheduled fire, so a second call for the same bar places nothing; single stages run directly.

use mcbot_schedules::FireOutcome;
use mcbot_schedules::jobs::TradingCycleJob;
use mcbot_stages::domain::RunId;
use mcbot_stages::pipeline::StageSelection;
use mcbot_stages::ports::Store;
use serde_json::{Value, json};

use crate::app::{App, AppError};
use crate::cli::{Output, RunOnceArgs, StageArg};
use crate::output::{print_json, table};

/// Runs the selected stages and prints their outcomes and orders. Returns true when a stage halted or failed.
pub async fn run(app: &App, args: &RunOnceArgs, output: Output) -> Result<bool, AppError> {
    let bar = app.current_bar();
    let run_id = RunId::new(TradingCycleJob::NAME, bar);
    let (doc, failed) = if args.stage == StageArg::All {
        let outcome = app
            .runtime
            .fire_named(TradingCycleJob::NAME, bar)
            .await
            .ok_or_else(|| AppError::Runtime("trading-cycle job not registered".into()))?;
        match outcome {
            FireOutcome::Ran { detail, status, summary, .. } => {
                let failed = status != mcbot_stages::ports::JobStatus::Succeeded;
                let mut doc =
                    if detail.is_null() { json!({"run_id": run_id.as_str(), "error": summary}) } else { detail };
                doc["job_status"] = json!(status);
                (doc, failed)
            }
            FireOutcome::AlreadyDone { run_id } => {
                let orders = app.store.orders_of_run(&run_id).await?;
                let doc = json!({
                    "run_id": run_id, "bar_close": bar, "already_processed": true,
                    "stages": [], "orders": [], "previously_placed": orders,
                });
                (doc, false)
            }
            FireOutcome::Busy { run_id, holder } => {
                let who = app.runtime.describe_holder(holder.as_ref());
                return Err(AppError::Runtime(format!("{run_id} is being run by {who}")));
            }
            FireOutcome::ShuttingDown => return Err(AppError::Runtime("shutting down".into())),
        }
    } else {
        let selection = match args.stage {
            StageArg::Risk => StageSelection::Risk,
            StageArg::Data => StageSelection::Data,
            StageArg::Analysis => StageSelection::Analysis,
            StageArg::Execution => StageSelection::Execution,
            StageArg::All => StageSelection::All,
        };
        let report = app
            .pipeline
            .run_cycle(&run_id, bar, selection, None)
            .await
            .map_err(|e| AppError::Runtime(format!("cycle not run (fail closed): {e}")))?;
        let failed = report.failed();
        (serde_json::to_value(&report).map_err(|e| AppError::Runtime(e.to_string()))?, failed)
    };
    match output {
        Output::Json => print_json(&doc).map_err(AppError::Runtime)?,
        Output::Text => print_text(&doc),
    }
    deliver_before_exit(app).await?;
    Ok(failed)
}

/// The messages of this cycle are recorded and sent before the process exits, waiting at most
/// `notify.flush_timeout_secs`; what could not be sent stays pending for the next process.
pub async fn deliver_before_exit(app: &App) -> Result<(), AppError> {
    app.prime_notifications().await?;
    let n = app.notifications()?;
    if let Err(e) = n.consumer.pump().await {
        tracing::warn!("notifications not recorded now, left for the next process: {e}");
        return Ok(());
    }
    let timeout = std::time::Duration::from_secs(app.cfg.notify.flush_timeout_secs);
    match tokio::time::timeout(timeout + std::time::Duration::from_secs(1), n.worker.flush(timeout)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!("notifications not sent now, left pending for the next process: {e}"),
        Err(_) => {
            tracing::warn!("notifications still pending after {} s: the next process sends them", timeout.as_secs())
        }
    }
    // A scheduler beside this run takes the sending back at once instead of after the lease's time-out.
    n.worker.release().await;
    Ok(())
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn print_text(doc: &Value) {
    println!("run {}  bar close {}", s(&doc["run_id"]), s(&doc["bar_close"]));
    if doc["already_processed"] == Value::Bool(true) {
        let n = doc["previously_placed"].as_array().map_or(0, Vec::len);
        println!("this bar was already processed: nothing placed now ({n} order(s) placed by the earlier run)");
        return;
    }
    if let Some(err) = doc.get("error") {
        println!("cycle failed: {}", s(err));
    }
    let rows =
        doc["stages"].as_array().into_iter().flatten().map(|st| {
            vec![s(&st["stage"]), s(&st["status"]), format!("{} ms", s(&st["duration_ms"])), s(&st["detail"])]
        });
    println!("{}", table(&["stage", "status", "time", "detail"], rows));
    if let Some(targets) = doc["targets"].as_array().filter(|t| !t.is_empty()) {
        let rows = targets.iter().map(|t| vec![s(&t["symbol"]), s(&t["weight"]), s(&t["reason"])]);
        println!("{}", table(&["symbol", "target weight", "reason"], rows));
    }
    let orders = doc["orders"].as_array().cloned().unwrap_or_default();
    if orders.is_empty() {
        println!("orders placed: none");
    } else {
        let rows = orders.iter().map(|o| {
            vec![
                s(&o["client_order_id"]),
                s(&o["symbol"]),
                s(&o["side"]),
                s(&o["filled_qty"]),
                s(&o["avg_price"]),
                s(&o["status"]),
            ]
        });
        println!(
            "orders placed:\n{}",
            table(&["client order id", "symbol", "side", "qty", "avg price", "status"], rows)
        );
    }
    if let Some(skipped) = doc["skipped"].as_array().filter(|t| !t.is_empty()) {
        let rows = skipped.iter().map(|p| vec![s(&p[0]), s(&p[1])]);
        println!("{}", table(&["not traded", "why"], rows));
    }
    if let Some(eq) = doc.get("equity").filter(|e| !e.is_null()) {
        // Cents, as `status` shows it; the JSON output keeps every digit.
        let text = s(eq);
        let shown = text.parse::<mcbot_stages::domain::Decimal>().map_or(text, |d| d.round_dp(2).to_string());
        println!("equity {shown}");
    }
}
