//! The report chat commands' answers (Telegram HTML): `/daily [n]`, `/weekly [n]`, `/monthly [n]` (the last n
//! complete periods, one line each; the full report for n = 1), `/report daily|weekly|monthly` (the full report of
//! the period that ended last) and `/performance` (the last 30 days to now). Computed with the report code.

use chrono::{DateTime, Duration, Utc};
use mcbot_schedules::reports::{Period, Report, ReportSettings, build_report, period_bounds, text};
use mcbot_stages::ports::{Store, StoreError};

use crate::notify::telegram::escape;

/// Most periods one command lists.
const MAX_PERIODS: usize = 31;

fn pre(s: &str) -> String {
    format!("<pre>{}</pre>", escape(s))
}

fn line(r: &Report) -> String {
    let label = match r.period {
        Period::Daily => r.start.format("%Y-%m-%d").to_string(),
        Period::Weekly => format!("week of {}", r.start.format("%Y-%m-%d")),
        Period::Monthly => r.start.format("%Y-%m").to_string(),
    };
    if !r.history {
        return format!("{label}: no history");
    }
    let pct = r.nav_change_pct.map_or_else(|| "n/a".to_owned(), |p| format!("{:+.2} %", p.round_dp(2)));
    format!("{label}: {:+.2} ({pct}), {} trades", r.nav_change.round_dp(2), r.trades.count)
}

/// The answer to a report command, or `None` when `name` is not one.
pub async fn answer(
    store: &dyn Store,
    settings: &ReportSettings,
    now: DateTime<Utc>,
    name: &str,
    args: &[&str],
) -> Result<Option<String>, StoreError> {
    let period = match name {
        "daily" => Period::Daily,
        "weekly" => Period::Weekly,
        "monthly" => Period::Monthly,
        "report" => {
            let Some(p) = args.first().and_then(|a| Period::parse(&a.to_ascii_lowercase())) else {
                return Ok(Some("usage: /report daily|weekly|monthly".to_owned()));
            };
            let (start, end) = period_bounds(p, now);
            let r = build_report(store, settings, p, start, end).await?;
            return Ok(Some(pre(&text::render(&r, &settings.quote))));
        }
        "performance" => return performance(store, settings, now).await.map(Some),
        _ => return Ok(None),
    };
    let n = match args.first().map(|a| a.parse::<usize>()) {
        None => 1,
        Some(Ok(n)) if (1..=MAX_PERIODS).contains(&n) => n,
        Some(_) => return Ok(Some(format!("usage: /{name} [n], n from 1 to {MAX_PERIODS}"))),
    };
    let (mut start, mut end) = period_bounds(period, now);
    if n == 1 {
        let r = build_report(store, settings, period, start, end).await?;
        return Ok(Some(pre(&text::render(&r, &settings.quote))));
    }
    let mut lines = Vec::new();
    for _ in 0..n {
        let r = build_report(store, settings, period, start, end).await?;
        lines.push(line(&r));
        end = start;
        start = period_bounds(period, start).0;
    }
    Ok(Some(format!("<b>last {n} {} reports</b>\n{}", period.as_str(), pre(&lines.join("\n")))))
}

/// The last 30 days up to now: return, Sharpe, Sortino, win rate, profit factor, drawdowns, P&L per strategy and
/// per symbol, and the benchmarks.
async fn performance(store: &dyn Store, settings: &ReportSettings, now: DateTime<Utc>) -> Result<String, StoreError> {
    let end = now;
    let start = end - Duration::days(30);
    let r = build_report(store, settings, Period::Monthly, start, end).await?;
    if !r.history {
        return Ok("No history yet.".to_owned());
    }
    let ratio = |x: Option<f64>| x.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.2}"));
    let opt =
        |x: Option<rust_decimal::Decimal>| x.map_or_else(|| "n/a".to_owned(), |v| format!("{:.2}", v.round_dp(2)));
    let mut out = vec![
        format!(
            "NAV {} {}, 30 days {:+.2} ({} %)",
            r.nav_end.map_or_else(|| "n/a".to_owned(), |v| format!("{:.2}", v.round_dp(2))),
            settings.quote,
            r.nav_change.round_dp(2),
            opt(r.nav_change_pct)
        ),
        format!(
            "Sharpe {}, Sortino {}, win rate {} % ({} trades), profit factor {}",
            ratio(r.period_stats.sharpe),
            ratio(r.period_stats.sortino),
            opt(r.trades.win_rate_pct),
            r.trades.count,
            opt(r.trades.profit_factor)
        ),
        format!(
            "Max drawdown {:.2} %, from peak {:.2} % (limit {} %)",
            r.drawdown.period_max_pct.round_dp(2),
            r.drawdown.from_peak_pct.round_dp(2),
            r.drawdown.limit_pct
        ),
    ];
    let list = |v: &[mcbot_schedules::reports::figures::Contribution]| {
        v.iter().map(|c| format!("{} {:+.2}", c.name, c.pnl.round_dp(2))).collect::<Vec<_>>().join(", ")
    };
    out.push(format!("Per strategy: {}", list(&r.by_strategy)));
    out.push(format!("Per symbol: {}", list(&r.by_symbol)));
    for b in &r.benchmarks {
        out.push(format!("{} buy and hold {:+.2} %", b.symbol, b.return_pct.round_dp(2)));
    }
    Ok(format!("<b>Performance, last 30 days</b>\n{}", pre(&out.join("\n"))))
}
