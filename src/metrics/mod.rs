//! Prometheus metrics of the bot, served by the admin HTTP server at `/metrics`.
//!
//! The core crates record through the `metrics` facade (as they log through `tracing`), and this module
//! installs the one recorder that turns them into Prometheus text exposition (format 0.0.4, which promtool and
//! every Prometheus version read). Trading figures are derived from the event log by [`consumer::EventMetrics`]
//! and from the stored state by [`state::refresh`]: the events are the source of truth, never an inline call on
//! the trading path. Job runs are counted by [`JobMetrics`], the job runtime's observer. Process figures
//! (memory, CPU, descriptors) are read from `/proc` when scraped, under the standard `process_*` names.
//!
//! Labels stay low-cardinality: symbol, side, job, stage, outcome, strategy, consumer, breaker, kind. Never an
//! order id, a run id or a price.

pub mod consumer;
pub mod cursors;
pub mod process;
pub mod state;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use chrono::{DateTime, Utc};
use mcbot_schedules::{RunEnd, RunObserver, RunStart};
use mcbot_stages::Clock;
use mcbot_stages::ports::{EventKind, JobStatus, Severity};
use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

/// Why metrics could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The Prometheus recorder could not be built or installed.
    #[error("metrics recorder: {0}")]
    Recorder(String),
}

/// Histogram buckets, in the metric's base unit. Everything else renders as a plain counter or gauge.
const BUCKETS: &[(&str, &[f64])] = &[
    (names::SLIPPAGE_BPS, &[-20.0, -10.0, -5.0, -2.0, 0.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 50.0, 100.0]),
    (names::ORDER_ACK_LATENCY, &[0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0]),
    (names::JOB_DURATION, &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0]),
    (names::STAGE_DURATION, &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
    (names::BAR_TO_CYCLE, &[0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0]),
];

