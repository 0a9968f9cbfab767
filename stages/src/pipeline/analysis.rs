//! Analysis: runs the strategy over symbols with usable data and validates its decision before Execution sees
//! it. Symbols with a data issue hold their current weight (no new exposure on bad evidence).

use std::sync::Arc;

use async_trait::async_trait;
use rust_decimal::Decimal;
use serde::Serialize;

use super::book::Book;
use super::data::MarketData;
use super::gate::QuickFilter;
use super::stage::{CycleContext, Stage, StageError, StageName};
use crate::ports::{EventKind, FailureKind, NewEvent, Severity, SignalRecord, Store};
use crate::strategy::{Strategy, SymbolBars, Target};

/// The validated decision: one target per symbol.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Decision {
    /// Targets, by symbol order.
    pub targets: Vec<Target>,
}

/// Clamps weights to [0, 1] and scales the total down to at most 1 (spot cannot borrow), saying so in the
/// reason. A strategy bug therefore cannot size beyond the account.
pub fn validate(mut targets: Vec<Target>) -> Decision {
    for t in &mut targets {
        if t.weight < Decimal::ZERO || t.weight > Decimal::ONE {
            let clamped = t.weight.clamp(Decimal::ZERO, Decimal::ONE);
            t.reason.push_str(&format!("; weight {} clamped to {clamped}", t.weight));
            t.weight = clamped;
        }
    }
    let total: Decimal = targets.iter().map(|t| t.weight).sum();
    if total > Decimal::ONE {
        for t in &mut targets {
            t.weight = (t.weight / total).round_dp_with_strategy(4, rust_decimal::RoundingStrategy::ToZero);
            t.reason.push_str(&format!("; scaled by 1/{}", total.round_dp(4)));
        }
    }
    Decision { targets }
}

/// The Analysis stage.
pub struct Analysis {
    strategy: Box<dyn Strategy>,
    store: Arc<dyn Store>,
    gate: Option<(QuickFilter, f64)>,
}

impl Analysis {
    /// Builds the stage around a strategy.
    pub fn new(strategy: Box<dyn Strategy>, store: Arc<dyn Store>) -> Self {
        Self { strategy, store, gate: None }
    }

    /// Adds the quick-filter gate; `bars_per_year` annualises its Sharpe ratio.
    pub fn with_gate(mut self, gate: QuickFilter, bars_per_year: f64) -> Self {
        self.gate = gate.enabled.then_some((gate, bars_per_year));
        self
    }

    /// Bars of history the strategy needs.
    pub fn warmup(&self) -> usize {
        self.strategy.warmup()
    }
}

#[async_trait]
impl Stage for Analysis {
    type Input = (MarketData, Book);
    type Output = Decision;

    fn name(&self) -> StageName {
        StageName::Analysis
    }

    async fn run(&self, cx: &CycleContext, (data, book): Self::Input) -> Result<Decision, StageError> {
        let usable: Vec<SymbolBars<'_>> = data
            .symbols
            .iter()
            .filter(|(_, d)| d.issue.is_none())
            .map(|(s, d)| SymbolBars { symbol: s, candles: &d.candles, current_weight: book.weight(s) })
            .collect();
        let mut targets = self.strategy.targets(&usable);
        if targets.len() != usable.len() {
            return Err(StageError::halt(
                FailureKind::Strategy,
                format!(
                    "strategy {} returned {} targets for {} symbols",
                    self.strategy.name(),
                    targets.len(),
                    usable.len()
                ),
            ));
        }
        if let Some((gate, bars_per_year)) = &self.gate {
            for (t, b) in targets.iter_mut().zip(&usable) {
                if t.weight <= b.current_weight {
                    continue;
                }
                if let Some(why) = gate.check(self.strategy.as_ref(), b.symbol, b.candles, *bars_per_year) {
                    t.weight = b.current_weight;
                    t.reason.push_str(&format!("; no entry: {why}"));
                }
            }
        }
        for (s, d) in &data.symbols {
            if let Some(issue) = &d.issue {
                targets.push(Target { symbol: s.clone(), weight: book.weight(s), reason: format!("hold: {issue}") });
            }
        }
        let decision = validate(targets);
        let mut uow = self.store.begin().await?;
        if let Some(f) = &cx.fence {
            uow.fence(f).await?;
        }
        for t in &decision.targets {
            let strategy = self.strategy.name().to_owned();
            uow.insert_signal(&SignalRecord {
                run_id: cx.run_id.to_string(),
                ts: cx.bar_close,
                symbol: t.symbol.clone(),
                strategy: strategy.clone(),
                target_weight: t.weight,
                reason: t.reason.clone(),
            })
            .await?;
            let msg = format!("{} target weight {} ({})", t.symbol, t.weight, t.reason);
            uow.append(
                NewEvent::new(cx.now, EventKind::Signal, Severity::Info, msg)
                    .run(cx.run_id.to_string())
                    .symbol(&t.symbol)
                    .payload(serde_json::json!({"strategy": strategy, "target_weight": t.weight.to_string()}))
                    .dedup(format!("signal:{}:{}", cx.run_id, t.symbol)),
            );
        }
        uow.commit().await?;
        Ok(decision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Symbol;
    use rust_decimal_macros::dec;

    #[test]
    fn weights_are_clamped_and_scaled() {
        let t = |s: &str, w| Target { symbol: Symbol::new(s).unwrap(), weight: w, reason: String::new() };
        let d = validate(vec![t("AAUSDT", dec!(0.8)), t("BBUSDT", dec!(0.8)), t("CCUSDT", dec!(-1))]);
        assert_eq!(d.targets[0].weight, dec!(0.5));
        assert_eq!(d.targets[1].weight, dec!(0.5));
        assert_eq!(d.targets[2].weight, dec!(0));
        assert!(d.targets[2].reason.contains("clamped"));
    }
}
