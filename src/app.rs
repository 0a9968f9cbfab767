//! The composition root: turns a validated [`Config`] into the running parts (store, exchange, pipeline, job
//! runtime). Nothing else in the binary constructs adapters, so "what runs in mode X" is answered here.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use mcbot_schedules::jobs::{BacktestReference, HealthJob, Monitors, Period, ReconcileJob, ReportJob, TradingCycleJob};
use mcbot_schedules::{Job, Runtime, RuntimeConfig, Schedule, ScheduleError};
use mcbot_stages::domain::{Instrument, Symbol};
use mcbot_stages::live::LiveExchange;
use mcbot_stages::pipeline::execution::SizingParams;
use mcbot_stages::pipeline::pretrade::PreTradeLimits;
use mcbot_stages::pipeline::risk::RiskLimits;
use mcbot_stages::pipeline::{Pipeline, PipelineConfig};
use mcbot_stages::ports::{Exchange, Store, StoreError};
use mcbot_stages::sim::{MarketSource, PaperExchange, RandomWalk, SimConfig, SimExchange};
use mcbot_stages::strategy::registry;
use mcbot_stages::{Clock, ShiftedClock, SystemClock};

use crate::candles_csv::{CandleCsvError, read_candles};
use crate::config::{Config, ConfigError, Mode, Venue};
use crate::exchange::binance::BinanceExchange;
use crate::exchange::upbit::UpbitExchange;
use crate::live::{Clearance, GuardEnv, GuardVenue, LiveVerdict};
use crate::store::{BookOwner, SqlStore};

