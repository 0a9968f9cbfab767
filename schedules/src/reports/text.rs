//! A report as plain text (the body of every channel's message) and as labelled headline figures (Discord embed
//! fields, Telegram's bold lines, the email's table). Money is shown to 2 decimals, percentages to 2; the JSON
//! output keeps every figure exact.

use mcbot_stages::domain::Decimal;

use super::Period;
use super::figures::{Contribution, Report, Slice};

fn amount(d: Decimal) -> String {
    format!("{:.2}", d.round_dp(2))
}

fn signed(d: Decimal) -> String {
    let r = d.round_dp(2);
    if r > Decimal::ZERO { format!("+{r:.2}") } else { format!("{r:.2}") }
}

fn signed_pct(d: Option<Decimal>) -> String {
    d.map_or_else(|| "n/a".to_owned(), |p| format!("{} %", signed(p)))
}

fn opt_pct(d: Option<Decimal>) -> String {
    d.map_or_else(|| "n/a".to_owned(), |p| format!("{:.2} %", p.round_dp(2)))
}

fn ratio(x: Option<f64>) -> String {
    x.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.2}"))
}

fn contributions(v: &[Contribution]) -> String {
    if v.is_empty() {
        return "none".to_owned();
    }
    v.iter().map(|c| format!("{} {}", c.name, signed(c.pnl))).collect::<Vec<_>>().join(", ")
}

fn allocation(v: &[Slice]) -> String {
    if v.is_empty() {
        return "n/a".to_owned();
    }
    v.iter().map(|s| format!("{} {:.1} %", s.asset, s.weight_pct.round_dp(1))).collect::<Vec<_>>().join(", ")
}

/// The report's title: "Daily report 2026-03-14", "Weekly report 2026-03-09 – 2026-03-15", "Monthly report
/// 2026-03".
pub fn title(r: &Report) -> String {
    let last = r.end - chrono::Duration::days(1);
    match r.period {
        Period::Daily => format!("Daily report {}", r.start.format("%Y-%m-%d")),
        Period::Weekly => format!("Weekly report {} – {}", r.start.format("%Y-%m-%d"), last.format("%Y-%m-%d")),
        Period::Monthly => format!("Monthly report {}", r.start.format("%Y-%m")),
    }
}

/// The headline figures, labelled.
pub fn headline(r: &Report, quote: &str) -> Vec<(String, String)> {
    if !r.history {
        return vec![("status".to_owned(), "no history yet".to_owned())];
    }
    let mut f = Vec::new();
    if let Some(nav) = r.nav_end {
        f.push(("NAV".to_owned(), format!("{} {quote}", amount(nav))));
    }
    f.push(("change".to_owned(), format!("{} ({})", signed(r.nav_change), signed_pct(r.nav_change_pct))));
    f.push(("trades".to_owned(), format!("{} ({} won / {} lost)", r.trades.count, r.trades.wins, r.trades.losses)));
    f.push(("win rate".to_owned(), opt_pct(r.trades.win_rate_pct)));
    f.push(("drawdown from peak".to_owned(), format!("{:.2} %", r.drawdown.from_peak_pct.round_dp(2))));
    for b in &r.benchmarks {
        f.push((b.symbol.clone(), signed_pct(Some(b.return_pct))));
    }
    f.push(("fees".to_owned(), amount(r.fees)));
    f
}

/// The whole report as plain text, one fact per line.
pub fn render(r: &Report, quote: &str) -> String {
    let mut out = vec![title(r)];
    if !r.history {
        out.push("No history yet: nothing was recorded before the end of this period.".to_owned());
        return out.join("\n");
    }
    match (r.nav_start, r.nav_end) {
        (Some(_), Some(end)) => out.push(format!(
            "NAV {} {quote}, {} {quote} ({})",
            amount(end),
            signed(r.nav_change),
            signed_pct(r.nav_change_pct)
        )),
        _ => out.push("NAV: no equity recorded in this period".to_owned()),
    }
    if r.quiet() {
        out.push("No trades in this period.".to_owned());
    }
    match r.period {
        Period::Daily => daily(r, quote, &mut out),
        Period::Weekly => weekly(r, &mut out),
        Period::Monthly => monthly(r, &mut out),
    }
    out.join("\n")
}

