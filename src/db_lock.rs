//! OS file locks beside an SQLite database file. SQLite serialises single statements, but two things need more:
//! applying the schema (two first starts must not both create the tables) and owning the database as a
//! scheduler (two schedulers on one file would reconcile against each other's positions). Both use an advisory
//! lock (`flock`) on a small file next to the database; the OS releases it when the process dies, so a crash
//! never leaves a stale lock. PostgreSQL needs neither: its migrations take their own lock, and its replicas
//! coordinate through the job ledger.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use fs4::FileExt;

/// Why a lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// The lock file could not be created or locked.
    #[error("cannot lock {path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Another scheduler owns the database.
    #[error("another mcbot scheduler ({holder}) holds {db}; stop it first, or use PostgreSQL for several replicas")]
    Held {
        /// `pid N`, or `pid unknown` when the holder's file is unreadable.
        holder: String,
        /// The database file.
        db: PathBuf,
    },
}

/// A held lock; dropping it (or the process ending) releases it.
#[derive(Debug)]
pub struct FileLock {
    _file: File,
}

fn lock_path(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(suffix);
    db.with_file_name(name)
}

fn open(path: &Path) -> Result<File, LockError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| LockError::Io { path: path.into(), source })?;
    }
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map_err(|source| LockError::Io { path: path.into(), source })
}

/// Waits until no other process is migrating `db`, then holds the migration lock (`<db>.migrate.lock`).
/// Blocking: call it off the async runtime.
pub fn migration_lock(db: &Path) -> Result<FileLock, LockError> {
    let path = lock_path(db, ".migrate.lock");
    let file = open(&path)?;
    FileExt::lock(&file).map_err(|source| LockError::Io { path, source })?;
    Ok(FileLock { _file: file })
}

/// Takes ownership of `db` for this process as its scheduler (`<db>.lock`, holding the pid), or says which
/// process holds it.
pub fn scheduler_lock(db: &Path) -> Result<FileLock, LockError> {
    let path = lock_path(db, ".lock");
    let mut file = open(&path)?;
    match FileExt::try_lock(&file) {
        Ok(()) => {
            let pid = std::process::id().to_string();
            let written = file.set_len(0).and_then(|()| file.seek(SeekFrom::Start(0))).and_then(|_| {
                file.write_all(pid.as_bytes())?;
                file.flush()
            });
            written.map_err(|source| LockError::Io { path, source })?;
            Ok(FileLock { _file: file })
        }
        Err(fs4::TryLockError::WouldBlock) => {
            let mut text = String::new();
            let holder = match file.read_to_string(&mut text).ok().and_then(|_| text.trim().parse::<u32>().ok()) {
                Some(pid) => format!("pid {pid}"),
                None => "pid unknown".to_owned(),
            };
            Err(LockError::Held { holder, db: db.into() })
        }
        Err(fs4::TryLockError::Error(source)) => Err(LockError::Io { path, source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_files_sit_beside_the_database() {
        assert_eq!(lock_path(Path::new("data/mcbot.db"), ".lock"), PathBuf::from("data/mcbot.db.lock"));
        assert_eq!(lock_path(Path::new("x.db"), ".migrate.lock"), PathBuf::from("x.db.migrate.lock"));
    }

    #[test]
    fn a_second_owner_is_refused_with_the_holders_pid_until_the_first_lets_go() {
        let d = tempfile::tempdir().unwrap();
        let db = d.path().join("mcbot.db");
        let first = scheduler_lock(&db).unwrap();
        let e = scheduler_lock(&db).unwrap_err().to_string();
        assert!(e.contains(&format!("another mcbot scheduler (pid {})", std::process::id())), "{e}");
        assert!(e.contains("mcbot.db"), "{e}");
        drop(first);
        scheduler_lock(&db).unwrap();
    }
}
