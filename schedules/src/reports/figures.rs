//! The figures of a period report, computed from the store alone (equity snapshots, fills, the strategy behind
//! each fill, candles), so any period can be recomputed at any time and gives the same report.
//!
//! Conventions, stated once:
//! - "Equity at instant b" is the last snapshot strictly before b; a fill belongs to the period containing its
//!   time; a round trip (trade) runs from a buy on a flat position to the sell that makes it flat again, its P&L
//!   is the realised P&L of its sells minus every fee of its fills, and it belongs to the period it closes in.
//! - P&L per symbol (and per strategy) over an interval is the change of the marked holding plus the cash flows of
//!   its fills (sells in, buys and fees out); marks are the last candle close at or before the instant.
//! - Sharpe and Sortino are the backtest's: per-period returns with the first taken against the equity before the
//!   window, sample standard deviation, downside deviation as the root mean square of negative returns, risk-free
//!   0, annualised by sqrt(periods per year); here the periods are UTC days and a year is 365 of them.
//! - Money is exact and rounded to 8 decimals only when shown; percentages to 4, win rates and hours to 2.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use mcbot_stages::backtest::metrics;
use mcbot_stages::domain::{Candle, Decimal, Fill, Side, Symbol, Timeframe};
use mcbot_stages::ports::{EquitySnapshot, Store, StoreError};
use rust_decimal::prelude::ToPrimitive;
use serde::{Deserialize, Serialize};

use super::Period;

/// Days a year of daily returns counts (crypto trades every day).
pub const DAYS_PER_YEAR: f64 = 365.0;
/// The trailing window of the rolling statistics, in days.
pub const ROLLING_DAYS: i64 = 30;
/// At most this many points of a series go into a report (and its charts).
const MAX_POINTS: usize = 400;

/// What a report needs besides the store.
#[derive(Debug, Clone)]
pub struct ReportSettings {
    /// The bar length of stored candles (marks and benchmarks read them).
    pub timeframe: Timeframe,
    /// The quote asset (cash in the allocation).
    pub quote: String,
    /// Buy-and-hold benchmarks (BTC and ETH against the quote).
    pub benchmarks: Vec<Symbol>,
    /// The configured drawdown limit, in percent.
    pub max_drawdown_pct: Decimal,
    /// Name for fills whose order followed no recorded signal.
    pub unattributed: String,
}

/// A named amount (P&L per symbol or strategy).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contribution {
    /// Symbol or strategy.
    pub name: String,
    /// P&L in quote.
    pub pnl: Decimal,
}

/// Round trips closed in a window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TradeStats {
    /// Closed round trips.
    pub count: usize,
    /// With positive P&L.
    pub wins: usize,
    /// With negative P&L.
    pub losses: usize,
    /// Wins / count, in percent.
    pub win_rate_pct: Option<Decimal>,
    /// Sum of winning P&L.
    pub gross_profit: Decimal,
    /// Sum of losing P&L, as a positive amount.
    pub gross_loss: Decimal,
    /// Sum of all P&L.
    pub net_pnl: Decimal,
    /// Gross profit / gross loss; none without a loss.
    pub profit_factor: Option<Decimal>,
    /// Mean time from the opening buy to the closing sell, in hours.
    pub avg_hold_hours: Option<Decimal>,
}

/// A position open at the end of the period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenPosition {
    /// The pair.
    pub symbol: String,
    /// Base quantity.
    pub qty: Decimal,
    /// Average entry price.
    pub entry: Decimal,
    /// Last close at the end of the period.
    pub last: Decimal,
    /// qty x (last - entry).
    pub unrealized_pnl: Decimal,
}

/// Drawdown against the configured limit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Drawdown {
    /// Largest fall from a running peak inside the period (the peak starts at the opening NAV), in percent.
    pub period_max_pct: Decimal,
    /// Highest equity ever seen up to the end of the period.
    pub peak: Option<Decimal>,
    /// Closing NAV below that peak, in percent.
    pub from_peak_pct: Decimal,
    /// The configured limit, in percent.
    pub limit_pct: Decimal,
    /// Limit minus the drawdown from peak.
    pub headroom_pct: Decimal,
}

