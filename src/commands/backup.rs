//! `mcbot backup FILE`: a consistent copy of the embedded SQLite database, taken with `VACUUM INTO` while the
//! bot may be running. Copying `data/mcbot.db` with `cp` is not a backup: recent commits live in the `-wal`
//! file beside it until a checkpoint. PostgreSQL is backed up with its own tool, `pg_dump`.

use std::path::Path;

use crate::app::AppError;
use crate::cli::Output;
use crate::output::print_json;
use crate::store::{Backend, SqlStore};

/// Writes the copy to `file` (mode 0600) and reports it.
pub async fn run(store: &SqlStore, file: &Path, output: Output) -> Result<(), AppError> {
    if store.kind() == Backend::Postgres {
        return Err(AppError::Usage(
            "mcbot backup copies the embedded SQLite database; for PostgreSQL run \
             pg_dump --format=custom --file FILE \"$DATABASE_URL\" (restore with pg_restore)"
                .into(),
        ));
    }
    if file.exists() {
        return Err(AppError::Usage(format!("{} already exists; choose a new file", file.display())));
    }
    store.backup_into(file).await.map_err(|e| AppError::Runtime(e.to_string()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| AppError::Runtime(format!("backup {}: {e}", file.display())))?;
    }
    let bytes = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    match output {
        Output::Json => print_json(&serde_json::json!({ "backup": file, "bytes": bytes })).map_err(AppError::Runtime),
        Output::Text => {
            println!("backup written to {} ({bytes} bytes)", file.display());
            Ok(())
        }
    }
}
