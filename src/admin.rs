//! The admin HTTP server of `mcbot scheduler` (axum): `GET /metrics` for Prometheus, `GET /healthz` (the
//! process answers) and `GET /readyz` (database reachable, migrations applied, market data fresh, not halted)
//! for an orchestrator or a load balancer, and the control API (`/api/v1/*`, see [`crate::control_api`]). It
//! listens on loopback unless configured otherwise (`http.listen`).
//!
//! [`Monitoring::start`] also starts what feeds `/metrics`: the metrics consumer of the event log, the stored
//! state refresher and the async runtime lag probe.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use chrono::{DateTime, Utc};
use mcbot_stages::Clock;
use mcbot_stages::domain::{Symbol, Timeframe};
use mcbot_stages::ports::{Store, TradingMode};
use serde_json::json;

use crate::app::App;
use crate::metrics::{self, Exporter, MetricsError};

/// Why the admin server or the metrics could not start; exit code 2 (nothing was started).
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The listen address is unusable (in use, not local, no permission).
    #[error("http.listen {addr}: cannot listen ({source}); set another address or \"\" to turn the server off")]
    Bind {
        /// The configured address.
        addr: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The metrics recorder failed.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
}

/// What the handlers read.
#[derive(Clone)]
pub struct AdminState {
    /// Renders `/metrics`.
    pub exporter: Arc<Exporter>,
    /// The store the readiness probe pings.
    pub store: Arc<dyn Store>,
    /// The bot's clock.
    pub clock: Arc<dyn Clock>,
    /// Symbols whose data must be fresh.
    pub symbols: Vec<Symbol>,
    /// Bar length.
    pub timeframe: Timeframe,
    /// Bars the newest stored bar may lag behind the last close before data counts as stale.
    pub max_stale_bars: i32,
    /// The control API (`/api/v1/*`, bearer token); `None` leaves those routes out.
    pub control: Option<Arc<crate::control_api::ControlApi>>,
}

/// The routes: the probes and metrics without a token, the control API behind one.
pub fn router(state: AdminState) -> Router {
    let control = state.control.clone();
    let open = Router::new()
        .route("/metrics", get(serve_metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state);
    match control {
        Some(api) => open.merge(crate::control_api::router(api)),
        None => open,
    }
}

/// Renders `/metrics` with each event log consumer's exact lag, read from the stored cursors now; when the
/// store does not answer those families are left out (`mcbot_store_up` reports the outage).
async fn serve_metrics(State(s): State<AdminState>) -> impl IntoResponse {
    let consumers = match s.store.consumer_cursors().await {
        Ok(all) => Some(all),
        Err(e) => {
            tracing::debug!("metrics: consumer cursors unreadable: {e}");
            None
        }
    };
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], s.exporter.render_with(consumers.as_ref()))
}

/// The readiness verdict and each check's finding.
pub async fn readiness(s: &AdminState) -> (bool, serde_json::Value) {
    let mut ready = true;
    let database = match s.store.ping().await {
        Ok(()) => "ok".to_owned(),
        Err(e) => {
            ready = false;
            format!("unreachable: {e}")
        }
    };
    let trading = match s.store.load_state().await {
        Ok(st) if st.trading == TradingMode::Halted => {
            ready = false;
            "halted".to_owned()
        }
        Ok(st) => st.trading.as_str().to_owned(),
        Err(e) => {
            ready = false;
            format!("state unreadable: {e}")
        }
    };
    let now = s.clock.now();
    let oldest_allowed: DateTime<Utc> = s.timeframe.last_close(now) - s.timeframe.duration() * s.max_stale_bars.max(0);
    let mut stale = Vec::new();
    for symbol in &s.symbols {
        match s.store.candles(symbol, s.timeframe, now, 1).await {
            Ok(c) => match c.last() {
                Some(bar) if bar.close_time(s.timeframe) >= oldest_allowed => {}
                Some(bar) => stale.push(format!("{symbol} last bar closed {}", bar.close_time(s.timeframe))),
                None => stale.push(format!("{symbol} has no stored bar")),
            },
            Err(e) => stale.push(format!("{symbol}: {e}")),
        }
    }
    let market_data = if stale.is_empty() { "fresh".to_owned() } else { stale.join("; ") };
    ready &= stale.is_empty();
    // Migrations run before the scheduler starts; a database they could not bring up stops the process.
    let doc = json!({
        "ready": ready,
        "checks": {"database": database, "migrations": "applied", "market_data": market_data, "trading": trading},
    });
    (ready, doc)
}

