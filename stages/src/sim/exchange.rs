use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::MarketSource;
use super::account::SimAccount;
use crate::clock::Clock;
use crate::domain::{
    Balance, Candle, ClientOrderId, Fill, Instrument, Order, OrderBook, OrderIntent, Side, Symbol, Timeframe,
};
use crate::pipeline::pretrade::Approved;
use crate::ports::{Exchange, ExchangeError, OrderAck};

/// Fill model and account of the simulator.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Quote asset, e.g. `USDT`.
    pub quote: String,
    /// Starting quote balance.
    pub initial_cash: Decimal,
    /// Fee as a fraction of notional, charged in quote on both sides.
    pub fee_rate: Decimal,
    /// Adverse price move applied to every market order, in basis points.
    pub slippage_bps: Decimal,
    /// Bar length of the simulated market.
    pub timeframe: Timeframe,
    /// Trading rules per symbol.
    pub instruments: Vec<Instrument>,
}

/// The embedded exchange: deterministic, in-process, exact. In mode `mock` its account is rebuilt at start-up
/// from the stored fills, so a restarted bot finds the exchange as it left it.
pub struct SimExchange {
    market: MarketSource,
    config: SimConfig,
    clock: Arc<dyn Clock>,
    account: Mutex<SimAccount>,
}

impl SimExchange {
    /// A fresh account holding only `initial_cash`.
    pub fn new(market: MarketSource, config: SimConfig, clock: Arc<dyn Clock>) -> Self {
        let account = SimAccount::new(&config.quote, config.initial_cash, "sim");
        Self { market, config, clock, account: Mutex::new(account) }
    }

