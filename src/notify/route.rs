//! Which events become messages, on which route and which channels, and how an event reads as a message.
//! Defaults: fills and closed trades to the trade route, warnings and worse (and the lifecycle) to the alert
//! route, reports to the report route; `notify.routes.<kind>` moves a kind elsewhere or turns it off.

use std::collections::BTreeMap;

use mcbot_stages::ports::{Channel, Event, EventKind, Message, Route, Severity};

/// Routing of events to routes.
#[derive(Debug, Clone, PartialEq)]
pub struct Routing {
    /// Events at or above this severity go to the alert route.
    pub alert_min: Severity,
    /// Per-kind overrides: `None` means the kind is never sent.
    pub overrides: BTreeMap<EventKind, Option<Route>>,
}

impl Default for Routing {
    fn default() -> Self {
        Self { alert_min: Severity::Warning, overrides: BTreeMap::new() }
    }
}

/// Kinds that report a trade. A position closed by a fill is not among them: the fill's message carries its
/// realized P&L already.
const TRADE_KINDS: [EventKind; 3] = [EventKind::OrderFilled, EventKind::StopLoss, EventKind::TakeProfit];
/// Kinds that report the process's life.
const LIFECYCLE: [EventKind; 3] = [EventKind::Started, EventKind::Stopped, EventKind::Crashed];

impl Routing {
    /// The route of an event, or `None` when nobody needs to hear of it.
    pub fn route(&self, kind: EventKind, severity: Severity) -> Option<Route> {
        if let Some(o) = self.overrides.get(&kind) {
            return *o;
        }
        if TRADE_KINDS.contains(&kind) {
            return Some(Route::Trades);
        }
        if kind == EventKind::ReportProduced {
            return Some(Route::Reports);
        }
        if LIFECYCLE.contains(&kind) || severity >= self.alert_min {
            return Some(Route::Alerts);
        }
        None
    }
}

/// Which routes one channel carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelRule {
    /// The channel.
    pub channel: Channel,
    /// Routes it carries.
    pub routes: Vec<Route>,
    /// Of the alert route, only these severities and above (email: critical, so a mailbox is not flooded).
    pub alert_min: Severity,
}

impl ChannelRule {
    /// True when this channel sends a message of `route` and `severity`.
    pub fn carries(&self, route: Route, severity: Severity) -> bool {
        self.routes.contains(&route) && (route != Route::Alerts || severity >= self.alert_min)
    }
}

/// Kinds that clear a condition another kind raised, and the fatigue key the raise used when the clearing event
/// has none of its own.
pub fn clears(kind: EventKind) -> Option<&'static str> {
    match kind {
        EventKind::DataRecovered => Some(""),
        EventKind::MonitorCleared => Some(""),
        EventKind::BreakerCleared => Some(""),
        EventKind::SafeModeOff => Some("safe_mode"),
        _ => None,
    }
}

/// Kinds that raise a condition a later event clears (stale data, a breaker, safe mode): a warning of such a
/// kind that is still active after a while escalates.
pub fn clearable(kind: EventKind) -> bool {
    matches!(kind, EventKind::StaleData | EventKind::BreakerTripped | EventKind::SafeModeOn)
}

/// The fatigue key of an event: its dedup key, else its kind and symbol (so the same warning about the same
/// pair is one condition).
pub fn fatigue_key(e: &Event) -> String {
    if let Some(k) = &e.event.dedup_key {
        return k.clone();
    }
    if let Some(k) = clears(e.event.kind).filter(|k| !k.is_empty()) {
        return k.to_owned();
    }
    match &e.event.symbol {
        Some(s) => format!("{}:{}", e.event.kind, s),
        None => e.event.kind.to_string(),
    }
}

