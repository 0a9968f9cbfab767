//! `mcbot scheduler`: reconcile with the exchange, catch up a missed fire within the grace period, then run
//! every job on its schedule until SIGINT or SIGTERM; running work finishes, state is persisted, exit 0.

use mcbot_schedules::driver;
use mcbot_stages::ports::{EventKind, EventQuery, NewEvent, Severity, Store};

use crate::app::{App, AppError};
use crate::market_stream::MarketStream;

/// Runs until a shutdown signal.
pub async fn run(app: &App) -> Result<(), AppError> {
    // Listen before anything else: a SIGTERM that arrives during start-up must still be a clean stop.
    let shutdown = shutdown_signal()?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // Metrics and the admin server come up before the start is recorded, so its event is counted too; a listen
    // address in use stops the start here, before any job runs.
    let monitoring = crate::admin::Monitoring::start(app, stop_rx.clone()).await?;
    lifecycle_started(app).await?;
    let alerts = tokio::spawn(app.alert_consumer().run(stop_rx.clone(), std::time::Duration::from_secs(5)));
    // With error tracking on, failures in the event log go to Sentry through their own consumer.
    let holder = format!("{}:{}", crate::liveness::host_name(), std::process::id());
    if sentry::Hub::main().client().is_some() {
        skip_history(app, "sentry", &holder).await;
    }
    let sentry_events = sentry::Hub::main().client().map(|_| {
        let scrubber = crate::error_tracking::Scrubber::from_config(
            &app.cfg,
            crate::error_tracking::dsn(&app.cfg).ok().flatten().as_deref(),
        );
        let handler = std::sync::Arc::new(crate::error_tracking::SentryEvents::new(scrubber));
        let consumer = mcbot_schedules::Consumer::new(app.store.clone(), app.clock.clone(), handler, holder);
        tokio::spawn(consumer.run(stop_rx, std::time::Duration::from_secs(5)))
    });
    match app.reconcile.reconcile(None).await {
        Ok(r) if r.is_clean() => tracing::info!("start-up reconciliation: in sync"),
        Ok(r) => tracing::error!(
            drifts = r.drifts.len(),
            unknown_open_orders = r.unknown_open_orders.len(),
            awaiting_orders = r.awaiting_orders.len(),
            "start-up reconciliation is not clean; the reconcile job acts on it"
        ),
        Err(e) => tracing::error!("start-up reconciliation failed: {e}"),
    }
    // Start-up order: state is loaded (App::build), reconciled above; now the stream backfills missed bars over
    // REST and follows new ones over the WebSocket (each complete bar starts the cycle); then the schedule
    // resumes with its catch-up.
    let stream = MarketStream::start(app);
    let views = app.runtime.views();
    for v in &views {
        let next = v.next_fire.map_or_else(|| "never".to_owned(), |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string());
        tracing::info!(job = %v.name, schedule = %v.schedule, next = %next, "scheduled");
    }
    let grace = std::time::Duration::from_secs(app.cfg.schedule.shutdown_grace_secs);
    let next = views.iter().find(|v| v.name == "trading-cycle").and_then(|v| v.next_fire);
    println!("{}", startup_line(app, next, monitoring.addr()));
    let result =
        driver::run_until(app.runtime.clone(), shutdown, grace).await.map_err(|e| AppError::Runtime(e.to_string()));
    if let Some(s) = stream {
        s.shutdown().await;
    }
    let stopped = NewEvent::new(app.clock.now(), EventKind::Stopped, Severity::Info, "scheduler stopped cleanly");
    if let Err(e) = app.store.append_events(vec![stopped]).await {
        tracing::error!("stop not recorded: {e}");
    }
    stop_tx.send_replace(true);
    if let Err(e) = alerts.await {
        tracing::warn!("alert consumer ended abnormally: {e}");
    }
    if let Some(Err(e)) = match sentry_events {
        Some(task) => Some(task.await),
        None => None,
    } {
        tracing::warn!("error tracking consumer ended abnormally: {e}");
    }
    monitoring.finish().await;
    result
}

