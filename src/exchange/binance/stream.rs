//! The kline WebSocket stream: one combined connection for all symbols, closed-kline events into the candle
//! cache, and REST backfill at start, on every reconnect and whenever a bar is skipped, so no bar is ever
//! missed and none is delivered twice. Reconnects back off exponentially with jitter; the connection is
//! renewed on our terms before Binance's 24 h cut.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::{SinkExt, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use mcbot_stages::Clock;
use mcbot_stages::domain::{Candle, Symbol, Timeframe};

use super::aggregate::{Aggregated, MinuteAggregator};
use super::candle_cache::{BarSource, CandleCache, ClosedBar};
use super::errors::BinanceError;
use super::history::closed_klines;
use super::payloads::{Dec, ms_to_utc};
use super::rest::BinanceRest;
use super::settings::StreamSettings;

/// Counters for metrics: how healthy the stream is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// A connection is open now.
    pub connected: bool,
    /// Connections opened after the first one (drops, failures and planned renewals).
    pub reconnects: u64,
    /// Of those, renewals before the 24 h cut or on `serverShutdown`.
    pub planned_reconnects: u64,
    /// Text messages received.
    pub messages: u64,
    /// Messages that did not parse (logged, skipped).
    pub malformed_messages: u64,
    /// Bars that entered the cache from the stream.
    pub bars_streamed: u64,
    /// Bars that entered the cache from REST backfill.
    pub bars_backfilled: u64,
    /// Age of the last kline message, per symbol (injected clock).
    pub last_message_age: BTreeMap<Symbol, Duration>,
}

#[derive(Debug, Default)]
struct Counters {
    stats: StreamStats,
    last_message: BTreeMap<Symbol, DateTime<Utc>>,
}

/// A running stream: its cache, its counters, and the task (stopped on drop).
pub struct StreamHandle {
    cache: Arc<CandleCache>,
    counters: Arc<Mutex<Counters>>,
    clock: Arc<dyn Clock>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl StreamHandle {
    /// The cache the stream fills.
    pub fn cache(&self) -> Arc<CandleCache> {
        self.cache.clone()
    }

    /// Every closed bar from now on, exactly once each.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<ClosedBar> {
        self.cache.subscribe()
    }

    /// Counters, with ages computed now.
    pub fn stats(&self) -> StreamStats {
        let c = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        let now = self.clock.now();
        let mut stats = c.stats.clone();
        stats.last_message_age =
            c.last_message.iter().map(|(s, t)| (s.clone(), (now - *t).to_std().unwrap_or_default())).collect();
        stats
    }

    /// A probe that tells whether a connection is open now, for a watcher that outlives this borrow.
    pub fn connected_probe(&self) -> impl Fn() -> bool + Send + Sync + 'static {
        let counters = self.counters.clone();
        move || counters.lock().unwrap_or_else(|p| p.into_inner()).stats.connected
    }

    /// Closes the connection and waits for the task to end.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for StreamHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// What the stream is asked to follow.
#[derive(Debug, Clone)]
pub struct StreamSpec {
    /// WebSocket base URL (the combined stream is `<ws_url>/stream?streams=...`).
    pub ws_url: String,
    /// Symbols, all on one connection.
    pub symbols: Vec<Symbol>,
    /// Timeframe of the bars the cache holds.
    pub timeframe: Timeframe,
    /// Tuning.
    pub settings: StreamSettings,
}

/// Starts the stream task on the current tokio runtime.
pub fn spawn_kline_stream(rest: Arc<BinanceRest>, clock: Arc<dyn Clock>, spec: StreamSpec) -> StreamHandle {
    let cache = Arc::new(CandleCache::new(spec.timeframe, spec.settings.cache_bars));
    let counters = Arc::new(Mutex::new(Counters::default()));
    metrics::counter!(crate::metrics::names::EXCHANGE_WS_RECONNECTS, "venue" => "binance").absolute(0);
    let (stop, stop_rx) = watch::channel(false);
    let one_minute = Timeframe::from_minutes(1).unwrap_or(spec.timeframe);
    let aggregate = spec.settings.aggregate_from_1m && spec.timeframe.minutes() > 1;
    let rng = match spec.settings.jitter_seed {
        Some(seed) => StdRng::seed_from_u64(seed),
        None => StdRng::from_os_rng(),
    };
    let worker = Worker {
        rest,
        clock: clock.clone(),
        source_tf: if aggregate { one_minute } else { spec.timeframe },
        aggregator: aggregate.then(|| MinuteAggregator::new(spec.timeframe)),
        spec,
        cache: cache.clone(),
        counters: counters.clone(),
        last_source: HashMap::new(),
        rng,
        stop: stop_rx,
    };
    let task = tokio::spawn(worker.run());
    StreamHandle { cache, counters, clock, stop, task: Some(task) }
}

