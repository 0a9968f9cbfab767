//! A symbol's trading rules from exchangeInfo filters, applied before an order is submitted: a quantity is
//! rounded down to the step and an order under the minimum notional is refused here, not by Binance, so a
//! filter failure never costs a request (or a rejected order in the log).

use rust_decimal::Decimal;

use mcbot_stages::domain::{Instrument, Symbol};

use super::errors::BinanceError;
use super::payloads::{Filter, SymbolInfo};

/// Every rule the adapter enforces for one symbol. Zero means "no check", as in Binance's filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SymbolRules {
    /// The pair.
    pub symbol: Symbol,
    /// Base asset.
    pub base: String,
    /// Quote asset.
    pub quote: String,
    /// `TRADING` when orders are accepted.
    pub status: String,
    /// Price increment.
    pub tick_size: Decimal,
    /// Quantity increment of any order (LOT_SIZE).
    pub step_size: Decimal,
    /// Smallest quantity (LOT_SIZE).
    pub min_qty: Decimal,
    /// Largest quantity (LOT_SIZE).
    pub max_qty: Decimal,
    /// MARKET_LOT_SIZE increment.
    pub market_step_size: Decimal,
    /// MARKET_LOT_SIZE minimum.
    pub market_min_qty: Decimal,
    /// MARKET_LOT_SIZE maximum.
    pub market_max_qty: Decimal,
    /// Smallest order value for a MARKET order (NOTIONAL with applyMinToMarket, or MIN_NOTIONAL with
    /// applyToMarket); zero when market orders are not checked.
    pub min_notional: Decimal,
    /// Largest order value for a MARKET order; zero when not checked.
    pub max_notional: Decimal,
}

/// Why an order cannot be sent as sized.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleViolation {
    /// The symbol is not trading.
    #[error("{symbol} is not trading (status {status})")]
    NotTrading {
        /// The pair.
        symbol: String,
        /// Binance's status.
        status: String,
    },
    /// Rounded down to the step, the quantity is below the minimum.
    #[error("quantity {qty} is below the minimum {min} after rounding down to the step")]
    BelowMinQty {
        /// The rounded quantity.
        qty: Decimal,
        /// The minimum.
        min: Decimal,
    },
    /// The quantity is above the maximum for market orders.
    #[error("quantity {qty} is above the maximum {max}")]
    AboveMaxQty {
        /// The rounded quantity.
        qty: Decimal,
        /// The maximum.
        max: Decimal,
    },
    /// The order value at the reference price is under the minimum notional.
    #[error("order value {notional} is under the minimum notional {min}")]
    BelowMinNotional {
        /// Quantity × reference price.
        notional: Decimal,
        /// The minimum.
        min: Decimal,
    },
    /// The order value at the reference price is over the maximum notional.
    #[error("order value {notional} is over the maximum notional {max}")]
    AboveMaxNotional {
        /// Quantity × reference price.
        notional: Decimal,
        /// The maximum.
        max: Decimal,
    },
}

impl SymbolRules {
    /// Reads the filters of one exchangeInfo symbol.
    pub fn from_info(info: &SymbolInfo) -> Result<Self, BinanceError> {
        let symbol = Symbol::new(&info.symbol).map_err(|e| BinanceError::malformed("exchangeInfo", e))?;
        let mut r = SymbolRules {
            symbol,
            base: info.base_asset.clone(),
            quote: info.quote_asset.clone(),
            status: info.status.clone(),
            tick_size: Decimal::ZERO,
            step_size: Decimal::ZERO,
            min_qty: Decimal::ZERO,
            max_qty: Decimal::ZERO,
            market_step_size: Decimal::ZERO,
            market_min_qty: Decimal::ZERO,
            market_max_qty: Decimal::ZERO,
            min_notional: Decimal::ZERO,
            max_notional: Decimal::ZERO,
        };
        for f in &info.filters {
            match f {
                Filter::Price { tick_size, .. } => r.tick_size = tick_size.0,
                Filter::LotSize { min_qty, max_qty, step_size } => {
                    (r.min_qty, r.max_qty, r.step_size) = (min_qty.0, max_qty.0, step_size.0);
                }
                Filter::MarketLotSize { min_qty, max_qty, step_size } => {
                    (r.market_min_qty, r.market_max_qty, r.market_step_size) = (min_qty.0, max_qty.0, step_size.0);
                }
                Filter::MinNotional { min_notional, apply_to_market } => {
                    if *apply_to_market {
                        r.min_notional = r.min_notional.max(min_notional.0);
                    }
                }
                Filter::Notional { min_notional, apply_min_to_market, max_notional, apply_max_to_market } => {
                    if *apply_min_to_market {
                        r.min_notional = r.min_notional.max(min_notional.0);
                    }
                    if *apply_max_to_market {
                        r.max_notional = max_notional.map_or(Decimal::ZERO, |m| m.0);
                    }
                }
                Filter::Other => {}
            }
        }
        let negative = [r.tick_size, r.step_size, r.min_qty, r.max_qty, r.market_step_size, r.min_notional];
        if negative.iter().any(|d| d.is_sign_negative() && !d.is_zero()) {
            return Err(BinanceError::malformed("exchangeInfo", format!("negative filter value for {}", r.symbol)));
        }
        Ok(r)
    }