/// Every metric name the bot exports, in one place: the dashboards, the alert rules and the tests refer to these.
pub mod names {
    /// Build and mode of the running process (value 1).
    pub const BUILD_INFO: &str = "mcbot_build_info";
    /// Orders by side and outcome.
    pub const ORDERS: &str = "mcbot_orders_total";
    /// Orders that did not execute, by reason.
    pub const ORDER_REJECTS: &str = "mcbot_order_rejects_total";
    /// Fills by symbol and side.
    pub const FILLS: &str = "mcbot_fills_total";
    /// Fees paid since start, in the quote asset.
    pub const FEES: &str = "mcbot_fees_paid_quote";
    /// Traded notional since start, in the quote asset.
    pub const NOTIONAL: &str = "mcbot_traded_notional_quote";
    /// Slippage of each fill against the price it was sized at, in basis points (adverse is positive).
    pub const SLIPPAGE_BPS: &str = "mcbot_slippage_bps";
    /// Time from an order's recording to the venue's acknowledgement.
    pub const ORDER_ACK_LATENCY: &str = "mcbot_order_ack_latency_seconds";
    /// Strategy decisions.
    pub const SIGNALS: &str = "mcbot_signals_total";
    /// Positions closed, by result (win, loss, even, unknown).
    pub const POSITIONS_CLOSED: &str = "mcbot_positions_closed_total";
    /// Breaker trips.
    pub const BREAKER_TRIPS: &str = "mcbot_breaker_trips_total";
    /// Events written to the log, by kind and severity.
    pub const EVENTS: &str = "mcbot_events_total";
    /// Rate limits (429) and bans (418) reported by the venue.
    pub const VENUE_LIMITS: &str = "mcbot_venue_limit_events_total";
    /// Stage outcomes.
    pub const STAGE_RUNS: &str = "mcbot_stage_runs_total";
    /// Stage wall time.
    pub const STAGE_DURATION: &str = "mcbot_stage_duration_seconds";
    /// Bar close to cycle start.
    pub const BAR_TO_CYCLE: &str = "mcbot_bar_close_to_cycle_start_seconds";
    /// Job runs by job and outcome.
    pub const JOB_RUNS: &str = "mcbot_job_runs_total";
    /// Job failures by job and cause.
    pub const JOB_FAILURES: &str = "mcbot_job_failures_total";
    /// Job wall time.
    pub const JOB_DURATION: &str = "mcbot_job_duration_seconds";
    /// Unix time of each job's last successful run.
    pub const JOB_LAST_SUCCESS: &str = "mcbot_job_last_success_timestamp_seconds";
    /// Seconds between two fires of each job's schedule.
    pub const JOB_INTERVAL: &str = "mcbot_job_schedule_interval_seconds";
    /// 1 while a job runs.
    pub const JOB_RUNNING: &str = "mcbot_job_running";
    /// Equity.
    pub const EQUITY: &str = "mcbot_equity_quote";
    /// Free cash.
    pub const CASH: &str = "mcbot_cash_quote";
    /// Highest equity seen.
    pub const PEAK_EQUITY: &str = "mcbot_peak_equity_quote";
    /// Drawdown from the peak, 0-1.
    pub const DRAWDOWN: &str = "mcbot_drawdown_ratio";
    /// The drawdown that latches safe mode, 0-1.
    pub const DRAWDOWN_LIMIT: &str = "mcbot_drawdown_limit_ratio";
    /// Equity change since the UTC day's start.
    pub const PNL_TODAY: &str = "mcbot_pnl_today_quote";
    /// Realized P&L of the stored positions, by strategy.
    pub const REALIZED_PNL: &str = "mcbot_realized_pnl_quote";
    /// Unrealized P&L of open positions at the last close, by strategy.
    pub const UNREALIZED_PNL: &str = "mcbot_unrealized_pnl_quote";
    /// Open positions.
    pub const OPEN_POSITIONS: &str = "mcbot_open_positions";
    /// Value of each position at the last close.
    pub const POSITION_VALUE: &str = "mcbot_position_value_quote";
    /// Position value over equity, 0-1.
    pub const EXPOSURE: &str = "mcbot_exposure_ratio";
    /// Trading state: 1 for the current one of active, entries_paused, halted.
    pub const TRADING_STATE: &str = "mcbot_trading_state";
    /// 1 while safe mode is on.
    pub const SAFE_MODE: &str = "mcbot_safe_mode";
    /// 1 while a breaker is tripped.
    pub const BREAKER_TRIPPED: &str = "mcbot_breaker_tripped";
    /// Close time of each symbol's newest stored bar.
    pub const LAST_BAR_CLOSE: &str = "mcbot_last_bar_close_timestamp_seconds";
    /// Age of each symbol's newest stored bar.
    pub const LAST_BAR_AGE: &str = "mcbot_last_bar_age_seconds";
    /// Bar length.
    pub const TIMEFRAME: &str = "mcbot_timeframe_seconds";
    /// Wake-up delay of the runtime probe task.
    pub const TOKIO_LAG: &str = "mcbot_tokio_lag_seconds";
    /// Events after a consumer's cursor, exact (read from the store at scrape).
    pub const CONSUMER_LAG: &str = "mcbot_event_consumer_lag_events";
    /// Events a consumer handled.
    pub const CONSUMER_HANDLED: &str = "mcbot_event_consumer_handled_total";
    /// Batches a consumer failed to handle (for the alert consumer: failed deliveries).
    pub const CONSUMER_FAILURES: &str = "mcbot_event_consumer_failures_total";
    /// A consumer's cursor.
    pub const CONSUMER_CURSOR: &str = "mcbot_event_consumer_cursor";
    /// The configured resident memory limit.
    pub const RSS_LIMIT: &str = "mcbot_process_resident_memory_limit_bytes";
    /// 1 when the database answered the last state refresh.
    pub const STORE_UP: &str = "mcbot_store_up";
    /// REST requests to the venue.
    pub const EXCHANGE_REQUESTS: &str = "mcbot_exchange_requests_total";
    /// Request weight used this minute.
    pub const EXCHANGE_WEIGHT_USED: &str = "mcbot_exchange_weight_used";
    /// Request weight budget per minute.
    pub const EXCHANGE_WEIGHT_LIMIT: &str = "mcbot_exchange_weight_limit";
    /// Venue clock minus local clock.
    pub const EXCHANGE_CLOCK_OFFSET: &str = "mcbot_exchange_clock_offset_seconds";
    /// Stream reconnects.
    pub const EXCHANGE_WS_RECONNECTS: &str = "mcbot_exchange_ws_reconnects_total";
    /// Stream frames.
    pub const EXCHANGE_WS_MESSAGES: &str = "mcbot_exchange_ws_messages_total";
    /// Time of the last stream frame.
    pub const EXCHANGE_WS_LAST_MESSAGE: &str = "mcbot_exchange_ws_last_message_timestamp_seconds";
    /// 1 when a live guard was met at start, 0 when it failed (mode live only).
    pub const LIVE_GUARD_OK: &str = "mcbot_live_guard_ok";
    /// 1 while mode live sends real orders, 0 when a guard failed and the bot trades paper instead.
    pub const LIVE_ACTIVE: &str = "mcbot_live_active";
    /// The canary's share of equity traded in mode live.
    pub const LIVE_CAPITAL_FRACTION: &str = "mcbot_live_capital_fraction";
    /// Calls to the control API refused for a wrong or missing token.
    pub const API_UNAUTHORIZED: &str = "mcbot_api_unauthorized_total";
}

