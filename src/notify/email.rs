//! Email through lettre over SMTP: `smtp://host:port` upgrades with STARTTLS when the server offers it
//! (`tls = "required"` insists), `smtps://` is TLS from the first byte. Reports (and, optionally, critical
//! alerts) arrive as HTML with a plain-text alternative and the chart inline by content id.

use std::sync::Arc;

use async_trait::async_trait;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use mcbot_stages::ports::{Channel, ChannelNotifier, Message, NotifyError, Route};

use super::secrets::Scrubber;
use super::telegram::escape;

/// Why the mail transport could not be built.
#[derive(Debug, thiserror::Error)]
pub enum EmailError {
    /// `notify.email.smtp_url` is not `smtp://host[:port]` or `smtps://host[:port]`.
    #[error("notify.email.smtp_url: {0}")]
    Url(String),
    /// A sender or recipient address does not parse.
    #[error("notify.email address {0:?}: {1}")]
    Address(String, String),
    /// TLS could not be set up.
    #[error("notify.email TLS: {0}")]
    Tls(String),
}

/// The settings of the channel.
#[derive(Clone)]
pub struct EmailSettings {
    /// `smtp://host:port` or `smtps://host:port`, optionally with `user:password@` (secret).
    pub smtp_url: String,
    /// Insist on STARTTLS for `smtp://`.
    pub tls_required: bool,
    /// Login, when not in the URL.
    pub user: Option<String>,
    /// Password (secret), when not in the URL.
    pub password: Option<String>,
    /// Sender.
    pub from: String,
    /// Recipients.
    pub to: Vec<String>,
    /// Time-out of each SMTP command.
    pub timeout: std::time::Duration,
    /// PEM certificates trusted for the server besides the public roots (a private relay's CA).
    pub ca_file: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for EmailSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailSettings")
            .field("from", &self.from)
            .field("to", &self.to)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// Email as a delivery channel.
pub struct EmailChannel {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
    scrub: Arc<Scrubber>,
}

impl EmailChannel {
    /// The channel for `s`; `scrub` knows every secret of the configuration.
    pub fn new(s: &EmailSettings, scrub: Arc<Scrubber>) -> Result<Self, EmailError> {
        let url = reqwest::Url::parse(&s.smtp_url).map_err(|e| EmailError::Url(e.to_string()))?;
        let host = url.host_str().filter(|h| !h.is_empty()).ok_or_else(|| EmailError::Url("no host".into()))?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        let extra = s.ca_file.as_deref().map(trusted).transpose()?;
        let params = || {
            let mut b = TlsParameters::builder(host.clone());
            if let Some(cert) = &extra {
                b = b.add_root_certificate(cert.clone());
            }
            b.build().map_err(|e| EmailError::Tls(e.to_string()))
        };
        let (tls, default_port) = match url.scheme() {
            "smtps" => (Tls::Wrapper(params()?), 465),
            "smtp" if s.tls_required => (Tls::Required(params()?), 587),
            "smtp" => (Tls::Opportunistic(params()?), 587),
            other => return Err(EmailError::Url(format!("scheme {other}: expected smtp or smtps"))),
        };
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(url.port().unwrap_or(default_port))
            .tls(tls)
            .timeout(Some(s.timeout));
        let user = Some(url.username()).filter(|u| !u.is_empty()).map(str::to_owned).or_else(|| s.user.clone());
        let password = url.password().map(str::to_owned).or_else(|| s.password.clone());
        if let (Some(u), Some(p)) = (user, password) {
            let decode =
                |t: &str| form_urlencoded::parse(format!("x={t}").as_bytes()).next().map(|(_, v)| v.into_owned());
            b = b.credentials(Credentials::new(decode(&u).unwrap_or(u), decode(&p).unwrap_or(p)));
        }
        let mailbox = |a: &str| a.parse::<Mailbox>().map_err(|e| EmailError::Address(a.to_owned(), e.to_string()));
        Ok(Self {
            transport: b.build(),
            from: mailbox(&s.from)?,
            to: s.to.iter().map(|a| mailbox(a)).collect::<Result<_, _>>()?,
            scrub,
        })
    }
}

/// The certificates of a PEM file, to be trusted as roots. A file without one is refused at start-up rather than
/// leaving the relay unverifiable at the first alert.
fn trusted(path: &std::path::Path) -> Result<Certificate, EmailError> {
    let why = |e: String| EmailError::Tls(format!("ca_file {}: {e}", path.display()));
    let pem = std::fs::read(path).map_err(|e| why(e.to_string()))?;
    if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
        return Err(why("no PEM certificate in it".into()));
    }
    Certificate::from_pem(&pem).map_err(|e| why(e.to_string()))
}

