//! The Parquet candle store and its two writers: `data download` from the simulated exchange (through the
//! `Exchange` port, as with Binance or Upbit), resumed after an interruption without duplicates, with gaps,
//! duplicates and bad bars reported; and `data import` of a CSV in the ../shared/data format. The files are
//! read back by the backtest loader, which pins the schema both sides rely on.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use indicatif::ProgressBar;
use mcbot::commands::data::{DataArgs, DataCommand, DownloadArgs, ImportArgs, MigrateArgs, run};
use mcbot::market_data::{CandleStore, DownloadOptions, MarketDataError, download_series, import_csv};
use mcbot_stages::domain::{
    Balance, Candle, ClientOrderId, Decimal, Instrument, OrderBook, OrderIntent, Symbol, Timeframe,
};
use mcbot_stages::pipeline::pretrade::Approved;
use mcbot_stages::ports::{Exchange, ExchangeError, OrderAck};
use mcbot_stages::sim::{MarketSource, RandomWalk, SimConfig, SimExchange};
use mcbot_stages::{Clock, ManualClock};
use rust_decimal_macros::dec;

fn start() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z").unwrap().to_utc()
}

fn h1() -> Timeframe {
    "1h".parse().unwrap()
}

fn btc() -> Symbol {
    Symbol::new("BTCUSDT").unwrap()
}

fn sim(clock: Arc<ManualClock>) -> SimExchange {
    let market = MarketSource::random_walk(RandomWalk {
        seed: 42,
        start: start(),
        bar_vol: 0.01,
        start_prices: [(btc(), dec!(43000))].into(),
        price_dp: 2,
    });
    let cfg = SimConfig {
        quote: "USDT".into(),
        initial_cash: dec!(10000),
        fee_rate: dec!(0.001),
        slippage_bps: dec!(0),
        timeframe: h1(),
        instruments: vec![Instrument {
            symbol: btc(),
            base: "BTC".into(),
            quote: "USDT".into(),
            tick_size: dec!(0.01),
            step_size: dec!(0.00001),
            min_notional: dec!(10),
        }],
    };
    SimExchange::new(market, cfg, clock)
}

/// The simulator seen through a faulty line: counts calls, records each `until`, fails after `fail_after` calls,
/// and can drop, duplicate or spoil bars.
struct Line {
    inner: SimExchange,
    calls: AtomicUsize,
    untils: Mutex<Vec<DateTime<Utc>>>,
    fail_after: Option<usize>,
    drop: BTreeSet<DateTime<Utc>>,
    duplicate: Option<DateTime<Utc>>,
    spoil: Option<DateTime<Utc>>,
}

impl Line {
    fn new(inner: SimExchange) -> Self {
        Self {
            inner,
            calls: AtomicUsize::new(0),
            untils: Mutex::new(Vec::new()),
            fail_after: None,
            drop: BTreeSet::new(),
            duplicate: None,
            spoil: None,
        }
    }

    fn untils(&self) -> Vec<DateTime<Utc>> {
        self.untils.lock().unwrap().clone()
    }
}

#[async_trait]
impl Exchange for Line {
    fn name(&self) -> &str {
        "sim"
    }
    async fn instrument(&self, s: &Symbol) -> Result<Instrument, ExchangeError> {
        self.inner.instrument(s).await
    }
    async fn closed_candles(
        &self,
        s: &Symbol,
        tf: Timeframe,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Candle>, ExchangeError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if self.fail_after.is_some_and(|f| n >= f) {
            return Err(ExchangeError::Fatal("connection lost".into()));
        }
        self.untils.lock().unwrap().push(until);
        let mut bars: Vec<Candle> = self
            .inner
            .closed_candles(s, tf, until, limit)
            .await?
            .into_iter()
            .filter(|c| !self.drop.contains(&c.open_time))
            .collect();
        if let Some(c) = self.duplicate.and_then(|d| bars.iter().find(|c| c.open_time == d).cloned()) {
            bars.push(c);
        }
        if let Some(t) = self.spoil {
            for c in bars.iter_mut().filter(|c| c.open_time == t) {
                c.high = c.low - dec!(1);
            }
        }
        Ok(bars)
    }
    async fn last_price(&self, s: &Symbol) -> Result<Decimal, ExchangeError> {
        self.inner.last_price(s).await
    }
    async fn order_book(&self, s: &Symbol, depth: usize) -> Result<OrderBook, ExchangeError> {
        self.inner.order_book(s, depth).await
    }
    async fn balances(&self) -> Result<Vec<Balance>, ExchangeError> {
        self.inner.balances().await
    }
    async fn place_market_order(
        &self,
        id: &ClientOrderId,
        run: &str,
        i: &Approved<OrderIntent>,
    ) -> Result<OrderAck, ExchangeError> {
        self.inner.place_market_order(id, run, i).await
    }
    async fn order(&self, s: &Symbol, id: &ClientOrderId) -> Result<Option<OrderAck>, ExchangeError> {
        self.inner.order(s, id).await
    }
    async fn open_orders(&self) -> Result<Vec<mcbot_stages::domain::Order>, ExchangeError> {
        self.inner.open_orders().await
    }
    async fn cancel_order(&self, s: &Symbol, id: &ClientOrderId) -> Result<Option<OrderAck>, ExchangeError> {
        self.inner.cancel_order(s, id).await
    }
}