/// Return statistics of daily returns over a window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReturnStats {
    /// Daily returns in the window.
    pub days: usize,
    /// Annualised Sharpe (backtest convention).
    pub sharpe: Option<f64>,
    /// Annualised Sortino (backtest convention).
    pub sortino: Option<f64>,
    /// Compound annual growth over the window's days, in percent.
    pub cagr_pct: Option<f64>,
    /// Round trips closed in the window.
    pub trades: usize,
    /// Of which winners, in percent.
    pub win_rate_pct: Option<Decimal>,
}

/// A buy-and-hold benchmark over the period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Benchmark {
    /// The pair.
    pub symbol: String,
    /// Close at the start.
    pub start_price: Decimal,
    /// Close at the end.
    pub end_price: Decimal,
    /// end / start - 1, in percent.
    pub return_pct: Decimal,
    /// The bot's return minus this, in percentage points.
    pub excess_pct: Option<Decimal>,
}

/// One asset's share of NAV.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Slice {
    /// Symbol, or the quote asset for cash.
    pub asset: String,
    /// Marked value in quote.
    pub value: Decimal,
    /// Share of the total, in percent.
    pub weight_pct: Decimal,
}

/// Per-strategy figures over the period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StrategyStats {
    /// Strategy name.
    pub name: String,
    /// P&L over the period.
    pub pnl: Decimal,
    /// Round trips closed.
    pub trades: usize,
    /// Of which winners, in percent.
    pub win_rate_pct: Option<Decimal>,
    /// Annualised Sharpe of its daily P&L over the NAV at each day's start.
    pub sharpe: Option<f64>,
}

/// One day's P&L.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DayPnl {
    /// The UTC day.
    pub date: NaiveDate,
    /// NAV change over the day.
    pub pnl: Decimal,
    /// Over the NAV at its start, in percent.
    pub return_pct: Option<Decimal>,
}

/// A point of a series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// When.
    pub t: DateTime<Utc>,
    /// Value.
    pub v: Decimal,
}

/// Prices of a benchmark over the chart window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriceSeries {
    /// The pair.
    pub symbol: String,
    /// Closes.
    pub points: Vec<Point>,
}

/// P&L per symbol of one day, for the stacked contribution chart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DayContribution {
    /// The UTC day.
    pub date: NaiveDate,
    /// Per symbol.
    pub parts: Vec<Contribution>,
}

/// The series the charts draw, over the chart window (the period; the last 30 days for a daily report).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// Start of the window.
    pub from: Option<DateTime<Utc>>,
    /// Equity snapshots (thinned to at most a few hundred points).
    pub equity: Vec<Point>,
    /// Benchmark closes.
    pub benchmarks: Vec<PriceSeries>,
    /// Daily P&L per symbol.
    pub contributions: Vec<DayContribution>,
    /// Daily NAV change.
    pub calendar: Vec<DayPnl>,
}

/// Every figure of one period's report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Daily, weekly or monthly.
    pub period: Period,
    /// First instant of the period.
    pub start: DateTime<Utc>,
    /// First instant after it.
    pub end: DateTime<Utc>,
    /// False on a fresh install: nothing recorded before the end of the period.
    pub history: bool,
    /// NAV at the start.
    pub nav_start: Option<Decimal>,
    /// NAV at the end.
    pub nav_end: Option<Decimal>,
    /// End minus start.
    pub nav_change: Decimal,
    /// Change over start, in percent.
    pub nav_change_pct: Option<Decimal>,
    /// Fills in the period.
    pub fills: usize,
    /// Fees paid in the period.
    pub fees: Decimal,
    /// Quote value traded in the period.
    pub turnover: Decimal,
    /// Round trips closed in the period.
    pub trades: TradeStats,
    /// P&L per symbol, best first.
    pub by_symbol: Vec<Contribution>,
    /// P&L per strategy, best first.
    pub by_strategy: Vec<Contribution>,
    /// The symbol with the highest P&L.
    pub best_symbol: Option<Contribution>,
    /// The symbol with the lowest P&L.
    pub worst_symbol: Option<Contribution>,
    /// Positions open at the end.
    pub positions: Vec<OpenPosition>,
    /// Drawdown against the limit.
    pub drawdown: Drawdown,
    /// Daily-return statistics over the 30 days ending with the period.
    pub rolling_30d: ReturnStats,
    /// Daily-return statistics over the period.
    pub period_stats: ReturnStats,
    /// Buy-and-hold benchmarks over the period.
    pub benchmarks: Vec<Benchmark>,
    /// Allocation at the start.
    pub allocation_start: Vec<Slice>,
    /// Allocation at the end.
    pub allocation_end: Vec<Slice>,
    /// Per-strategy figures.
    pub strategies: Vec<StrategyStats>,
    /// Chart data.
    pub series: Series,
}