/// The plain-text body.
pub fn plain(m: &Message) -> String {
    let mut out = format!("{}\n\n{}\n", m.title, m.body);
    for (k, v) in &m.fields {
        out.push_str(&format!("{k}: {v}\n"));
    }
    out.push_str(&format!("\n{} · {}\n", m.ts.format("%Y-%m-%d %H:%M:%S UTC"), m.severity.as_str()));
    out
}

/// The content id of an inline chart: its file name without `.png`, as in `cid:equity`.
fn content_id(name: &str) -> String {
    name.strip_suffix(".png").unwrap_or(name).to_owned()
}

/// The HTML body; the chart, when there is one, by content id `chart`.
pub fn html(m: &Message) -> String {
    let mut rows = String::new();
    for (k, v) in &m.fields {
        rows.push_str(&format!("<tr><th align=\"left\">{}</th><td>{}</td></tr>", escape(k), escape(v)));
    }
    let body = m.body.lines().map(escape).collect::<Vec<_>>().join("<br>");
    let mut chart =
        if m.image_png.is_some() { "<p><img src=\"cid:chart\" alt=\"chart\"></p>".to_owned() } else { String::new() };
    for c in &m.charts {
        chart.push_str(&format!(
            "<p><img src=\"cid:{}\" alt=\"{}\" width=\"750\" style=\"max-width:100%\"><br>{}</p>",
            content_id(&c.name),
            escape(&c.caption),
            escape(&c.caption)
        ));
    }
    format!(
        "<html><body><h2>{}</h2><p>{body}</p><table>{rows}</table>{chart}<p><small>{} · {}</small></p></body></html>",
        escape(&m.title),
        m.ts.format("%Y-%m-%d %H:%M:%S UTC"),
        m.severity.as_str()
    )
}

#[async_trait]
impl ChannelNotifier for EmailChannel {
    fn channel(&self) -> Channel {
        Channel::Email
    }

    async fn deliver(&self, _route: Route, m: &Message) -> Result<(), NotifyError> {
        let mut b = lettre::Message::builder().from(self.from.clone()).subject(format!(
            "[mcbot {}] {}",
            m.severity.as_str(),
            m.title
        ));
        for to in &self.to {
            b = b.to(to.clone());
        }
        let html_part = SinglePart::html(html(m));
        let html = match &m.image_png {
            Some(png) => {
                MultiPart::related().singlepart(html_part).singlepart(Attachment::new_inline("chart".to_owned()).body(
                    png.clone(),
                    ContentType::parse("image/png").map_err(|e| NotifyError::rejected(format!("content type: {e}")))?,
                ))
            }
            None => MultiPart::related().singlepart(html_part),
        };
        let png_type =
            || ContentType::parse("image/png").map_err(|e| NotifyError::rejected(format!("content type: {e}")));
        let mut html = html;
        for c in &m.charts {
            html = html.singlepart(Attachment::new_inline(content_id(&c.name)).body(c.png.clone(), png_type()?));
        }
        let body = MultiPart::alternative().singlepart(SinglePart::plain(plain(m))).multipart(html);
        let mail = b.multipart(body).map_err(|e| NotifyError::rejected(format!("mail not built: {e}")))?;
        match self.transport.send(mail).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let text = self.scrub.scrub(&format!("SMTP: {e}"));
                if e.is_permanent() { Err(NotifyError::rejected(text)) } else { Err(NotifyError::transient(text)) }
            }
        }
    }
}
