//! The raw Upbit REST client: one method per endpoint, named after it, returning the wire types. It signs
//! private calls, keeps within the rate-limit budget and sorts failures into [`UpbitError`]; it makes no trading
//! decision (that is [`super::UpbitExchange`]'s job).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use mcbot_stages::Clock;
use reqwest::{Method, StatusCode};
use rust_decimal::Decimal;
use serde::de::DeserializeOwned;

use super::auth::{Params, Signer};
use super::error::UpbitError;
use super::rate_limit::{Gate, Pause, RateLimiter};
use super::settings::UpbitSettings;
use super::wire::{WireAccount, WireCandle, WireError, WireOrder, WireOrderbook, WireTicker};

/// How many candles Upbit returns at most per call.
pub const MAX_CANDLES_PER_CALL: usize = 200;

/// Direction of an order in Upbit's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderSide {
    /// Buy.
    Bid,
    /// Sell.
    Ask,
}

impl OrderSide {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderSide::Bid => "bid",
            OrderSide::Ask => "ask",
        }
    }
}

/// What kind of order, with the amounts each kind needs (and only those: Upbit refuses extra fields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderKind {
    /// Limit order at `price` for `volume`.
    Limit {
        /// Price, on the tick grid.
        price: Decimal,
        /// Base volume.
        volume: Decimal,
    },
    /// Market buy spending `amount` of the quote currency (`ord_type=price`).
    MarketBuy {
        /// Quote amount.
        amount: Decimal,
    },
    /// Market sell of `volume` (`ord_type=market`).
    MarketSell {
        /// Base volume.
        volume: Decimal,
    },
}

/// A `POST /v1/orders` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    /// Market code.
    pub market: String,
    /// Direction.
    pub side: OrderSide,
    /// Type and amounts.
    pub kind: OrderKind,
    /// Our client order id, unique forever at Upbit.
    pub identifier: String,
}

impl NewOrder {
    /// The body fields in the order Upbit documents them (the query hash depends on it).
    pub fn params(&self) -> Params {
        let text = |d: Decimal| d.normalize().to_string();
        let p = Params::new().push("market", self.market.as_str()).push("side", self.side.as_str());
        let p = match &self.kind {
            OrderKind::Limit { price, volume } => {
                p.push("volume", text(*volume)).push("price", text(*price)).push("ord_type", "limit")
            }
            OrderKind::MarketBuy { amount } => p.push("price", text(*amount)).push("ord_type", "price"),
            OrderKind::MarketSell { volume } => p.push("volume", text(*volume)).push("ord_type", "market"),
        };
        p.push("identifier", self.identifier.as_str())
    }
}

/// Which order `GET`/`DELETE /v1/order` is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderRef {
    /// Upbit's uuid.
    Uuid(String),
    /// Our identifier (client order id).
    Identifier(String),
}

impl OrderRef {
    fn params(&self) -> Params {
        match self {
            OrderRef::Uuid(u) => Params::new().push("uuid", u.as_str()),
            OrderRef::Identifier(i) => Params::new().push("identifier", i.as_str()),
        }
    }
}

/// The raw client.
pub struct UpbitRest {
    http: reqwest::Client,
    base: String,
    signer: Option<Signer>,
    limiter: RateLimiter,
    pause: Arc<dyn Pause>,
    rate_limit_backoff: Duration,
    ban: Duration,
}

impl std::fmt::Debug for UpbitRest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpbitRest").field("base", &self.base).field("signed", &self.signer.is_some()).finish()
    }
}

/// First characters of a body, for error messages.
fn snippet(body: &str) -> String {
    body.chars().take(200).collect()
}

fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    let v = resp.headers().get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