async fn readyz(State(s): State<AdminState>) -> impl IntoResponse {
    let (ready, doc) = readiness(&s).await;
    let code = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, [(header::CONTENT_TYPE, "application/json")], format!("{doc}\n"))
}

/// The running monitoring of a scheduler: admin server, metrics consumer, state refresher, lag probe.
pub struct Monitoring {
    addr: Option<SocketAddr>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    probe: tokio::task::JoinHandle<()>,
}

impl Monitoring {
    /// Installs the metrics, starts their feeders, and binds the admin server when `http.listen` is set. Stops
    /// when `stop` turns true.
    pub async fn start(app: &App, stop: tokio::sync::watch::Receiver<bool>) -> Result<Self, AdminError> {
        let handle = metrics::install()?;
        metrics::register_static(&app.cfg, &app.runtime.schedules());
        for job in app.runtime.names() {
            if let Ok(Some(run)) = app.store.last_success(&job).await
                && let Some(at) = run.finished_at
            {
                ::metrics::gauge!(metrics::names::JOB_LAST_SUCCESS, "job" => job).set(at.timestamp() as f64);
            }
        }
        let exporter = Arc::new(Exporter::new(handle, app.clock.clone()));
        let store: Arc<dyn Store> = app.store.clone();
        let poke = Arc::new(tokio::sync::Notify::new());
        let mut tasks = Vec::new();
        let src = metrics::state::StateSource {
            symbols: app.cfg.market.symbols.clone(),
            timeframe: app.cfg.market.timeframe,
            strategy: app.cfg.strategy.name.clone(),
        };
        let every = std::time::Duration::from_secs(10);
        tasks.push(tokio::spawn(metrics::state::run(
            store.clone(),
            app.clock.clone(),
            src,
            exporter.clone(),
            poke.clone(),
            every,
            stop.clone(),
        )));
        let handler = Arc::new(metrics::consumer::EventMetrics::new("metrics", Some(poke)));
        let holder = format!("{}:{}", crate::liveness::host_name(), std::process::id());
        let consumer = mcbot_schedules::Consumer::new(store.clone(), app.clock.clone(), handler, holder);
        tasks.push(tokio::spawn(consumer.run(stop.clone(), std::time::Duration::from_secs(5))));
        let probe = tokio::spawn(metrics::runtime_lag_probe(std::time::Duration::from_millis(250)));
        let listen = app.cfg.http.listen.trim();
        let mut addr = None;
        if !listen.is_empty() {
            let bind = |source| AdminError::Bind { addr: listen.to_owned(), source };
            let listener = tokio::net::TcpListener::bind(listen).await.map_err(bind)?;
            addr = Some(listener.local_addr().map_err(bind)?);
            let state = AdminState {
                exporter,
                store: store.clone(),
                clock: app.clock.clone(),
                symbols: app.cfg.market.symbols.clone(),
                timeframe: app.cfg.market.timeframe,
                max_stale_bars: app.cfg.pipeline.max_stale_bars,
                control: Some(Arc::new(crate::control_api::ControlApi::new(
                    app.cfg.http.api_token.as_deref(),
                    store.clone(),
                    app.clock.clone(),
                    Some(app.exchange.clone()),
                    app.cfg.mode.as_str(),
                ))),
            };
            let mut stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                let shutdown = async move {
                    let _ = stop.wait_for(|s| *s).await;
                };
                if let Err(e) = axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await {
                    tracing::error!("admin HTTP server stopped: {e}");
                }
            }));
        }
        Ok(Self { addr, tasks, probe })
    }

    /// Where the admin server listens, when it does (the port the OS chose for `:0`).
    pub fn addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// Waits (5 s at most each) for the feeders and the server to stop after `stop` turned true; the lag probe,
    /// which never stops by itself, is ended.
    pub async fn finish(self) {
        self.probe.abort();
        for t in self.tasks {
            let abort = t.abort_handle();
            if tokio::time::timeout(std::time::Duration::from_secs(5), t).await.is_err() {
                abort.abort();
            }
        }
    }
}
