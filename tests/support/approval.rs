//! Approved orders for tests that talk to an exchange adapter directly. `Approved<OrderIntent>` is built only by
//! the real pre-trade checks (`pipeline::pretrade::approve`); here they run with limits that refuse nothing a venue
//! should judge itself (no notional or position cap, no minimum), so the adapter's own rule checks and the venue's
//! refusals are what the tests see.

// Shared by several test modules; not every helper is used by each.
#![allow(dead_code)]

use std::collections::BTreeSet;

use mcbot_stages::domain::{Decimal, Instrument, OrderIntent};
use mcbot_stages::pipeline::pretrade::{Approved, PreTradeContext, PreTradeLimits, approve};

/// `intent` approved by [`approve`] under permissive limits; panics on a zero or negative quantity, which the
/// checks refuse whatever the limits.
pub fn approved(intent: OrderIntent) -> Approved<OrderIntent> {
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
    approve(intent, &inst, &cx).unwrap_or_else(|refusal| panic!("permissive pre-trade checks refused: {refusal}"))
}