/// Why the bot could not be assembled or run; each variant knows its exit code.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Configuration is wrong (exit 2).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// An exchange adapter could not be built from its settings (exit 2).
    #[error("exchange: {0}")]
    Exchange(String),
    /// The strategy or its parameters are wrong (exit 2).
    #[error("strategy: {0}")]
    Strategy(String),
    /// A replay file is unusable (exit 2).
    #[error(transparent)]
    Replay(#[from] CandleCsvError),
    /// A schedule is wrong (exit 2).
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    /// The database holds another mode's or venue's book (exit 2: nothing was traded).
    #[error("{0}")]
    OtherBook(String),
    /// The database failed (exit 1).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Another process owns the database, or its lock file is unusable (exit 2: nothing was started).
    #[error(transparent)]
    DatabaseLock(#[from] crate::db_lock::LockError),
    /// `mcbot data` failed at run time (exit 1).
    #[error(transparent)]
    Data(crate::commands::data::DataError),
    /// Anything that failed while running (exit 1).
    #[error("{0}")]
    Runtime(String),
    /// A command was asked for something it cannot do with these arguments (exit 2).
    #[error("{0}")]
    Usage(String),
    /// A notification channel cannot be set up from its settings (exit 2).
    #[error("notifications: {0}")]
    Notify(#[from] crate::notify::setup::SetupError),
    /// The admin HTTP server or the metrics could not start (exit 2).
    #[error(transparent)]
    Admin(#[from] crate::admin::AdminError),
    /// Error tracking is misconfigured (exit 2).
    #[error(transparent)]
    ErrorTracking(#[from] crate::error_tracking::ErrorTrackingError),
}

impl AppError {
    /// 2 for usage and configuration errors, 1 for runtime failures.
    pub fn exit_code(&self) -> u8 {
        match self {
            AppError::Store(_) | AppError::Runtime(_) | AppError::Data(_) => 1,
            _ => 2,
        }
    }
}

/// Everything assembled.
pub struct App {
    /// The configuration in force.
    pub cfg: Config,
    /// The store.
    pub store: Arc<SqlStore>,
    /// The exchange of the mode.
    pub exchange: Arc<dyn Exchange>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// The pipeline.
    pub pipeline: Arc<Pipeline>,
    /// The job runtime with all six jobs.
    pub runtime: Arc<Runtime>,
    /// Reconciliation, also run at start-up.
    pub reconcile: Arc<ReconcileJob>,
    /// The Binance adapter when it is the venue, so the scheduler can run its kline stream.
    pub binance: Option<Arc<BinanceExchange>>,
    /// Mode live: the guards' verdict at this start (`None` in other modes, and for commands that do not trade).
    pub live: Option<LiveVerdict>,
}

/// How mode live is assembled.
pub enum LiveGate {
    /// Every guard passed: real orders (after the dry-run cycles).
    Cleared(Clearance, LiveVerdict),
    /// A guard failed: paper fills on the live venue's data.
    Refused(LiveVerdict),
    /// Not checked (a command that does not trade): the venue for reading and cancelling, every order refused.
    ReadOnly,
}

/// The cursor name of the notification consumer.
pub const NOTIFY_CONSUMER: &str = "notifications";

/// The notification pipeline's running parts.
pub struct Notifications {
    /// Records deliveries from the event log.
    pub consumer: mcbot_schedules::Consumer,
    /// Sends them.
    pub worker: crate::notify::DeliveryWorker,
    /// Woken by the consumer after it recorded deliveries.
    pub wake: Arc<tokio::sync::Notify>,
}

/// The database URL: `--database-url`/`DATABASE_URL` (or `DATABASE_URL_FILE`), else config, else the embedded
/// SQLite file under the data directory.
pub fn database_url(cfg: &Config, cli: Option<String>) -> Result<String, ConfigError> {
    let given = match cli.filter(|u| !u.is_empty()) {
        Some(url) => Some(url),
        None => crate::config::secret_from_env("DATABASE_URL")?.filter(|u| !u.is_empty()),
    };
    if let Some(url) = given {
        // A URL of an unknown kind is a usage error (exit 2); only its scheme is shown, it may hold a password.
        if crate::store::Backend::from_url(&url).is_none() {
            let scheme = url.split_once(':').map_or("none", |(s, _)| s);
            return Err(ConfigError::Invalid {
                key: "database.url".into(),
                message: format!(
                    "unsupported scheme {scheme:?}: expected sqlite:<path>, postgres://... or postgresql://..."
                ),
                origin: " (--database-url or DATABASE_URL)".into(),
            });
        }
        return Ok(url);
    }
    if let Some(url) = cfg.database.url.clone().filter(|u| !u.is_empty()) {
        return Ok(url);
    }
    Ok(SqlStore::embedded_url(&cfg.database.data_dir))
}

/// For a scheduler on an SQLite file: takes the file for this process, so a second scheduler on it exits 2
/// instead of reconciling against this one's positions. PostgreSQL needs no owner (replicas share the ledger).
pub fn own_database(url: &str) -> Result<Option<crate::db_lock::FileLock>, AppError> {
    match SqlStore::sqlite_file(url) {
        Some(db) => Ok(Some(crate::db_lock::scheduler_lock(&db)?)),
        None => Ok(None),
    }
}

/// The book the configured mode writes: its mode and the venue its orders go to.
pub fn book_of(cfg: &Config) -> BookOwner {
    let venue = match cfg.mode {
        Mode::Mock => "sim",
        _ => match cfg.exchange.venue {
            Venue::Binance => "binance",
            Venue::Upbit => "upbit",
        },
    };
    BookOwner { mode: cfg.mode.as_str().to_owned(), venue: venue.to_owned() }
}

/// Claims the database's book for the configured mode before anything trades on it. Another mode's book is
/// refused (its orders would read as already placed, its fills would seed the wrong account) unless `adopt` says
/// the operator continues it on purpose.
pub async fn claim_book(cfg: &Config, store: &SqlStore, adopt: bool) -> Result<(), AppError> {
    let want = book_of(cfg);
    let owner = store.claim_book(&want).await?;
    if owner == want {
        return Ok(());
    }
    if adopt {
        tracing::warn!(from = %owner, to = %want, "adopting the database's book");
        store.adopt_book(&want).await?;
        return Ok(());
    }
    let db = store.file().map_or_else(|| "the database".to_owned(), |f| f.display().to_string());
    Err(AppError::OtherBook(format!(
        "{db} holds the book of {owner}; {want} keeps its own: point database.url (MCBOT_DATABASE__URL) at another \
         database, or pass --adopt-book to continue this book in mode {}",
        cfg.mode.as_str()
    )))
}

/// The clock the bot runs on: wall time, except for a replayed series in mode mock, whose clock follows the data.
/// Its "now" is set so the last closed bar is the next one to trade (the one after the state's last bar, or the
/// first with enough history before it), so every `run-once` steps one bar on and a scheduler trades one bar per
/// bar of wall time, never on data that reads as stale. At the end of the data the last bar stays the last.
pub async fn clock_for(cfg: &Config, store: &SqlStore) -> Result<Arc<dyn Clock>, AppError> {
    if cfg.mode != Mode::Mock || cfg.sim.replay.is_empty() {
        return Ok(Arc::new(SystemClock));
    }
    let tf = cfg.market.timeframe;
    let (mut first, mut last) = (DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC);
    for path in cfg.sim.replay.values() {
        let candles = read_candles(path)?;
        let (Some(a), Some(b)) = (candles.first(), candles.last()) else {
            return Err(AppError::Usage(format!("sim.replay: {} holds no candles", path.display())));
        };
        // Every symbol has data between the latest first bar and the earliest last bar.
        first = first.max(a.close_time(tf));
        last = last.min(b.close_time(tf));
    }
    let warm_up = tf.duration() * i32::try_from(cfg.pipeline.lookback_bars).unwrap_or(i32::MAX);
    let state = store.load_state().await?;
    let next = state.last_bar.map_or(first + warm_up, |b| b + tf.duration()).min(last);
    let wall = Utc::now();
    tracing::info!(bar = %next.format("%Y-%m-%d %H:%M UTC"), "replay: trading the series on its own clock");
    Ok(Arc::new(ShiftedClock::new(next - tf.last_close(wall))))
}

/// Connects and migrates.
pub async fn open_store(url: &str) -> Result<SqlStore, AppError> {
    let store = SqlStore::connect(url).await?;
    store.migrate().await?;
    Ok(store)
}

impl App {
    /// Assembles the bot for `cfg.mode` on `store`, restoring the simulator from stored fills in mode mock. In
    /// mode live nothing is checked here, so no order can be placed: the venue is read-only (see [`App::start`]).
    pub async fn build(cfg: Config, store: SqlStore, clock: Arc<dyn Clock>) -> Result<Self, AppError> {
        Self::assemble(cfg, store, clock, LiveGate::ReadOnly, None).await
    }

    /// Assembles the bot to trade: in mode live the guards are checked first (the same checks as
    /// `mcbot preflight`) and recorded; with every guard met the bot trades live, otherwise paper, and says why.
    pub async fn start(cfg: Config, store: SqlStore, clock: Arc<dyn Clock>, env: &GuardEnv) -> Result<Self, AppError> {
        if cfg.mode != Mode::Live {
            return Self::build(cfg, store, clock).await;
        }
        let dyn_store: Arc<dyn Store> = Arc::new(store.clone());
        let venue = guard_venue(&cfg, clock.clone(), dyn_store.clone())?;
        let verdict = crate::live::assess(&cfg, env, &venue, dyn_store.clone(), clock.clone()).await;
        crate::live::record(&cfg, &verdict, dyn_store.as_ref()).await?;
        let message = crate::live::start_message(&cfg, &verdict);
        if verdict.passed() {
            tracing::warn!("{message}");
        } else {
            tracing::error!("{message}");
        }
        let gate = match verdict.clearance() {
            Some(c) => LiveGate::Cleared(c, verdict),
            None => LiveGate::Refused(verdict),
        };
        Self::assemble(cfg, store, clock, gate, Some(venue)).await
    }

    /// The pipeline's view of `cfg`'s limits in mode live: the canary's share of equity, its notional cap and
    /// its trade count on top of the configured ones (the paper fallback rehearses the same sizes).
    fn canary(cfg: &Config, sizing: &mut SizingParams, pretrade: &mut PreTradeLimits, risk: &mut RiskLimits) {
        if cfg.mode == Mode::Live {
            sizing.capital_fraction = cfg.live.capital_fraction;
            pretrade.max_order_notional = crate::live::live_max_order_notional(cfg);
            risk.max_trades_per_day = cfg.live.max_trades_per_day;
        }
    }

    async fn assemble(
        cfg: Config,
        store: SqlStore,
        clock: Arc<dyn Clock>,
        gate: LiveGate,
        venue: Option<GuardVenue>,
    ) -> Result<Self, AppError> {
        let store = Arc::new(store);
        let dyn_store: Arc<dyn Store> = store.clone();
        let guard = match (cfg.mode, venue) {
            (Mode::Live, Some(v)) => Some(v),
            (Mode::Live, None) => Some(guard_venue(&cfg, clock.clone(), dyn_store.clone())?),
            _ => None,
        };
        let binance = match (cfg.mode, cfg.exchange.venue) {
            (Mode::Paper | Mode::Shadow, Venue::Binance) => {
                Some(Arc::new(binance_adapter(&cfg, clock.clone(), dyn_store.clone())?))
            }
            (Mode::Live, _) => guard.as_ref().and_then(|v| v.binance.clone()),
            _ => None,
        };
        let mut live_exchange = None;
        let mut live = None;
        let venue = || -> Result<Arc<dyn Exchange>, AppError> {
            match &binance {
                Some(b) => Ok(b.clone()),
                None => build_venue(&cfg, None, clock.clone(), dyn_store.clone()),
            }
        };
        let exchange: Arc<dyn Exchange> = match cfg.mode {
            Mode::Mock => Arc::new(build_sim(&cfg, clock.clone(), dyn_store.as_ref()).await?),
            Mode::Paper => {
                let venue = venue()?;
                let x = &cfg.exchange;
                let paper = PaperExchange::new(venue, &cfg.market.quote, x.paper_cash, x.paper_fee_rate, clock.clone());
                // The account lives in the store: replicas and restarts book the same fills.
                Arc::new(paper.with_ledger(dyn_store.clone()))
            }
            Mode::Shadow => {
                let venue = venue()?;
                Arc::new(PaperExchange::shadow(venue, &cfg.market.quote, cfg.exchange.paper_cash, clock.clone()))
            }
            Mode::Live => {
                let venue =
                    guard.as_ref().map(|v| v.exchange.clone()).ok_or_else(|| AppError::Exchange("no venue".into()))?;
                match gate {
                    LiveGate::Cleared(clearance, verdict) => {
                        live = Some(verdict);
                        let x = crate::live::live_exchange(clearance, &cfg, venue, dyn_store.clone(), clock.clone());
                        live_exchange = Some(x.clone());
                        x
                    }
                    LiveGate::Refused(verdict) => {
                        live = Some(verdict);
                        let x = &cfg.exchange;
                        let paper =
                            PaperExchange::new(venue, &cfg.market.quote, x.paper_cash, x.paper_fee_rate, clock.clone());
                        Arc::new(paper.with_ledger(dyn_store.clone()))
                    }
                    LiveGate::ReadOnly => Arc::new(LiveExchange::read_only(
                        venue,
                        dyn_store.clone(),
                        clock.clone(),
                        "this process was not cleared for live orders (only a trading start checks the live guards)",
                    )),
                }
            }
        };
        let tf = cfg.market.timeframe;
        let strategy = registry::build(&cfg.strategy.name, &cfg.strategy.params_as_strings(), tf)
            .map_err(|e| AppError::Strategy(e.to_string()))?;
        let mut risk = cfg.risk.clone();
        if risk.kill_switch_file.is_relative() && !risk.kill_switch_file.starts_with(&cfg.database.data_dir) {
            // A relative kill switch lives where the data lives, so one volume mount holds both.
            risk.kill_switch_file = match risk.kill_switch_file.strip_prefix("data") {
                Ok(rest) => cfg.database.data_dir.join(rest),
                Err(_) => risk.kill_switch_file.clone(),
            };
        }
        let (mut sizing, mut pretrade) = (cfg.sizing.clone(), cfg.pretrade.clone());
        Self::canary(&cfg, &mut sizing, &mut pretrade, &mut risk);
        let pcfg = PipelineConfig {
            symbols: cfg.market.symbols.clone(),
            timeframe: tf,
            quote: cfg.market.quote.clone(),
            stage_timeout: std::time::Duration::from_secs(cfg.pipeline.stage_timeout_secs),
            lookback: cfg.pipeline.lookback_bars,
            risk,
            pretrade,
            sizing,
            gate: cfg.strategy.gate.clone(),
        };
        let pipeline = Arc::new(Pipeline::new(pcfg, exchange.clone(), dyn_store.clone(), clock.clone(), strategy));
        let symbols = cfg.market.symbols.clone();
        let reconcile = Arc::new(
            ReconcileJob::new(dyn_store.clone(), exchange.clone(), clock.clone(), symbols.clone())
                .with_unplaced_after(Duration::seconds(cfg.schedule.unplaced_order_secs))
                .with_tolerance(cfg.reconcile.drift_tolerance_pct / rust_decimal::Decimal::ONE_HUNDRED)
                .with_unmanaged_holdings(cfg.reconcile.unmanaged_holdings),
        );
        // The return monitors hold the live record against the same strategy backtested on the bars it saw.
        let reference = registry::build(&cfg.strategy.name, &cfg.strategy.params_as_strings(), tf)
            .map_err(|e| AppError::Strategy(e.to_string()))?;
        let monitors = Monitors {
            execution: cfg.monitor.execution.clone(),
            returns: cfg.monitor.returns.clone(),
            process: cfg.monitor.process(),
            reference: Some(Arc::new(BacktestReference::new(
                dyn_store.clone(),
                Arc::from(reference),
                symbols.clone(),
                tf,
            ))),
            probe: Some(Arc::new(crate::metrics::process::ProcProbe)),
        };
        let s = &cfg.schedule;
        let rs = crate::reports::settings(&cfg);
        let jobs: Vec<(Schedule, Arc<dyn Job>)> = vec![
            (
                Schedule::parse(&tf.cron_after_close(s.bar_delay_secs))?,
                Arc::new(
                    TradingCycleJob::new(pipeline.clone(), dyn_store.clone())
                        .with_reconcile(reconcile.clone())
                        .with_retries(
                            cfg.pipeline.retry_attempts,
                            std::time::Duration::from_millis(cfg.pipeline.retry_delay_ms),
                        ),
                ),
            ),
            (
                Schedule::parse(&s.health)?,
                Arc::new(
                    HealthJob::new(
                        dyn_store.clone(),
                        exchange.clone(),
                        clock.clone(),
                        symbols,
                        tf,
                        cfg.pipeline.max_stale_bars,
                    )
                    .with_event_retention(Duration::days(cfg.events.retention_days))
                    .with_monitors(monitors)
                    .with_outbox(
                        store.clone() as Arc<dyn mcbot_stages::ports::DeliveryStore>,
                        Duration::days(i64::from(cfg.notify.retention_days)),
                    ),
                ),
            ),
            (Schedule::parse(&s.reconcile)?, reconcile.clone()),
            (Schedule::parse(&s.report_daily)?, Arc::new(ReportJob::new(Period::Daily, dyn_store.clone(), rs.clone()))),
            (
                Schedule::parse(&s.report_weekly)?,
                Arc::new(ReportJob::new(Period::Weekly, dyn_store.clone(), rs.clone())),
            ),
            (Schedule::parse(&s.report_monthly)?, Arc::new(ReportJob::new(Period::Monthly, dyn_store.clone(), rs))),
        ];
        let rcfg =
            RuntimeConfig { grace: Duration::seconds(s.grace_secs), stale_after: Duration::seconds(s.stale_run_secs) };
        let liveness = Arc::new(crate::liveness::OsLiveness::current());
        let mut runtime = Runtime::new(jobs, dyn_store, clock.clone(), rcfg)
            .with_liveness(liveness)
            .with_observer(Arc::new(crate::metrics::JobMetrics))
            .with_observer(Arc::new(crate::error_tracking::CronMonitors::new(Some(
                cfg.sentry.environment.clone().unwrap_or_else(|| cfg.mode.as_str().to_owned()),
            ))));
        if let Some(x) = live_exchange {
            runtime = runtime.with_observer(Arc::new(crate::live::DryRunCounter(x)));
        }
        let runtime = Arc::new(runtime);
        Ok(Self { cfg, store, exchange, clock, pipeline, runtime, reconcile, binance, live })
    }

    /// The notification pipeline of this process: the consumer that records deliveries from the event log
    /// (leased, so of several replicas one records), and the worker that sends them through the configured
    /// channels.
    pub fn notifications(&self) -> Result<Notifications, AppError> {
        use crate::notify::{DeliveryWorker, NotificationConsumer, setup};
        let n = &self.cfg.notify;
        let outbox: Arc<dyn mcbot_stages::ports::DeliveryStore> = self.store.clone();
        let state: Arc<dyn Store> = self.store.clone();
        let handler = Arc::new(NotificationConsumer::new(
            NOTIFY_CONSUMER,
            outbox.clone(),
            Some(state),
            setup::routing(n),
            setup::channel_rules(n),
            setup::fatigue(n),
        ));
        let wake = handler.waker();
        let holder = format!("{}:{}", crate::liveness::host_name(), std::process::id());
        let consumer = mcbot_schedules::Consumer::new(self.store.clone(), self.clock.clone(), handler, holder.clone());
        let notifiers = setup::notifiers(n, self.clock.clone(), None)?;
        // One sender across replicas: the lease outlives the slowest attempt (a channel request's time-out).
        let ttl =
            Duration::milliseconds(i64::try_from(n.request_timeout_ms).unwrap_or(i64::MAX / 2)) + Duration::seconds(60);
        let lease = crate::notify::worker::WorkerLease { store: self.store.clone(), holder: holder.clone(), ttl };
        let worker = DeliveryWorker::new(outbox, self.clock.clone(), notifiers, setup::policy(n))
            .with_lease(lease)
            .with_rules(setup::follow_up_rules(n));
        Ok(Notifications { consumer, worker, wake })
    }

    /// The Telegram command poller, when Telegram is configured: one per bot token across replicas (a lease).
    pub fn chat_poller(&self) -> Result<Option<crate::notify::chat::Poller>, AppError> {
        use crate::notify::chat::{ChatControl, Poller};
        use crate::notify::setup;
        let Some(s) = setup::telegram_settings(&self.cfg.notify) else { return Ok(None) };
        let store: Arc<dyn Store> = self.store.clone();
        let control = Arc::new(
            ChatControl::new(
                s.chat_ids.clone(),
                store,
                self.exchange.clone(),
                self.clock.clone(),
                Some(self.runtime.clone()),
                self.cfg.mode.as_str(),
            )
            .with_reports(crate::reports::settings(&self.cfg))
            .with_outbox(self.store.clone())
            .with_market(self.cfg.market.symbols.clone(), self.cfg.market.timeframe),
        );
        let holder = format!("{}:{}", crate::liveness::host_name(), std::process::id());
        let scrub = Arc::new(setup::scrubber(&self.cfg.notify));
        let poller = Poller::new(&s, control, self.store.clone(), self.clock.clone(), holder, 25, scrub)
            .map_err(crate::notify::setup::SetupError::from)?;
        Ok(Some(poller))
    }

    /// On a database whose log predates the notification consumer, starts its cursor at the events of the last
    /// hour: older ones are history, not news, and would flood the chat at the first start.
    pub async fn prime_notifications(&self) -> Result<(), AppError> {
        // A cursor leased by a process that died on this host (a `kill -9`) is freed at once: its messages would
        // otherwise wait for the lease to run out.
        if let Some(old) = self.store.consumer_holder(NOTIFY_CONSUMER).await?
            && let Some((host, pid)) = old.rsplit_once(':')
            && let Ok(pid) = pid.parse::<u32>()
        {
            use mcbot_schedules::Liveness;
            let claimant = mcbot_stages::ports::Claimant { pid, host: host.to_owned() };
            if crate::liveness::OsLiveness::current().is_dead(&claimant) {
                self.store.free_consumer(NOTIFY_CONSUMER, &old).await?;
            }
        }
        let holder = format!("prime:{}", std::process::id());
        let now = self.clock.now();
        let ttl = Duration::seconds(5);
        let Some(cursor) = self.store.claim_consumer(NOTIFY_CONSUMER, &holder, now, ttl).await? else {
            return Ok(());
        };
        if cursor == 0 {
            let since = now - Duration::hours(1);
            let q = mcbot_stages::ports::EventQuery { after: 0, limit: 0, ..Default::default() };
            let old = self.store.read_events(&q).await?.into_iter().take_while(|e| e.event.ts < since).last();
            if let Some(last_old) = old {
                self.store.advance_consumer(NOTIFY_CONSUMER, &holder, last_old.id, now).await?;
            }
        }
        // Hand the cursor straight back: the running consumer takes it without waiting for the lease to expire.
        self.store.claim_consumer(NOTIFY_CONSUMER, &holder, now, Duration::zero()).await?;
        Ok(())
    }

    /// The close of the newest bar at the clock's now: what `run-once` acts on.
    pub fn current_bar(&self) -> DateTime<Utc> {
        self.cfg.market.timeframe.last_close(self.clock.now())
    }
}

/// The real venue named by `name` (`binance`, `upbit`), or the configured one. Its risk hook (a 418 ban,
/// refused credentials) records a critical risk event.
pub fn build_venue(
    cfg: &Config,
    name: Option<&str>,
    clock: Arc<dyn Clock>,
    store: Arc<dyn Store>,
) -> Result<Arc<dyn Exchange>, AppError> {
    let venue = match name {
        None => cfg.exchange.venue,
        Some("binance") => Venue::Binance,
        Some("upbit") => Venue::Upbit,
        Some(other) => return Err(AppError::Exchange(format!("unknown exchange {other:?}: binance, upbit or sim"))),
    };
    Ok(match venue {
        Venue::Binance => Arc::new(binance_adapter(cfg, clock, store)?),
        Venue::Upbit => Arc::new(
            UpbitExchange::new(cfg.exchange.upbit.clone(), clock).map_err(|e| AppError::Exchange(e.to_string()))?,
        ),
    })
}

/// The configured venue for mode live, with the Binance adapter itself when it is Binance (its time and key
/// calls serve the guards, its stream the scheduler).
pub fn guard_venue(cfg: &Config, clock: Arc<dyn Clock>, store: Arc<dyn Store>) -> Result<GuardVenue, AppError> {
    Ok(match cfg.exchange.venue {
        Venue::Binance => {
            let b = Arc::new(binance_adapter(cfg, clock, store)?);
            GuardVenue { exchange: b.clone(), binance: Some(b) }
        }
        Venue::Upbit => GuardVenue { exchange: build_venue(cfg, None, clock, store)?, binance: None },
    })
}

/// The Binance adapter with its event hook: a 429, a 418 ban or refused credentials are recorded as events.
fn binance_adapter(cfg: &Config, clock: Arc<dyn Clock>, store: Arc<dyn Store>) -> Result<BinanceExchange, AppError> {
    let hook: crate::exchange::binance::RiskHook = Arc::new(move |event| {
        let store = store.clone();
        tracing::error!(kind = %event.kind, "{}", event.message);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = store.append_events(vec![event]).await {
                    tracing::error!("event not recorded: {e}");
                }
            });
        }
    });
    BinanceExchange::new(cfg.exchange.binance.clone(), clock, Some(hook)).map_err(|e| AppError::Exchange(e.to_string()))
}

/// The exchange `mcbot data download` reads from: the simulator for `sim` (or mode mock without a name), a
/// venue otherwise.
pub async fn data_source(
    cfg: &Config,
    name: Option<&str>,
    clock: Arc<dyn Clock>,
    store: Arc<dyn Store>,
) -> Result<Arc<dyn Exchange>, AppError> {
    match (name, cfg.mode) {
        (Some("sim"), _) | (None, Mode::Mock) => Ok(Arc::new(build_sim(cfg, clock, store.as_ref()).await?)),
        _ => build_venue(cfg, name, clock, store),
    }
}

async fn build_sim(cfg: &Config, clock: Arc<dyn Clock>, store: &dyn Store) -> Result<SimExchange, AppError> {
    let sim = &cfg.sim;
    let instruments = cfg
        .market
        .symbols
        .iter()
        .map(|s| Instrument {
            symbol: s.clone(),
            base: base_asset(s, &cfg.market.quote),
            quote: cfg.market.quote.clone(),
            tick_size: sim.tick_size,
            step_size: sim.step_size,
            min_notional: sim.min_notional,
        })
        .collect();
    let market = if sim.replay.is_empty() {
        MarketSource::random_walk(RandomWalk {
            seed: sim.seed,
            start: sim.start,
            bar_vol: sim.bar_vol,
            start_prices: sim.start_prices.clone().into_iter().collect(),
            price_dp: sim.tick_size.normalize().scale(),
        })
    } else {
        let mut series = HashMap::new();
        for (symbol, path) in &sim.replay {
            let path: PathBuf = path.clone();
            series.insert(symbol.clone(), read_candles(&path)?);
        }
        MarketSource::Replay(series)
    };
    let scfg = SimConfig {
        quote: cfg.market.quote.clone(),
        initial_cash: sim.initial_cash,
        fee_rate: sim.fee_rate,
        slippage_bps: sim.slippage_bps,
        timeframe: cfg.market.timeframe,
        instruments,
    };
    let exchange = SimExchange::new(market, scfg, clock);
    let far = DateTime::<Utc>::MAX_UTC;
    let fills = store.fills_between(DateTime::<Utc>::MIN_UTC, far).await?;
    exchange.restore(&fills);
    Ok(exchange)
}

/// `BTCUSDT` with quote `USDT` trades `BTC`; `KRW-BTC` (Upbit style) trades `BTC`.
fn base_asset(symbol: &Symbol, quote: &str) -> String {
    let s = symbol.as_str();
    if let Some(rest) = s.strip_prefix(&format!("{quote}-")) {
        return rest.to_owned();
    }
    s.strip_suffix(quote).unwrap_or(s).trim_end_matches(['-', '_']).to_owned()
}