impl Report {
    /// True when nothing was traded in the period.
    pub fn quiet(&self) -> bool {
        self.fills == 0 && self.trades.count == 0
    }
}

/// Rounds money for reports.
fn money(d: Decimal) -> Decimal {
    d.round_dp(8).normalize()
}

fn pct(d: Decimal) -> Decimal {
    d.round_dp(4).normalize()
}

fn share(part: usize, whole: usize) -> Option<Decimal> {
    (whole > 0).then(|| (Decimal::from(part) * Decimal::ONE_HUNDRED / Decimal::from(whole)).round_dp(2).normalize())
}

fn f64_of(d: Decimal) -> f64 {
    d.to_f64().unwrap_or(f64::NAN)
}

/// A closed round trip.
#[derive(Debug, Clone)]
struct Trip {
    strategy: String,
    opened: DateTime<Utc>,
    closed: DateTime<Utc>,
    pnl: Decimal,
}

/// A symbol's holding while fills are replayed.
#[derive(Debug, Clone, Default)]
struct Holding {
    qty: Decimal,
    avg: Decimal,
    last_fill_price: Decimal,
    trip: Option<(String, DateTime<Utc>, Decimal)>,
}

/// Holdings at one boundary: qty and the strategy of its open trip, per symbol.
type Book = BTreeMap<Symbol, (Decimal, Decimal, String, Decimal)>;

/// Candle closes of one symbol, for marks at an instant.
struct Marks {
    closes: Vec<(DateTime<Utc>, Decimal)>,
}

impl Marks {
    fn new(candles: &[Candle], tf: Timeframe) -> Self {
        Self { closes: candles.iter().map(|c| (c.close_time(tf), c.close)).collect() }
    }

    /// The last close at or before `t`.
    fn at(&self, t: DateTime<Utc>) -> Option<Decimal> {
        let i = self.closes.partition_point(|(ct, _)| *ct <= t);
        (i > 0).then(|| self.closes[i - 1].1)
    }
}

/// Equity snapshots, for "equity at instant b".
struct Curve<'a> {
    snaps: &'a [EquitySnapshot],
}

impl Curve<'_> {
    fn before(&self, t: DateTime<Utc>) -> Option<&EquitySnapshot> {
        let i = self.snaps.partition_point(|s| s.ts < t);
        (i > 0).then(|| &self.snaps[i - 1])
    }
}

/// Daily returns of `values` (equity at consecutive day boundaries, missing ones skipped), in the backtest's
/// convention: the first value is the initial equity, the rest the curve.
fn daily_stats(values: &[Option<Decimal>]) -> ReturnStats {
    let known: Vec<f64> = values.iter().flatten().map(|d| f64_of(*d)).collect();
    let Some((&init, curve)) = known.split_first() else { return ReturnStats::default() };
    if curve.is_empty() || init <= 0.0 {
        return ReturnStats::default();
    }
    let m = metrics::compute(curve, init, &[], DAYS_PER_YEAR);
    ReturnStats {
        days: curve.len(),
        sharpe: m.sharpe,
        sortino: m.sortino,
        cagr_pct: Some(m.cagr_pct),
        ..Default::default()
    }
}

/// Sharpe of daily returns with the backtest's convention (sample standard deviation, sqrt(365)).
fn sharpe_of(returns: &[f64]) -> Option<f64> {
    let n = returns.len();
    if n < 2 {
        return None;
    }
    let mean = returns.iter().sum::<f64>() / n as f64;
    let var = returns.iter().map(|r| (r - mean) * (r - mean)).sum::<f64>() / (n as f64 - 1.0);
    let sd = var.sqrt();
    (sd > 0.0).then(|| mean / sd * DAYS_PER_YEAR.sqrt())
}