/// The installed recorder's handle; one per process (the recorder is global, like the tracing subscriber).
static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder once and returns its handle; later calls return the same handle.
pub fn install() -> Result<PrometheusHandle, MetricsError> {
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let recorder = recorder()?;
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|e| MetricsError::Recorder(e.to_string()))?;
    describe();
    let _ = HANDLE.set(handle.clone());
    Ok(handle)
}

/// A recorder with the bot's histogram buckets (tests build their own, local one).
pub fn recorder() -> Result<PrometheusRecorder, MetricsError> {
    let mut builder = PrometheusBuilder::new();
    for (name, buckets) in BUCKETS {
        builder = builder
            .set_buckets_for_metric(Matcher::Full((*name).to_owned()), buckets)
            .map_err(|e| MetricsError::Recorder(e.to_string()))?;
    }
    Ok(builder.build_recorder())
}

/// HELP text and units of every metric (on the current recorder).
pub fn describe() {
    use names::*;
    describe_gauge!(BUILD_INFO, "Version, commit, mode and venue of the running process (value 1).");
    describe_counter!(
        ORDERS,
        "Orders by side and outcome (placed, acknowledged, rejected, not_placed, outcome_unknown, canceled), from the event log."
    );
    describe_counter!(
        ORDER_REJECTS,
        "Orders that did not execute, by reason (venue_rejected, not_placed, outcome_unknown)."
    );
    describe_counter!(FILLS, "Fills by symbol and side, from the event log.");
    describe_gauge!(FEES, "Fees paid since the process started, in the quote asset (use increase()).");
    describe_gauge!(NOTIONAL, "Traded notional since the process started, in the quote asset (use increase()).");
    describe_histogram!(
        SLIPPAGE_BPS,
        "Slippage of each fill against the price the order was sized at, in basis points; adverse is positive."
    );
    describe_histogram!(
        ORDER_ACK_LATENCY,
        Unit::Seconds,
        "Time from an order's recording to the venue's acknowledgement."
    );
    describe_counter!(SIGNALS, "Strategy decisions by strategy and direction (long, flat).");
    describe_counter!(
        POSITIONS_CLOSED,
        "Positions closed, by symbol and result (win, loss, even, unknown when opened before the process started)."
    );
    describe_counter!(BREAKER_TRIPS, "Circuit breaker trips by breaker.");
    describe_counter!(EVENTS, "Events written to the event log, by kind and severity.");
    describe_counter!(VENUE_LIMITS, "Rate limits (429: rate_limited) and bans (418: banned) reported by the venue.");
    describe_counter!(STAGE_RUNS, "Pipeline stage outcomes by stage and status.");
    describe_histogram!(STAGE_DURATION, Unit::Seconds, "Wall time of each pipeline stage.");
    describe_histogram!(BAR_TO_CYCLE, Unit::Seconds, "Time from a bar's close to the start of its trading cycle.");
    describe_counter!(
        JOB_RUNS,
        "Job fires by job and outcome (succeeded, failed, and fires not run: already_done, busy, overlap, ledger_unavailable, shutting_down)."
    );
    describe_counter!(JOB_FAILURES, "Failed job runs by job and cause.");
    describe_histogram!(JOB_DURATION, Unit::Seconds, "Wall time of each job run.");
    describe_gauge!(
        JOB_LAST_SUCCESS,
        Unit::Seconds,
        "Unix time of each job's last successful run (from the job ledger at start)."
    );
    describe_gauge!(JOB_INTERVAL, Unit::Seconds, "Seconds between two fires of each job's schedule.");
    describe_gauge!(JOB_RUNNING, "1 while the job is running in this process.");
    describe_gauge!(EQUITY, "Equity (cash plus marked positions) at the last snapshot, in the quote asset.");
    describe_gauge!(CASH, "Free cash at the last snapshot, in the quote asset.");
    describe_gauge!(PEAK_EQUITY, "Highest equity seen, in the quote asset.");
    describe_gauge!(DRAWDOWN, "Drawdown of equity from its peak, 0-1.");
    describe_gauge!(DRAWDOWN_LIMIT, "The drawdown (0-1) that latches safe mode (risk.max_drawdown_pct).");
    describe_gauge!(PNL_TODAY, "Equity change since the start of the UTC day, in the quote asset.");
    describe_gauge!(
        REALIZED_PNL,
        "Realized P&L of all stored positions, fees included, by strategy, in the quote asset."
    );
    describe_gauge!(
        UNREALIZED_PNL,
        "Unrealized P&L of open positions at the last stored close, by strategy, in the quote asset."
    );
    describe_gauge!(OPEN_POSITIONS, "Symbols with a non-zero position.");
    describe_gauge!(POSITION_VALUE, "Value of each position at the last stored close, in the quote asset.");
    describe_gauge!(EXPOSURE, "Value of all positions over equity, 0-1.");
    describe_gauge!(
        TRADING_STATE,
        "1 for the current trading state (active, entries_paused, halted), 0 for the others."
    );
    describe_gauge!(SAFE_MODE, "1 while safe mode is on (no entries until a person clears it).");
    describe_gauge!(BREAKER_TRIPPED, "1 while the breaker is tripped.");
    describe_gauge!(LAST_BAR_CLOSE, Unit::Seconds, "Unix close time of each symbol's newest stored bar.");
    describe_gauge!(LAST_BAR_AGE, Unit::Seconds, "Age of each symbol's newest stored bar at scrape time.");
    describe_gauge!(TIMEFRAME, Unit::Seconds, "Length of one bar (market.timeframe).");
    describe_gauge!(TOKIO_LAG, Unit::Seconds, "How late the runtime probe task woke up (async runtime starvation).");
    describe_counter!(CONSUMER_HANDLED, "Events the consumer handled.");
    describe_counter!(
        CONSUMER_FAILURES,
        "Batches the consumer failed to handle (for the alert consumer: failed deliveries)."
    );
    describe_gauge!(RSS_LIMIT, Unit::Bytes, "Resident memory the process should stay under (monitor.rss_limit_bytes).");
    describe_gauge!(STORE_UP, "1 when the database answered the last probe.");
    describe_gauge!(LIVE_GUARD_OK, "Mode live: 1 when the guard was met at start, 0 when it failed (then paper).");
    describe_gauge!(LIVE_ACTIVE, "Mode live: 1 while real orders go out, 0 while a failed guard keeps it on paper.");
    describe_gauge!(LIVE_CAPITAL_FRACTION, "Mode live: the share of equity traded (the canary).");
    describe_counter!(API_UNAUTHORIZED, "Control API calls refused for a wrong or missing bearer token.");
    describe_counter!(
        EXCHANGE_REQUESTS,
        "REST requests to the venue by endpoint and status class (2xx, 4xx, 429, 418, 5xx, transport_error)."
    );
    describe_gauge!(EXCHANGE_WEIGHT_USED, "Request weight used in the current minute, as the venue reports it.");
    describe_gauge!(
        EXCHANGE_WEIGHT_LIMIT,
        "Request weight the bot allows itself per minute (exchange.binance.weight_budget_per_min)."
    );
    describe_gauge!(
        EXCHANGE_CLOCK_OFFSET,
        Unit::Seconds,
        "Venue clock minus local clock, measured for signed requests."
    );
    describe_counter!(EXCHANGE_WS_RECONNECTS, "Reconnects of the venue's market data stream.");
    describe_counter!(EXCHANGE_WS_MESSAGES, "Frames received on the venue's market data stream.");
    describe_gauge!(
        EXCHANGE_WS_LAST_MESSAGE,
        Unit::Seconds,
        "Unix time of the last frame on the venue's market data stream."
    );
}

