//! Gauges of the stored state: equity, cash, drawdown, positions, exposure, P&L, trading state, breakers and
//! the newest stored bar per symbol. The state is written in the same transaction as the events that report
//! its changes, so reading it after those events (and at start, and every few seconds) gives the same figures
//! the bot acts on. Read through the `Store` port only; money is converted to f64 here, at the metrics edge.

use std::sync::Arc;

use chrono::Duration;
use mcbot_stages::Clock;
use mcbot_stages::domain::{Decimal, Symbol, Timeframe};
use mcbot_stages::ports::{Store, StoreError, TradingMode};
use rust_decimal::prelude::ToPrimitive;

use super::{Exporter, names};

/// Every breaker the risk stage knows, so each has a series from the first scrape.
pub const BREAKERS: &[&str] = &["daily_loss", "weekly_loss", "kill_switch", "order_outcome_unknown"];

/// What the refresh needs to know about the bot.
#[derive(Debug, Clone)]
pub struct StateSource {
    /// Symbols traded.
    pub symbols: Vec<Symbol>,
    /// Bar length.
    pub timeframe: Timeframe,
    /// Strategy name, the label of the P&L gauges.
    pub strategy: String,
}

/// A decimal as f64 for a gauge (0 if it cannot be represented).
pub fn f(d: Decimal) -> f64 {
    d.to_f64().unwrap_or(0.0)
}

/// Sets every state gauge from the store.
pub async fn refresh(
    store: &dyn Store,
    clock: &dyn Clock,
    src: &StateSource,
    exporter: &Exporter,
) -> Result<(), StoreError> {
    use names::*;
    let now = clock.now();
    let state = store.load_state().await?;
    metrics::gauge!(STORE_UP).set(1.0);
    for mode in [TradingMode::Active, TradingMode::EntriesPaused, TradingMode::Halted] {
        let on = if state.trading == mode { 1.0 } else { 0.0 };
        metrics::gauge!(TRADING_STATE, "state" => mode.as_str()).set(on);
    }
    metrics::gauge!(SAFE_MODE).set(if state.safe_mode { 1.0 } else { 0.0 });
    let mut breakers: Vec<String> = BREAKERS.iter().map(|b| (*b).to_owned()).collect();
    breakers.extend(state.tripped.keys().filter(|k| !BREAKERS.contains(&k.as_str())).cloned());
    for b in breakers {
        let on = if state.tripped.contains_key(&b) { 1.0 } else { 0.0 };
        metrics::gauge!(BREAKER_TRIPPED, "breaker" => b).set(on);
    }
    let snapshot = store.equity_before(now + Duration::seconds(1)).await?;
    let equity = snapshot.as_ref().map(|s| s.equity);
    if let Some(s) = &snapshot {
        metrics::gauge!(EQUITY).set(f(s.equity));
        metrics::gauge!(CASH).set(f(s.cash));
    }
    if let Some(peak) = state.peak_equity.or(equity) {
        metrics::gauge!(PEAK_EQUITY).set(f(peak));
        if let Some(e) = equity.filter(|_| peak > Decimal::ZERO) {
            metrics::gauge!(DRAWDOWN).set(f((Decimal::ONE - e / peak).max(Decimal::ZERO)));
        }
    }
    if let (Some(e), Some((day, start))) = (equity, state.day_start)
        && day.date_naive() == now.date_naive()
    {
        metrics::gauge!(PNL_TODAY).set(f(e - start));
    } else {
        metrics::gauge!(PNL_TODAY).set(0.0);
    }
    let positions = store.positions().await?;
    let mut closes = std::collections::BTreeMap::new();
    for s in &src.symbols {
        if let Some(bar) = store.candles(s, src.timeframe, now, 1).await?.pop() {
            let close_at = bar.close_time(src.timeframe);
            metrics::gauge!(LAST_BAR_CLOSE, "symbol" => s.as_str().to_owned()).set(close_at.timestamp() as f64);
            if let Ok(mut bars) = exporter.bars.lock() {
                bars.insert(s.as_str().to_owned(), close_at);
            }
            closes.insert(s.clone(), bar.close);
        }
    }
    let (mut open, mut value, mut unrealized, mut realized) = (0.0, Decimal::ZERO, Decimal::ZERO, Decimal::ZERO);
    for s in &src.symbols {
        let held = positions.iter().find(|p| &p.symbol == s);
        let v = match (held, closes.get(s)) {
            (Some(p), Some(close)) if p.qty > Decimal::ZERO => {
                unrealized += p.qty * (*close - p.avg_price);
                p.qty * *close
            }
            (Some(p), None) if p.qty > Decimal::ZERO => p.qty * p.avg_price,
            _ => Decimal::ZERO,
        };
        if held.is_some_and(|p| p.qty > Decimal::ZERO) {
            open += 1.0;
        }
        value += v;
        metrics::gauge!(POSITION_VALUE, "symbol" => s.as_str().to_owned()).set(f(v));
    }
    for p in &positions {
        realized += p.realized_pnl;
    }
    metrics::gauge!(OPEN_POSITIONS).set(open);
    metrics::gauge!(REALIZED_PNL, "strategy" => src.strategy.clone()).set(f(realized));
    metrics::gauge!(UNREALIZED_PNL, "strategy" => src.strategy.clone()).set(f(unrealized));
    match equity.filter(|e| *e > Decimal::ZERO) {
        Some(e) => metrics::gauge!(EXPOSURE).set(f(value / e)),
        None => metrics::gauge!(EXPOSURE).set(0.0),
    }
    Ok(())
}

/// Refreshes the state gauges every `every`, or sooner when `poke` says state-changing events arrived, and
/// keeps the histogram buffers drained. Runs until `stop` turns true.
pub async fn run(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    src: StateSource,
    exporter: Arc<Exporter>,
    poke: Arc<tokio::sync::Notify>,
    every: std::time::Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        if let Err(e) = refresh(store.as_ref(), clock.as_ref(), &src, &exporter).await {
            metrics::gauge!(names::STORE_UP).set(0.0);
            tracing::warn!("metrics: stored state unreadable: {e}");
        }
        exporter.upkeep();
        tokio::select! {
            () = poke.notified() => {}
            () = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
