//! The trading pipeline: RiskCheck -> DataCollection -> Analysis -> Execution, once per closed bar.
//!
//! If RiskCheck blocks entries, the cycle skips straight to Execution with exits only, before any market data is
//! fetched. If data or analysis fail, Execution still runs the exits RiskCheck asked for. Every stage's outcome
//! lands in the [`CycleReport`], which the job runtime stores in the job ledger.

pub mod analysis;
pub mod book;
pub mod booking;
pub mod data;
pub mod execution;
pub mod gate;
pub mod liquidity;
pub mod pretrade;
pub mod risk;
pub mod stage;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use tracing::Instrument;

use self::analysis::Analysis;
use self::book::Book;
use self::data::{DataCollection, MarketData, SymbolData};
use self::execution::{Execution, ExecutionInput, ExecutionReport, SizingParams};
use self::gate::QuickFilter;
use self::pretrade::PreTradeLimits;
use self::risk::{RiskCheck, RiskInput, RiskLimits};
use self::stage::{CycleContext, Stage, StageError, StageName, StageReport, StageStatus, Timing, run_timed};
use crate::clock::Clock;
use crate::domain::{Order, RunId, Symbol, Timeframe};
use crate::ports::{BotState, Exchange, ExchangeError, RunFence, Store, StoreError};
use crate::strategy::{Strategy, Target};

/// Which part of the pipeline to run (`mcbot run-once --stage ...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StageSelection {
    /// The whole cycle.
    All,
    /// RiskCheck only (persists breaker state, places nothing).
    Risk,
    /// DataCollection only (fetches and stores candles).
    Data,
    /// Analysis over stored candles (records signals, places nothing).
    Analysis,
    /// RiskCheck then Execution of the signals Analysis recorded for this bar.
    Execution,
}

/// The pipeline's configuration.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Symbols traded.
    pub symbols: Vec<Symbol>,
    /// Bar length.
    pub timeframe: Timeframe,
    /// Quote asset cash is counted in.
    pub quote: String,
    /// Per-stage time limit.
    pub stage_timeout: Duration,
    /// Bars fetched per symbol (at least the strategy's warm-up).
    pub lookback: usize,
    /// Risk limits.
    pub risk: RiskLimits,
    /// Pre-trade limits.
    pub pretrade: PreTradeLimits,
    /// Sizing.
    pub sizing: SizingParams,
    /// Optional quick-filter gate on entries.
    pub gate: QuickFilter,
}

/// Failures that stop a cycle outside any stage: the state could not be read or the book not built.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The store failed: fail closed, nothing was placed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The exchange failed while building the book: nothing was placed.
    #[error(transparent)]
    Exchange(#[from] ExchangeError),
}

impl PipelineError {
    /// True when the same cycle may simply be run again (the exchange or database was briefly away).
    pub fn retryable(&self) -> bool {
        match self {
            PipelineError::Store(e) => e.retryable(),
            PipelineError::Exchange(e) => e.retryable(),
        }
    }

    /// What failed.
    pub fn kind(&self) -> crate::ports::FailureKind {
        match self {
            PipelineError::Store(StoreError::Fenced(_)) => crate::ports::FailureKind::ClaimLost,
            PipelineError::Store(_) => crate::ports::FailureKind::Store,
            PipelineError::Exchange(e) => e.kind(),
        }
    }
}

/// Everything a cycle did, printed by `run-once` and stored in the job ledger.
#[derive(Debug, Clone, Serialize)]
pub struct CycleReport {
    /// The run.
    pub run_id: String,
    /// The bar acted on.
    pub bar_close: DateTime<Utc>,
    /// Stage outcomes, in order.
    pub stages: Vec<StageReport>,
    /// Targets decided.
    pub targets: Vec<TargetView>,
    /// Orders placed.
    pub orders: Vec<Order>,
    /// Why no order was placed for some symbols.
    pub skipped: Vec<(Symbol, String)>,
    /// RiskCheck's reasons for blocking entries.
    pub blocked_by: Vec<String>,
    /// Equity at the end of the cycle, if Execution ran.
    pub equity: Option<Decimal>,
    /// True when the bar had already been processed and nothing ran.
    pub already_processed: bool,
}