fn trades_line(r: &Report) -> String {
    let t = &r.trades;
    format!(
        "Trades: {} closed, {} won, {} lost, win rate {}, net {}",
        t.count,
        t.wins,
        t.losses,
        opt_pct(t.win_rate_pct),
        signed(t.net_pnl)
    )
}

fn benchmarks_line(r: &Report) -> String {
    if r.benchmarks.is_empty() {
        return "Benchmarks: no prices stored".to_owned();
    }
    let parts: Vec<String> = r
        .benchmarks
        .iter()
        .map(|b| {
            let excess = b.excess_pct.map(|e| format!(", ours {} pp", signed(e))).unwrap_or_default();
            format!("{} {}{excess}", b.symbol, signed_pct(Some(b.return_pct)))
        })
        .collect();
    format!("Buy and hold: {}", parts.join("; "))
}

fn daily(r: &Report, quote: &str, out: &mut Vec<String>) {
    out.push(trades_line(r));
    if let (Some(best), Some(worst)) = (&r.best_symbol, &r.worst_symbol) {
        out.push(format!("Best {} {}, worst {} {}", best.name, signed(best.pnl), worst.name, signed(worst.pnl)));
    }
    if r.positions.is_empty() {
        out.push("Open positions: none".to_owned());
    } else {
        out.push("Open positions:".to_owned());
        for p in &r.positions {
            out.push(format!(
                "  {} {} @ {} last {}, unrealized {} {quote}",
                p.symbol,
                p.qty,
                amount(p.entry),
                amount(p.last),
                signed(p.unrealized_pnl)
            ));
        }
    }
    let d = &r.drawdown;
    out.push(format!(
        "Drawdown: today {:.2} %, from peak {:.2} % (limit {} %, headroom {:.2} %)",
        d.period_max_pct.round_dp(2),
        d.from_peak_pct.round_dp(2),
        d.limit_pct,
        d.headroom_pct.round_dp(2)
    ));
    out.push(format!("Fees paid: {} {quote}", amount(r.fees)));
    let s = &r.rolling_30d;
    out.push(format!(
        "Rolling 30 days: Sharpe {}, Sortino {}, win rate {} ({} trades)",
        ratio(s.sharpe),
        ratio(s.sortino),
        opt_pct(s.win_rate_pct),
        s.trades
    ));
}

fn weekly(r: &Report, out: &mut Vec<String>) {
    out.push(benchmarks_line(r));
    out.push(format!("P&L per strategy: {}", contributions(&r.by_strategy)));
    out.push(format!("P&L per symbol: {}", contributions(&r.by_symbol)));
    let t = &r.trades;
    out.push(format!(
        "Trades: {} closed, average hold {} h, profit factor {}, win rate {}",
        t.count,
        t.avg_hold_hours.map_or_else(|| "n/a".to_owned(), |h| format!("{h:.1}")),
        t.profit_factor.map_or_else(|| "n/a".to_owned(), |p| format!("{:.2}", p.round_dp(2))),
        opt_pct(t.win_rate_pct)
    ));
    out.push(format!("Allocation at start: {}", allocation(&r.allocation_start)));
    out.push(format!("Allocation at end: {}", allocation(&r.allocation_end)));
}

fn monthly(r: &Report, out: &mut Vec<String>) {
    out.push(benchmarks_line(r));
    let s = &r.period_stats;
    out.push(format!(
        "CAGR {}, max drawdown {:.2} %, win rate {} ({} trades), Sharpe {}",
        s.cagr_pct.map_or_else(|| "n/a".to_owned(), |c| format!("{c:.2} %")),
        r.drawdown.period_max_pct.round_dp(2),
        opt_pct(r.trades.win_rate_pct),
        r.trades.count,
        ratio(s.sharpe)
    ));
    for st in &r.strategies {
        out.push(format!(
            "  {}: P&L {}, Sharpe {}, win rate {} ({} trades)",
            st.name,
            signed(st.pnl),
            ratio(st.sharpe),
            opt_pct(st.win_rate_pct),
            st.trades
        ));
    }
    out.push("Daily P&L:".to_owned());
    for week in r.series.calendar.chunks(7) {
        let cells: Vec<String> = week.iter().map(|d| format!("{} {}", d.date.format("%d"), signed(d.pnl))).collect();
        out.push(format!("  {}", cells.join(" | ")));
    }
}
