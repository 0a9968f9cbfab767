//! `mcbot events`: reads the event log in order, optionally following it like `tail -f`.

use std::time::Duration;

use mcbot_stages::ports::{Event, EventKind, EventQuery, Store};

use crate::app::AppError;
use crate::cli::{EventsArgs, Output};

/// Prints the events the arguments select; with `--follow`, keeps printing new ones until interrupted.
pub async fn run(store: &dyn Store, args: &EventsArgs, output: Output) -> Result<(), AppError> {
    let mut kinds = Vec::new();
    for k in &args.kind {
        let kind = EventKind::parse(k.trim()).ok_or_else(|| {
            let all: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
            AppError::Usage(format!("unknown event kind {k:?}; kinds: {}", all.join(", ")))
        })?;
        kinds.push(kind);
    }
    let mut query = EventQuery {
        after: args.since,
        kinds,
        limit: if args.follow { 500 } else { args.limit },
        ..Default::default()
    };
    let mut wake = store.subscribe_events();
    loop {
        let events = store.read_events(&query).await?;
        for e in &events {
            print_event(e, output)?;
        }
        if !args.follow {
            return Ok(());
        }
        if let Some(last) = events.last() {
            query.after = last.id;
            if events.len() as i64 == query.limit {
                continue;
            }
        }
        let woken = async {
            match wake.as_mut() {
                Some(rx) => {
                    let _ = rx.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = woken => {}
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

fn print_event(e: &Event, output: Output) -> Result<(), AppError> {
    use std::io::Write;
    let line = match output {
        Output::Json => serde_json::to_string(e).map_err(|err| AppError::Runtime(err.to_string()))?,
        Output::Text => {
            let ev = &e.event;
            format!(
                "{:>6}  {}  {:<9} {:<26} {}{}",
                e.id,
                ev.ts.format("%Y-%m-%d %H:%M:%S"),
                ev.severity.as_str(),
                ev.kind.as_str(),
                ev.symbol.as_ref().map(|s| format!("{s}: ")).unwrap_or_default(),
                ev.message
            )
        }
    };
    let mut out = std::io::stdout().lock();
    // A closed pipe (`| head`) ends the listing quietly.
    if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
        std::process::exit(0);
    }
    Ok(())
}