impl CycleReport {
    /// True when a stage halted or failed: the job is recorded as failed and alerted.
    pub fn failed(&self) -> bool {
        self.stages.iter().any(|s| matches!(s.status, StageStatus::Halted | StageStatus::Failed))
    }

    /// The first halted or failed stage's cause and message, for the job ledger and the failure event.
    pub fn failure(&self) -> Option<(crate::ports::FailureKind, String)> {
        self.stages.iter().find(|s| matches!(s.status, StageStatus::Halted | StageStatus::Failed)).map(|s| {
            (s.failure.unwrap_or(crate::ports::FailureKind::Store), format!("{}: {}", s.stage.as_str(), s.detail))
        })
    }

    /// True when a stage failed transiently (time-out, exchange or database briefly away): running the same
    /// cycle again may succeed and cannot place anything twice.
    pub fn retryable(&self) -> bool {
        self.stages.iter().any(|s| s.status == StageStatus::Failed)
            && !self.stages.iter().any(|s| s.status == StageStatus::Halted)
    }
}

/// A target as reported.
#[derive(Debug, Clone, Serialize)]
pub struct TargetView {
    /// The pair.
    pub symbol: Symbol,
    /// Target weight.
    pub weight: Decimal,
    /// Why.
    pub reason: String,
}

impl From<&Target> for TargetView {
    fn from(t: &Target) -> Self {
        Self { symbol: t.symbol.clone(), weight: t.weight, reason: t.reason.clone() }
    }
}

/// The pipeline, wired to its ports.
pub struct Pipeline {
    cfg: PipelineConfig,
    exchange: Arc<dyn Exchange>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    risk: RiskCheck,
    data: DataCollection,
    analysis: Analysis,
    execution: Execution,
}

impl Pipeline {
    /// Wires the stages. The lookback is raised to the strategy's warm-up if configured lower.
    pub fn new(
        mut cfg: PipelineConfig,
        exchange: Arc<dyn Exchange>,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        strategy: Box<dyn Strategy>,
    ) -> Self {
        cfg.lookback = cfg.lookback.max(strategy.warmup());
        if cfg.gate.enabled {
            cfg.lookback = cfg.lookback.max(cfg.gate.window_bars);
        }
        let risk = RiskCheck::new(cfg.risk.clone(), store.clone());
        let data =
            DataCollection::new(exchange.clone(), store.clone(), cfg.symbols.clone(), cfg.timeframe, cfg.lookback);
        let analysis =
            Analysis::new(strategy, store.clone()).with_gate(cfg.gate.clone(), cfg.timeframe.bars_per_year());
        let execution = Execution::new(
            exchange.clone(),
            store.clone(),
            &cfg.symbols,
            cfg.quote.clone(),
            cfg.pretrade.clone(),
            cfg.sizing.clone(),
        )
        .with_risk(cfg.risk.clone());
        Self { cfg, exchange, store, clock, risk, data, analysis, execution }
    }

    /// The configuration in force.
    pub fn config(&self) -> &PipelineConfig {
        &self.cfg
    }

    /// The clock the pipeline runs on, so its job stamps events with the same time.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Cash from the exchange, positions from the store, marks from the exchange's last prices.
    pub async fn book(&self) -> Result<Book, PipelineError> {
        let balances = self.exchange.balances().await?;
        let cash = balances.iter().filter(|b| b.asset == self.cfg.quote).map(|b| b.total()).sum();
        let mut book = Book { cash, ..Default::default() };
        for p in self.store.positions().await? {
            if p.qty > Decimal::ZERO {
                book.marks.insert(p.symbol.clone(), self.exchange.last_price(&p.symbol).await?);
            }
            book.positions.insert(p.symbol.clone(), p);
        }
        Ok(book)
    }

