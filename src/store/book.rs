//! Whose book a database holds. Orders, fills, positions and the trading state of one database belong to one
//! mode on one venue: a shadow run that found mock orders would report them as already placed, and a paper
//! account replaying mock fills would start from the wrong cash. The first writer records its mode and venue
//! under the `bot_state` key `book`; a writer of another mode is refused unless it adopts the book on purpose.

use mcbot_stages::ports::StoreError;
use serde::{Deserialize, Serialize};

use super::SqlStore;
use super::codec::Cols;
use super::query::{Q, Sql};
use super::records::LOAD_STATE;
use super::unit_of_work::INSERT_STATE;

/// The `bot_state` key of the book's owner.
const BOOK_KEY: &str = "book";

static ADOPT_BOOK: Sql = Sql::new(
    "INSERT INTO bot_state (key, value, version) VALUES ($1, $2, 1) \
     ON CONFLICT (key) DO UPDATE SET value = excluded.value, version = bot_state.version + 1",
);

/// The fixed statements, for the catalogue.
pub(crate) static STATEMENTS: &[&Sql] = &[&ADOPT_BOOK];

/// The mode and venue whose orders, fills and positions a database holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookOwner {
    /// `mock`, `paper`, `shadow` or `live`.
    pub mode: String,
    /// The venue the orders went to (`sim` for the embedded simulator).
    pub venue: String,
}

impl std::fmt::Display for BookOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "mode {} on {}", self.mode, self.venue)
    }
}

impl SqlStore {
    /// The recorded owner of this database's book; `None` before the first trading process claimed it.
    pub async fn book_owner(&self) -> Result<Option<BookOwner>, StoreError> {
        let row =
            Q::fixed(&LOAD_STATE).bind(BOOK_KEY).fetch_optional(&self.pool).await.map_err(self.err("book_owner"))?;
        let Some(row) = row else { return Ok(None) };
        let c = Cols::new(&row, "bot_state");
        let owner = serde_json::from_value(c.json("value")?)
            .map_err(|e| c.corrupt("value", format!("invalid book owner: {e}")))?;
        Ok(Some(owner))
    }

    /// Records `want` as the owner unless one is recorded already; the owner in force afterwards (the earlier
    /// one when two processes of different modes race: exactly one wins).
    pub async fn claim_book(&self, want: &BookOwner) -> Result<BookOwner, StoreError> {
        let value = owner_json(want)?;
        Q::fixed(&INSERT_STATE).bind(BOOK_KEY).bind(value).execute(&self.pool).await.map_err(self.err("claim_book"))?;
        self.book_owner()
            .await?
            .ok_or_else(|| StoreError::Corrupt("bot_state: the book owner vanished right after it was claimed".into()))
    }

    /// Makes `want` the owner whatever was recorded: the operator continues another mode's book on purpose.
    pub async fn adopt_book(&self, want: &BookOwner) -> Result<(), StoreError> {
        let value = owner_json(want)?;
        Q::fixed(&ADOPT_BOOK).bind(BOOK_KEY).bind(value).execute(&self.pool).await.map_err(self.err("adopt_book"))?;
        Ok(())
    }
}

fn owner_json(owner: &BookOwner) -> Result<serde_json::Value, StoreError> {
    serde_json::to_value(owner).map_err(|e| StoreError::Corrupt(format!("book owner: cannot serialise: {e}")))
}