/// Scrape-time figures and the rendering of `/metrics`.
pub struct Exporter {
    handle: PrometheusHandle,
    clock: Arc<dyn Clock>,
    /// Close time of each symbol's newest stored bar, kept by [`state::refresh`].
    pub(crate) bars: Mutex<BTreeMap<String, DateTime<Utc>>>,
}

impl Exporter {
    /// An exporter over the installed recorder.
    pub fn new(handle: PrometheusHandle, clock: Arc<dyn Clock>) -> Self {
        Self { handle, clock, bars: Mutex::new(BTreeMap::new()) }
    }

    /// The `/metrics` body: bar ages as of now, the recorder's metrics, then the process section.
    pub fn render(&self) -> String {
        self.render_with(None)
    }

    /// [`Exporter::render`] with each consumer's lag and cursor from `consumers` (read from the store by the
    /// caller, at scrape) between the recorder's metrics and the process section.
    pub fn render_with(&self, consumers: Option<&mcbot_stages::ports::ConsumerCursors>) -> String {
        let now = self.clock.now();
        let bars = self.bars.lock().map(|b| b.clone()).unwrap_or_default();
        for (symbol, close) in bars {
            let age = (now - close).num_milliseconds() as f64 / 1000.0;
            metrics::gauge!(names::LAST_BAR_AGE, "symbol" => symbol).set(age.max(0.0));
        }
        let mut body = self.handle.render();
        if let Some(all) = consumers {
            cursors::render(&mut body, all);
        }
        process::render(&mut body);
        body
    }