    /// Rebuilds the account from fills recorded earlier (mock mode persistence): balances are the initial cash
    /// moved by every fill, so a restarted bot finds the exchange as it left it.
    pub fn restore(&self, fills: &[Fill]) {
        self.lock().restore(&self.config.instruments, fills);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SimAccount> {
        self.account.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn instrument_of(&self, symbol: &Symbol) -> Result<&Instrument, ExchangeError> {
        self.config
            .instruments
            .iter()
            .find(|i| &i.symbol == symbol)
            .ok_or_else(|| ExchangeError::Rejected(format!("unknown symbol {symbol}")))
    }
}

#[async_trait]
impl Exchange for SimExchange {
    fn name(&self) -> &str {
        "sim"
    }

    async fn instrument(&self, symbol: &Symbol) -> Result<Instrument, ExchangeError> {
        self.instrument_of(symbol).cloned()
    }

    async fn closed_candles(
        &self,
        symbol: &Symbol,
        tf: Timeframe,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Candle>, ExchangeError> {
        self.instrument_of(symbol)?;
        if tf != self.config.timeframe {
            return Err(ExchangeError::Rejected(format!("simulator runs {} bars, not {tf}", self.config.timeframe)));
        }
        // Never the forming bar, whatever the caller asks for.
        let until = until.min(self.clock.now());
        Ok(self.market.closed_until(symbol, tf, until, limit))
    }

    async fn last_price(&self, symbol: &Symbol) -> Result<Decimal, ExchangeError> {
        self.instrument_of(symbol)?;
        self.market.price_at(symbol, self.config.timeframe, self.clock.now()).ok_or_else(|| ExchangeError::Retryable {
            retry_after: std::time::Duration::from_secs(1),
            message: format!("no market for {symbol} yet"),
        })
    }

    /// A synthetic book around the current price: one tick-wide spread, levels a tick apart, each deep enough
    /// for about 10 000 quote units, so the liquidity gate sees a plausible market.
    async fn order_book(&self, symbol: &Symbol, depth: usize) -> Result<OrderBook, ExchangeError> {
        let inst = self.instrument_of(symbol)?.clone();
        let mid = self.last_price(symbol).await?;
        let qty = inst.floor_qty(Decimal::from(10_000) / mid.max(inst.tick_size));
        let level = |i: usize| inst.tick_size * Decimal::from(i + 1);
        Ok(OrderBook {
            bids: (0..depth).map(|i| (mid - level(i), qty)).filter(|(p, _)| *p > Decimal::ZERO).collect(),
            asks: (0..depth).map(|i| (mid + level(i), qty)).collect(),
        })
    }

    async fn balances(&self) -> Result<Vec<Balance>, ExchangeError> {
        Ok(self.lock().balances())
    }

    async fn place_market_order(
        &self,
        client_order_id: &ClientOrderId,
        run_id: &str,
        approved: &Approved<OrderIntent>,
    ) -> Result<OrderAck, ExchangeError> {
        let intent = approved.get();
        let inst = self.instrument_of(&intent.symbol)?.clone();
        let mid = self.last_price(&intent.symbol).await?;
        let slip = self.config.slippage_bps / Decimal::from(10_000);
        let price = match intent.side {
            Side::Buy => inst.round_price(mid * (Decimal::ONE + slip)),
            Side::Sell => inst.round_price(mid * (Decimal::ONE - slip)),
        };
        // The mock market is infinitely deep at the slipped price.
        let level = [(price, intent.qty)];
        self.lock().execute(client_order_id, run_id, intent, &inst, &level, self.config.fee_rate, self.clock.now())
    }

    async fn order(
        &self,
        _symbol: &Symbol,
        client_order_id: &ClientOrderId,
    ) -> Result<Option<OrderAck>, ExchangeError> {
        Ok(self.lock().order(client_order_id))
    }

    async fn open_orders(&self) -> Result<Vec<Order>, ExchangeError> {
        Ok(self.lock().open_orders())
    }

    /// Market orders fill at once here, so a cancel finds them final and returns them unchanged.
    async fn cancel_order(
        &self,
        _symbol: &Symbol,
        client_order_id: &ClientOrderId,
    ) -> Result<Option<OrderAck>, ExchangeError> {
        Ok(self.lock().cancel(client_order_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::domain::{OrderStatus, RunId};
    use crate::pipeline::pretrade::approved_for_tests;
    use crate::sim::RandomWalk;
    use rust_decimal_macros::dec;

    fn sim(clock: Arc<ManualClock>) -> SimExchange {
        let symbol = Symbol::new("BTCUSDT").unwrap();
        let market = MarketSource::random_walk(RandomWalk {
            seed: 1,
            start: DateTime::from_timestamp(1_704_067_200, 0).unwrap(),
            bar_vol: 0.01,
            start_prices: [(symbol.clone(), dec!(100))].into(),
            price_dp: 2,
        });
        let cfg = SimConfig {
            quote: "USDT".into(),
            initial_cash: dec!(1000),
            fee_rate: dec!(0.001),
            slippage_bps: dec!(0),
            timeframe: "1h".parse().unwrap(),
            instruments: vec![Instrument {
                symbol,
                base: "BTC".into(),
                quote: "USDT".into(),
                tick_size: dec!(0.01),
                step_size: dec!(0.001),
                min_notional: dec!(5),
            }],
        };
        SimExchange::new(market, cfg, clock)
    }

    #[tokio::test]
    async fn market_orders_fill_at_the_next_open_with_fee_exactly_once() {
        let clock = Arc::new(ManualClock::new(DateTime::from_timestamp(1_704_067_200 + 3600, 5).unwrap()));
        let ex = sim(clock.clone());
        let s = Symbol::new("BTCUSDT").unwrap();
        let id = ClientOrderId::derive(&RunId::new("t", clock.now()), &s, "buy");
        let intent = approved_for_tests(OrderIntent {
            symbol: s.clone(),
            side: Side::Buy,
            qty: dec!(2),
            ref_price: dec!(100),
            reduce_only: false,
            reason: "test".into(),
        });
        let ack = ex.place_market_order(&id, "run", &intent).await.unwrap();
        let bar0 = ex.closed_candles(&s, "1h".parse().unwrap(), clock.now(), 10).await.unwrap();
        assert_eq!(bar0.len(), 1);
        let price = ack.fills[0].price;
        assert_eq!(price, bar0[0].close, "fills at the open of the forming bar = last close");
        let again = ex.place_market_order(&id, "run", &intent).await.unwrap();
        assert_eq!(again.fills[0].trade_id, ack.fills[0].trade_id, "same client id, same order");
        let bal: std::collections::BTreeMap<_, _> =
            ex.balances().await.unwrap().into_iter().map(|b| (b.asset, b.free)).collect();
        assert_eq!(bal["BTC"], dec!(2));
        assert_eq!(bal["USDT"], dec!(1000) - dec!(2) * price * dec!(1.001));

        let restored = sim(clock);
        restored.restore(&ack.fills);
        assert_eq!(restored.balances().await.unwrap(), ex.balances().await.unwrap());
    }

    #[tokio::test]
    async fn cancel_returns_a_filled_order_unchanged_and_none_for_an_unknown_id() {
        let clock = Arc::new(ManualClock::new(DateTime::from_timestamp(1_704_067_200 + 3600, 5).unwrap()));
        let ex = sim(clock.clone());
        let s = Symbol::new("BTCUSDT").unwrap();
        let id = |leg| ClientOrderId::derive(&RunId::new("t", clock.now()), &s, leg);
        assert!(ex.cancel_order(&s, &id("never")).await.unwrap().is_none());
        let intent = approved_for_tests(OrderIntent {
            symbol: s.clone(),
            side: Side::Buy,
            qty: dec!(1),
            ref_price: dec!(100),
            reduce_only: false,
            reason: "t".into(),
        });
        let placed = ex.place_market_order(&id("buy"), "run", &intent).await.unwrap();
        let balances = ex.balances().await.unwrap();
        let cancelled = ex.cancel_order(&s, &id("buy")).await.unwrap().expect("the simulator knows it");
        assert_eq!(cancelled.order, placed.order, "filled at once: the cancel finds it final");
        assert_eq!(cancelled.order.status, OrderStatus::Filled);
        assert_eq!(cancelled.fills, placed.fills);
        assert_eq!(ex.balances().await.unwrap(), balances);
    }

    #[tokio::test]
    async fn refuses_what_cannot_be_paid_or_is_off_step() {
        let clock = Arc::new(ManualClock::new(DateTime::from_timestamp(1_704_067_200 + 3600, 5).unwrap()));
        let ex = sim(clock.clone());
        let s = Symbol::new("BTCUSDT").unwrap();
        // Approved by the pre-trade checks with permissive limits: the simulator's own rules are under test.
        let mk = |qty, side| {
            approved_for_tests(OrderIntent {
                symbol: s.clone(),
                side,
                qty,
                ref_price: dec!(100),
                reduce_only: false,
                reason: String::new(),
            })
        };
        let id = |leg| ClientOrderId::derive(&RunId::new("t", clock.now()), &s, leg);
        assert!(matches!(
            ex.place_market_order(&id("a"), "r", &mk(dec!(100), Side::Buy)).await,
            Err(ExchangeError::Rejected(_))
        ));
        assert!(matches!(
            ex.place_market_order(&id("b"), "r", &mk(dec!(1), Side::Sell)).await,
            Err(ExchangeError::Rejected(_))
        ));
        assert!(matches!(
            ex.place_market_order(&id("c"), "r", &mk(dec!(0.0015), Side::Buy)).await,
            Err(ExchangeError::Rejected(_))
        ));
    }
}
