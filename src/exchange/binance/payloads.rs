//! Binance's JSON shapes, parsed at the boundary: every price, quantity and fee goes from its string straight to
//! `Decimal` (never through a float), and any deviation from the documented shape is a typed error.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::de::{self, IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use mcbot_stages::domain::{Balance, Candle, OrderBook};

/// A decimal that Binance sends as a string (`"0.01634790"`). Integers are accepted too; floats are refused,
/// because their text may already have lost precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Dec(pub Decimal);

impl<'de> Deserialize<'de> for Dec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Dec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a decimal number as a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Dec, E> {
                Decimal::from_str(v).map(Dec).map_err(|e| E::custom(format!("invalid decimal {v:?}: {e}")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Dec, E> {
                Ok(Dec(Decimal::from(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Dec, E> {
                Ok(Dec(Decimal::from(v)))
            }
        }
        d.deserialize_any(V)
    }
}

/// Epoch milliseconds to a UTC instant; out of range is a parse error, never a panic.
pub fn ms_to_utc(ms: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms)
}

/// `GET /api/v3/time`.
#[derive(Debug, Clone, Deserialize)]
pub struct ServerTime {
    /// Binance's clock, epoch ms.
    #[serde(rename = "serverTime")]
    pub server_time: i64,
}

/// `GET /sapi/v1/account/apiRestrictions`, trimmed to what the live guards read.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiRestrictions {
    /// Calls are accepted from listed IPs only (recommended for a trading key).
    #[serde(default)]
    pub ip_restrict: bool,
    /// The key can withdraw funds: refused for live trading unless explicitly allowed.
    pub enable_withdrawals: bool,
    /// The key can trade spot.
    #[serde(default)]
    pub enable_spot_and_margin_trading: bool,
}

/// `GET /api/v3/exchangeInfo`, trimmed to what trading needs.
#[derive(Debug, Clone, Deserialize)]
pub struct ExchangeInfo {
    /// One entry per requested symbol.
    pub symbols: Vec<SymbolInfo>,
}

/// One symbol of exchangeInfo.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SymbolInfo {
    /// e.g. `BTCUSDT`.
    pub symbol: String,
    /// `TRADING`, `HALT`, `BREAK`...
    pub status: String,
    /// e.g. `BTC`.
    pub base_asset: String,
    /// e.g. `USDT`.
    pub quote_asset: String,
    /// Whether a MARKET order may be sized in quote.
    #[serde(default)]
    pub quote_order_qty_market_allowed: bool,
    /// The trading rules.
    #[serde(default)]
    pub filters: Vec<Filter>,
}

/// The filters the adapter enforces before submitting; every other filter type is kept as `Other`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "filterType")]
pub enum Filter {
    /// Price range and tick.
    #[serde(rename = "PRICE_FILTER", rename_all = "camelCase")]
    Price {
        /// Lowest price (0 = no check).
        min_price: Dec,
        /// Highest price (0 = no check).
        max_price: Dec,
        /// Price increment (0 = no check).
        tick_size: Dec,
    },
    /// Quantity range and step for all orders.
    #[serde(rename = "LOT_SIZE", rename_all = "camelCase")]
    LotSize {
        /// Smallest quantity.
        min_qty: Dec,
        /// Largest quantity.
        max_qty: Dec,
        /// Quantity increment.
        step_size: Dec,
    },
    /// Quantity range and step for MARKET orders.
    #[serde(rename = "MARKET_LOT_SIZE", rename_all = "camelCase")]
    MarketLotSize {
        /// Smallest quantity.
        min_qty: Dec,
        /// Largest quantity (0 = no check).
        max_qty: Dec,
        /// Quantity increment (0 = no check).
        step_size: Dec,
    },
    /// Older minimum order value.
    #[serde(rename = "MIN_NOTIONAL", rename_all = "camelCase")]
    MinNotional {
        /// Smallest price × quantity.
        min_notional: Dec,
        /// Whether MARKET orders are checked.
        #[serde(default = "yes")]
        apply_to_market: bool,
    },
    /// Current order value range.
    #[serde(rename = "NOTIONAL", rename_all = "camelCase")]
    Notional {
        /// Smallest price × quantity.
        min_notional: Dec,
        /// Whether MARKET orders are checked against the minimum.
        #[serde(default = "yes")]
        apply_min_to_market: bool,
        /// Largest price × quantity.
        #[serde(default)]
        max_notional: Option<Dec>,
        /// Whether MARKET orders are checked against the maximum.
        #[serde(default)]
        apply_max_to_market: bool,
    },
    /// A filter type the adapter does not enforce.
    #[serde(other)]
    Other,
}

fn yes() -> bool {
    true
}

/// One row of `GET /api/v3/klines`: `[openTime, open, high, low, close, volume, closeTime, ...]`. Fields after
/// the close time are skipped without allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kline {
    /// Open time, epoch ms.
    pub open_time: i64,
    /// First price.
    pub open: Decimal,
    /// Highest price.
    pub high: Decimal,
    /// Lowest price.
    pub low: Decimal,
    /// Last price.
    pub close: Decimal,
    /// Base volume.
    pub volume: Decimal,
    /// Close time, epoch ms (the last millisecond of the bar).
    pub close_time: i64,
}

