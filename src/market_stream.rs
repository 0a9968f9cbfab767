//! The live market feed of the scheduler: the venue's kline stream fills the candle cache DataCollection reads,
//! and (unless `schedule.trigger_on_stream` is off) each bar that has closed for every symbol starts the trading
//! cycle at once. The cron fire at close + `bar_delay_secs` stays as the fallback; both go through the same
//! ledger key, so a bar is traded once whichever comes first.

use std::sync::Arc;

use mcbot_schedules::{Runtime, StreamTrigger, TriggeredCycle};
use mcbot_stages::Clock;
use mcbot_stages::control::mutate_state;
use mcbot_stages::pipeline::risk::{STREAM_BREAKER, stream_watch};
use mcbot_stages::ports::Store;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::app::App;
use crate::exchange::binance::StreamHandle;

/// A running market stream and the task that turns its bars into cycles.
pub struct MarketStream {
    stream: StreamHandle,
    trigger: Option<AbortOnDrop>,
    watch: Option<AbortOnDrop>,
    cycles: broadcast::Sender<TriggeredCycle>,
}

impl MarketStream {
    /// Starts the venue's stream for the configured symbols, if the venue has one (Binance); `None` otherwise,
    /// and the cron schedule alone drives the cycle.
    pub fn start(app: &App) -> Option<Self> {
        let binance = app.binance.as_ref()?;
        let (symbols, tf) = (app.cfg.market.symbols.clone(), app.cfg.market.timeframe);
        let stream = binance.start_stream(symbols.clone(), tf);
        let (cycles, _) = broadcast::channel(64);
        let trigger = app.cfg.schedule.trigger_on_stream.then(|| {
            let bars = stream.subscribe();
            let trigger = StreamTrigger::new(&symbols, tf);
            AbortOnDrop(tokio::spawn(drive(bars, trigger, app.runtime.clone(), app.clock.clone(), cycles.clone())))
        });
        let limit = app.cfg.risk.max_stream_down_secs;
        let watch = (app.cfg.mode == crate::config::Mode::Live && limit > 0).then(|| {
            let store: Arc<dyn Store> = app.store.clone();
            AbortOnDrop(tokio::spawn(watch_connection(stream.connected_probe(), store, app.clock.clone(), limit)))
        });
        Some(Self { stream, trigger, watch, cycles })
    }

    /// Every cycle the stream starts from now on (for tests and, later, metrics).
    pub fn cycles(&self) -> broadcast::Receiver<TriggeredCycle> {
        self.cycles.subscribe()
    }

    /// The stream itself (counters, cache).
    pub fn stream(&self) -> &StreamHandle {
        &self.stream
    }

    /// Stops the trigger (a cycle in progress is left to the runtime's drain) and closes the connection.
    pub async fn shutdown(self) {
        drop(self.trigger);
        drop(self.watch);
        self.stream.shutdown().await;
    }
}

/// The trigger task ends with its owner.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The market-stream breaker of mode live: a stream down for `limit_secs` stops entries until it is back.
/// Looks once a second; the state is touched only when the breaker must trip or clear.
async fn watch_connection(
    connected: impl Fn() -> bool + Send + Sync + 'static,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    limit_secs: u64,
) {
    let mut down_since = None;
    // Unknown at first: a breaker left tripped by an earlier process is cleared once the stream is up.
    let mut tripped = None;
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tick.tick().await;
        let now = clock.now();
        down_since = if connected() { None } else { Some(down_since.unwrap_or(now)) };
        let over = down_since.is_some_and(|d| now - d >= chrono::Duration::seconds(limit_secs as i64));
        let act = match (down_since.is_some(), tripped) {
            (true, t) => over && t != Some(true),
            (false, t) => t != Some(false),
        };
        if !act {
            continue;
        }
        match mutate_state(store.as_ref(), None, |st| stream_watch(st, down_since, now, limit_secs)).await {
            Ok((st, _)) => tripped = Some(st.tripped.contains_key(STREAM_BREAKER)),
            Err(e) => tracing::warn!("market-stream breaker not updated: {e}"),
        }
    }
}

async fn drive(
    mut bars: broadcast::Receiver<crate::exchange::binance::ClosedBar>,
    trigger: StreamTrigger,
    runtime: Arc<Runtime>,
    clock: Arc<dyn Clock>,
    cycles: broadcast::Sender<TriggeredCycle>,
) {
    loop {
        let bar = match bars.recv().await {
            Ok(bar) => bar,
            // Only history can be lost here (the channel holds thousands of bars); the cron fallback covers it.
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!("bar trigger fell {n} bar(s) behind; the cron fire covers them");
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let now = clock.now();
        if let Some(cycle) = trigger.on_bar(&runtime, &bar.symbol, bar.candle.open_time, bar.received_at, now).await {
            let _ = cycles.send(cycle);
        }
    }
}
