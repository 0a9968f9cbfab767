use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::MarketSource;
use crate::clock::Clock;
use crate::domain::{
    Balance, Candle, ClientOrderId, Fill, Instrument, Order, OrderIntent, OrderStatus, Side, Symbol, Timeframe,
};
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

#[derive(Debug, Default)]
struct Account {
    balances: BTreeMap<String, Decimal>,
    orders: HashMap<ClientOrderId, OrderAck>,
    trade_seq: u64,
}

/// The embedded exchange: deterministic, in-process, exact. In mode `mock` its account is rebuilt at start-up
/// from the stored fills, so a restarted bot finds the exchange as it left it.
pub struct SimExchange {
    market: MarketSource,
    config: SimConfig,
    clock: Arc<dyn Clock>,
    account: Mutex<Account>,
}

impl SimExchange {
    /// A fresh account holding only `initial_cash`.
    pub fn new(market: MarketSource, config: SimConfig, clock: Arc<dyn Clock>) -> Self {
        let mut account = Account::default();
        account.balances.insert(config.quote.clone(), config.initial_cash);
        Self { market, config, clock, account: Mutex::new(account) }
    }

    /// Rebuilds the account from orders and fills recorded earlier (mock mode persistence): balances are the
    /// initial cash moved by every fill, and known client order ids stay known so they are never placed twice.
    pub fn restore(&self, orders: &[Order], fills: &[Fill]) {
        let mut acc = self.lock();
        for fill in fills {
            self.book_fill(&mut acc, fill);
        }
        for order in orders {
            let order_fills = fills.iter().filter(|f| f.client_order_id == order.client_order_id).cloned().collect();
            acc.orders.insert(order.client_order_id.clone(), OrderAck { order: order.clone(), fills: order_fills });
        }
        acc.trade_seq = fills.len() as u64;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Account> {
        self.account.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn instrument_of(&self, symbol: &Symbol) -> Result<&Instrument, ExchangeError> {
        self.config
            .instruments
            .iter()
            .find(|i| &i.symbol == symbol)
            .ok_or_else(|| ExchangeError::Rejected(format!("unknown symbol {symbol}")))
    }

    fn book_fill(&self, acc: &mut Account, fill: &Fill) {
        let Ok(inst) = self.instrument_of(&fill.symbol) else { return };
        let (base, quote) = (inst.base.clone(), inst.quote.clone());
        let notional = fill.notional();
        let sign = if fill.side == Side::Buy { Decimal::ONE } else { -Decimal::ONE };
        *acc.balances.entry(base).or_default() += sign * fill.qty;
        *acc.balances.entry(quote).or_default() -= sign * notional + fill.fee;
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
        self.market
            .price_at(symbol, self.config.timeframe, self.clock.now())
            .ok_or_else(|| ExchangeError::Retryable {
                retry_after: std::time::Duration::from_secs(1),
                message: format!("no market for {symbol} yet"),
            })
    }

    async fn balances(&self) -> Result<Vec<Balance>, ExchangeError> {
        Ok(self
            .lock()
            .balances
            .iter()
            .filter(|(_, v)| !v.is_zero())
            .map(|(asset, v)| Balance { asset: asset.clone(), free: *v, locked: Decimal::ZERO })
            .collect())
    }

    async fn place_market_order(
        &self,
        client_order_id: &ClientOrderId,
        run_id: &str,
        intent: &OrderIntent,
    ) -> Result<OrderAck, ExchangeError> {
        let inst = self.instrument_of(&intent.symbol)?.clone();
        let now = self.clock.now();
        let mid = self.last_price(&intent.symbol).await?;
        let mut acc = self.lock();
        if let Some(existing) = acc.orders.get(client_order_id) {
            return Ok(existing.clone());
        }
        if intent.qty <= Decimal::ZERO || inst.floor_qty(intent.qty) != intent.qty {
            return Err(ExchangeError::Rejected(format!("quantity {} violates step {}", intent.qty, inst.step_size)));
        }
        let slip = self.config.slippage_bps / Decimal::from(10_000);
        let price = match intent.side {
            Side::Buy => inst.round_price(mid * (Decimal::ONE + slip)),
            Side::Sell => inst.round_price(mid * (Decimal::ONE - slip)),
        };
        let notional = intent.qty * price;
        if notional < inst.min_notional {
            return Err(ExchangeError::Rejected(format!("notional {notional} below minimum {}", inst.min_notional)));
        }
        let fee = notional * self.config.fee_rate;
        let held = |asset: &str| acc.balances.get(asset).copied().unwrap_or_default();
        match intent.side {
            Side::Buy if held(&inst.quote) < notional + fee => {
                return Err(ExchangeError::Rejected(format!(
                    "insufficient {}: need {}, have {}",
                    inst.quote,
                    notional + fee,
                    held(&inst.quote)
                )));
            }
            Side::Sell if held(&inst.base) < intent.qty => {
                return Err(ExchangeError::Rejected(format!(
                    "insufficient {}: need {}, have {}",
                    inst.base,
                    intent.qty,
                    held(&inst.base)
                )));
            }
            _ => {}
        }
        acc.trade_seq += 1;
        let fill = Fill {
            trade_id: format!("sim-{}", acc.trade_seq),
            client_order_id: client_order_id.clone(),
            symbol: intent.symbol.clone(),
            side: intent.side,
            qty: intent.qty,
            price,
            fee,
            ts: now,
        };
        self.book_fill(&mut acc, &fill);
        let order = Order {
            client_order_id: client_order_id.clone(),
            run_id: run_id.to_owned(),
            symbol: intent.symbol.clone(),
            side: intent.side,
            qty: intent.qty,
            filled_qty: intent.qty,
            avg_price: Some(price),
            status: OrderStatus::Filled,
            exchange_order_id: Some(format!("sim-order-{}", acc.trade_seq)),
            created_at: now,
            reason: intent.reason.clone(),
        };
        let ack = OrderAck { order, fills: vec![fill] };
        acc.orders.insert(client_order_id.clone(), ack.clone());
        Ok(ack)
    }

    async fn order(&self, _symbol: &Symbol, client_order_id: &ClientOrderId) -> Result<Option<OrderAck>, ExchangeError> {
        Ok(self.lock().orders.get(client_order_id).cloned())
    }

    async fn open_orders(&self) -> Result<Vec<Order>, ExchangeError> {
        Ok(self.lock().orders.values().filter(|a| !a.order.status.is_final()).map(|a| a.order.clone()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::domain::RunId;
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
        let intent = OrderIntent {
            symbol: s.clone(),
            side: Side::Buy,
            qty: dec!(2),
            ref_price: dec!(100),
            reduce_only: false,
            reason: "test".into(),
        };
        let ack = ex.place_market_order(&id, "run", &intent).await.unwrap();
        let bar0 = ex.closed_candles(&s, "1h".parse().unwrap(), clock.now(), 10).await.unwrap();
        assert_eq!(bar0.len(), 1);
        let price = ack.fills[0].price;
        assert_eq!(price, bar0[0].close, "fills at the open of the forming bar = last close");
        let again = ex.place_market_order(&id, "run", &intent).await.unwrap();
        assert_eq!(again.fills[0].trade_id, ack.fills[0].trade_id, "same client id, same order");
        let bal: BTreeMap<_, _> = ex.balances().await.unwrap().into_iter().map(|b| (b.asset, b.free)).collect();
        assert_eq!(bal["BTC"], dec!(2));
        assert_eq!(bal["USDT"], dec!(1000) - dec!(2) * price * dec!(1.001));

        let restored = sim(clock);
        restored.restore(&[ack.order.clone()], &ack.fills);
        assert_eq!(restored.balances().await.unwrap(), ex.balances().await.unwrap());
        assert!(restored.place_market_order(&id, "run", &intent).await.unwrap().order == ack.order);
    }

    #[tokio::test]
    async fn refuses_what_cannot_be_paid_or_is_off_step() {
        let clock = Arc::new(ManualClock::new(DateTime::from_timestamp(1_704_067_200 + 3600, 5).unwrap()));
        let ex = sim(clock.clone());
        let s = Symbol::new("BTCUSDT").unwrap();
        let mk = |qty, side| OrderIntent { symbol: s.clone(), side, qty, ref_price: dec!(100), reduce_only: false, reason: String::new() };
        let id = |leg| ClientOrderId::derive(&RunId::new("t", clock.now()), &s, leg);
        assert!(matches!(ex.place_market_order(&id("a"), "r", &mk(dec!(100), Side::Buy)).await, Err(ExchangeError::Rejected(_))));
        assert!(matches!(ex.place_market_order(&id("b"), "r", &mk(dec!(1), Side::Sell)).await, Err(ExchangeError::Rejected(_))));
        assert!(matches!(ex.place_market_order(&id("c"), "r", &mk(dec!(0.0015), Side::Buy)).await, Err(ExchangeError::Rejected(_))));
    }
}