impl<'de> Deserialize<'de> for Kline {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Kline;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a kline row [openTime, open, high, low, close, volume, closeTime, ...]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Kline, A::Error> {
                let open_time: i64 = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let open: Dec = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(1, &self))?;
                let high: Dec = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(2, &self))?;
                let low: Dec = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(3, &self))?;
                let close: Dec = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(4, &self))?;
                let volume: Dec = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(5, &self))?;
                let close_time: i64 = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(6, &self))?;
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Kline {
                    open_time,
                    open: open.0,
                    high: high.0,
                    low: low.0,
                    close: close.0,
                    volume: volume.0,
                    close_time,
                })
            }
        }
        d.deserialize_seq(V)
    }
}

impl Kline {
    /// The domain candle, or `None` when the open time is out of range.
    pub fn to_candle(&self) -> Option<Candle> {
        Some(Candle {
            open_time: ms_to_utc(self.open_time)?,
            open: self.open,
            high: self.high,
            low: self.low,
            close: self.close,
            volume: self.volume,
        })
    }
}

/// `GET /api/v3/ticker/price?symbol=...`.
#[derive(Debug, Clone, Deserialize)]
pub struct TickerPrice {
    /// The pair.
    pub symbol: String,
    /// Last price.
    pub price: Dec,
}

/// `GET /api/v3/depth`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Depth {
    /// Book sequence number.
    pub last_update_id: i64,
    /// `[price, qty]`, best first.
    pub bids: Vec<(Dec, Dec)>,
    /// `[price, qty]`, best first.
    pub asks: Vec<(Dec, Dec)>,
}

impl Depth {
    /// The domain book.
    pub fn to_book(&self) -> OrderBook {
        OrderBook {
            bids: self.bids.iter().map(|(p, q)| (p.0, q.0)).collect(),
            asks: self.asks.iter().map(|(p, q)| (p.0, q.0)).collect(),
        }
    }
}

/// `GET /api/v3/account`, trimmed.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    /// Whether the key may trade.
    #[serde(default)]
    pub can_trade: bool,
    /// Every asset's free and locked amounts.
    pub balances: Vec<AccountBalance>,
}

/// One balance line.
#[derive(Debug, Clone, Deserialize)]
pub struct AccountBalance {
    /// Asset code.
    pub asset: String,
    /// Available.
    pub free: Dec,
    /// Held by open orders.
    pub locked: Dec,
}

impl AccountBalance {
    /// The domain balance.
    pub fn to_balance(&self) -> Balance {
        Balance { asset: self.asset.clone(), free: self.free.0, locked: self.locked.0 }
    }
}

/// An order as `POST/GET/DELETE /api/v3/order` and `openOrders` return it. ACK responses carry only the ids,
/// hence the options.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderResponse {
    /// The pair.
    pub symbol: String,
    /// Binance's order id.
    pub order_id: i64,
    /// Our client order id (on DELETE: the cancel's id; the order's is `orig_client_order_id`).
    pub client_order_id: String,
    /// On DELETE: the cancelled order's client id.
    #[serde(default)]
    pub orig_client_order_id: Option<String>,
    /// When the order was accepted (POST), ms.
    #[serde(default)]
    pub transact_time: Option<i64>,
    /// When the order was created (GET), ms.
    #[serde(default)]
    pub time: Option<i64>,
    /// Requested quantity.
    #[serde(default)]
    pub orig_qty: Option<Dec>,
    /// Executed quantity.
    #[serde(default)]
    pub executed_qty: Option<Dec>,
    /// Quote spent or received; Binance's spelling.
    #[serde(default, rename = "cummulativeQuoteQty")]
    pub cumulative_quote_qty: Option<Dec>,
    /// `NEW`, `PARTIALLY_FILLED`, `FILLED`, `CANCELED`, `REJECTED`, `EXPIRED`, ...
    #[serde(default)]
    pub status: Option<String>,
    /// `BUY` or `SELL`.
    #[serde(default)]
    pub side: Option<String>,
    /// `MARKET`, `LIMIT`, ...
    #[serde(default, rename = "type")]
    pub order_type: Option<String>,
    /// Executions, with `newOrderRespType=FULL`.
    #[serde(default)]
    pub fills: Option<Vec<OrderFill>>,
}

