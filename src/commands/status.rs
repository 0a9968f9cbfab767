//! `mcbot status`: what a trader checks first: equity, cash, positions, safe mode, breakers, last runs.

use std::collections::BTreeMap;

use mcbot_stages::domain::{Decimal, Symbol};
use mcbot_stages::ports::{Severity, Store};
use serde_json::json;

use crate::app::{App, AppError};
use crate::cli::Output;
use crate::output::{print_json, table};

/// Prints the status.
pub async fn run(app: &App, output: Output) -> Result<(), AppError> {
    let store = app.store.as_ref();
    let state = store.load_state().await?;
    let (min, max) = (chrono::DateTime::<chrono::Utc>::MIN_UTC, chrono::DateTime::<chrono::Utc>::MAX_UTC);
    let equity = store.equity_before(max).await?;
    let book = store.book_owner().await?;
    let want = crate::app::book_of(&app.cfg);
    // A position's booked P&L counts the fees of its buys; shown alone, a position just opened would read as a
    // realised loss. Fees get their own column and realised P&L is what sales made before them.
    let mut fees: BTreeMap<Symbol, Decimal> = BTreeMap::new();
    for f in store.fills_between(min, max).await? {
        *fees.entry(f.symbol).or_default() += f.fee;
    }
    let mut positions = Vec::new();
    for p in store.positions().await?.into_iter().filter(|p| !p.qty.is_zero()) {
        let mark = app.exchange.last_price(&p.symbol).await.ok();
        let fee = fees.get(&p.symbol).copied().unwrap_or_default();
        positions.push(json!({
            "symbol": p.symbol, "qty": p.qty, "avg_price": p.avg_price, "mark": mark,
            "value": mark.map(|m| (m * p.qty).round_dp(2)),
            "unrealized_pnl": mark.map(|m| (m - p.avg_price) * p.qty),
            "realized_pnl": p.realized_pnl + fee, "fees": fee,
        }));
    }
    let runs = store.recent_runs(None, 10).await?;
    let events = store.recent_events(Severity::Warning, 5).await?;
    let doc = json!({
        "mode": app.cfg.mode.as_str(),
        "book": book,
        "book_is_this_mode": book.as_ref().is_none_or(|b| *b == want),
        "backend": store.backend(),
        "equity": equity.as_ref().map(|e| e.equity),
        "equity_at": equity.as_ref().map(|e| e.ts),
        "cash": state.cash,
        "peak_equity": state.peak_equity,
        "trading": state.trading.as_str(),
        "safe_mode": state.safe_mode,
        "safe_mode_reason": state.safe_mode_reason,
        "breakers_tripped": state.tripped,
        "live": state.live,
        "last_bar": state.last_bar,
        "positions": positions,
        "last_runs": runs.iter().map(|r| json!({
            "job": r.job, "scheduled_at": r.scheduled_at, "status": r.status, "duration_ms": r.duration_ms(),
            "attempt": r.attempt, "error": r.error, "claimant": r.claimant, "claim": app.runtime.describe_run(r),
        })).collect::<Vec<_>>(),
        "recent_events": events,
    });
    if output == Output::Json {
        return print_json(&doc).map_err(AppError::Runtime);
    }
    let show = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".into(),
        o => o.to_string(),
    };
    // People read quote totals to the cent; the JSON document keeps every digit for scripts.
    let cents = |v: &serde_json::Value| match v.as_str().and_then(|s| s.parse::<rust_decimal::Decimal>().ok()) {
        Some(d) => d.round_dp(2).to_string(),
        None => show(v),
    };
    let names = |v: &serde_json::Value| match v {
        serde_json::Value::Object(m) if m.is_empty() => "none".to_owned(),
        serde_json::Value::Object(m) => m.keys().cloned().collect::<Vec<_>>().join(", "),
        serde_json::Value::Array(a) if a.is_empty() => "none".to_owned(),
        serde_json::Value::Array(a) => a.iter().map(show).collect::<Vec<_>>().join(", "),
        other => show(other),
    };
    let book_line = match &book {
        None => "empty (nothing traded yet)".to_owned(),
        Some(b) if *b == want => b.to_string(),
        Some(b) => format!("{b} (not this mode's: the figures below are that book's)"),
    };
    let summary = [
        ("mode", show(&doc["mode"])),
        ("book", book_line),
        ("store", show(&doc["backend"])),
        ("trading", show(&doc["trading"])),
        ("equity", cents(&doc["equity"])),
        ("cash", cents(&doc["cash"])),
        ("peak equity", cents(&doc["peak_equity"])),
        ("safe mode", show(&doc["safe_mode"])),
        ("safe mode reason", show(&doc["safe_mode_reason"])),
        ("breakers tripped", names(&doc["breakers_tripped"])),
        ("live", live_line(state.live.as_ref())),
        ("last bar processed", show(&doc["last_bar"])),
    ];
    println!("{}", table(&["", ""], summary.into_iter().map(|(k, v)| vec![k.to_owned(), v])));
    let rows = positions.iter().map(|p| {
        let cell = |k: &str| if k.ends_with("pnl") || k == "fees" { cents(&p[k]) } else { show(&p[k]) };
        let keys = ["symbol", "qty", "avg_price", "mark", "value", "unrealized_pnl", "realized_pnl", "fees"];
        keys.iter().map(|k| cell(k)).collect()
    });
    let header = ["symbol", "qty", "avg price", "mark", "value", "unrealized P&L", "realized P&L", "fees"];
    println!("{}", table(&header, rows));
    let rows = runs.iter().map(|r| {
        vec![
            r.job.clone(),
            r.scheduled_at.to_rfc3339(),
            r.status.as_str().to_owned(),
            r.duration_ms().map_or_else(|| "-".into(), |d| format!("{d} ms")),
            app.runtime.describe_run(r).or_else(|| r.error.clone()).unwrap_or_default(),
        ]
    });
    println!("{}", table(&["job", "scheduled", "status", "time", "claim or error"], rows));
    if !events.is_empty() {
        let rows = events.iter().map(|e| {
            let ev = &e.event;
            vec![ev.ts.to_rfc3339(), ev.severity.as_str().into(), ev.kind.as_str().into(), ev.message.clone()]
        });
        println!("{}", table(&["when", "severity", "event", "message"], rows));
    }
    Ok(())
}

/// One line on mode live: trading live at which canary share, or paper and every failed guard with why.
fn live_line(live: Option<&mcbot_stages::ports::LiveStatus>) -> String {
    match live {
        None => "-".into(),
        Some(l) if l.active => format!(
            "active: {}% of equity, first {} cycle(s) after start dry",
            (l.capital_fraction * rust_decimal::Decimal::ONE_HUNDRED).normalize(),
            l.dry_run_cycles
        ),
        Some(l) => {
            let why: Vec<String> = l.failed.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            format!("REFUSED, trading paper: {}", why.join("; "))
        }
    }
}