    /// Runs one cycle (or the selected stages) for the bar that closed at `bar_close`, under `run_id`, with the
    /// run's claim `fence` carried by every write.
    pub async fn run_cycle(
        &self,
        run_id: &RunId,
        bar_close: DateTime<Utc>,
        selection: StageSelection,
        fence: Option<RunFence>,
    ) -> Result<CycleReport, PipelineError> {
        let cx = CycleContext { run_id: run_id.clone(), bar_close, now: self.clock.now(), fence };
        let mut report = CycleReport {
            run_id: run_id.to_string(),
            bar_close,
            stages: Vec::new(),
            targets: Vec::new(),
            orders: Vec::new(),
            skipped: Vec::new(),
            blocked_by: Vec::new(),
            equity: None,
            already_processed: false,
        };
        let state = self.store.load_state().await?;
        match selection {
            StageSelection::All => self.full_cycle(&cx, state, &mut report).await?,
            StageSelection::Risk => {
                let book = self.book().await?;
                self.run_risk(&cx, book, state, &mut report).await;
            }
            StageSelection::Data => {
                self.run_data(&cx, state.last_bar, &mut report).await;
            }
            StageSelection::Analysis => {
                let book = self.book().await?;
                let data = self.stored_data(bar_close).await?;
                self.run_analysis(&cx, data, book, &mut report).await;
            }
            StageSelection::Execution => self.execute_recorded(&cx, state, &mut report).await?,
        }
        Ok(report)
    }

    /// The four stages. If RiskCheck blocks entries, data and analysis are skipped and Execution runs the exits.
    async fn full_cycle(
        &self,
        cx: &CycleContext,
        state: BotState,
        report: &mut CycleReport,
    ) -> Result<(), PipelineError> {
        if state.last_bar.is_some_and(|b| b >= cx.bar_close) {
            report.already_processed = true;
            return Ok(());
        }
        let mut book = self.book().await?;
        let last_bar = state.last_bar;
        let Some((verdict, state)) = self.run_risk(cx, book.clone(), state, report).await else { return Ok(()) };
        let mut targets = Vec::new();
        let mut data_issues = BTreeMap::new();
        if verdict.entries_allowed {
            if let Some(data) = self.run_data(cx, last_bar, report).await {
                for (s, d) in &data.symbols {
                    if let Some(close) = d.last_close() {
                        book.marks.insert(s.clone(), close);
                    }
                    if let Some(issue) = &d.issue {
                        data_issues.insert(s.clone(), issue.clone());
                    }
                }
                targets = self.run_analysis(cx, data, book.clone(), report).await.unwrap_or_default();
            }
        } else {
            for stage in [StageName::DataCollection, StageName::Analysis] {
                let now = Timing { started_at: self.clock.now(), ms: 0 };
                let detail = "entries blocked by RiskCheck: exits only";
                report.stages.push(StageReport::new(stage, StageStatus::Skipped, now, detail));
            }
        }
        let complete = !report.stages.iter().any(|s| s.status == StageStatus::Failed);
        self.run_execution(cx, ExecutionInput { targets, verdict, book, data_issues, state, complete }, report).await;
        Ok(())
    }

    /// RiskCheck, then Execution of the decision Analysis recorded for this bar (`run-once --stage execution`).
    async fn execute_recorded(
        &self,
        cx: &CycleContext,
        state: BotState,
        report: &mut CycleReport,
    ) -> Result<(), PipelineError> {
        let mut book = self.book().await?;
        let Some((verdict, state)) = self.run_risk(cx, book.clone(), state, report).await else { return Ok(()) };
        let targets = self
            .store
            .signals_of_run(cx.run_id.as_str())
            .await?
            .into_iter()
            .map(|s| Target { symbol: s.symbol, weight: s.target_weight, reason: s.reason })
            .collect();
        for (symbol, data) in self.stored_data(cx.bar_close).await?.symbols {
            if let Some(close) = data.last_close() {
                book.marks.insert(symbol, close);
            }
        }
        let input = ExecutionInput { targets, verdict, book, data_issues: BTreeMap::new(), state, complete: true };
        self.run_execution(cx, input, report).await;
        Ok(())
    }

    async fn run_risk(
        &self,
        cx: &CycleContext,
        book: Book,
        state: BotState,
        report: &mut CycleReport,
    ) -> Option<(risk::RiskVerdict, BotState)> {
        match self.timed(&self.risk, cx, RiskInput { book, state }).await {
            (Ok(out), ms) => {
                let status = if out.0.entries_allowed { StageStatus::Ok } else { StageStatus::Restricted };
                let detail = if out.0.entries_allowed {
                    format!("equity {}, {} exit(s)", out.0.equity.round_dp(2), out.0.exits.len())
                } else {
                    format!("entries blocked: {}", out.0.blocked_by.join("; "))
                };
                report.stages.push(StageReport::new(StageName::RiskCheck, status, ms, detail));
                report.blocked_by = out.0.blocked_by.clone();
                Some(out)
            }
            (Err(e), ms) => {
                push_err(report, StageName::RiskCheck, &e, ms);
                None
            }
        }
    }

