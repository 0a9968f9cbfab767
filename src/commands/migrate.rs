//! `mcbot migrate`: applies the migrations of the selected backend (also done at every start-up).

use crate::app::{AppError, open_store};
use crate::cli::Output;
use crate::output::print_json;

/// Migrates and reports the backend.
pub async fn run(url: &str, output: Output) -> Result<(), AppError> {
    let store = open_store(url).await?;
    let backend = store.kind().name();
    store.close().await;
    match output {
        Output::Json => {
            print_json(&serde_json::json!({"migrated": true, "backend": backend})).map_err(AppError::Runtime)
        }
        Output::Text => {
            println!("migrations applied ({backend})");
            Ok(())
        }
    }
}