/// Why a connection ended.
#[derive(Debug)]
enum SessionEnd {
    /// Asked to stop.
    Stopped,
    /// Renewed on purpose (age or `serverShutdown`): reconnect at once.
    Planned(&'static str),
    /// Dropped, closed, idle or errored: reconnect with back-off.
    Lost(String),
}

struct Worker {
    rest: Arc<BinanceRest>,
    clock: Arc<dyn Clock>,
    spec: StreamSpec,
    source_tf: Timeframe,
    aggregator: Option<MinuteAggregator>,
    cache: Arc<CandleCache>,
    counters: Arc<Mutex<Counters>>,
    /// Open time of the last source bar taken in, per symbol: the gap detector's memory.
    last_source: HashMap<Symbol, DateTime<Utc>>,
    rng: StdRng,
    stop: watch::Receiver<bool>,
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

impl Worker {
    fn counters(&self) -> std::sync::MutexGuard<'_, Counters> {
        self.counters.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn url(&self) -> String {
        let interval = self.source_tf.to_string();
        let streams: Vec<String> =
            self.spec.symbols.iter().map(|s| format!("{}@kline_{interval}", s.as_str().to_lowercase())).collect();
        format!("{}/stream?streams={}", self.spec.ws_url.trim_end_matches('/'), streams.join("/"))
    }

