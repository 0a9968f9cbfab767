//! Exchange adapters: each one implements `mcbot_stages::ports::Exchange` over a real venue's REST and
//! WebSocket APIs, parsing every payload at the boundary into the domain's exact types.

pub mod binance;
pub mod upbit;
