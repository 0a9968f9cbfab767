//! The embedded simulated exchange behind mode `mock` (and the fill engine a backtest replays through): a
//! deterministic market (seeded random walk or a candle file replayed) and market orders filled at the open of
//! the forming bar, with fee and slippage, balances kept exactly in `Decimal`.

mod account;
mod exchange;
mod market;
mod paper;

pub use account::SimAccount;
pub use exchange::{SimConfig, SimExchange};
pub use market::{MarketSource, RandomWalk};
pub use paper::PaperExchange;
