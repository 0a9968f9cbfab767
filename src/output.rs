//! Printing: text tables for people, one pretty JSON document for scripts.

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde::Serialize;

/// A table with a header row.
pub fn table(header: &[&str], rows: impl IntoIterator<Item = Vec<String>>) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED).set_header(header.to_vec());
    for r in rows {
        t.add_row(r);
    }
    t
}

/// Prints `value` as JSON on stdout.
pub fn print_json(value: &impl Serialize) -> Result<(), String> {
    let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    println!("{text}");
    Ok(())
}