/// Renders an event as a message. `batch` is the batch the event came in: a fill's message takes the realized
/// P&L from the position change committed with it.
pub fn render(e: &Event, batch: &[Event]) -> Message {
    let ev = &e.event;
    let p = &ev.payload;
    let text = |k: &str| p.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    let mut fields = Vec::new();
    let symbol = ev.symbol.as_ref().map(|s| s.as_str().to_owned());
    let title = match ev.kind {
        EventKind::OrderFilled => {
            let side = text("side").unwrap_or_default().to_uppercase();
            for k in ["qty", "price", "fee"] {
                if let Some(v) = text(k) {
                    fields.push((k.to_owned(), v));
                }
            }
            let pnl = batch
                .iter()
                .filter(|o| o.id > e.id && o.event.run_id == ev.run_id && o.event.symbol == ev.symbol)
                .find(|o| matches!(o.event.kind, EventKind::PositionChanged | EventKind::PositionClosed))
                .and_then(|o| o.event.payload.get("realized_pnl").and_then(|v| v.as_str()).map(str::to_owned));
            if let Some(pnl) = pnl {
                fields.push(("realized P&L".to_owned(), pnl));
            }
            format!("{side} {} filled", symbol.clone().unwrap_or_default())
        }
        EventKind::PositionClosed => {
            if let Some(v) = text("realized_pnl") {
                fields.push(("realized P&L".to_owned(), v));
            }
            format!("{} position closed", symbol.clone().unwrap_or_default())
        }
        EventKind::ReportProduced => {
            if let Some(figures) = p.get("figures").and_then(|f| f.as_object()) {
                for (k, v) in figures {
                    let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                    fields.push((k.clone(), v));
                }
            }
            format!("{} report", text("period").unwrap_or_default())
        }
        _ => match &symbol {
            Some(s) => format!("{} {s}", ev.kind.as_str().replace('_', " ")),
            None => ev.kind.as_str().replace('_', " "),
        },
    };
    if let Some(s) = symbol.filter(|_| ev.kind == EventKind::OrderFilled) {
        fields.insert(0, ("symbol".to_owned(), s));
    }
    if let Some(side) = text("side").filter(|_| ev.kind == EventKind::OrderFilled) {
        fields.insert(1.min(fields.len()), ("side".to_owned(), side));
    }
    Message {
        kind: ev.kind,
        severity: ev.severity,
        title,
        body: ev.message.clone(),
        fields,
        ts: ev.ts,
        image_png: None,
        charts: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;
    use mcbot_stages::domain::Symbol;
    use mcbot_stages::ports::NewEvent;
    use serde_json::json;

    use super::*;

    #[test]
    fn defaults_route_trades_alerts_and_reports() {
        let r = Routing::default();
        assert_eq!(r.route(EventKind::OrderFilled, Severity::Info), Some(Route::Trades));
        assert_eq!(r.route(EventKind::ReportProduced, Severity::Info), Some(Route::Reports));
        assert_eq!(r.route(EventKind::StaleData, Severity::Warning), Some(Route::Alerts));
        assert_eq!(r.route(EventKind::Started, Severity::Info), Some(Route::Alerts));
        assert_eq!(r.route(EventKind::Signal, Severity::Info), None, "signals are not messages");
        let mut r = Routing { alert_min: Severity::Critical, ..Default::default() };
        assert_eq!(r.route(EventKind::StaleData, Severity::Warning), None);
        r.overrides.insert(EventKind::OrderFilled, None);
        r.overrides.insert(EventKind::Signal, Some(Route::Trades));
        assert_eq!(r.route(EventKind::OrderFilled, Severity::Info), None);
        assert_eq!(r.route(EventKind::Signal, Severity::Info), Some(Route::Trades));
    }

    #[test]
    fn email_carries_only_critical_alerts() {
        let rule = ChannelRule {
            channel: Channel::Email,
            routes: vec![Route::Alerts, Route::Reports],
            alert_min: Severity::Critical,
        };
        assert!(!rule.carries(Route::Alerts, Severity::Warning));
        assert!(rule.carries(Route::Alerts, Severity::Emergency));
        assert!(rule.carries(Route::Reports, Severity::Info));
        assert!(!rule.carries(Route::Trades, Severity::Info));
    }

    #[test]
    fn a_fill_reads_with_symbol_side_quantity_price_fee_and_pnl() {
        let t = DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
        let sym = Symbol::new("BTCUSDT").unwrap();
        let fill = NewEvent::new(t, EventKind::OrderFilled, Severity::Info, "filled")
            .run("r1")
            .symbol(&sym)
            .payload(json!({"side": "sell", "qty": "0.01000", "price": "65000.10", "fee": "0.65"}));
        let pos = NewEvent::new(t, EventKind::PositionClosed, Severity::Info, "closed")
            .run("r1")
            .symbol(&sym)
            .payload(json!({"realized_pnl": "12.34"}));
        let batch = vec![Event { id: 1, event: fill }, Event { id: 2, event: pos }];
        let m = render(&batch[0], &batch);
        assert_eq!(m.title, "SELL BTCUSDT filled");
        let f: Vec<(&str, &str)> = m.fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            f,
            [
                ("symbol", "BTCUSDT"),
                ("side", "sell"),
                ("qty", "0.01000"),
                ("price", "65000.10"),
                ("fee", "0.65"),
                ("realized P&L", "12.34")
            ]
        );
    }
}