fn opts(from: Option<DateTime<Utc>>, page: usize) -> DownloadOptions {
    DownloadOptions { from, to: None, page_size: page, flush_every: 10_000, retries: 0 }
}

/// The truth: every closed bar the simulator has at the clock's time.
async fn truth(clock: &Arc<ManualClock>, n: usize) -> Vec<Candle> {
    sim(clock.clone()).closed_candles(&btc(), h1(), clock.now(), n).await.unwrap()
}

#[tokio::test]
async fn download_resumes_after_an_interruption_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let store = CandleStore::new(dir.path());
    // 500 bars have closed; bar 500 is forming.
    let clock = Arc::new(ManualClock::new(start() + Duration::hours(500) + Duration::minutes(30)));
    let hidden = ProgressBar::hidden();

    // The line drops after two pages of 100: what was fetched is kept.
    let mut line = Line::new(sim(clock.clone()));
    line.fail_after = Some(2);
    let err = download_series(&line, &store, &btc(), h1(), &opts(Some(start()), 100), clock.as_ref(), &hidden)
        .await
        .unwrap_err();
    assert!(matches!(err, MarketDataError::Exchange { stored: 200, .. }), "{err}");
    let all = truth(&clock, 1000).await;
    assert_eq!(all.len(), 500);
    assert_eq!(store.read("sim", &btc(), h1()).unwrap(), all[..200].to_vec());

    // The next run (no --from) continues after the last stored bar and never asks for stored bars again.
    let line = Line::new(sim(clock.clone()));
    let r = download_series(&line, &store, &btc(), h1(), &opts(None, 100), clock.as_ref(), &hidden).await.unwrap();
    assert_eq!((r.fetched, r.added, r.stored), (300, 300, 500));
    assert!(r.quality.is_clean(), "{:?}", r.quality);
    assert!(line.untils().iter().all(|u| *u > all[199].close_time(h1())), "{:?}", line.untils());
    assert_eq!(line.calls.load(Ordering::SeqCst), 3);
    assert_eq!(store.read("sim", &btc(), h1()).unwrap(), all, "exact, complete, no duplicates");
    assert_eq!((r.first, r.last), (Some(all[0].open_time), Some(all[499].open_time)));
    assert!(r.file.ends_with("sim/BTCUSDT-1h.parquet"));

    // Nothing new: nothing fetched. Ten bars later: exactly those ten.
    let line = Line::new(sim(clock.clone()));
    let r =
        download_series(&line, &store, &btc(), h1(), &opts(Some(start()), 100), clock.as_ref(), &hidden).await.unwrap();
    assert_eq!((r.fetched, r.added, line.calls.load(Ordering::SeqCst)), (0, 0, 0));
    clock.advance(Duration::hours(10));
    let r = download_series(&line, &store, &btc(), h1(), &opts(None, 100), clock.as_ref(), &hidden).await.unwrap();
    assert_eq!((r.added, r.stored), (10, 510));
    assert_eq!(store.read("sim", &btc(), h1()).unwrap(), truth(&clock, 1000).await);
}