    async fn run(mut self) {
        let mut failures: u32 = 0;
        let mut first = true;
        loop {
            if *self.stop.borrow() {
                return;
            }
            if !first {
                self.counters().stats.reconnects += 1;
                metrics::counter!(crate::metrics::names::EXCHANGE_WS_RECONNECTS, "venue" => "binance").increment(1);
            }
            first = false;
            let connect = tokio::time::timeout(
                Duration::from_millis(self.spec.settings.idle_timeout_ms.max(1)),
                // Nagle off: a pong must not wait behind a delayed ACK.
                tokio_tungstenite::connect_async_with_config(self.url(), None, true),
            )
            .await;
            let end = match connect {
                Ok(Ok((ws, _))) => {
                    failures = 0;
                    let end = self.session(ws).await;
                    self.counters().stats.connected = false;
                    end
                }
                Ok(Err(e)) => SessionEnd::Lost(format!("connect failed: {e}")),
                Err(_) => SessionEnd::Lost("connect timed out".into()),
            };
            let delay = match end {
                SessionEnd::Stopped => return,
                SessionEnd::Planned(why) => {
                    tracing::info!(why, "renewing the Binance kline stream");
                    self.counters().stats.planned_reconnects += 1;
                    Duration::ZERO
                }
                SessionEnd::Lost(why) => {
                    let d = self.backoff(failures);
                    failures = failures.saturating_add(1);
                    tracing::warn!(%why, delay_ms = d.as_millis() as u64, "Binance kline stream lost: reconnecting");
                    d
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = self.stop.changed() => return,
            }
        }
    }

    /// Exponential back-off with "equal jitter": half the delay fixed, half random, so many clients that lost
    /// the same server do not come back in lockstep.
    fn backoff(&mut self, failures: u32) -> Duration {
        let s = &self.spec.settings;
        let exp = s.reconnect_base_ms.saturating_mul(1u64 << failures.min(20));
        let capped = exp.min(s.reconnect_max_ms).max(1);
        let half = capped / 2;
        Duration::from_millis(half + self.rng.random_range(0..=capped - half))
    }

    async fn session(&mut self, mut ws: Ws) -> SessionEnd {
        let connected_at = self.clock.now();
        self.counters().stats.connected = true;
        // Subscribed first, then backfilled: bars closing meanwhile wait in the socket and are deduplicated.
        self.backfill_all().await;
        let settings = self.spec.settings.clone();
        let mut ticker = tokio::time::interval(Duration::from_millis(settings.ping_interval_ms.max(1)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        let idle = Duration::from_millis(settings.idle_timeout_ms.max(1));
        let max_age = chrono::Duration::seconds(i64::try_from(settings.max_connection_age_secs).unwrap_or(i64::MAX));
        let mut last_frame = tokio::time::Instant::now();
        loop {
            tokio::select! {
                msg = ws.next() => {
                    last_frame = tokio::time::Instant::now();
                    metrics::counter!(crate::metrics::names::EXCHANGE_WS_MESSAGES, "venue" => "binance").increment(1);
                    metrics::gauge!(crate::metrics::names::EXCHANGE_WS_LAST_MESSAGE, "venue" => "binance")
                        .set(self.clock.now().timestamp_millis() as f64 / 1000.0);
                    match msg {
                        Some(Ok(Message::Text(text))) => {
                            if let Some(end) = self.on_text(text.as_str()).await {
                                let _ = ws.close(None).await;
                                return end;
                            }
                        }
                        // Pings are answered by tungstenite on the next read; pongs and binary just prove life.
                        Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Binary(_) | Message::Frame(_))) => {}
                        Some(Ok(Message::Close(frame))) => return SessionEnd::Lost(format!("closed by server: {frame:?}")),
                        Some(Err(e)) => return SessionEnd::Lost(format!("socket error: {e}")),
                        None => return SessionEnd::Lost("socket ended".into()),
                    }
                }
                _ = ticker.tick() => {
                    if last_frame.elapsed() > idle {
                        return SessionEnd::Lost(format!("no frame for {idle:?}"));
                    }
                    if self.clock.now() - connected_at >= max_age {
                        let _ = ws.close(None).await;
                        return SessionEnd::Planned("connection age limit");
                    }
                    if let Err(e) = ws.send(Message::Ping(b"mcbot".to_vec().into())).await {
                        return SessionEnd::Lost(format!("ping failed: {e}"));
                    }
                    self.retry_pending_gaps().await;
                }
                _ = self.stop.changed() => {
                    let _ = ws.close(None).await;
                    return SessionEnd::Stopped;
                }
            }
        }
    }

    /// Handles one text message; `Some` ends the session.
    async fn on_text(&mut self, text: &str) -> Option<SessionEnd> {
        self.counters().stats.messages += 1;
        let event = match parse_event(text) {
            Ok(e) => e,
            Err(e) => {
                self.counters().stats.malformed_messages += 1;
                tracing::warn!(error = %e, "skipping a malformed Binance stream message");
                return None;
            }
        };
        match event {
            StreamEvent::Kline { symbol, interval, closed, candle } => {
                let now = self.clock.now();
                self.counters().last_message.insert(symbol.clone(), now);
                if closed && interval == self.source_tf.to_string() && self.spec.symbols.contains(&symbol) {
                    self.on_closed_source(&symbol, candle).await;
                }
                None
            }
            StreamEvent::ServerShutdown => Some(SessionEnd::Planned("serverShutdown")),
            StreamEvent::Other => None,
        }
    }

    /// A closed source bar from the stream: fill any gap before it over REST, then take it in. If the backfill
    /// fails, the bar is not taken either, so the next closed bar retries the whole gap (REST has this bar too).
    async fn on_closed_source(&mut self, symbol: &Symbol, candle: Candle) {
        let step = self.source_tf.duration();
        if let Some(last) = self.last_source.get(symbol).copied() {
            if candle.open_time <= last {
                return;
            }
            if candle.open_time > last + step
                && let Err(e) = self.backfill(symbol, last + step, candle.open_time - step).await
            {
                tracing::warn!(%symbol, error = %e, "gap backfill failed; will retry");
                return;
            }
        }
        self.accept_source(symbol, candle, BarSource::Stream).await;
    }

    /// Takes one source bar in order: straight into the cache, or through the aggregator.
    async fn accept_source(&mut self, symbol: &Symbol, candle: Candle, source: BarSource) {
        self.last_source.insert(symbol.clone(), candle.open_time);
        let target = match self.aggregator.as_mut() {
            None => Some(candle),
            Some(agg) => match agg.push(symbol, candle) {
                Aggregated::Pending => None,
                Aggregated::Complete(bar) => Some(bar),
                Aggregated::Incomplete { bucket } => {
                    // Minutes are missing (a REST hole): take the exchange's own bar of the target timeframe.
                    let now = self.clock.now();
                    match closed_klines(&self.rest, symbol, self.spec.timeframe, bucket, bucket, now).await {
                        Ok(bars) => bars.into_iter().next(),
                        Err(e) => {
                            tracing::warn!(%symbol, error = %e, "could not fetch an incomplete aggregated bar");
                            None
                        }
                    }
                }
            },
        };
        if let Some(bar) = target {
            let now = self.clock.now();
            if self.cache.insert(symbol, bar, source, now) {
                let mut c = self.counters();
                match source {
                    BarSource::Stream => c.stats.bars_streamed += 1,
                    BarSource::Backfill => c.stats.bars_backfilled += 1,
                }
            }
        }
    }

    /// Source bars with open time in [from, to] over REST, taken in order.
    async fn backfill(&mut self, symbol: &Symbol, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<(), BinanceError> {
        let now = self.clock.now();
        let bars = closed_klines(&self.rest, symbol, self.source_tf, from, to, now).await?;
        for bar in bars {
            if self.last_source.get(symbol).is_none_or(|l| bar.open_time > *l) {
                self.accept_source(symbol, bar, BarSource::Backfill).await;
            }
        }
        Ok(())
    }

    /// At start and after every (re)connect: everything closed since the last bar taken, or the warm-up.
    async fn backfill_all(&mut self) {
        for symbol in self.spec.symbols.clone() {
            if let Err(e) = self.catch_up(&symbol).await {
                tracing::warn!(%symbol, error = %e, "backfill failed; will retry");
            }
        }
    }

    /// Retries catch-up for symbols whose stream bar is overdue (a failed backfill, or a missed event).
    async fn retry_pending_gaps(&mut self) {
        let now = self.clock.now();
        let last_closed = self.source_tf.last_close(now) - self.source_tf.duration();
        for symbol in self.spec.symbols.clone() {
            let behind = self.last_source.get(&symbol).is_none_or(|l| *l < last_closed);
            if behind && let Err(e) = self.catch_up(&symbol).await {
                tracing::debug!(%symbol, error = %e, "catch-up failed; will retry");
            }
        }
    }

    async fn catch_up(&mut self, symbol: &Symbol) -> Result<(), BinanceError> {
        let now = self.clock.now();
        let last_closed = self.source_tf.last_close(now) - self.source_tf.duration();
        match self.last_source.get(symbol).copied() {
            Some(last) => {
                let from = last + self.source_tf.duration();
                if from <= last_closed {
                    self.backfill(symbol, from, last_closed).await?;
                }
            }
            None => self.warm_up(symbol, now).await?,
        }
        Ok(())
    }

    /// First load: the last `warmup_bars` target bars; when aggregating, the 1m bars of the forming bucket.
    async fn warm_up(&mut self, symbol: &Symbol, now: DateTime<Utc>) -> Result<(), BinanceError> {
        let tf = self.spec.timeframe;
        let n = i32::try_from(self.spec.settings.warmup_bars.max(1)).unwrap_or(i32::MAX);
        let last_target = tf.last_close(now) - tf.duration();
        let from = last_target - tf.duration() * (n - 1);
        if self.aggregator.is_none() {
            return self.backfill(symbol, from, last_target).await;
        }
        let bars = closed_klines(&self.rest, symbol, tf, from, last_target, now).await?;
        for bar in bars {
            if self.cache.insert(symbol, bar, BarSource::Backfill, now) {
                self.counters().stats.bars_backfilled += 1;
            }
        }
        let bucket = tf.last_close(now);
        self.last_source.insert(symbol.clone(), bucket - self.source_tf.duration());
        let last_minute = self.source_tf.last_close(now) - self.source_tf.duration();
        if bucket <= last_minute {
            self.backfill(symbol, bucket, last_minute).await?;
        }
        Ok(())
    }
}

/// A message of the combined stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// A kline update; `closed` is Binance's `x`.
    Kline {
        /// The pair.
        symbol: Symbol,
        /// Binance interval name, e.g. `1m`.
        interval: String,
        /// The bar is final.
        closed: bool,
        /// The bar as of this update.
        candle: Candle,
    },
    /// Binance is about to close the connection for maintenance.
    ServerShutdown,
    /// Subscription replies and other events.
    Other,
}

#[derive(Deserialize)]
struct Combined {
    data: Option<RawEvent>,
    #[serde(default)]
    e: Option<String>,
}

#[derive(Deserialize)]
struct RawEvent {
    e: String,
    #[serde(default)]
    k: Option<RawKline>,
}

#[derive(Deserialize)]
struct RawKline {
    t: i64,
    s: String,
    i: String,
    o: Dec,
    h: Dec,
    l: Dec,
    c: Dec,
    v: Dec,
    x: bool,
}

/// Parses one combined-stream (or raw-stream) message into a typed event; anything off-shape is an error.
pub fn parse_event(text: &str) -> Result<StreamEvent, BinanceError> {
    let bad = |d: String| BinanceError::malformed("kline stream", d);
    let msg: Combined = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    let kind = match (&msg.data, &msg.e) {
        (Some(d), _) => d.e.as_str(),
        (None, Some(e)) => e.as_str(),
        (None, None) => return Ok(StreamEvent::Other),
    };
    match kind {
        "serverShutdown" => Ok(StreamEvent::ServerShutdown),
        "kline" => {
            let k = msg.data.and_then(|d| d.k).ok_or_else(|| bad("kline event without k".into()))?;
            let symbol = Symbol::new(&k.s).map_err(|e| bad(e.to_string()))?;
            let open_time = ms_to_utc(k.t).ok_or_else(|| bad(format!("open time {} out of range", k.t)))?;
            let candle = Candle { open_time, open: k.o.0, high: k.h.0, low: k.l.0, close: k.c.0, volume: k.v.0 };
            Ok(StreamEvent::Kline { symbol, interval: k.i, closed: k.x, candle })
        }
        _ => Ok(StreamEvent::Other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn the_documented_kline_event_parses() {
        let text = r#"{"stream":"bnbbtc@kline_1m","data":{"e":"kline","E":1672515782136,"s":"BNBBTC",
          "k":{"t":1672515780000,"T":1672515839999,"s":"BNBBTC","i":"1m","f":100,"L":200,"o":"0.0010","c":"0.0020",
          "h":"0.0025","l":"0.0015","v":"1000","n":100,"x":false,"q":"1.0000","V":"500","Q":"0.500","B":"123456"}}}"#;
        let StreamEvent::Kline { symbol, interval, closed, candle } = parse_event(text).unwrap() else { panic!() };
        assert_eq!((symbol.as_str(), interval.as_str(), closed), ("BNBBTC", "1m", false));
        assert_eq!((candle.open, candle.high, candle.volume), (dec!(0.0010), dec!(0.0025), dec!(1000)));
    }

    #[test]
    fn other_messages_are_typed_and_garbage_is_an_error() {
        assert_eq!(parse_event(r#"{"result":null,"id":1}"#).unwrap(), StreamEvent::Other);
        assert_eq!(parse_event(r#"{"e":"serverShutdown","E":1}"#).unwrap(), StreamEvent::ServerShutdown);
        for bad in [
            "",
            "{",
            r#"{"data":{"e":"kline"}}"#,
            r#"{"data":{"e":"kline","k":{"t":1,"s":"x","i":"1m","o":"1","h":"1","l":"1","c":"1","v":"1","x":true}}}"#,
            r#"{"data":{"e":"kline","k":{"t":1,"s":"BTCUSDT","i":"1m","o":1.5,"h":"1","l":"1","c":"1","v":"1","x":true}}}"#,
        ] {
            assert!(parse_event(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let settings = StreamSettings { reconnect_base_ms: 100, reconnect_max_ms: 1_000, ..StreamSettings::default() };
        let mut w = Worker {
            rest: Arc::new(
                BinanceRest::new(
                    &super::super::settings::BinanceSettings::default(),
                    Arc::new(mcbot_stages::SystemClock),
                    None,
                )
                .unwrap(),
            ),
            clock: Arc::new(mcbot_stages::SystemClock),
            spec: StreamSpec {
                ws_url: "ws://127.0.0.1:1".into(),
                symbols: vec![Symbol::new("BTCUSDT").unwrap()],
                timeframe: "1m".parse().unwrap(),
                settings,
            },
            source_tf: "1m".parse().unwrap(),
            aggregator: None,
            cache: Arc::new(CandleCache::new("1m".parse().unwrap(), 10)),
            counters: Arc::default(),
            last_source: HashMap::new(),
            rng: StdRng::seed_from_u64(1),
            stop: watch::channel(false).1,
        };
        let d0 = w.backoff(0);
        assert!((50..=100).contains(&(d0.as_millis() as u64)), "{d0:?}");
        let d3 = w.backoff(3);
        assert!((400..=800).contains(&(d3.as_millis() as u64)), "{d3:?}");
        for _ in 0..20 {
            assert!(w.backoff(30) <= Duration::from_millis(1_000));
        }
        assert_eq!(w.url(), "ws://127.0.0.1:1/stream?streams=btcusdt@kline_1m");
    }
}