    /// Drains histogram buffers so that memory stays bounded while nobody scrapes.
    pub fn upkeep(&self) {
        self.handle.run_upkeep();
    }
}

/// Sets the metrics that describe this process and its configuration (build, limits, schedule intervals) and
/// creates every fixed label combination at zero, so the dashboards and alert rules find each series from the
/// first scrape on.
pub fn register_static(cfg: &crate::config::Config, jobs: &[(String, String)]) {
    use names::*;
    let venue = match cfg.mode {
        crate::config::Mode::Mock => "sim".to_owned(),
        _ => format!("{:?}", cfg.exchange.venue).to_lowercase(),
    };
    metrics::gauge!(BUILD_INFO,
        "version" => env!("CARGO_PKG_VERSION"),
        "commit" => option_env!("BUILD_GIT_COMMIT").unwrap_or("unknown"),
        "mode" => cfg.mode.as_str(),
        "venue" => venue)
    .set(1.0);
    metrics::gauge!(RSS_LIMIT).set(cfg.monitor.rss_limit_bytes as f64);
    metrics::gauge!(TIMEFRAME).set(f64::from(cfg.market.timeframe.minutes()) * 60.0);
    let limit = cfg.risk.max_drawdown_pct / rust_decimal::Decimal::ONE_HUNDRED;
    metrics::gauge!(DRAWDOWN_LIMIT).set(crate::metrics::state::f(limit));
    for side in ["buy", "sell"] {
        for outcome in ["placed", "acknowledged", "rejected", "not_placed", "outcome_unknown", "canceled"] {
            metrics::counter!(ORDERS, "side" => side, "outcome" => outcome).absolute(0);
        }
        for s in &cfg.market.symbols {
            metrics::counter!(FILLS, "symbol" => s.as_str().to_owned(), "side" => side).absolute(0);
            metrics::gauge!(FEES, "symbol" => s.as_str().to_owned()).increment(0.0);
            metrics::gauge!(NOTIONAL, "symbol" => s.as_str().to_owned(), "side" => side).increment(0.0);
        }
    }
    for reason in ["venue_rejected", "not_placed", "outcome_unknown"] {
        metrics::counter!(ORDER_REJECTS, "reason" => reason).absolute(0);
    }
    for kind in ["rate_limited", "banned"] {
        metrics::counter!(VENUE_LIMITS, "kind" => kind).absolute(0);
    }
    for breaker in state::BREAKERS {
        metrics::counter!(BREAKER_TRIPS, "breaker" => *breaker).absolute(0);
    }
    for severity in [Severity::Warning, Severity::Critical, Severity::Emergency] {
        metrics::counter!(EVENTS, "kind" => EventKind::JobFailed.as_str(), "severity" => severity.as_str()).absolute(0);
    }
    let strategy = cfg.strategy.name.clone();
    for direction in ["long", "flat"] {
        metrics::counter!(SIGNALS, "strategy" => strategy.clone(), "direction" => direction).absolute(0);
    }
    for result in ["win", "loss", "even", "unknown"] {
        metrics::counter!(POSITIONS_CLOSED, "result" => result).absolute(0);
    }
    for (job, expr) in jobs {
        for outcome in ["succeeded", "failed"] {
            metrics::counter!(JOB_RUNS, "job" => job.clone(), "outcome" => outcome).absolute(0);
        }
        metrics::gauge!(JOB_RUNNING, "job" => job.clone()).set(0.0);
        if let Some(secs) = schedule_interval(expr) {
            metrics::gauge!(JOB_INTERVAL, "job" => job.clone()).set(secs);
        }
    }
    for stage in ["risk_check", "data_collection", "analysis", "execution"] {
        for status in ["ok", "restricted", "skipped", "halted", "failed"] {
            metrics::counter!(STAGE_RUNS, "stage" => stage, "status" => status).absolute(0);
        }
    }
    metrics::gauge!(TOKIO_LAG).set(0.0);
}

