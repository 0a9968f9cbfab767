//! The event → metric mapping on hand-made events whose figures are known, rendered by a local recorder.

use chrono::{DateTime, Duration, Utc};
use mcbot_stages::domain::Symbol;
use mcbot_stages::ports::{Event, EventKind, NewEvent, Severity};
use serde_json::json;

use super::consumer::EventMetrics;
use super::process;

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-01T10:00:00Z").unwrap().to_utc()
}

fn event(id: i64, kind: EventKind, secs: i64, payload: serde_json::Value) -> Event {
    let e = NewEvent::new(t0() + Duration::seconds(secs), kind, Severity::Info, "test")
        .symbol(&Symbol::new("BTCUSDT").unwrap())
        .payload(payload);
    Event { id, event: e }
}

/// Records `events` on a fresh local recorder and returns the exposition text.
fn render(events: &[Event]) -> String {
    let recorder = super::recorder().unwrap();
    let handle = recorder.handle();
    let consumer = EventMetrics::new("metrics", None);
    metrics::with_local_recorder(&recorder, || {
        consumer.record(events);
    });
    handle.render()
}

/// The value of the sample `series` (name with its labels, as rendered), or a panic showing the text.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {series} in\n{text}"))
}

#[test]
fn slippage_is_measured_against_the_price_the_order_was_sized_at_adverse_positive() {
    let text = render(&[
        event(1, EventKind::OrderPlaced, 0, json!({"client_order_id": "b1", "side": "buy", "ref_price": "100"})),
        event(2, EventKind::OrderAcknowledged, 2, json!({"client_order_id": "b1", "side": "buy", "status": "filled"})),
        event(
            3,
            EventKind::OrderFilled,
            2,
            json!({"client_order_id": "b1", "side": "buy", "qty": "2", "price": "100.15", "fee": "0.2"}),
        ),
        event(4, EventKind::OrderPlaced, 10, json!({"client_order_id": "s1", "side": "sell", "ref_price": "100"})),
        event(
            5,
            EventKind::OrderFilled,
            11,
            json!({"client_order_id": "s1", "side": "sell", "qty": "1", "price": "99.8", "fee": "0.1"}),
        ),
    ]);
    // Buying 15 bps above the reference and selling 20 bps below it both cost: both positive.
    assert_eq!(value(&text, "mcbot_slippage_bps_sum{side=\"buy\"}"), 15.0);
    assert_eq!(value(&text, "mcbot_slippage_bps_sum{side=\"sell\"}"), 20.0);
    assert_eq!(value(&text, "mcbot_slippage_bps_bucket{side=\"buy\",le=\"10\"}"), 0.0);
    assert_eq!(value(&text, "mcbot_slippage_bps_bucket{side=\"buy\",le=\"15\"}"), 1.0);
    assert_eq!(value(&text, "mcbot_order_ack_latency_seconds_sum"), 2.0);
    assert_eq!(value(&text, "mcbot_fills_total{symbol=\"BTCUSDT\",side=\"buy\"}"), 1.0);
    assert!((value(&text, "mcbot_fees_paid_quote{symbol=\"BTCUSDT\"}") - 0.3).abs() < 1e-9);
    assert!((value(&text, "mcbot_traded_notional_quote{symbol=\"BTCUSDT\",side=\"buy\"}") - 200.3).abs() < 1e-9);
}

#[test]
fn a_fill_without_a_known_reference_price_is_not_given_a_slippage() {
    let text = render(&[event(
        1,
        EventKind::OrderFilled,
        0,
        json!({"client_order_id": "x", "side": "buy", "qty": "1", "price": "5", "fee": "0"}),
    )]);
    assert!(!text.contains("mcbot_slippage_bps"), "{text}");
}

#[test]
fn orders_are_counted_by_outcome_and_refusals_by_reason() {
    let text = render(&[
        event(1, EventKind::OrderPlaced, 0, json!({"client_order_id": "a", "side": "buy"})),
        event(2, EventKind::OrderRejected, 1, json!({"client_order_id": "a", "side": "buy"})),
        event(3, EventKind::OrderPlaced, 2, json!({"client_order_id": "b", "side": "sell"})),
        event(4, EventKind::OrderNotPlaced, 3, json!({"client_order_id": "b", "side": "sell"})),
    ]);
    assert_eq!(value(&text, "mcbot_orders_total{side=\"buy\",outcome=\"placed\"}"), 1.0);
    assert_eq!(value(&text, "mcbot_orders_total{side=\"buy\",outcome=\"rejected\"}"), 1.0);
    assert_eq!(value(&text, "mcbot_orders_total{side=\"sell\",outcome=\"not_placed\"}"), 1.0);
    assert_eq!(value(&text, "mcbot_order_rejects_total{reason=\"venue_rejected\"}"), 1.0);
    assert_eq!(value(&text, "mcbot_order_rejects_total{reason=\"not_placed\"}"), 1.0);
    assert_eq!(value(&text, "mcbot_events_total{kind=\"order_placed\",severity=\"info\"}"), 2.0);
}