#[tokio::test]
async fn extending_the_range_backwards_fetches_only_the_head() {
    let dir = tempfile::tempdir().unwrap();
    let store = CandleStore::new(dir.path());
    let clock = Arc::new(ManualClock::new(start() + Duration::hours(300)));
    let hidden = ProgressBar::hidden();
    let line = Line::new(sim(clock.clone()));
    let later = start() + Duration::hours(100) + Duration::minutes(10); // aligned up to hour 101
    let r =
        download_series(&line, &store, &btc(), h1(), &opts(Some(later), 1000), clock.as_ref(), &hidden).await.unwrap();
    assert_eq!(r.stored, 199);
    assert_eq!(r.first, Some(start() + Duration::hours(101)));
    let line = Line::new(sim(clock.clone()));
    let r = download_series(&line, &store, &btc(), h1(), &opts(Some(start()), 1000), clock.as_ref(), &hidden)
        .await
        .unwrap();
    assert_eq!((r.fetched, r.added, r.stored), (101, 101, 300));
    assert_eq!(line.untils(), vec![start() + Duration::hours(101)], "one page for the head, none for the tail");
    assert_eq!(store.read("sim", &btc(), h1()).unwrap(), truth(&clock, 1000).await);
}

#[tokio::test]
async fn gaps_duplicates_and_bad_bars_are_reported_and_bad_bars_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = CandleStore::new(dir.path());
    let clock = Arc::new(ManualClock::new(start() + Duration::hours(400)));
    let mut line = Line::new(sim(clock.clone()));
    let hour = |h: i64| start() + Duration::hours(h);
    line.drop = (100..105).map(hour).chain([hour(300)]).collect();
    line.duplicate = Some(hour(50));
    line.spoil = Some(hour(250));
    let r =
        download_series(&line, &store, &btc(), h1(), &opts(Some(start()), 100), clock.as_ref(), &ProgressBar::hidden())
            .await
            .unwrap();
    let q = &r.quality;
    assert_eq!(q.duplicates, 1);
    assert_eq!(q.insane, vec![hour(250)]);
    assert!(q.misaligned.is_empty());
    let gaps: Vec<_> = q.gaps.iter().map(|g| (g.from, g.until, g.missing)).collect();
    assert_eq!(gaps, vec![(hour(100), hour(105), 5), (hour(250), hour(251), 1), (hour(300), hour(301), 1)]);
    assert_eq!(q.missing_bars, 7);
    assert_eq!(r.stored, 400 - 7);
    let stored = store.read("sim", &btc(), h1()).unwrap();
    assert!(stored.iter().all(Candle::is_sane));
    assert!(stored.windows(2).all(|w| w[0].open_time < w[1].open_time));
}

const CSV: &str = "timestamp,open,high,low,close,volume
2018-01-20T04:00:00Z,0.00005352,0.000054,0.00005348,0.000054,100380.64502838
2018-01-20T05:00:00Z,0.00005399,0.0000541,0.00005337,0.00005345,395731.65051556
2018-01-20T06:00:00Z,0.00005345,0.00005400,0.00005300,0.00005310,1
2018-01-20T09:00:00Z,0.0000531,0.0000532,0.000053,0.0000531,2.5
";

#[test]
fn import_writes_the_shared_csv_format_exactly_and_the_backtest_loader_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("ADA_BTC-1h.csv");
    std::fs::write(&csv, CSV).unwrap();
    let store = CandleStore::new(dir.path().join("candles"));
    let sym = Symbol::new("ADA_BTC").unwrap();
    let r = import_csv(&store, "bittrex", &csv, &sym, h1()).unwrap();
    assert_eq!((r.fetched, r.added, r.stored), (4, 4, 4));
    assert_eq!(r.quality.gaps.len(), 1);
    assert_eq!(r.quality.missing_bars, 2);
    let back = store.read("bittrex", &sym, h1()).unwrap();
    assert_eq!(back[0].open.to_string(), "0.00005352");
    assert_eq!(back[1].volume.to_string(), "395731.65051556");
    assert_eq!(back[2].high, dec!(0.000054));

    // Importing again adds nothing and says why.
    let r = import_csv(&store, "bittrex", &csv, &sym, h1()).unwrap();
    assert_eq!((r.added, r.stored, r.quality.duplicates), (0, 4, 4));

    // The backtest loader reads the same file (integer millisecond times, decimal-text prices).
    let series = mcbot::commands::backtest::data::load(&r.file).unwrap();
    assert_eq!(series.bars.len(), 4);
    assert_eq!(series.bars.close[1], 0.00005345);
    assert_eq!(series.bars.time[0], DateTime::parse_from_rfc3339("2018-01-20T04:00:00Z").unwrap().timestamp());
    assert_eq!(series.timeframe.map(|t| t.to_string()), Some("1h".into()));

    // A broken CSV is refused whole, with its line.
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "timestamp,open,high,low,close,volume\n2018-01-20T04:00:00Z,1,0.5,0.4,1,1\n").unwrap();
    let e = import_csv(&store, "bittrex", &bad, &sym, h1()).unwrap_err();
    assert!(matches!(e, MarketDataError::Csv(_)) && e.to_string().contains("line 2"), "{e}");
}

