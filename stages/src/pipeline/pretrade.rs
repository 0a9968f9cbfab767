//! Pre-trade checks. `Approved<OrderIntent>` can only be built here, and Execution submits nothing else: an
//! order that skipped the checks does not type-check. The `Exchange` port places nothing else either.
//!
//! Outside this module an `Approved` cannot be forged:
//! ```compile_fail
//! # use mcbot_stages::domain::OrderIntent;
//! # use mcbot_stages::pipeline::pretrade::Approved;
//! fn forge(intent: OrderIntent) -> Approved<OrderIntent> {
//!     Approved(intent)
//! }
//! ```

use std::collections::BTreeSet;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::domain::{Instrument, OrderIntent, Side, Symbol};

/// Limits checked on every order, as configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PreTradeLimits {
    /// Largest quote value of one buy; larger buys are reduced to it.
    pub max_order_notional: Decimal,
    /// Most symbols held at once; a buy that would open one more is refused.
    pub max_open_positions: usize,
    /// Symbols the bot may buy; empty means the configured symbols.
    pub allow_list: Vec<Symbol>,
}

impl Default for PreTradeLimits {
    fn default() -> Self {
        Self { max_order_notional: Decimal::from(5_000), max_open_positions: 8, allow_list: Vec::new() }
    }
}

/// An order that passed the pre-trade checks; only this module constructs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Approved<T>(T);

impl<T> Approved<T> {
    /// The approved value.
    pub fn get(&self) -> &T {
        &self.0
    }
}

/// Why an order was not approved.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    /// Entries are blocked this cycle (breaker, kill switch, safe mode, data issue).
    #[error("entries blocked: {0}")]
    EntriesBlocked(String),
    /// Symbol not on the allow-list.
    #[error("{0} is not on the allow-list")]
    NotAllowed(Symbol),
    /// Would exceed the number of open positions.
    #[error("max open positions ({0}) reached")]
    TooManyPositions(usize),
    /// Below the exchange's minimum after rounding and reductions.
    #[error("notional {0} below minimum {1}")]
    BelowMinNotional(Decimal, Decimal),
    /// A single buy larger than the configured share of equity: refused, never reduced.
    #[error("order of {0} is more than {1}% of equity {2}: refused")]
    TooLarge(Decimal, Decimal, Decimal),
    /// A frequency limit (interval between entries, entries or trades per day) forbids the entry now.
    #[error("frequency limit: {0}")]
    Frequency(String),
}

/// What the checks need to know about the moment.
#[derive(Debug, Clone)]
pub struct PreTradeContext<'a> {
    /// Configured limits.
    pub limits: &'a PreTradeLimits,
    /// Configured symbols (the default allow-list).
    pub symbols: &'a BTreeSet<Symbol>,
    /// Symbols currently held.
    pub held: &'a BTreeSet<Symbol>,
    /// None when entries are allowed, else why not.
    pub entries_blocked: Option<&'a str>,
    /// None when the frequency limits allow an entry in this symbol now, else why not.
    pub frequency: Option<&'a str>,
    /// Equity, and the largest share of it (in %) one buy may be; `None` leaves the size unchecked.
    pub max_share: Option<(Decimal, Decimal)>,
}

/// Checks an intent. Risk-reducing sells always pass (exits stay allowed); buys are clipped to the max order
/// notional and refused when entries are blocked, off the allow-list or one position too many.
pub fn approve(
    mut intent: OrderIntent,
    inst: &Instrument,
    cx: &PreTradeContext<'_>,
) -> Result<Approved<OrderIntent>, Refusal> {
    if intent.side == Side::Buy {
        if let Some(why) = cx.entries_blocked {
            return Err(Refusal::EntriesBlocked(why.to_owned()));
        }
        let allowed = if cx.limits.allow_list.is_empty() {
            cx.symbols.contains(&intent.symbol)
        } else {
            cx.limits.allow_list.contains(&intent.symbol)
        };
        if !allowed {
            return Err(Refusal::NotAllowed(intent.symbol));
        }
        if !cx.held.contains(&intent.symbol) && cx.held.len() >= cx.limits.max_open_positions {
            return Err(Refusal::TooManyPositions(cx.limits.max_open_positions));
        }
        if let Some(why) = cx.frequency {
            return Err(Refusal::Frequency(why.to_owned()));
        }
        if intent.notional() > cx.limits.max_order_notional && intent.ref_price > Decimal::ZERO {
            intent.qty = inst.floor_qty(cx.limits.max_order_notional / intent.ref_price);
            intent.reason.push_str(&format!("; clipped to max order notional {}", cx.limits.max_order_notional));
        }
        if let Some((equity, pct)) = cx.max_share
            && intent.notional() > equity * pct / Decimal::ONE_HUNDRED
        {
            return Err(Refusal::TooLarge(intent.notional(), pct, equity));
        }
    }
    if intent.notional() < inst.min_notional || intent.qty <= Decimal::ZERO {
        return Err(Refusal::BelowMinNotional(intent.notional(), inst.min_notional));
    }
    Ok(Approved(intent))
}