/// A consumer that has never run starts at the end of the log: error tracking turned on for an existing
/// database reports what happens from now on, not every failure of the past.
async fn skip_history(app: &App, consumer: &str, holder: &str) {
    let now = app.clock.now();
    let lease = chrono::Duration::seconds(60);
    let Ok(Some(0)) = app.store.claim_consumer(consumer, holder, now, lease).await else { return };
    match app.store.recent_events(Severity::Info, 1).await {
        Ok(newest) => {
            if let Some(last) = newest.first().map(|e| e.id)
                && let Err(e) = app.store.advance_consumer(consumer, holder, last, now).await
            {
                tracing::warn!(consumer, "cannot start at the end of the event log: {e}");
            }
        }
        Err(e) => tracing::warn!(consumer, "cannot start at the end of the event log: {e}"),
    }
}

/// Records the start, and a crash when the previous start never recorded its stop.
async fn lifecycle_started(app: &App) -> Result<(), AppError> {
    let query = EventQuery { kinds: vec![EventKind::Started, EventKind::Stopped], ..Default::default() };
    let last = app.store.read_events(&query).await?.pop();
    let now = app.clock.now();
    let mut events = Vec::new();
    if let Some(prev) = last.filter(|e| e.event.kind == EventKind::Started) {
        let msg = format!("the scheduler started at {} ended without stopping cleanly", prev.event.ts);
        events.push(NewEvent::new(now, EventKind::Crashed, Severity::Critical, msg));
    }
    let who = format!(
        "scheduler started: mode {}, pid {} on {}",
        app.cfg.mode.as_str(),
        std::process::id(),
        crate::liveness::host_name()
    );
    events.push(NewEvent::new(now, EventKind::Started, Severity::Info, who));
    app.store.append_events(events).await?;
    Ok(())
}

/// One plain line for the person who started the scheduler: what it trades, where it keeps its books, when the
/// first cycle comes and how to stop it (with an hourly timeframe it may otherwise look idle for up to an hour).
fn startup_line(app: &App, next: Option<chrono::DateTime<chrono::Utc>>, admin: Option<std::net::SocketAddr>) -> String {
    let cfg = &app.cfg;
    let venue = match cfg.mode {
        crate::config::Mode::Mock => "simulated exchange".to_owned(),
        _ => format!("{:?}", cfg.exchange.venue).to_lowercase(),
    };
    let database = match app.store.file() {
        Some(file) => format!("sqlite {}", file.display()),
        None => app.store.kind().name().to_owned(),
    };
    let symbols: Vec<&str> = cfg.market.symbols.iter().map(|s| s.as_str()).collect();
    let next = match next {
        Some(t) => {
            let wait = (t - app.clock.now()).num_seconds().max(0);
            format!("next trading cycle {} (in {}m {:02}s)", t.format("%H:%M:%S UTC"), wait / 60, wait % 60)
        }
        None => "no trading cycle scheduled".to_owned(),
    };
    let metrics = admin.map_or_else(String::new, |a| format!("; metrics http://{a}/metrics"));
    format!(
        "mcbot scheduler: mode {}, {venue}, {} on {}, database {database}; {next}{metrics}; Ctrl-C or SIGTERM stops it",
        cfg.mode.as_str(),
        cfg.market.timeframe,
        symbols.join(" "),
    )
}

/// Registers SIGINT and SIGTERM now and returns a future that resolves on either.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, AppError> {
    use tokio::signal::unix::{SignalKind, signal};
    let err = |e: std::io::Error| AppError::Runtime(format!("cannot listen for signals: {e}"));
    let mut term = signal(SignalKind::terminate()).map_err(err)?;
    let mut int = signal(SignalKind::interrupt()).map_err(err)?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    })
}