#[tokio::test]
async fn the_data_command_downloads_and_imports() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(start() + Duration::hours(48)));
    let exchange: Arc<dyn Exchange> = Arc::new(sim(clock.clone()));
    let download = |from: Option<DateTime<Utc>>| DataArgs {
        command: DataCommand::Download(DownloadArgs {
            exchange: None,
            symbols: vec![btc()],
            timeframe: h1(),
            from,
            to: Some(start() + Duration::hours(24)),
            dir: dir.path().to_path_buf(),
            page_size: 1000,
        }),
    };
    // A first download needs --from; without an exchange it cannot run at all: both are usage errors.
    let e = run(&download(None), Some(exchange.clone()), true).await.unwrap_err();
    assert_eq!(e.exit_code(), 2, "{e}");
    let e = run(&download(Some(start())), None, true).await.unwrap_err();
    assert_eq!(e.exit_code(), 2, "{e}");
    assert_eq!(download(None).exchange_wanted(), Some(None));

    run(&download(Some(start())), Some(exchange.clone()), true).await.unwrap();
    let store = CandleStore::new(dir.path());
    assert_eq!(store.read("sim", &btc(), h1()).unwrap().len(), 24, "--to is exclusive");

    let csv = dir.path().join("BTC_USD-1h.csv");
    std::fs::write(&csv, CSV).unwrap();
    let import = DataArgs {
        command: DataCommand::Import(ImportArgs {
            file: csv,
            symbol: None,
            timeframe: None,
            exchange: "coinbase".into(),
            dir: dir.path().to_path_buf(),
        }),
    };
    assert_eq!(import.exchange_wanted(), None);
    run(&import, None, false).await.unwrap();
    assert_eq!(store.read("coinbase", &Symbol::new("BTC_USD").unwrap(), h1()).unwrap().len(), 4);

    // A file of an older version (prices as text) is rewritten typed by `mcbot data migrate`, once.
    let old = dir.path().join("old/ADA_BTC-1h.parquet");
    std::fs::create_dir_all(old.parent().unwrap()).unwrap();
    {
        use polars::prelude::*;
        let text = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let mut df = DataFrame::new(
            2,
            vec![
                Column::new("timestamp".into(), vec![1_516_420_800_000i64, 1_516_424_400_000]),
                Column::new("open".into(), text(&["0.00005352", "0.00005399"])),
                Column::new("high".into(), text(&["0.000054", "0.0000541"])),
                Column::new("low".into(), text(&["0.00005348", "0.00005337"])),
                Column::new("close".into(), text(&["0.000054", "0.00005345"])),
                Column::new("volume".into(), text(&["100380.64502838", "395731.65051556"])),
            ],
        )
        .unwrap();
        ParquetWriter::new(std::fs::File::create(&old).unwrap()).finish(&mut df).unwrap();
    }
    let before = mcbot::commands::backtest::data::load(&old).unwrap();
    assert_eq!(mcbot::market_data::layout(&old).unwrap(), mcbot::market_data::Layout::Text);
    let migrate = DataArgs { command: DataCommand::Migrate(MigrateArgs { paths: vec![dir.path().to_path_buf()] }) };
    assert_eq!(migrate.exchange_wanted(), None);
    run(&migrate, None, true).await.unwrap();
    let reports = mcbot::commands::data::migrate(&[dir.path().to_path_buf()]).unwrap();
    assert_eq!(reports.len(), 3, "two stored series and the old file: {reports:?}");
    assert!(reports.iter().all(|r| r.was == mcbot::market_data::Layout::Decimal && r.rewritten == 0), "{reports:?}");
    let after = mcbot::commands::backtest::data::load(&old).unwrap();
    assert_eq!(after.bars, before.bars, "the same numbers, typed");
    let e = run(
        &DataArgs { command: DataCommand::Migrate(MigrateArgs { paths: vec![dir.path().join("nope")] }) },
        None,
        true,
    )
    .await
    .unwrap_err();
    assert_eq!(e.exit_code(), 2, "{e}");
}