/// One execution in a FULL order response.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderFill {
    /// Execution price.
    pub price: Dec,
    /// Executed base quantity.
    pub qty: Dec,
    /// Fee charged.
    pub commission: Dec,
    /// Asset the fee was charged in (base, quote or BNB).
    pub commission_asset: String,
    /// Binance's trade id.
    pub trade_id: i64,
}

/// One element of `GET /api/v3/myTrades`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Trade {
    /// The pair.
    pub symbol: String,
    /// Binance's trade id.
    pub id: i64,
    /// The order it belongs to.
    pub order_id: i64,
    /// Execution price.
    pub price: Dec,
    /// Executed base quantity.
    pub qty: Dec,
    /// Fee charged.
    pub commission: Dec,
    /// Asset the fee was charged in.
    pub commission_asset: String,
    /// Execution time, ms.
    pub time: i64,
    /// True for our buys.
    pub is_buyer: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn the_documented_kline_row_parses_exactly() {
        let body = r#"[[1499040000000,"0.01634790","0.80000000","0.01575800","0.01577100","148976.11427815",
            1499644799999,"2434.19055334",308,"1756.87402397","28.46694368","0"]]"#;
        let rows: Vec<Kline> = serde_json::from_str(body).unwrap();
        assert_eq!(rows[0].open, dec!(0.01634790));
        assert_eq!(rows[0].volume, dec!(148976.11427815));
        assert_eq!(rows[0].close_time, 1_499_644_799_999);
        assert_eq!(rows[0].to_candle().unwrap().open_time.timestamp_millis(), 1_499_040_000_000);
    }

    #[test]
    fn malformed_rows_are_errors_not_panics() {
        for bad in [
            r#"[[1499040000000,"0.1","0.2","0.1"]]"#,
            r#"[[1499040000000,0.1,"0.2","0.1","0.1","1",1]]"#,
            r#"[["x","0.1","0.2","0.1","0.1","1",1]]"#,
            r#"[[1,"abc","0.2","0.1","0.1","1",1]]"#,
            r#"[[1,"0.1","0.2","0.1","0.1","1",1"#,
            r#"{"code":0}"#,
        ] {
            assert!(serde_json::from_str::<Vec<Kline>>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn documented_exchange_info_filters_parse() {
        let body = r#"{"timezone":"UTC","serverTime":1565246363776,"symbols":[{"symbol":"BTCUSDT","status":"TRADING",
          "baseAsset":"BTC","baseAssetPrecision":8,"quoteAsset":"USDT","quoteAssetPrecision":8,
          "quoteOrderQtyMarketAllowed":true,"filters":[
          {"filterType":"PRICE_FILTER","minPrice":"0.01000000","maxPrice":"1000000.00000000","tickSize":"0.01000000"},
          {"filterType":"LOT_SIZE","minQty":"0.00001000","maxQty":"9000.00000000","stepSize":"0.00001000"},
          {"filterType":"ICEBERG_PARTS","limit":10},
          {"filterType":"MARKET_LOT_SIZE","minQty":"0.00000000","maxQty":"100.00000000","stepSize":"0.00000000"},
          {"filterType":"NOTIONAL","minNotional":"5.00000000","applyMinToMarket":true,
           "maxNotional":"9000000.00000000","applyMaxToMarket":false,"avgPriceMins":5}]}]}"#;
        let info: ExchangeInfo = serde_json::from_str(body).unwrap();
        assert_eq!(info.symbols[0].filters.len(), 5);
        assert!(matches!(info.symbols[0].filters[2], Filter::Other));
    }

    #[test]
    fn documented_full_order_response_parses() {
        let body = r#"{"symbol":"BTCUSDT","orderId":28,"orderListId":-1,"clientOrderId":"6gCrw2kRUAF9CvJDGP16IP",
          "transactTime":1507725176595,"price":"0.00000000","origQty":"10.00000000","executedQty":"10.00000000",
          "origQuoteOrderQty":"0.000000","cummulativeQuoteQty":"10.00000000","status":"FILLED","timeInForce":"GTC",
          "type":"MARKET","side":"SELL","workingTime":1507725176595,"selfTradePreventionMode":"NONE",
          "fills":[{"price":"4000.00000000","qty":"1.00000000","commission":"4.00000000","commissionAsset":"USDT",
          "tradeId":56}]}"#;
        let o: OrderResponse = serde_json::from_str(body).unwrap();
        assert_eq!(o.cumulative_quote_qty, Some(Dec(dec!(10))));
        assert_eq!(o.fills.unwrap()[0].trade_id, 56);
    }
}