    async fn run_execution(&self, cx: &CycleContext, input: ExecutionInput, report: &mut CycleReport) {
        match self.timed(&self.execution, cx, input).await {
            (Ok((exec, _state)), ms) => {
                let detail = format!(
                    "{} order(s), {} skipped, equity {}",
                    exec.orders.len(),
                    exec.skipped.len(),
                    exec.equity.round_dp(2)
                );
                report.stages.push(StageReport::new(StageName::Execution, StageStatus::Ok, ms, detail));
                let ExecutionReport { orders, skipped, equity, .. } = exec;
                report.orders = orders;
                report.skipped = skipped;
                report.equity = Some(equity);
            }
            (Err(e), ms) => push_err(report, StageName::Execution, &e, ms),
        }
    }

    async fn timed<S: Stage>(
        &self,
        stage: &S,
        cx: &CycleContext,
        input: S::Input,
    ) -> (Result<S::Output, StageError>, Timing) {
        let span = tracing::info_span!("stage", run_id = %cx.run_id, stage = stage.name().as_str());
        run_timed(stage, cx, input, self.cfg.stage_timeout, self.clock.as_ref()).instrument(span).await
    }

    async fn run_data(
        &self,
        cx: &CycleContext,
        last_bar: Option<DateTime<Utc>>,
        report: &mut CycleReport,
    ) -> Option<MarketData> {
        match self.timed(&self.data, cx, last_bar).await {
            (Ok(data), ms) => {
                let issues: Vec<String> =
                    data.symbols.iter().filter_map(|(s, d)| d.issue.as_ref().map(|i| format!("{s}: {i}"))).collect();
                let status = if issues.is_empty() { StageStatus::Ok } else { StageStatus::Restricted };
                let detail = if issues.is_empty() {
                    format!("{} symbol(s) fresh", data.symbols.len())
                } else {
                    issues.join("; ")
                };
                report.stages.push(StageReport::new(StageName::DataCollection, status, ms, detail));
                Some(data)
            }
            (Err(e), ms) => {
                push_err(report, StageName::DataCollection, &e, ms);
                None
            }
        }
    }

    async fn run_analysis(
        &self,
        cx: &CycleContext,
        data: MarketData,
        book: Book,
        report: &mut CycleReport,
    ) -> Option<Vec<Target>> {
        match self.timed(&self.analysis, cx, (data, book)).await {
            (Ok(decision), ms) => {
                let longs = decision.targets.iter().filter(|t| t.weight > Decimal::ZERO).count();
                let detail = format!("{} target(s), {longs} long", decision.targets.len());
                report.stages.push(StageReport::new(StageName::Analysis, StageStatus::Ok, ms, detail));
                report.targets = decision.targets.iter().map(TargetView::from).collect();
                Some(decision.targets)
            }
            (Err(e), ms) => {
                push_err(report, StageName::Analysis, &e, ms);
                None
            }
        }
    }

    async fn stored_data(&self, bar_close: DateTime<Utc>) -> Result<MarketData, StoreError> {
        let mut out = MarketData::default();
        let limit = i64::try_from(self.cfg.lookback).unwrap_or(i64::MAX);
        for s in &self.cfg.symbols {
            let candles = self.store.candles(s, self.cfg.timeframe, bar_close, limit).await?;
            let issue = data::check_series(&candles, self.cfg.timeframe, bar_close, self.cfg.lookback);
            out.symbols.insert(s.clone(), SymbolData { candles, issue });
        }
        Ok(out)
    }
}

fn push_err(report: &mut CycleReport, stage: StageName, e: &StageError, ms: Timing) {
    let status = match e {
        StageError::Skip(_) => StageStatus::Skipped,
        StageError::Halt { .. } => StageStatus::Halted,
        StageError::Retry { .. } => StageStatus::Failed,
    };
    tracing::warn!(stage = stage.as_str(), kind = e.kind().map(|k| k.as_str()), "{e}");
    let mut r = StageReport::new(stage, status, ms, e.to_string());
    r.failure = e.kind();
    report.stages.push(r);
}
