//! Channel credentials (the bot token, webhook URLs, the SMTP password) travel inside URLs, and HTTP client
//! errors print the URL they failed on. Every error text a channel adapter produces goes through a [`Scrubber`]
//! before it reaches a log line, a delivery row, an event or `mcbot notify status`.

/// Replaces known secrets and URLs in text.
#[derive(Debug, Clone, Default)]
pub struct Scrubber {
    secrets: Vec<String>,
}

impl Scrubber {
    /// A scrubber for these secrets (empty ones are ignored).
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut secrets: Vec<String> = secrets.into_iter().filter(|s| s.len() >= 4).collect();
        // The longest first, so a secret that contains another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Self { secrets }
    }

    /// `text` with every secret replaced by `[redacted]` and every URL cut to its scheme and host.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for s in &self.secrets {
            out = out.replace(s.as_str(), "[redacted]");
        }
        strip_urls(&out)
    }
}

/// Cuts every `http(s)://host/path?query` down to `http(s)://host/…`: a path can carry a token (Telegram's
/// `/bot<token>/`, Discord's `/webhooks/<id>/<token>`).
pub fn strip_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (before, after) = rest.split_at(i + 3);
        out.push_str(before);
        let end = after.find(|c: char| c.is_whitespace() || c == ')' || c == '"' || c == '\'').unwrap_or(after.len());
        let url = &after[..end];
        // Credentials before the host are dropped too.
        let hostpart = url.split(['/', '?', '#']).next().unwrap_or("");
        let host = hostpart.rsplit('@').next().unwrap_or("");
        out.push_str(host);
        if url.len() > hostpart.len() {
            out.push_str("/…");
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_url_paths_are_removed() {
        let s = Scrubber::new(["123456:ABC-secret".to_owned(), "pw".to_owned()]);
        let e = "error sending request for url (http://127.0.0.1:9/bot123456:ABC-secret/SendMessage): refused";
        let out = s.scrub(e);
        assert_eq!(out, "error sending request for url (http://127.0.0.1:9/…): refused");
        assert_eq!(strip_urls("smtps://user:hunter22@mail.example.org:465"), "smtps://mail.example.org:465");
        assert_eq!(s.scrub("token 123456:ABC-secret leaked"), "token [redacted] leaked");
        assert_eq!(strip_urls("no url here"), "no url here");
    }
}