/// Seconds between the next two fires of a cron expression (the longest gap of the next few, for schedules
/// with uneven gaps such as monthly ones).
fn schedule_interval(expr: &str) -> Option<f64> {
    let schedule = mcbot_schedules::Schedule::parse(expr).ok()?;
    let mut t = schedule.next_after(Utc::now())?;
    let mut longest = 0.0_f64;
    for _ in 0..3 {
        let next = schedule.next_after(t)?;
        longest = longest.max((next - t).num_seconds() as f64);
        t = next;
    }
    Some(longest)
}

/// The job runtime's observer that counts runs, times them and keeps each job's last success.
#[derive(Debug, Default)]
pub struct JobMetrics;

impl RunObserver for JobMetrics {
    fn run_started(&self, run: &RunStart<'_>) {
        metrics::gauge!(names::JOB_RUNNING, "job" => run.job.to_owned()).set(1.0);
    }

    fn run_finished(&self, run: &RunEnd<'_>) {
        let job = run.job.to_owned();
        metrics::gauge!(names::JOB_RUNNING, "job" => job.clone()).set(0.0);
        metrics::counter!(names::JOB_RUNS, "job" => job.clone(), "outcome" => run.status.as_str()).increment(1);
        metrics::histogram!(names::JOB_DURATION, "job" => job.clone()).record(run.duration.as_secs_f64());
        if let Some((kind, _)) = run.failure {
            metrics::counter!(names::JOB_FAILURES, "job" => job.clone(), "kind" => kind.as_str()).increment(1);
        }
        if run.status == JobStatus::Succeeded {
            metrics::gauge!(names::JOB_LAST_SUCCESS, "job" => job).set(run.finished_at.timestamp() as f64);
        }
    }

    fn fire_not_run(&self, job: &str, reason: &'static str) {
        metrics::counter!(names::JOB_RUNS, "job" => job.to_owned(), "outcome" => reason).increment(1);
    }
}

/// Measures how late a task wakes up from a short sleep, forever: a busy or blocked async runtime shows as
/// lag long before jobs miss their schedule. Runs until the process ends.
pub async fn runtime_lag_probe(every: std::time::Duration) {
    loop {
        let asked = std::time::Instant::now();
        tokio::time::sleep(every).await;
        let late = asked.elapsed().saturating_sub(every);
        metrics::gauge!(names::TOKIO_LAG).set(late.as_secs_f64());
    }
}

#[cfg(test)]
mod tests;
