//! Upbit payloads as they arrive, before conversion to domain types. Only the fields the bot uses are read
//! (unknown fields are ignored: Upbit adds fields over time); every number goes through [`super::numbers`].

use rust_decimal::Decimal;
use serde::Deserialize;

use super::numbers::{decimal, opt_decimal};

/// One element of `GET /v1/candles/minutes/{unit}` or `/v1/candles/days` (newest first in the array).
#[derive(Debug, Clone, Deserialize)]
pub struct WireCandle {
    /// Market code, `KRW-BTC`.
    pub market: String,
    /// Open time in UTC, without a zone suffix: `2024-08-31T13:25:00`.
    pub candle_date_time_utc: String,
    /// Open.
    #[serde(deserialize_with = "decimal")]
    pub opening_price: Decimal,
    /// High.
    #[serde(deserialize_with = "decimal")]
    pub high_price: Decimal,
    /// Low.
    #[serde(deserialize_with = "decimal")]
    pub low_price: Decimal,
    /// Close.
    #[serde(deserialize_with = "decimal")]
    pub trade_price: Decimal,
    /// Base volume.
    #[serde(deserialize_with = "decimal")]
    pub candle_acc_trade_volume: Decimal,
}

/// One element of `GET /v1/ticker`.
#[derive(Debug, Clone, Deserialize)]
pub struct WireTicker {
    /// Market code.
    pub market: String,
    /// Last trade price.
    #[serde(deserialize_with = "decimal")]
    pub trade_price: Decimal,
}

/// One level pair of an order book.
#[derive(Debug, Clone, Deserialize)]
pub struct WireOrderbookUnit {
    /// Ask price at this level.
    #[serde(deserialize_with = "decimal")]
    pub ask_price: Decimal,
    /// Bid price at this level.
    #[serde(deserialize_with = "decimal")]
    pub bid_price: Decimal,
    /// Ask quantity.
    #[serde(deserialize_with = "decimal")]
    pub ask_size: Decimal,
    /// Bid quantity.
    #[serde(deserialize_with = "decimal")]
    pub bid_size: Decimal,
}

/// One element of `GET /v1/orderbook`: units best first.
#[derive(Debug, Clone, Deserialize)]
pub struct WireOrderbook {
    /// Market code.
    pub market: String,
    /// Levels, best first.
    pub orderbook_units: Vec<WireOrderbookUnit>,
}

/// One element of `GET /v1/accounts` (numbers are strings here).
#[derive(Debug, Clone, Deserialize)]
pub struct WireAccount {
    /// Currency code, `KRW`, `BTC`.
    pub currency: String,
    /// Available.
    #[serde(deserialize_with = "decimal")]
    pub balance: Decimal,
    /// Held by open orders.
    #[serde(deserialize_with = "decimal")]
    pub locked: Decimal,
}

/// One execution inside `GET /v1/order`'s `trades`.
#[derive(Debug, Clone, Deserialize)]
pub struct WireTrade {
    /// Trade id.
    pub uuid: String,
    /// Execution price.
    #[serde(deserialize_with = "decimal")]
    pub price: Decimal,
    /// Executed volume.
    #[serde(deserialize_with = "decimal")]
    pub volume: Decimal,
    /// Quote value (price x volume), when sent.
    #[serde(default, deserialize_with = "opt_decimal")]
    pub funds: Option<Decimal>,
    /// Execution time, ISO-8601 with offset.
    pub created_at: String,
}

/// An order as `POST /v1/orders`, `GET /v1/order` and `DELETE /v1/order` return it.
#[derive(Debug, Clone, Deserialize)]
pub struct WireOrder {
    /// Upbit's order id.
    pub uuid: String,
    /// `bid` or `ask`.
    pub side: String,
    /// `limit`, `price` (market buy by amount), `market` (market sell by volume), `best`.
    pub ord_type: String,
    /// Limit price, or the amount to spend of a `price` order.
    #[serde(default, deserialize_with = "opt_decimal")]
    pub price: Option<Decimal>,
    /// `wait`, `watch`, `done`, `cancel`.
    pub state: String,
    /// Market code.
    pub market: String,
    /// Creation time, ISO-8601 with offset.
    pub created_at: String,
    /// Ordered volume (absent for `price` orders).
    #[serde(default, deserialize_with = "opt_decimal")]
    pub volume: Option<Decimal>,
    /// Executed volume so far.
    #[serde(deserialize_with = "decimal")]
    pub executed_volume: Decimal,
    /// Fee paid so far, in the quote currency.
    #[serde(default, deserialize_with = "opt_decimal")]
    pub paid_fee: Option<Decimal>,
    /// Our client order id.
    #[serde(default)]
    pub identifier: Option<String>,
    /// Executions (only in `GET /v1/order`).
    #[serde(default)]
    pub trades: Vec<WireTrade>,
}

/// The body of every Upbit error: `{"error":{"name":"...","message":"..."}}`.
#[derive(Debug, Clone, Deserialize)]
pub struct WireError {
    /// The error.
    pub error: WireErrorBody,
}

/// Name and message of an error.
#[derive(Debug, Clone, Deserialize)]
pub struct WireErrorBody {
    /// Machine name, e.g. `insufficient_funds_bid`.
    #[serde(default)]
    pub name: Option<String>,
    /// Human text.
    #[serde(default)]
    pub message: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn reference_payloads_parse_exactly() {
        let c: Vec<WireCandle> = serde_json::from_str(
            r#"[{"market":"KRW-BTC","candle_date_time_utc":"2024-08-31T13:25:00",
            "candle_date_time_kst":"2024-08-31T22:25:00","opening_price":80000000.0,
            "high_price":80100000.0,"low_price":79950000.0,"trade_price":80050000.0,
            "timestamp":1725110759123,"candle_acc_trade_price":123456789.1,
            "candle_acc_trade_volume":1.5432,"unit":5}]"#,
        )
        .unwrap();
        assert_eq!(c[0].trade_price, dec!(80050000));
        assert_eq!(c[0].candle_acc_trade_volume.to_string(), "1.5432");
        let o: WireOrder = serde_json::from_str(
            r#"{"uuid":"9ca023a5","side":"bid","ord_type":"limit","price":"80000000","state":"wait",
            "market":"KRW-BTC","created_at":"2024-08-31T22:25:59+09:00","volume":"0.001",
            "remaining_volume":"0.001","reserved_fee":"40","remaining_fee":"40","paid_fee":"0",
            "locked":"80040","executed_volume":"0","trades_count":0,"identifier":"bot-123"}"#,
        )
        .unwrap();
        assert_eq!(o.volume, Some(dec!(0.001)));
        assert_eq!(o.identifier.as_deref(), Some("bot-123"));
        let a: Vec<WireAccount> = serde_json::from_str(
            r#"[{"currency":"KRW","balance":"1000000.0","locked":"0.0","avg_buy_price":"0",
            "avg_buy_price_modified":true,"unit_currency":"KRW"}]"#,
        )
        .unwrap();
        assert_eq!(a[0].balance, dec!(1000000));
    }
}