#[test]
fn a_closed_position_is_a_win_or_a_loss_by_its_realized_change_since_it_opened() {
    let text = render(&[
        event(1, EventKind::PositionOpened, 0, json!({"realized_pnl": "10"})),
        event(2, EventKind::PositionClosed, 1, json!({"realized_pnl": "12.5"})),
        event(3, EventKind::PositionOpened, 2, json!({"realized_pnl": "12.5"})),
        event(4, EventKind::PositionClosed, 3, json!({"realized_pnl": "11"})),
        // Opened before the process started: the result cannot be told.
        event(5, EventKind::PositionClosed, 4, json!({"realized_pnl": "11"})),
    ]);
    assert_eq!(value(&text, "mcbot_positions_closed_total{result=\"win\"}"), 1.0);
    assert_eq!(value(&text, "mcbot_positions_closed_total{result=\"loss\"}"), 1.0);
    assert_eq!(value(&text, "mcbot_positions_closed_total{result=\"unknown\"}"), 1.0);
}

#[test]
fn stage_durations_and_bar_latency_come_from_the_cycle_events() {
    let bar = t0();
    let text = render(&[
        event(1, EventKind::CycleStarted, 5, json!({"bar_close": bar, "attempt": 1})),
        event(
            2,
            EventKind::CycleFinished,
            6,
            json!({"stages": [
                {"stage": "risk_check", "status": "ok", "duration_ms": 40},
                {"stage": "data_collection", "status": "restricted", "duration_ms": 1500},
                {"stage": "analysis", "status": "skipped", "duration_ms": 0},
                {"stage": "DROP TABLE", "status": "weird", "duration_ms": 1}
            ]}),
        ),
    ]);
    assert_eq!(value(&text, "mcbot_bar_close_to_cycle_start_seconds_sum"), 5.0);
    assert_eq!(value(&text, "mcbot_stage_duration_seconds_sum{stage=\"risk_check\"}"), 0.04);
    assert_eq!(value(&text, "mcbot_stage_duration_seconds_sum{stage=\"data_collection\"}"), 1.5);
    assert_eq!(value(&text, "mcbot_stage_runs_total{stage=\"data_collection\",status=\"restricted\"}"), 1.0);
    assert_eq!(value(&text, "mcbot_stage_runs_total{stage=\"analysis\",status=\"skipped\"}"), 1.0);
    assert!(!text.contains("stage_duration_seconds_count{stage=\"analysis\"}"), "a skipped stage has no duration");
    // A label value never comes unchecked from stored text.
    assert_eq!(value(&text, "mcbot_stage_runs_total{stage=\"other\",status=\"other\"}"), 1.0);
    assert!(!text.contains("DROP TABLE"));
}

#[test]
fn proc_files_are_read_as_documented_in_proc_5() {
    // A command name with spaces and parentheses, as proc(5) warns.
    let stat = "4242 (mcbot (x) y) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 7 0 1000 123456789 2560 \
                18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
    let s = process::parse_stat(stat).unwrap();
    assert_eq!(s.cpu_seconds, 3.0, "utime 250 + stime 50 ticks at 100 Hz");
    assert_eq!(s.threads, 7.0);
    assert_eq!(s.virtual_bytes, 123_456_789.0);
    assert_eq!(s.resident_bytes, 2560.0 * 4096.0);
    assert_eq!(s.start_time_seconds, Some(10.0), "1000 ticks after boot");
    assert_eq!(process::parse_status_rss("Name:\tmcbot\nVmRSS:\t   20480 kB\n"), Some(20_971_520.0));
    let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                  Max open files            1024                 524288               files\n";
    assert_eq!(process::parse_max_fds(limits), Some(1024.0));
    assert_eq!(process::parse_boot_time("cpu 1 2 3\nbtime 1700000000\n"), Some(1_700_000_000.0));
    let mut out = String::new();
    process::render_stats(&mut out, &s);
    assert!(out.contains("# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 3\n"), "{out}");
}

#[test]
fn each_consumer_lag_is_the_head_minus_its_own_cursor() {
    use mcbot_stages::ports::{ConsumerCursor, ConsumerCursors};
    let cursor = |consumer: &str, last_id| ConsumerCursor { consumer: consumer.to_owned(), last_id, updated_at: t0() };
    let all = ConsumerCursors {
        head: 1_000,
        cursors: vec![cursor("metrics", 1_000), cursor("notifications", 700), cursor("odd \"name\"\\", 1_200)],
    };
    let mut text = String::new();
    super::cursors::render(&mut text, &all);
    assert_eq!(value(&text, "mcbot_event_consumer_lag_events{consumer=\"metrics\"}"), 0.0);
    assert_eq!(value(&text, "mcbot_event_consumer_lag_events{consumer=\"notifications\"}"), 300.0, "not capped");
    assert_eq!(value(&text, "mcbot_event_consumer_cursor{consumer=\"notifications\"}"), 700.0);
    assert_eq!(
        value(&text, "mcbot_event_consumer_lag_events{consumer=\"odd \\\"name\\\"\\\\\"}"),
        0.0,
        "escaped, and never below zero"
    );
    assert_eq!(text.matches("# TYPE mcbot_event_consumer_lag_events gauge\n").count(), 1, "{text}");
    let mut none = String::new();
    super::cursors::render(&mut none, &ConsumerCursors { head: 5, cursors: Vec::new() });
    assert!(none.is_empty(), "no consumer, no family: {none}");
}
