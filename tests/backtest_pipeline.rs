//! Backtest = pipeline: a candle file replayed bar by bar through the real scheduler runtime and the four
//! stages (virtual time, simulated exchange filling at the next open) enters and exits on exactly the bars the
//! backtest engine does with the same strategy code.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::Duration;
use mcbot::app::{App, open_store};
use mcbot::candles_csv::read_candles;
use mcbot::config::Config;
use mcbot_schedules::jobs::TradingCycleJob;
use mcbot_stages::backtest::config::SimConfig as BacktestConfig;
use mcbot_stages::backtest::event::replay;
use mcbot_stages::domain::{Decimal, Side, Symbol};
use mcbot_stages::ports::Store;
use mcbot_stages::strategy::registry;
use mcbot_stages::{Clock, ManualClock};

use crate::support::db::fresh_sqlite_url;

const BARS: usize = 1200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_replayed_over_history_trades_on_the_backtests_bars() {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/backtest/BTC_USD-1h.csv");
    let all = read_candles(&file).unwrap();
    let candles = &all[..BARS];
    let dir = tempfile::tempdir().unwrap();
    let slice = dir.path().join("btc.csv");
    let mut text = String::from("timestamp,open,high,low,close,volume\n");
    for c in candles {
        text.push_str(&format!(
            "{},{},{},{},{},{}\n",
            c.open_time.format("%Y-%m-%dT%H:%M:%SZ"),
            c.open,
            c.high,
            c.low,
            c.close,
            c.volume
        ));
    }
    std::fs::write(&slice, text).unwrap();
    let symbol = Symbol::new("BTCUSD").unwrap();
    let params: std::collections::BTreeMap<String, String> =
        [("fast".to_string(), "10".to_string()), ("slow".to_string(), "30".to_string())].into();

    // The backtest: same strategy code, the window the pipeline shows it, next-open fills, 0.1 % fee.
    let tf = "1h".parse().unwrap();
    let strategy = registry::build("sma-cross", &params, tf).unwrap();
    let warmup = strategy.warmup();
    let bt = replay(strategy.as_ref(), &symbol, candles, &BacktestConfig::default(), Some(warmup)).unwrap();
    let expected: Vec<(usize, Option<usize>)> = bt.trades.iter().map(|t| (t.entry_bar, t.exit_bar)).collect();
    assert!(expected.len() > 10, "the slice has trades: {}", expected.len());

    // The pipeline: mock mode replaying the same candles, driven by the scheduler runtime on virtual time.
    let db = fresh_sqlite_url();
    let mut cfg = Config::default();
    cfg.market.quote = "USD".into();
    cfg.market.symbols = vec![symbol.clone()];
    cfg.sim.replay = [(symbol.clone(), slice.clone())].into();
    cfg.sim.slippage_bps = Decimal::ZERO;
    cfg.sim.step_size = Decimal::new(1, 8);
    cfg.sim.min_notional = Decimal::ZERO;
    cfg.strategy.name = "sma-cross".into();
    cfg.strategy.params =
        [("fast".to_string(), toml::Value::Integer(10)), ("slow".to_string(), toml::Value::Integer(30))].into();
    cfg.pipeline.lookback_bars = 2; // raised to the strategy's warm-up
    cfg.risk.stop_loss_pct = None;
    cfg.risk.max_daily_loss_pct = Decimal::from(100);
    cfg.risk.max_weekly_loss_pct = Decimal::from(100);
    cfg.risk.max_drawdown_pct = Decimal::from(100);
    cfg.risk.kill_switch_file = db.dir().join("KILL");
    cfg.pretrade.max_order_notional = Decimal::from(1_000_000_000);
    cfg.sizing.rebalance_band_pct = Decimal::ZERO;
    cfg.sizing.max_slippage_pct = Decimal::from(5);
    cfg.schedule.health = "0 0 0 1 * *".into();
    cfg.schedule.reconcile = "0 0 0 1 * *".into();
    cfg.database.data_dir = db.dir().to_path_buf();

    // The first decision the backtest can make is at bar `warmup - 1`, whose close is the open of the next bar:
    // start a quarter of an hour after the fire before it, beyond the catch-up grace.
    let first_close = candles[warmup].open_time;
    let clock = Arc::new(ManualClock::new(first_close - Duration::minutes(45)));
    let app = App::build(cfg, open_store(db.url()).await.unwrap(), clock.clone()).await.unwrap();
    // Reports catch up at any age; nothing else is within grace.
    assert!(app.runtime.catch_up().await.iter().all(|(job, _)| job.starts_with("report-")));
    let end = candles[BARS - 1].open_time + Duration::minutes(30);
    while let Some(next) = app.runtime.next_fire_after(clock.now()) {
        if next > end {
            break;
        }
        clock.set(next);
        app.runtime.tick().await;
    }

    // Orders back to bar indices: a cycle for the bar closing at open_time[k] fills at open[k].
    let index = |t: chrono::DateTime<chrono::Utc>| candles.iter().position(|c| c.open_time == t).unwrap();
    let mut runs = app.store.recent_runs(Some(TradingCycleJob::NAME), 100_000).await.unwrap();
    runs.sort_by_key(|r| r.scheduled_at);
    assert_eq!(
        runs.len(),
        BARS - warmup,
        "one cycle per bar, from the first decision to the one filled at the last bar"
    );
    let mut actual: Vec<(usize, Option<usize>)> = Vec::new();
    for r in &runs {
        for o in app.store.orders_of_run(&r.run_id).await.unwrap() {
            match o.side {
                Side::Buy => actual.push((index(r.scheduled_at), None)),
                Side::Sell => {
                    let last = actual.last_mut().expect("a sell follows a buy");
                    last.1 = Some(index(r.scheduled_at));
                }
            }
        }
    }
    assert_eq!(actual, expected, "same entry and exit bars");
    let held = app.store.positions().await.unwrap().into_iter().map(|p| p.qty).sum::<Decimal>();
    assert_eq!(held.is_zero(), expected.last().is_none_or(|t| t.1.is_some()), "open at the end iff the backtest is");
}