/// For tests in this crate: `intent` through the real [`approve`], with limits that refuse nothing a venue should
/// judge itself (no notional or position cap, no minimum), so an exchange adapter's own checks are reached.
#[cfg(test)]
pub(crate) fn approved_for_tests(intent: OrderIntent) -> Approved<OrderIntent> {
    let limits =
        PreTradeLimits { max_order_notional: Decimal::MAX, max_open_positions: usize::MAX, allow_list: Vec::new() };
    let symbols = BTreeSet::from([intent.symbol.clone()]);
    let held = BTreeSet::new();
    let inst = Instrument {
        symbol: intent.symbol.clone(),
        base: String::new(),
        quote: String::new(),
        tick_size: Decimal::ZERO,
        step_size: Decimal::ZERO,
        min_notional: Decimal::ZERO,
    };
    let cx = PreTradeContext {
        limits: &limits,
        symbols: &symbols,
        held: &held,
        entries_blocked: None,
        frequency: None,
        max_share: None,
    };
    approve(intent, &inst, &cx).expect("permissive limits approve any positive quantity")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn inst() -> Instrument {
        Instrument {
            symbol: Symbol::new("BTCUSDT").unwrap(),
            base: "BTC".into(),
            quote: "USDT".into(),
            tick_size: dec!(0.01),
            step_size: dec!(0.001),
            min_notional: dec!(10),
        }
    }

    fn intent(side: Side, qty: Decimal) -> OrderIntent {
        OrderIntent {
            symbol: inst().symbol,
            side,
            qty,
            ref_price: dec!(100),
            reduce_only: side == Side::Sell,
            reason: "r".into(),
        }
    }

    #[test]
    fn checks() {
        let limits = PreTradeLimits { max_order_notional: dec!(1000), max_open_positions: 1, allow_list: vec![] };
        let symbols: BTreeSet<_> = [inst().symbol].into();
        let none = BTreeSet::new();
        let other: BTreeSet<_> = [Symbol::new("ETHUSDT").unwrap()].into();
        let cx = |held, blocked| PreTradeContext {
            limits: &limits,
            symbols: &symbols,
            held,
            entries_blocked: blocked,
            frequency: None,
            max_share: None,
        };

        let ok = approve(intent(Side::Buy, dec!(50)), &inst(), &cx(&none, None)).unwrap();
        assert_eq!(ok.get().qty, dec!(10), "clipped to 1000 notional");
        assert_eq!(
            approve(intent(Side::Buy, dec!(1)), &inst(), &cx(&none, Some("kill switch"))),
            Err(Refusal::EntriesBlocked("kill switch".into()))
        );
        assert!(approve(intent(Side::Sell, dec!(1)), &inst(), &cx(&none, Some("kill switch"))).is_ok(), "exits pass");
        assert_eq!(approve(intent(Side::Buy, dec!(1)), &inst(), &cx(&other, None)), Err(Refusal::TooManyPositions(1)));
        assert!(matches!(
            approve(intent(Side::Buy, dec!(0.05)), &inst(), &cx(&none, None)),
            Err(Refusal::BelowMinNotional(..))
        ));
        let freq = PreTradeContext { frequency: Some("max entries per day (5) reached"), ..cx(&none, None) };
        assert!(matches!(approve(intent(Side::Buy, dec!(1)), &inst(), &freq), Err(Refusal::Frequency(_))));
        assert!(approve(intent(Side::Sell, dec!(1)), &inst(), &freq).is_ok(), "exits are never limited");
        // 30 % of 1000 equity is 300: 3 at 100 passes, 3.001 is refused (not reduced), a sell of any size passes.
        let share = PreTradeContext { max_share: Some((dec!(1000), dec!(30))), ..cx(&none, None) };
        assert!(approve(intent(Side::Buy, dec!(3)), &inst(), &share).is_ok());
        assert_eq!(
            approve(intent(Side::Buy, dec!(3.001)), &inst(), &share),
            Err(Refusal::TooLarge(dec!(300.100), dec!(30), dec!(1000)))
        );
        assert!(approve(intent(Side::Sell, dec!(9)), &inst(), &share).is_ok());
        let mut foreign = intent(Side::Buy, dec!(1));
        foreign.symbol = Symbol::new("XRPUSDT").unwrap();
        assert!(matches!(approve(foreign, &inst(), &cx(&none, None)), Err(Refusal::NotAllowed(_))));
    }
}