    /// The step a MARKET order's quantity must be a multiple of: the coarser of LOT_SIZE and MARKET_LOT_SIZE
    /// (Binance publishes them as multiples of each other, so the coarser satisfies both).
    pub fn market_step(&self) -> Decimal {
        self.step_size.max(self.market_step_size)
    }

    /// The domain view used by sizing and the pre-trade checks.
    pub fn instrument(&self) -> Instrument {
        Instrument {
            symbol: self.symbol.clone(),
            base: self.base.clone(),
            quote: self.quote.clone(),
            tick_size: self.tick_size,
            step_size: self.market_step(),
            min_notional: self.min_notional,
        }
    }

    /// The quantity a MARKET order is sent with: `qty` rounded down to the step, checked against the quantity
    /// limits and, at `ref_price`, the notional limits.
    pub fn market_qty(&self, qty: Decimal, ref_price: Decimal) -> Result<Decimal, RuleViolation> {
        if self.status != "TRADING" {
            return Err(RuleViolation::NotTrading { symbol: self.symbol.to_string(), status: self.status.clone() });
        }
        let step = self.market_step();
        let rounded = if step > Decimal::ZERO { ((qty / step).floor() * step).normalize() } else { qty };
        let min = self.min_qty.max(self.market_min_qty);
        if rounded <= Decimal::ZERO || rounded < min {
            return Err(RuleViolation::BelowMinQty { qty: rounded, min });
        }
        for max in [self.max_qty, self.market_max_qty] {
            if max > Decimal::ZERO && rounded > max {
                return Err(RuleViolation::AboveMaxQty { qty: rounded, max });
            }
        }
        let notional = rounded * ref_price;
        if self.min_notional > Decimal::ZERO && notional < self.min_notional {
            return Err(RuleViolation::BelowMinNotional { notional, min: self.min_notional });
        }
        if self.max_notional > Decimal::ZERO && notional > self.max_notional {
            return Err(RuleViolation::AboveMaxNotional { notional, max: self.max_notional });
        }
        Ok(rounded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::binance::payloads::ExchangeInfo;
    use rust_decimal_macros::dec;

    fn rules() -> SymbolRules {
        let body = r#"{"symbols":[{"symbol":"BTCUSDT","status":"TRADING","baseAsset":"BTC","quoteAsset":"USDT",
          "filters":[
          {"filterType":"PRICE_FILTER","minPrice":"0.01","maxPrice":"1000000","tickSize":"0.01"},
          {"filterType":"LOT_SIZE","minQty":"0.00001","maxQty":"9000","stepSize":"0.00001"},
          {"filterType":"MARKET_LOT_SIZE","minQty":"0","maxQty":"100","stepSize":"0"},
          {"filterType":"NOTIONAL","minNotional":"5","applyMinToMarket":true,"maxNotional":"9000000",
           "applyMaxToMarket":false,"avgPriceMins":5}]}]}"#;
        let info: ExchangeInfo = serde_json::from_str(body).unwrap();
        SymbolRules::from_info(&info.symbols[0]).unwrap()
    }

    #[test]
    fn filters_become_an_instrument() {
        let i = rules().instrument();
        assert_eq!((i.tick_size, i.step_size, i.min_notional), (dec!(0.01), dec!(0.00001), dec!(5)));
        assert_eq!(i.base, "BTC");
    }

    #[test]
    fn market_quantity_is_rounded_down_and_checked() {
        let r = rules();
        assert_eq!(r.market_qty(dec!(0.123456789), dec!(40000)), Ok(dec!(0.12345)));
        assert!(matches!(r.market_qty(dec!(0.000009), dec!(40000)), Err(RuleViolation::BelowMinQty { .. })));
        assert!(matches!(r.market_qty(dec!(0.0001), dec!(40000)), Err(RuleViolation::BelowMinNotional { .. })));
        assert!(matches!(r.market_qty(dec!(150), dec!(1)), Err(RuleViolation::AboveMaxQty { .. })));
        let halted = SymbolRules { status: "HALT".into(), ..r };
        assert!(matches!(halted.market_qty(dec!(1), dec!(40000)), Err(RuleViolation::NotTrading { .. })));
    }
}