impl UpbitRest {
    /// A client for `settings.rest_url`; private endpoints need both keys.
    pub fn new(settings: &UpbitSettings, clock: Arc<dyn Clock>, pause: Arc<dyn Pause>) -> Result<Self, UpbitError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(settings.request_timeout_ms))
            .build()
            .map_err(|e| UpbitError::Invalid(format!("cannot build the HTTP client: {e}")))?;
        let signer = match (&settings.access_key, &settings.secret_key) {
            (Some(a), Some(s)) if settings.has_credentials() => Some(Signer::new(a, s)),
            _ => None,
        };
        Ok(Self {
            http,
            base: settings.rest_url.trim_end_matches('/').to_owned(),
            signer,
            limiter: RateLimiter::new(clock),
            pause,
            rate_limit_backoff: Duration::from_millis(settings.rate_limit_backoff_ms),
            ban: Duration::from_secs(settings.ban_secs),
        })
    }

    /// True when private endpoints can be called.
    pub fn can_sign(&self) -> bool {
        self.signer.is_some()
    }

    /// One request: wait for the budget, sign if `private`, send, record `Remaining-Req`, sort the outcome.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        group_key: &'static str,
        params: Params,
        private: bool,
    ) -> Result<T, UpbitError> {
        let endpoint = format!("{method} {path}");
        match self.limiter.gate(group_key) {
            Gate::Go => {}
            Gate::Wait(d) => self.pause.pause(d).await,
            Gate::Banned(d) => {
                return Err(UpbitError::Banned { retry_after: d, message: "a 418 block is still running".into() });
            }
        }
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method.clone(), &url);
        req = if method == Method::POST {
            req.header(reqwest::header::CONTENT_TYPE, "application/json; charset=utf-8").body(params.json_body())
        } else if params.is_empty() {
            req
        } else {
            req.query(params.pairs())
        };
        if private {
            let signer = self.signer.as_ref().ok_or(UpbitError::MissingCredentials(group_key))?;
            req = req.bearer_auth(signer.token(&params)?);
        }
        let resp = req.send().await.map_err(|e| {
            let message = e.to_string();
            if e.is_connect() {
                UpbitError::Connect { endpoint: endpoint.clone(), message }
            } else {
                UpbitError::NoResponse { endpoint: endpoint.clone(), message }
            }
        })?;
        let remaining = resp.headers().get("Remaining-Req").and_then(|v| v.to_str().ok()).map(str::to_owned);
        self.limiter.observe(group_key, remaining.as_deref());
        let status = resp.status();
        let hinted = retry_after(&resp);
        let body = resp
            .text()
            .await
            .map_err(|e| UpbitError::NoResponse { endpoint: endpoint.clone(), message: e.to_string() })?;
        if status.is_success() {
            return serde_json::from_str(&body)
                .map_err(|e| UpbitError::Malformed { endpoint, message: format!("{e}; body: {}", snippet(&body)) });
        }
        match status {
            StatusCode::TOO_MANY_REQUESTS => {
                let retry_after = hinted.unwrap_or(self.rate_limit_backoff);
                self.limiter.throttled(group_key, retry_after);
                Err(UpbitError::RateLimited { endpoint, retry_after })
            }
            StatusCode::IM_A_TEAPOT => {
                let retry_after = hinted.unwrap_or(self.ban);
                self.limiter.banned(retry_after);
                Err(UpbitError::Banned { retry_after, message: snippet(&body) })
            }
            s if s.is_server_error() => Err(UpbitError::Server { endpoint, status: s.as_u16(), body: snippet(&body) }),
            s => {
                let (name, message) = match serde_json::from_str::<WireError>(&body) {
                    Ok(w) => (w.error.name.unwrap_or_default(), w.error.message.unwrap_or_default()),
                    Err(_) => (String::new(), snippet(&body)),
                };
                Err(UpbitError::Api { endpoint, status: s.as_u16(), name, message })
            }
        }
    }

    fn to_param(to: Option<DateTime<Utc>>) -> Option<String> {
        to.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
    }

    /// `GET /v1/candles/minutes/{unit}`: up to `count` (≤ 200) bars opening before `to`, newest first.
    pub async fn candles_minutes(
        &self,
        unit: u32,
        market: &str,
        to: Option<DateTime<Utc>>,
        count: usize,
    ) -> Result<Vec<WireCandle>, UpbitError> {
        let params = Params::new()
            .push("market", market)
            .push_opt("to", Self::to_param(to))
            .push("count", count.min(MAX_CANDLES_PER_CALL).to_string());
        self.call(Method::GET, &format!("/v1/candles/minutes/{unit}"), "candles", params, false).await
    }

    /// `GET /v1/candles/days`: daily bars (open 00:00 UTC), newest first.
    pub async fn candles_days(
        &self,
        market: &str,
        to: Option<DateTime<Utc>>,
        count: usize,
    ) -> Result<Vec<WireCandle>, UpbitError> {
        let params = Params::new()
            .push("market", market)
            .push_opt("to", Self::to_param(to))
            .push("count", count.min(MAX_CANDLES_PER_CALL).to_string());
        self.call(Method::GET, "/v1/candles/days", "candles", params, false).await
    }

    /// `GET /v1/ticker?markets=...`.
    pub async fn ticker(&self, markets: &[&str]) -> Result<Vec<WireTicker>, UpbitError> {
        let params = Params::new().push("markets", markets.join(","));
        self.call(Method::GET, "/v1/ticker", "ticker", params, false).await
    }

    /// `GET /v1/orderbook?markets=...`.
    pub async fn orderbook(&self, markets: &[&str]) -> Result<Vec<WireOrderbook>, UpbitError> {
        let params = Params::new().push("markets", markets.join(","));
        self.call(Method::GET, "/v1/orderbook", "orderbook", params, false).await
    }

    /// `GET /v1/accounts` (private).
    pub async fn accounts(&self) -> Result<Vec<WireAccount>, UpbitError> {
        self.call(Method::GET, "/v1/accounts", "accounts", Params::new(), true).await
    }

    /// `POST /v1/orders` (private).
    pub async fn create_order(&self, order: &NewOrder) -> Result<WireOrder, UpbitError> {
        self.call(Method::POST, "/v1/orders", "order", order.params(), true).await
    }

    /// `GET /v1/order?uuid=` or `?identifier=` (private): the order with its trades.
    pub async fn order(&self, which: &OrderRef) -> Result<WireOrder, UpbitError> {
        self.call(Method::GET, "/v1/order", "order-query", which.params(), true).await
    }

    /// `DELETE /v1/order` (private): asks for cancellation; the state may still read `wait` right after.
    pub async fn cancel_order(&self, which: &OrderRef) -> Result<WireOrder, UpbitError> {
        self.call(Method::DELETE, "/v1/order", "order-cancel", which.params(), true).await
    }

    /// `GET /v1/orders/open` (private): open orders, `limit` (≤ 100) a page, pages from 1.
    pub async fn open_orders(&self, market: Option<&str>, page: u32, limit: u32) -> Result<Vec<WireOrder>, UpbitError> {
        let params = Params::new()
            .push_opt("market", market)
            .push("page", page.to_string())
            .push("limit", limit.min(100).to_string());
        self.call(Method::GET, "/v1/orders/open", "orders-open", params, true).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn order_params_carry_only_what_each_kind_needs() {
        let o = |kind| NewOrder { market: "KRW-BTC".into(), side: OrderSide::Bid, kind, identifier: "mcb-1".into() };
        assert_eq!(
            o(OrderKind::MarketBuy { amount: dec!(10000) }).params().hash_input(),
            "market=KRW-BTC&side=bid&price=10000&ord_type=price&identifier=mcb-1"
        );
        assert_eq!(
            o(OrderKind::MarketSell { volume: dec!(0.00100000) }).params().hash_input(),
            "market=KRW-BTC&side=bid&volume=0.001&ord_type=market&identifier=mcb-1"
        );
        assert_eq!(
            o(OrderKind::Limit { price: dec!(80000000), volume: dec!(0.0001) }).params().hash_input(),
            "market=KRW-BTC&side=bid&volume=0.0001&price=80000000&ord_type=limit&identifier=mcb-1"
        );
    }
}
