//! Which SQL engine a URL names, and what a URL says about its database (file, password to redact).

use std::path::{Path, PathBuf};

/// The SQL engine behind a store. Chosen from the URL; decides the migrations and the dialect of every statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// PostgreSQL (`postgres://` or `postgresql://`): production, several replicas.
    Postgres,
    /// SQLite (`sqlite:`): the embedded default, one file in the data directory.
    Sqlite,
}

impl Backend {
    /// Recognises the URL scheme; `None` for anything else, so a typo fails at start-up, not at the first query.
    pub fn from_url(url: &str) -> Option<Self> {
        let lower = url.trim_start().to_ascii_lowercase();
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            Some(Backend::Postgres)
        } else if lower.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else {
            None
        }
    }

    /// Short name, for status output and metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Postgres => "postgres",
            Backend::Sqlite => "sqlite",
        }
    }
}

/// The default embedded database URL: `sqlite://<data_dir>/mcbot.db?mode=rwc` (the file is created if missing;
/// [`SqlStore::connect`](super::SqlStore::connect) creates the directory).
pub(crate) fn embedded_url(data_dir: &Path) -> String {
    let file = data_dir.join("mcbot.db");
    let mut encoded = String::new();
    for c in file.to_string_lossy().chars() {
        match c {
            '%' => encoded.push_str("%25"),
            '?' => encoded.push_str("%3F"),
            '#' => encoded.push_str("%23"),
            c => encoded.push(c),
        }
    }
    format!("sqlite://{encoded}?mode=rwc")
}

/// The file a `sqlite:` URL points at, or `None` for an in-memory database, so its directory can be created.
pub(crate) fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url.trim_start();
    let rest = rest.get("sqlite:".len()..)?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let in_memory = path.is_empty() || path == ":memory:" || query.split('&').any(|kv| kv == "mode=memory");
    if in_memory { None } else { Some(PathBuf::from(percent_decode(path))) }
}

/// Decodes `%XX` escapes (as sqlx does for SQLite file names); malformed escapes are kept as written.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The URL with any password replaced by `***`, for messages and logs.
pub(crate) fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else { return url.to_owned() };
    let auth_start = scheme_end + 3;
    let auth_end = url[auth_start..].find(['/', '?']).map_or(url.len(), |i| auth_start + i);
    let authority = &url[auth_start..auth_end];
    let Some(at) = authority.rfind('@') else { return url.to_owned() };
    let userinfo = &authority[..at];
    match userinfo.split_once(':') {
        Some((user, _password)) => format!("{}{user}:***{}", &url[..auth_start], &url[auth_start + at..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_their_backend() {
        assert_eq!(Backend::from_url("postgres://u@h/db"), Some(Backend::Postgres));
        assert_eq!(Backend::from_url("PostgreSQL://u@h/db"), Some(Backend::Postgres));
        assert_eq!(Backend::from_url("sqlite://data/mcbot.db"), Some(Backend::Sqlite));
        assert_eq!(Backend::from_url("sqlite::memory:"), Some(Backend::Sqlite));
        assert_eq!(Backend::from_url("mysql://h/db"), None);
        assert_eq!(Backend::from_url("data/mcbot.db"), None);
    }

    #[test]
    fn embedded_url_round_trips_odd_paths() {
        let url = embedded_url(Path::new("/tmp/we?ird #dir%"));
        assert_eq!(url, "sqlite:///tmp/we%3Fird %23dir%25/mcbot.db?mode=rwc");
        assert_eq!(sqlite_file(&url), Some(PathBuf::from("/tmp/we?ird #dir%/mcbot.db")));
        assert_eq!(sqlite_file("sqlite:rel/x.db"), Some(PathBuf::from("rel/x.db")));
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("sqlite://?mode=memory"), None);
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact_url("postgres://bot:s3cr@t@db:5432/mcbot"), "postgres://bot:***@db:5432/mcbot");
        assert_eq!(redact_url("postgres://postgres@127.0.0.1/x"), "postgres://postgres@127.0.0.1/x");
        assert_eq!(redact_url("sqlite://data/mcbot.db"), "sqlite://data/mcbot.db");
    }
}