fn trade_stats<'a>(trips: impl Iterator<Item = &'a Trip>) -> TradeStats {
    let mut s = TradeStats::default();
    let mut held = Duration::zero();
    for t in trips {
        s.count += 1;
        held += t.closed - t.opened;
        s.net_pnl += t.pnl;
        if t.pnl > Decimal::ZERO {
            s.wins += 1;
            s.gross_profit += t.pnl;
        } else if t.pnl < Decimal::ZERO {
            s.losses += 1;
            s.gross_loss -= t.pnl;
        }
    }
    s.win_rate_pct = share(s.wins, s.count);
    s.profit_factor = (s.gross_loss > Decimal::ZERO).then(|| (s.gross_profit / s.gross_loss).round_dp(4).normalize());
    s.avg_hold_hours = (s.count > 0)
        .then(|| (Decimal::from(held.num_seconds()) / Decimal::from(3600 * s.count as i64)).round_dp(2).normalize());
    s.gross_profit = money(s.gross_profit);
    s.gross_loss = money(s.gross_loss);
    s.net_pnl = money(s.net_pnl);
    s
}

fn thin(points: Vec<Point>) -> Vec<Point> {
    if points.len() <= MAX_POINTS {
        return points;
    }
    let step = points.len().div_ceil(MAX_POINTS);
    let last = points.last().cloned();
    let mut out: Vec<Point> = points.into_iter().step_by(step).collect();
    if let Some(l) = last
        && out.last() != Some(&l)
    {
        out.push(l);
    }
    out
}

fn sorted_contributions(map: BTreeMap<String, Decimal>) -> Vec<Contribution> {
    let mut v: Vec<Contribution> = map.into_iter().map(|(name, pnl)| Contribution { name, pnl: money(pnl) }).collect();
    v.sort_by(|a, b| b.pnl.cmp(&a.pnl).then_with(|| a.name.cmp(&b.name)));
    v
}

