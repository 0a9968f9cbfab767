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
    let started = std::time::Instant::now();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (worker_stop_tx, worker_stop_rx) = tokio::sync::watch::channel(false);
    // Metrics and the admin server come up before the start is recorded, so its event is counted too; a listen
    // address in use stops the start here, before any job runs.
    let monitoring = crate::admin::Monitoring::start(app, stop_rx.clone()).await?;
    let holder = format!("{}:{}", crate::liveness::host_name(), std::process::id());
    let alive = keep_alive(app, &holder);
    lifecycle_started(app, &holder).await?;
    app.prime_notifications().await?;
    let notify = app.notifications()?;
    let poll = std::time::Duration::from_secs(5);
    let recorder = tokio::spawn(notify.consumer.run(stop_rx.clone(), poll));
    let sender = tokio::spawn(notify.worker.run(notify.wake.clone(), worker_stop_rx.clone(), poll));
    let chat = app.chat_poller()?.map(|p| tokio::spawn(p.run(worker_stop_rx)));
    // With error tracking on, failures in the event log go to Sentry through their own consumer.
    if sentry::Hub::main().client().is_some() {
        skip_history(app, "sentry", &holder).await;
    }
    let sentry_events = sentry::Hub::main().client().map(|_| {
        let scrubber = crate::error_tracking::Scrubber::from_config(
            &app.cfg,
            crate::error_tracking::dsn(&app.cfg).ok().flatten().as_deref(),
        );
        let handler = std::sync::Arc::new(crate::error_tracking::SentryEvents::new(scrubber));
        let consumer = mcbot_schedules::Consumer::new(app.store.clone(), app.clock.clone(), handler, holder.clone());
        tokio::spawn(consumer.run(stop_rx, poll))
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
    let stopped = NewEvent::new(app.clock.now(), EventKind::Stopped, Severity::Info, stopped_line(app, started).await)
        .payload(serde_json::json!({ "holder": holder }));
    if let Err(e) = app.store.append_events(vec![stopped]).await {
        tracing::error!("stop not recorded: {e}");
    }
    // The stop is recorded, then sent: the consumer's last pass records it, the worker sends what is due within
    // the flush time; anything else stays pending for the next start.
    stop_tx.send_replace(true);
    if let Err(e) = recorder.await {
        tracing::warn!("notification consumer ended abnormally: {e}");
    }
    worker_stop_tx.send_replace(true);
    if let Err(e) = sender.await {
        tracing::warn!("delivery worker ended abnormally: {e}");
    }
    if let Some(chat) = chat {
        chat.abort();
    }
    let timeout = std::time::Duration::from_secs(app.cfg.notify.flush_timeout_secs);
    let last = app.notifications()?;
    if tokio::time::timeout(timeout + std::time::Duration::from_secs(1), last.worker.flush(timeout)).await.is_err() {
        tracing::warn!("notifications still pending at exit: the next start sends them");
    }
    // Another replica sends from now on, without waiting for the lease to run out.
    last.worker.release().await;
    if let Some(Err(e)) = match sentry_events {
        Some(task) => Some(task.await),
        None => None,
    } {
        tracing::warn!("error tracking consumer ended abnormally: {e}");
    }
    monitoring.finish().await;
    alive.abort();
    if let Err(e) = app.store.release_lease(&alive_lease(&holder), &holder).await {
        tracing::warn!("alive lease not released: {e}");
    }
    result
}

/// "scheduler stopped cleanly (a stop signal) after 3 h 12 min; equity 10230.00 USDT, day P&L 12.50 USDT, open
/// positions 2 (BTCUSDT, ETHUSDT)".
async fn stopped_line(app: &App, started: std::time::Instant) -> String {
    let up = started.elapsed().as_secs();
    let quote = &app.cfg.market.quote;
    let equity = app.store.equity_before(chrono::DateTime::<chrono::Utc>::MAX_UTC).await.ok().flatten();
    let day = crate::notify::lifecycle::day_pnl(app.store.as_ref(), app.clock.now()).await.ok().flatten();
    let open: Option<Vec<String>> = app
        .store
        .positions()
        .await
        .map(|p| p.iter().filter(|p| !p.qty.is_zero()).map(|p| p.symbol.as_str().to_owned()).collect())
        .ok();
    format!(
        "scheduler stopped cleanly (a stop signal) after {} h {} min; equity {}, day P&L {}, open positions {}",
        up / 3600,
        (up % 3600) / 60,
        equity.map_or_else(|| "-".to_owned(), |e| format!("{} {quote}", e.equity.round_dp(2))),
        day.map_or_else(|| "-".to_owned(), |d| format!("{} {quote}", d.round_dp(2))),
        open.map_or_else(
            || "-".to_owned(),
            |o| if o.is_empty() { "0".to_owned() } else { format!("{} ({})", o.len(), o.join(", ")) }
        )
    )
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

/// The lease each running scheduler renews, named by its holder (`host:pid`): while it is held that scheduler is
/// alive, so a replica starting beside it does not report it as crashed.
fn alive_lease(holder: &str) -> String {
    format!("scheduler-alive:{holder}")
}

/// How long one renewal of the alive lease holds; renewed at a third of it.
const ALIVE_TTL_SECS: i64 = 90;

/// Keeps this scheduler's alive lease until the returned task is aborted (at a clean stop, which also releases it).
fn keep_alive(app: &App, holder: &str) -> tokio::task::JoinHandle<()> {
    let (store, clock, name, holder) = (app.store.clone(), app.clock.clone(), alive_lease(holder), holder.to_owned());
    tokio::spawn(async move {
        loop {
            let ttl = chrono::Duration::seconds(ALIVE_TTL_SECS);
            if let Err(e) = store.try_acquire_lease(&name, &holder, clock.now(), ttl).await {
                tracing::warn!("alive lease not renewed: {e}");
            }
            tokio::time::sleep(std::time::Duration::from_secs(ALIVE_TTL_SECS as u64 / 3)).await;
        }
    })
}

/// Whether the scheduler that recorded `started` (and no stop) is gone: the same process identity as this one (a
/// container restarted with the same pid), a process of this host that no longer exists, or one whose alive
/// lease has run out. A start recorded before starts named their holder counts as gone, as it always did.
async fn gone(app: &App, started: &mcbot_stages::ports::Event, me: &str) -> bool {
    let Some(holder) = started.event.payload.get("holder").and_then(|h| h.as_str()) else {
        return true;
    };
    if holder == me {
        return true;
    }
    if let Some((host, pid)) = holder.rsplit_once(':')
        && let Ok(pid) = pid.parse::<u32>()
    {
        use mcbot_schedules::Liveness;
        let claimant = mcbot_stages::ports::Claimant { pid, host: host.to_owned() };
        if crate::liveness::OsLiveness::current().is_dead(&claimant) {
            return true;
        }
    }
    // Taking its lease for no time at all succeeds exactly when it is free or expired.
    let name = alive_lease(holder);
    match app.store.try_acquire_lease(&name, me, app.clock.now(), chrono::Duration::zero()).await {
        Ok(true) => {
            let _ = app.store.release_lease(&name, me).await;
            true
        }
        Ok(false) => false,
        // Unknown: say nothing rather than cry wolf; the start event still names this process.
        Err(_) => false,
    }
}

/// Records the start, and a crash for every earlier start that never recorded its stop and whose process is gone.
/// Replicas on one database each record their own start and stop (named by `host:pid`), so a replica starting
/// beside a running one does not report it as crashed.
async fn lifecycle_started(app: &App, me: &str) -> Result<(), AppError> {
    use crate::notify::lifecycle::{PreviousRun, config_hash};
    let query =
        EventQuery { kinds: vec![EventKind::Started, EventKind::Stopped, EventKind::Crashed], ..Default::default() };
    let log = app.store.read_events(&query).await?;
    // How the previous run ended, for the start message: an open start only counts as unclean once its process is
    // known to be gone (below), since a replica may still be running.
    let mut previous = match PreviousRun::from_last(log.last()) {
        PreviousRun::Unclean(_) => PreviousRun::Clean,
        p => p,
    };
    let now = app.clock.now();
    let mut events = Vec::new();
    let holder_of =
        |e: &mcbot_stages::ports::Event| e.event.payload.get("holder").and_then(|h| h.as_str()).map(str::to_owned);
    // Open starts: a start with no later stop or crash report of the same holder (unnamed ones pair with any).
    let mut open: Vec<&mcbot_stages::ports::Event> = Vec::new();
    for e in &log {
        match e.event.kind {
            EventKind::Started => open.push(e),
            _ => {
                let h = holder_of(e);
                open.retain(|s| h.is_some() && holder_of(s).is_some() && holder_of(s) != h);
            }
        }
    }
    for prev in open {
        if gone(app, prev, me).await {
            previous = PreviousRun::Unclean(prev.event.ts);
            let msg = format!("the scheduler started at {} ended without stopping cleanly", prev.event.ts);
            let payload = serde_json::json!({ "holder": holder_of(prev) });
            events.push(NewEvent::new(now, EventKind::Crashed, Severity::Critical, msg).payload(payload));
        }
    }
    let hash = config_hash(&app.cfg);
    let cfg = &app.cfg;
    let equity = app.store.equity_before(chrono::DateTime::<chrono::Utc>::MAX_UTC).await?.map(|e| e.equity.round_dp(2));
    let symbols: Vec<&str> = cfg.market.symbols.iter().map(|s| s.as_str()).collect();
    let venue = match cfg.mode {
        crate::config::Mode::Mock => "simulated".to_owned(),
        _ => format!("{:?}", cfg.exchange.venue).to_lowercase(),
    };
    let who = format!(
        "scheduler started: mode {}, pid {} on {}\nmcbot {}, venue {venue}, strategy {}, {} {}\nequity {}\nconfig {hash}; {}",
        cfg.mode.as_str(),
        std::process::id(),
        crate::liveness::host_name(),
        env!("CARGO_PKG_VERSION"),
        cfg.strategy.name,
        cfg.market.timeframe,
        symbols.join(" "),
        equity.map_or_else(|| "not yet known".to_owned(), |e| format!("{e} {}", cfg.market.quote)),
        previous.line(),
    );
    let payload = serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"), "mode": cfg.mode.as_str(), "venue": venue,
        "strategy": cfg.strategy.name, "symbols": symbols, "equity": equity, "holder": me, "config_hash": hash,
    });
    events.push(NewEvent::new(now, EventKind::Started, Severity::Info, who).payload(payload));
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
    // Mode live says at once whether real orders go out, at which canary share, or which guards failed.
    let mode = match &app.live {
        Some(verdict) => format!("{} ({})", cfg.mode.as_str(), crate::live::start_message(cfg, verdict)),
        None => cfg.mode.as_str().to_owned(),
    };
    format!(
        "mcbot scheduler: mode {mode}, {venue}, {} on {}, database {database}; {next}{metrics}; Ctrl-C or SIGTERM stops it",
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
