//! `mcbot notify test|status|retry`: check the channels by hand, see what the outbox holds, and send again what
//! was given up on.

use std::sync::Arc;

use mcbot_stages::ports::{Channel, DeliveryStatus, DeliveryStore, EventKind, Message, Route, Severity};
use mcbot_stages::{Clock, SystemClock};
use serde_json::json;

use crate::app::AppError;
use crate::cli::{NotifyCommand, Output};
use crate::config::Config;
use crate::notify::setup;
use crate::output::{print_json, table};
use crate::store::SqlStore;

/// Runs the subcommand; the exit code is 1 when a test message was not delivered.
pub async fn run(cfg: &Config, store: &SqlStore, sub: &NotifyCommand, output: Output) -> Result<u8, AppError> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let parse = |c: &Option<String>| c.as_deref().and_then(Channel::parse);
    match sub {
        NotifyCommand::Test { channel } => {
            let notifiers = setup::notifiers(&cfg.notify, clock.clone(), parse(channel))?;
            let message = Message {
                kind: EventKind::Started,
                severity: Severity::Info,
                title: "test message".into(),
                body: "mcbot can reach this channel.".into(),
                fields: vec![("mode".into(), cfg.mode.as_str().into())],
                ts: clock.now(),
                image_png: None,
                charts: Vec::new(),
            };
            let mut rows = Vec::new();
            let mut failed = false;
            for n in notifiers {
                let outcome = match n.deliver(Route::Alerts, &message).await {
                    Ok(()) => "delivered".to_owned(),
                    Err(e) => {
                        failed = true;
                        format!("not delivered ({:?}): {}", e.kind, e.message)
                    }
                };
                rows.push((n.channel(), outcome));
            }
            if output == Output::Json {
                let doc: Vec<_> = rows.iter().map(|(c, o)| json!({"channel": c, "outcome": o})).collect();
                print_json(&json!(doc)).map_err(AppError::Runtime)?;
            } else {
                let t = rows.iter().map(|(c, o)| vec![c.to_string(), o.clone()]);
                println!("{}", table(&["channel", "outcome"], t));
            }
            Ok(u8::from(failed))
        }
        NotifyCommand::Status => {
            let counts = store.delivery_counts().await?;
            if output == Output::Json {
                print_json(&json!(counts)).map_err(AppError::Runtime)?;
                return Ok(0);
            }
            let get = |c: Channel, s: DeliveryStatus| {
                counts.iter().find(|x| x.channel == c && x.status == s).map_or(0, |x| x.count).to_string()
            };
            let rows = Channel::ALL.into_iter().map(|c| {
                let mut row = vec![c.to_string()];
                row.extend(DeliveryStatus::ALL.into_iter().map(|s| get(c, s)));
                row
            });
            println!("{}", table(&["channel", "pending", "sent", "failed", "suppressed"], rows));
            Ok(0)
        }
        NotifyCommand::Retry { channel } => {
            let n = store.requeue_failed(parse(channel), clock.now()).await?;
            if output == Output::Json {
                print_json(&json!({"requeued": n})).map_err(AppError::Runtime)?;
            } else {
                println!("re-queued {n} failed deliveries: the running scheduler (or the next run-once) sends them");
            }
            Ok(0)
        }
    }
}
