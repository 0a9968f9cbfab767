//! Each event log consumer's position, read from the stored cursors when `/metrics` is scraped: how many events
//! each consumer has still to handle (the log's head minus its cursor; ids are gap-free, so this is the exact
//! count) and its cursor. Read at scrape, not kept in the recorder, so the figures are exact at that instant,
//! cover consumers run by any process sharing the database, and cost nothing on the trading path.

use std::fmt::Write as _;

use mcbot_stages::ports::ConsumerCursors;

use super::names;

/// Writes the lag and cursor families of `all` as exposition text (nothing when no consumer has a cursor).
pub fn render(out: &mut String, all: &ConsumerCursors) {
    if all.cursors.is_empty() {
        return;
    }
    let _ = write!(
        out,
        "# HELP {name} Events in the log after the consumer's cursor, read from the store at scrape (for the \
         alert consumer: alerts not yet recorded for delivery).\n# TYPE {name} gauge\n",
        name = names::CONSUMER_LAG
    );
    for c in &all.cursors {
        let _ = writeln!(out, "{}{{consumer=\"{}\"}} {}", names::CONSUMER_LAG, escape(&c.consumer), all.lag(c));
    }
    let _ = write!(
        out,
        "# HELP {name} Id of the last event the consumer handled, read from the store at scrape.\n\
         # TYPE {name} gauge\n",
        name = names::CONSUMER_CURSOR
    );
    for c in &all.cursors {
        let _ = writeln!(out, "{}{{consumer=\"{}\"}} {}", names::CONSUMER_CURSOR, escape(&c.consumer), c.last_id);
    }
}

/// A label value as the text format wants it: backslash, double quote and line feed escaped. Consumer names
/// come from stored rows, so they are escaped rather than trusted.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for ch in value.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}
