//! `mcbot migrate`: applies the migrations of the selected backend (also done at every start-up), then prepares
//! every statement this build runs against the result, so a schema altered by hand is found before trading.

use crate::app::{AppError, open_store};
use crate::cli::Output;
use crate::output::print_json;

/// Migrates and reports the backend.
pub async fn run(url: &str, output: Output) -> Result<(), AppError> {
    let store = open_store(url).await?;
    let backend = store.kind().name();
    let checked = store.check_statements().await;
    store.close().await;
    let statements = checked?;
    match output {
        Output::Json => {
            print_json(&serde_json::json!({"migrated": true, "backend": backend, "statements": statements}))
                .map_err(AppError::Runtime)
        }
        Output::Text => {
            println!("migrations applied ({backend}); {statements} statements prepared against the schema");
            Ok(())
        }
    }
}