/// Builds the report of `period` over [start, end).
pub async fn build_report(
    store: &dyn Store,
    settings: &ReportSettings,
    period: Period,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Report, StoreError> {
    let epoch = DateTime::<Utc>::UNIX_EPOCH;
    let day = Duration::days(1);
    let window_start = match period {
        Period::Daily => end - Duration::days(ROLLING_DAYS),
        _ => start,
    };
    let lo = window_start.min(start).min(end - Duration::days(ROLLING_DAYS));
    let snaps = store.equity_between(epoch, end).await?;
    let fills = store.fills_between(epoch, end).await?;
    let mut report = Report {
        period,
        start,
        end,
        history: !(snaps.is_empty() && fills.is_empty()),
        nav_start: None,
        nav_end: None,
        nav_change: Decimal::ZERO,
        nav_change_pct: None,
        fills: 0,
        fees: Decimal::ZERO,
        turnover: Decimal::ZERO,
        trades: TradeStats::default(),
        by_symbol: Vec::new(),
        by_strategy: Vec::new(),
        best_symbol: None,
        worst_symbol: None,
        positions: Vec::new(),
        drawdown: Drawdown { limit_pct: settings.max_drawdown_pct, ..Default::default() },
        rolling_30d: ReturnStats::default(),
        period_stats: ReturnStats::default(),
        benchmarks: Vec::new(),
        allocation_start: Vec::new(),
        allocation_end: Vec::new(),
        strategies: Vec::new(),
        series: Series::default(),
    };
    if !report.history {
        return Ok(report);
    }
    let curve = Curve { snaps: &snaps };

    // NAV and drawdown
    let inside: Vec<&EquitySnapshot> = snaps.iter().filter(|s| s.ts >= start).collect();
    let nav_start = curve.before(start).map(|s| s.equity).or_else(|| inside.first().map(|s| s.equity));
    let nav_end = curve.before(end).map(|s| s.equity);
    report.nav_start = nav_start;
    report.nav_end = nav_end;
    if let (Some(a), Some(b)) = (nav_start, nav_end) {
        report.nav_change = money(b - a);
        if a > Decimal::ZERO {
            report.nav_change_pct = Some(pct((b - a) / a * Decimal::ONE_HUNDRED));
        }
    }
    let mut running = nav_start.unwrap_or_default();
    let mut worst = Decimal::ZERO;
    for s in &inside {
        running = running.max(s.equity);
        if running > Decimal::ZERO {
            worst = worst.max((Decimal::ONE - s.equity / running) * Decimal::ONE_HUNDRED);
        }
    }
    let peak = snaps.iter().map(|s| s.equity).max();
    let from_peak = match (peak, nav_end) {
        (Some(p), Some(e)) if p > Decimal::ZERO => (Decimal::ONE - e / p) * Decimal::ONE_HUNDRED,
        _ => Decimal::ZERO,
    };
    report.drawdown = Drawdown {
        period_max_pct: pct(worst),
        peak,
        from_peak_pct: pct(from_peak),
        limit_pct: settings.max_drawdown_pct,
        headroom_pct: pct(settings.max_drawdown_pct - from_peak),
    };

    // Strategy of each fill, then the replay of every fill: round trips and the holdings at each day boundary.
    let strategies: HashMap<(Symbol, String), String> =
        store.fill_strategies(epoch, end).await?.into_iter().map(|f| ((f.symbol, f.trade_id), f.strategy)).collect();
    let strategy_of = |f: &Fill| {
        strategies
            .get(&(f.symbol.clone(), f.trade_id.clone()))
            .cloned()
            .unwrap_or_else(|| settings.unattributed.clone())
    };
    let days: Vec<DateTime<Utc>> = {
        let mut v = Vec::new();
        let mut b = lo;
        while b <= end {
            v.push(b);
            b += day;
        }
        v
    };
    let mut books: Vec<Book> = Vec::with_capacity(days.len());
    // cash flows per (day index, symbol, strategy)
    let mut flows: BTreeMap<(usize, Symbol, String), Decimal> = BTreeMap::new();
    let mut holdings: BTreeMap<Symbol, Holding> = BTreeMap::new();
    let mut trips: Vec<Trip> = Vec::new();
    let snapshot = |holdings: &BTreeMap<Symbol, Holding>| -> Book {
        holdings
            .iter()
            .filter(|(_, h)| h.qty > Decimal::ZERO)
            .map(|(s, h)| {
                let strat = h.trip.as_ref().map(|t| t.0.clone()).unwrap_or_default();
                (s.clone(), (h.qty, h.avg, strat, h.last_fill_price))
            })
            .collect()
    };
    let mut next_day = 0;
    for f in &fills {
        while next_day < days.len() && days[next_day] <= f.ts {
            books.push(snapshot(&holdings));
            next_day += 1;
        }
        let h = holdings.entry(f.symbol.clone()).or_default();
        let strat = h.trip.as_ref().map_or_else(|| strategy_of(f), |t| t.0.clone());
        match f.side {
            Side::Buy => {
                if h.trip.is_none() {
                    h.trip = Some((strat.clone(), f.ts, Decimal::ZERO));
                }
                let qty = h.qty + f.qty;
                if qty > Decimal::ZERO {
                    h.avg = (h.qty * h.avg + f.qty * f.price) / qty;
                }
                h.qty = qty;
                if let Some(t) = h.trip.as_mut() {
                    t.2 -= f.fee;
                }
            }
            Side::Sell => {
                let sold = f.qty.min(h.qty);
                let realised = sold * (f.price - h.avg) - f.fee;
                h.qty -= sold;
                match h.trip.as_mut() {
                    Some(t) => t.2 += realised,
                    None => h.trip = Some((strat.clone(), f.ts, realised)),
                }
                if h.qty.is_zero() {
                    h.avg = Decimal::ZERO;
                    if let Some((s, opened, pnl)) = h.trip.take() {
                        trips.push(Trip { strategy: s, opened, closed: f.ts, pnl });
                    }
                }
            }
        }
        h.last_fill_price = f.price;
        if f.ts >= lo {
            let k = ((f.ts - lo).num_seconds() / 86_400) as usize;
            let signed = match f.side {
                Side::Buy => -f.notional(),
                Side::Sell => f.notional(),
            };
            *flows.entry((k, f.symbol.clone(), strat)).or_default() += signed - f.fee;
        }
        if f.ts >= start {
            report.fills += 1;
            report.fees += f.fee;
            report.turnover += f.notional();
        }
    }
    while books.len() < days.len() {
        books.push(snapshot(&holdings));
    }
    report.fees = money(report.fees);
    report.turnover = money(report.turnover);

    // Marks: candles of every traded symbol and every benchmark from the earliest boundary to the end.
    let tf = settings.timeframe;
    let bars = ((end - lo).num_minutes() / i64::from(tf.minutes())).max(0) + 2;
    let until = end - tf.duration() + Duration::seconds(1);
    let mut symbols: BTreeSet<Symbol> = fills.iter().map(|f| f.symbol.clone()).collect();
    symbols.extend(settings.benchmarks.iter().cloned());
    let mut marks: HashMap<Symbol, Marks> = HashMap::new();
    for s in &symbols {
        let candles = store.candles(s, tf, until, bars).await?;
        marks.insert(s.clone(), Marks::new(&candles, tf));
    }
    let price = |s: &Symbol, t: DateTime<Utc>, fallback: Decimal| -> Decimal {
        marks.get(s).and_then(|m| m.at(t)).unwrap_or(fallback)
    };
    let idx = |t: DateTime<Utc>| -> usize { ((t - lo).num_seconds() / 86_400) as usize };

    // P&L per (day, symbol, strategy): marked holding change plus flows.
    let mut day_pnl: BTreeMap<(usize, Symbol, String), Decimal> = flows;
    for k in 0..days.len().saturating_sub(1) {
        for (s, (q, _, strat, lp)) in &books[k] {
            *day_pnl.entry((k, s.clone(), strat.clone())).or_default() -= *q * price(s, days[k], *lp);
        }
        for (s, (q, _, strat, lp)) in &books[k + 1] {
            *day_pnl.entry((k, s.clone(), strat.clone())).or_default() += *q * price(s, days[k + 1], *lp);
        }
    }
    let (ks, ke) = (idx(start), idx(end));
    let mut by_symbol: BTreeMap<String, Decimal> = BTreeMap::new();
    let mut by_strategy: BTreeMap<String, Decimal> = BTreeMap::new();
    let mut strat_days: BTreeMap<String, BTreeMap<usize, Decimal>> = BTreeMap::new();
    for ((k, s, strat), pnl) in &day_pnl {
        if (ks..ke).contains(k) {
            *by_symbol.entry(s.to_string()).or_default() += *pnl;
            *by_strategy.entry(strat.clone()).or_default() += *pnl;
            *strat_days.entry(strat.clone()).or_default().entry(*k).or_default() += *pnl;
        }
    }
    report.by_symbol = sorted_contributions(by_symbol);
    report.by_strategy = sorted_contributions(by_strategy);
    report.best_symbol = report.by_symbol.first().cloned();
    report.worst_symbol = report.by_symbol.last().cloned();

    // Trades
    let in_period = |t: &&Trip| t.closed >= start && t.closed < end;
    report.trades = trade_stats(trips.iter().filter(in_period));
    let rolling_from = end - Duration::days(ROLLING_DAYS);

    // Open positions at the end
    if let Some(book) = books.get(ke) {
        for (s, (q, avg, _, lp)) in book {
            let last = price(s, end, *lp);
            report.positions.push(OpenPosition {
                symbol: s.to_string(),
                qty: q.normalize(),
                entry: money(*avg),
                last,
                unrealized_pnl: money(*q * (last - *avg)),
            });
        }
    }

    // Daily statistics
    let eod = |b: DateTime<Utc>| curve.before(b).map(|s| s.equity);
    let rolling_values: Vec<Option<Decimal>> = (0..=ROLLING_DAYS).map(|i| eod(rolling_from + day * i as i32)).collect();
    let mut rolling = daily_stats(&rolling_values);
    let rolling_trades = trade_stats(trips.iter().filter(|t| t.closed >= rolling_from && t.closed < end));
    rolling.trades = rolling_trades.count;
    rolling.win_rate_pct = rolling_trades.win_rate_pct;
    rolling.cagr_pct = None;
    report.rolling_30d = rolling;
    let period_values: Vec<Option<Decimal>> = days[ks..=ke].iter().map(|b| eod(*b)).collect();
    let mut ps = daily_stats(&period_values);
    ps.trades = report.trades.count;
    ps.win_rate_pct = report.trades.win_rate_pct;
    report.period_stats = ps;

    // Benchmarks
    let own = report.nav_change_pct;
    for b in &settings.benchmarks {
        let Some(m) = marks.get(b) else { continue };
        if let (Some(p0), Some(p1)) = (m.at(start), m.at(end))
            && p0 > Decimal::ZERO
        {
            let r = pct((p1 / p0 - Decimal::ONE) * Decimal::ONE_HUNDRED);
            report.benchmarks.push(Benchmark {
                symbol: b.to_string(),
                start_price: p0,
                end_price: p1,
                return_pct: r,
                excess_pct: own.map(|o| pct(o - r)),
            });
        }
    }

    // Allocation
    let allocation = |k: usize| -> Vec<Slice> {
        let Some(book) = books.get(k) else { return Vec::new() };
        let t = days[k];
        let mut parts: Vec<(String, Decimal)> =
            book.iter().map(|(s, (q, _, _, lp))| (s.to_string(), *q * price(s, t, *lp))).collect();
        let cash = curve.before(t).map(|s| s.cash).unwrap_or_default();
        parts.push((settings.quote.clone(), cash));
        let total: Decimal = parts.iter().map(|p| p.1).sum();
        parts
            .into_iter()
            .map(|(asset, value)| Slice {
                asset,
                value: money(value),
                weight_pct: if total > Decimal::ZERO {
                    (value / total * Decimal::ONE_HUNDRED).round_dp(2).normalize()
                } else {
                    Decimal::ZERO
                },
            })
            .collect()
    };
    report.allocation_start = allocation(ks);
    report.allocation_end = allocation(ke);

    // Per strategy
    for c in &report.by_strategy {
        let closed = trade_stats(trips.iter().filter(in_period).filter(|t| t.strategy == c.name));
        let per_day = strat_days.get(&c.name);
        let returns: Vec<f64> = (ks..ke)
            .filter_map(|k| {
                let nav = eod(days[k])?;
                let pnl = per_day.and_then(|d| d.get(&k)).copied().unwrap_or_default();
                (nav > Decimal::ZERO).then(|| f64_of(pnl / nav))
            })
            .collect();
        report.strategies.push(StrategyStats {
            name: c.name.clone(),
            pnl: c.pnl,
            trades: closed.count,
            win_rate_pct: closed.win_rate_pct,
            sharpe: sharpe_of(&returns),
        });
    }

    // Chart series over the window
    let kw = idx(window_start);
    let mut per_day_symbol: BTreeMap<usize, BTreeMap<String, Decimal>> = BTreeMap::new();
    for ((k, s, _), pnl) in &day_pnl {
        *per_day_symbol.entry(*k).or_default().entry(s.to_string()).or_default() += *pnl;
    }
    report.series.from = Some(window_start);
    report.series.equity =
        thin(snaps.iter().filter(|s| s.ts >= window_start).map(|s| Point { t: s.ts, v: s.equity }).collect());
    for b in &settings.benchmarks {
        if let Some(m) = marks.get(b) {
            let pts = m.closes.iter().filter(|(t, _)| *t >= window_start && *t <= end);
            let points = thin(pts.map(|(t, v)| Point { t: *t, v: *v }).collect());
            if !points.is_empty() {
                report.series.benchmarks.push(PriceSeries { symbol: b.to_string(), points });
            }
        }
    }
    for k in kw..ke {
        let date = days[k].date_naive();
        let parts = per_day_symbol.remove(&k).unwrap_or_default();
        let parts: Vec<Contribution> =
            parts.into_iter().map(|(name, pnl)| Contribution { name, pnl: money(pnl) }).collect();
        report.series.contributions.push(DayContribution { date, parts });
        if let (Some(a), Some(b)) = (eod(days[k]), eod(days[k + 1])) {
            report.series.calendar.push(DayPnl {
                date,
                pnl: money(b - a),
                return_pct: (a > Decimal::ZERO).then(|| pct((b - a) / a * Decimal::ONE_HUNDRED)),
            });
        }
    }
    Ok(report)
}
