//! DataCollection: closed candles only, checked for sanity, freshness and gaps, stored for reuse. A symbol whose
//! data is stale, gapped or unavailable gets no new entry this cycle; the others trade on.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::stage::{CycleContext, Stage, StageError, StageName};
use crate::domain::{Candle, Symbol, Timeframe};
use crate::ports::{Exchange, ExchangeError, FailureKind, Store};

/// Candles of one symbol and whether they may be traded on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SymbolData {
    /// Closed bars, oldest first.
    pub candles: Vec<Candle>,
    /// Why entries on this symbol are blocked this cycle, if they are.
    pub issue: Option<String>,
}

impl SymbolData {
    /// Close of the newest bar, the price orders are sized at.
    pub fn last_close(&self) -> Option<rust_decimal::Decimal> {
        self.candles.last().map(|c| c.close)
    }
}

/// DataCollection's output: per symbol, in configured order.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MarketData {
    /// Data by symbol.
    pub symbols: BTreeMap<Symbol, SymbolData>,
}

/// Checks a series against the bar that should have just closed. Returns the reason it must not be traded on.
pub fn check_series(candles: &[Candle], tf: Timeframe, bar_close: DateTime<Utc>, needed: usize) -> Option<String> {
    let Some(last) = candles.last() else { return Some("no closed candles".into()) };
    if let Some(bad) = candles.iter().find(|c| !c.is_sane()) {
        return Some(format!("insane candle at {}", bad.open_time));
    }
    let last_close = last.close_time(tf);
    if last_close < bar_close {
        return Some(format!("stale: newest bar closed {last_close}, expected {bar_close}"));
    }
    if let Some(w) = candles.windows(2).find(|w| w[1].open_time - w[0].open_time != tf.duration()) {
        return Some(format!("gap between {} and {}", w[0].open_time, w[1].open_time));
    }
    (candles.len() < needed).then(|| format!("only {} of {needed} bars of history", candles.len()))
}

/// The DataCollection stage.
pub struct DataCollection {
    exchange: Arc<dyn Exchange>,
    store: Arc<dyn Store>,
    symbols: Vec<Symbol>,
    timeframe: Timeframe,
    lookback: usize,
}

impl DataCollection {
    /// Builds the stage; `lookback` is how many bars the strategy needs.
    pub fn new(
        exchange: Arc<dyn Exchange>,
        store: Arc<dyn Store>,
        symbols: Vec<Symbol>,
        timeframe: Timeframe,
        lookback: usize,
    ) -> Self {
        Self { exchange, store, symbols, timeframe, lookback }
    }
}

#[async_trait]
impl Stage for DataCollection {
    /// The close time of the last bar already stored, so only new bars are written.
    type Input = Option<DateTime<Utc>>;
    type Output = MarketData;

    fn name(&self) -> StageName {
        StageName::DataCollection
    }

    async fn run(&self, cx: &CycleContext, stored_until: Option<DateTime<Utc>>) -> Result<MarketData, StageError> {
        let mut out = MarketData::default();
        let mut fresh_sets = Vec::new();
        for symbol in &self.symbols {
            let fetched = self.exchange.closed_candles(symbol, self.timeframe, cx.bar_close, self.lookback).await;
            let data = match fetched {
                Ok(mut candles) => {
                    // Defence in depth: whatever the adapter returned, the forming bar never reaches a strategy.
                    candles.retain(|c| c.close_time(self.timeframe) <= cx.bar_close);
                    let issue = check_series(&candles, self.timeframe, cx.bar_close, self.lookback);
                    let tf = self.timeframe;
                    let fresh: Vec<Candle> =
                        candles.iter().filter(|c| stored_until.is_none_or(|s| c.close_time(tf) > s)).cloned().collect();
                    if !fresh.is_empty() {
                        fresh_sets.push((symbol.clone(), fresh));
                    }
                    SymbolData { candles, issue }
                }
                // A transient failure fails the stage so the cycle is retried within the bar; anything else
                // blocks entries on this symbol only.
                Err(ExchangeError::Retryable { retry_after, message }) => {
                    let reason = format!("{symbol}: {message}");
                    return Err(StageError::Retry { kind: FailureKind::Exchange, after: retry_after, reason });
                }
                Err(e) => SymbolData { candles: Vec::new(), issue: Some(format!("unavailable: {e}")) },
            };
            if let Some(issue) = &data.issue {
                tracing::warn!(%symbol, "entries blocked: {issue}");
            }
            out.symbols.insert(symbol.clone(), data);
        }
        if !fresh_sets.is_empty() {
            self.store.save_candle_sets(self.timeframe, &fresh_sets).await?;
        }
        if out.symbols.values().all(|d| d.candles.is_empty()) {
            return Err(StageError::Skip("no market data for any symbol".into()));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn c(h: i64) -> Candle {
        Candle {
            open_time: DateTime::from_timestamp(h * 3600, 0).unwrap(),
            open: dec!(1),
            high: dec!(2),
            low: dec!(1),
            close: dec!(1.5),
            volume: dec!(1),
        }
    }

    #[test]
    fn freshness_gaps_and_sanity() {
        let tf: Timeframe = "1h".parse().unwrap();
        let close = DateTime::from_timestamp(3 * 3600, 0).unwrap();
        assert_eq!(check_series(&[c(0), c(1), c(2)], tf, close, 3), None);
        assert!(check_series(&[c(0), c(1)], tf, close, 2).unwrap().starts_with("stale"));
        assert!(check_series(&[c(0), c(2)], tf, close, 2).unwrap().starts_with("gap"));
        assert!(check_series(&[c(1), c(2)], tf, close, 3).unwrap().starts_with("only 2"));
        let mut bad = c(2);
        bad.low = dec!(3);
        assert!(check_series(&[c(1), bad], tf, close, 2).unwrap().starts_with("insane"));
        assert_eq!(check_series(&[], tf, close, 1).as_deref(), Some("no closed candles"));
    }
}
