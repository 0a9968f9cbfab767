//! What the health job's monitors read: the last hour's fills against the prices their orders were sized at,
//! daily returns of the live equity and of the strategy's backtest over the same stored bars, and the process's
//! own figures. The statistics live in `mcbot_stages::monitors`; this module only gathers their inputs.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use mcbot_stages::backtest::config::SimConfig;
use mcbot_stages::backtest::event;
use mcbot_stages::domain::{Decimal, Side, Symbol, Timeframe};
use mcbot_stages::monitors::execution::{ExecutionLimits, ExecutionSample};
use mcbot_stages::monitors::process::{ProcessLimits, ProcessSample};
use mcbot_stages::monitors::returns::ReturnLimits;
use mcbot_stages::monitors::{self, Finding};
use mcbot_stages::ports::{EventKind, Severity, Store, StoreError};
use mcbot_stages::strategy::Strategy;

/// The process measures itself (resident memory, open descriptors); the binary knows how on its platform.
pub trait ProcessProbe: Send + Sync {
    /// Resident memory in bytes and open descriptors, where the platform tells.
    fn sample(&self) -> (Option<u64>, Option<u64>);
}

/// The daily returns the live record is compared with.
#[async_trait]
pub trait ReferenceReturns: Send + Sync {
    /// Daily returns of the reference between `from` and `to`, oldest first.
    async fn daily_returns(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<f64>, StoreError>;
}

/// The monitors the health job runs, with their limits.
#[derive(Clone, Default)]
pub struct Monitors {
    /// Slippage, latency and fee limits.
    pub execution: ExecutionLimits,
    /// Drawdown, drift and distribution limits.
    pub returns: ReturnLimits,
    /// Runtime lag, memory and descriptor limits.
    pub process: ProcessLimits,
    /// The backtest the live returns are held against; without it the return monitors are off.
    pub reference: Option<Arc<dyn ReferenceReturns>>,
    /// How the process measures itself; without it only the runtime lag is measured.
    pub probe: Option<Arc<dyn ProcessProbe>>,
}

/// How far back the return monitors look.
const RETURN_HISTORY: Duration = Duration::days(400);

impl Monitors {
    /// Every monitor's findings at `now`.
    pub async fn findings(&self, store: &dyn Store, now: DateTime<Utc>) -> Result<Vec<Finding>, StoreError> {
        let mut out = monitors::execution::evaluate(&execution_sample(store, now).await?, &self.execution);
        if let Some(reference) = &self.reference {
            let live = live_daily_returns(store, now - RETURN_HISTORY, now).await?;
            // The backtest is only worth running once the live record is long enough to be judged.
            if live.len() >= self.returns.min_days {
                let backtest = reference.daily_returns(now - RETURN_HISTORY, now).await?;
                out.extend(monitors::returns::evaluate(&backtest, &live, &self.returns));
            }
        }
        let (rss_bytes, open_fds) = self.probe.as_ref().map_or((None, None), |p| p.sample());
        let sample = ProcessSample { runtime_lag_secs: runtime_lag().await, rss_bytes, open_fds };
        out.extend(monitors::process::evaluate(&sample, &self.process));
        Ok(out)
    }
}

/// How long a task spawned now waits before the runtime runs it: a runtime starved by blocking work shows it.
async fn runtime_lag() -> f64 {
    let start = std::time::Instant::now();
    let woke = tokio::spawn(async move { start.elapsed() }).await;
    woke.map_or(0.0, |d| d.as_secs_f64())
}

/// Events read back to find the sizing prices of the last hour's orders (newest first; a cycle writes a few
/// dozen).
const RECENT_EVENTS: i64 = 5000;

/// The last hour's fills: adverse slippage against the price each order was sized at, order-to-fill latency,
/// and fees as a share of equity.
pub async fn execution_sample(store: &dyn Store, now: DateTime<Utc>) -> Result<ExecutionSample, StoreError> {
    let fills = store.fills_between(now - Duration::hours(1), now).await?;
    if fills.is_empty() {
        return Ok(ExecutionSample::default());
    }
    let mut sized_at: HashMap<String, Decimal> = HashMap::new();
    for e in store.recent_events(Severity::Info, RECENT_EVENTS).await? {
        if e.event.kind != EventKind::OrderPlaced {
            continue;
        }
        let p = &e.event.payload;
        if let (Some(id), Some(price)) = (p["client_order_id"].as_str(), p["ref_price"].as_str())
            && let Ok(price) = price.parse::<Decimal>()
        {
            sized_at.insert(id.to_owned(), price);
        }
    }
    let mut sample = ExecutionSample::default();
    let mut fees = Decimal::ZERO;
    for f in &fills {
        fees += f.fee;
        if let Some(reference) = sized_at.get(f.client_order_id.as_str()).filter(|p| !p.is_zero()) {
            // Adverse is positive: paying more on a buy, getting less on a sell.
            let sign = if f.side == Side::Buy { Decimal::ONE } else { -Decimal::ONE };
            let bps = sign * (f.price - reference) / reference * Decimal::from(10_000);
            sample.slippage_bps.push(bps.try_into().unwrap_or(0.0));
        }
        if let Some(order) = store.order(&f.client_order_id).await? {
            sample.latency_secs.push((f.ts - order.created_at).num_milliseconds().max(0) as f64 / 1000.0);
        }
    }
    let equity = store.equity_before(now + Duration::milliseconds(1)).await?.map(|e| e.equity);
    if let Some(equity) = equity.filter(|e| *e > Decimal::ZERO) {
        sample.fees_pct_of_equity = (fees / equity * Decimal::ONE_HUNDRED).try_into().unwrap_or(0.0);
    }
    Ok(sample)
}

/// Daily returns of the stored equity: the last snapshot of each UTC day against the day before's.
pub async fn live_daily_returns(
    store: &dyn Store,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<f64>, StoreError> {
    let mut closes: BTreeMap<NaiveDate, Decimal> = BTreeMap::new();
    for s in store.equity_between(from, to).await? {
        closes.insert(s.ts.date_naive(), s.equity);
    }
    Ok(daily_returns(closes.into_values().filter_map(|d| f64::try_from(d).ok())))
}

fn daily_returns(closes: impl Iterator<Item = f64>) -> Vec<f64> {
    let closes: Vec<f64> = closes.collect();
    closes.windows(2).filter(|w| w[0] > 0.0).map(|w| w[1] / w[0] - 1.0).collect()
}

/// The strategy backtested over the bars the bot stored, equally weighted across its symbols: what it should
/// have made on the data it saw, day by day.
pub struct BacktestReference {
    store: Arc<dyn Store>,
    strategy: Arc<dyn Strategy>,
    symbols: Vec<Symbol>,
    timeframe: Timeframe,
}

impl BacktestReference {
    /// The reference of `strategy` on `symbols`' stored `timeframe` bars.
    pub fn new(store: Arc<dyn Store>, strategy: Arc<dyn Strategy>, symbols: Vec<Symbol>, timeframe: Timeframe) -> Self {
        Self { store, strategy, symbols, timeframe }
    }
}

#[async_trait]
impl ReferenceReturns for BacktestReference {
    async fn daily_returns(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<f64>, StoreError> {
        let bars = (to - from).num_minutes() / i64::from(self.timeframe.minutes());
        // Per day, the mean of the symbols' equity growth (an equal-weight book rebalanced daily).
        let mut growth: BTreeMap<NaiveDate, (f64, u32)> = BTreeMap::new();
        for s in &self.symbols {
            let candles = self.store.candles(s, self.timeframe, to, bars).await?;
            let Ok(sim) = event::replay(self.strategy.as_ref(), s, &candles, &SimConfig::default(), None) else {
                continue;
            };
            let mut closes: BTreeMap<NaiveDate, f64> = BTreeMap::new();
            for (c, e) in candles.iter().zip(&sim.equity) {
                closes.insert(c.close_time(self.timeframe).date_naive(), *e);
            }
            let days: Vec<(NaiveDate, f64)> = closes.into_iter().collect();
            for w in days.windows(2) {
                if w[0].1 > 0.0 {
                    let g = growth.entry(w[1].0).or_default();
                    g.0 += w[1].1 / w[0].1 - 1.0;
                    g.1 += 1;
                }
            }
        }
        Ok(growth.into_values().map(|(sum, n)| sum / f64::from(n)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daily_returns_compare_each_close_with_the_one_before() {
        let r = daily_returns([100.0, 110.0, 99.0].into_iter());
        assert_eq!(r.len(), 2);
        assert!((r[0] - 0.1).abs() < 1e-12 && (r[1] + 0.1).abs() < 1e-12, "{r:?}");
    }
}
