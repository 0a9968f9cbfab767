//! Closed candles, kept so a restart or a backtest replay does not refetch history, and so the exact bars a
//! decision was made on can be looked up later.

use std::fmt::Write as _;

use super::query::Row;
use chrono::{DateTime, Utc};
use mcbot_stages::domain::{Candle, Symbol, Timeframe};
use mcbot_stages::ports::StoreError;

use super::SqlStore;
use super::codec::Cols;
use super::query::{Q, Sql};

/// Rows per multi-row upsert: few round trips for a backfill, far below both engines' parameter limits.
const CHUNK: usize = 100;

static NEWEST_BEFORE: Sql = Sql::new(
    "SELECT open_time, open, high, low, close, volume FROM candles \
     WHERE symbol = $1 AND timeframe = $2 AND open_time < $3 ORDER BY open_time DESC LIMIT $4",
);

/// The fixed statements, for the catalogue.
pub(crate) static STATEMENTS: &[&Sql] = &[&NEWEST_BEFORE];

/// Example texts of the statements built at run time, for the catalogue.
pub(crate) fn built_examples() -> Vec<(Option<super::dialect::Backend>, String)> {
    vec![(None, upsert_sql(2))]
}

/// `INSERT ... VALUES (...), (...) ON CONFLICT DO UPDATE` for `rows` candles; `$1` is the symbol and `$2` the
/// timeframe, shared by every row.
fn upsert_sql(rows: usize) -> String {
    let mut sql =
        String::from("INSERT INTO candles (symbol, timeframe, open_time, open, high, low, close, volume) VALUES ");
    for r in 0..rows {
        let p = 3 + r * 6;
        if r > 0 {
            sql.push_str(", ");
        }
        // Writing to a String cannot fail.
        let _ = write!(sql, "($1, $2, ${p}, ${}, ${}, ${}, ${}, ${})", p + 1, p + 2, p + 3, p + 4, p + 5);
    }
    sql.push_str(
        " ON CONFLICT (symbol, timeframe, open_time) DO UPDATE SET open = excluded.open, high = excluded.high, \
         low = excluded.low, close = excluded.close, volume = excluded.volume",
    );
    sql
}

impl SqlStore {
    /// See [`mcbot_stages::ports::Store::save_candles`]. A correction of a stored bar replaces it. Several chunks
    /// are written in one transaction, so a reader never sees half a backfill.
    pub(crate) async fn save_candles_impl(
        &self,
        symbol: &Symbol,
        tf: Timeframe,
        candles: &[Candle],
    ) -> Result<(), StoreError> {
        if candles.is_empty() {
            return Ok(());
        }
        let err = || self.err("save_candles");
        let tf = tf.to_string();
        // Several chunks commit together; a single one needs no transaction of its own.
        let mut tx = if candles.len() > CHUNK { Some(self.begin_tx().await?) } else { None };
        for chunk in candles.chunks(CHUNK) {
            // Cache the prepared statement only for the shapes that recur (a full chunk, the usual single new
            // bar), so a backfill's odd remainders do not crowd the hot statements out of the cache.
            let mut q = Q::built(upsert_sql(chunk.len()))
                .persistent(chunk.len() == CHUNK || chunk.len() == 1)
                .bind(symbol.as_str())
                .bind(tf.as_str());
            for c in chunk {
                q = q.bind(c.open_time).bind(c.open).bind(c.high).bind(c.low).bind(c.close).bind(c.volume);
            }
            match tx.as_mut() {
                Some(tx) => q.execute(tx).await.map_err(err())?,
                None => q.execute(&self.pool).await.map_err(err())?,
            };
        }
        if let Some(tx) = tx {
            self.commit_tx(tx).await?;
        }
        Ok(())
    }

    /// See [`mcbot_stages::ports::Store::candles`]: the newest `limit` bars opened before `until`, oldest first.
    pub(crate) async fn candles_impl(
        &self,
        symbol: &Symbol,
        tf: Timeframe,
        until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Candle>, StoreError> {
        let rows = Q::fixed(&NEWEST_BEFORE)
            .bind(symbol.as_str())
            .bind(tf.to_string())
            .bind(until)
            .bind(limit.max(0))
            .fetch_all(&self.pool)
            .await
            .map_err(self.err("candles"))?;
        rows.iter().rev().map(candle_from_row).collect()
    }
}

fn candle_from_row(row: &Row) -> Result<Candle, StoreError> {
    let c = Cols::new(row, "candles");
    Ok(Candle {
        open_time: c.time("open_time")?,
        open: c.decimal("open")?,
        high: c.decimal("high")?,
        low: c.decimal("low")?,
        close: c.decimal("close")?,
        volume: c.decimal("volume")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsert_numbers_parameters_per_row() {
        let sql = upsert_sql(2);
        assert!(sql.contains("($1, $2, $3, $4, $5, $6, $7, $8)"));
        assert!(sql.contains("($1, $2, $9, $10, $11, $12, $13, $14)"));
    }
}
