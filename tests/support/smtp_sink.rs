//! A loopback SMTP sink on 127.0.0.1 port 0: greets, answers EHLO (offering AUTH PLAIN LOGIN, and STARTTLS when
//! started so), takes MAIL FROM, RCPT TO and DATA (dot-unstuffed), and keeps every message for the test to read.
//! With TLS it serves a self-signed certificate for 127.0.0.1 made when it starts, either after STARTTLS or from
//! the first byte (implicit TLS, as `smtps://`); every command is recorded with whether it came encrypted.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// One received mail.
#[derive(Debug, Clone, Default)]
pub struct Mail {
    /// Envelope sender.
    pub from: String,
    /// Envelope recipients.
    pub to: Vec<String>,
    /// The message as sent (headers and body).
    pub data: String,
    /// The AUTH line's argument, if the client logged in (base64 as sent).
    pub auth: Option<String>,
    /// Whether the whole transaction (MAIL, RCPT, DATA) came over TLS.
    pub encrypted: bool,
}

/// How the sink speaks TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkTls {
    /// Never: no STARTTLS in the EHLO answer.
    Plain,
    /// Offers STARTTLS and upgrades when asked.
    StartTls,
    /// TLS from the first byte (`smtps://`).
    Implicit,
}

/// One command the sink received: its verb and whether it came over TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// `EHLO`, `STARTTLS`, `AUTH`, `MAIL`, `RCPT`, `DATA`, ...
    pub verb: String,
    /// True when it arrived inside the TLS session.
    pub encrypted: bool,
}

#[derive(Default)]
struct Record {
    mails: Mutex<Vec<Mail>>,
    logins: Mutex<Vec<String>>,
    seen: Mutex<Vec<Seen>>,
    handshakes: Mutex<Vec<Result<(), String>>>,
}

fn push<T>(m: &Mutex<Vec<T>>, v: T) {
    m.lock().unwrap_or_else(|e| e.into_inner()).push(v);
}

fn all<T: Clone>(m: &Mutex<Vec<T>>) -> Vec<T> {
    m.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// The sink.
pub struct SmtpSink {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// The PEM of the sink's self-signed certificate (empty without TLS): what a client must trust.
    pub cert_pem: String,
    record: Arc<Record>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SmtpSink {
    /// Starts a sink without TLS.
    pub async fn start() -> Self {
        Self::start_with(SinkTls::Plain).await
    }

    /// Starts a sink speaking TLS as `tls` says, with a certificate for 127.0.0.1 and localhost made now.
    pub async fn start_with(tls: SinkTls) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let addr = listener.local_addr().expect("local addr").to_string();
        let (acceptor, cert_pem) = match tls {
            SinkTls::Plain => (None, String::new()),
            SinkTls::StartTls | SinkTls::Implicit => {
                let (a, pem) = self_signed();
                (Some(a), pem)
            }
        };
        let record = Arc::new(Record::default());
        let rec = record.clone();
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let (rec, acceptor) = (rec.clone(), acceptor.clone());
                tokio::spawn(async move {
                    let _ = session(sock, tls, acceptor, rec).await;
                });
            }
        });
        Self { addr, cert_pem, record, task }
    }

    /// AUTH arguments received, whether or not a mail followed.
    pub fn logins(&self) -> Vec<String> {
        all(&self.record.logins)
    }

    /// Mails received so far.
    pub fn mails(&self) -> Vec<Mail> {
        all(&self.record.mails)
    }

    /// Every command received, in order, with whether it came encrypted.
    pub fn seen(&self) -> Vec<Seen> {
        all(&self.record.seen)
    }

    /// The outcome of every TLS handshake the sink attempted (the client's alert, when it refused).
    pub fn handshakes(&self) -> Vec<Result<(), String>> {
        all(&self.record.handshakes)
    }
}

/// A TLS acceptor with a fresh self-signed certificate, and that certificate as PEM.
fn self_signed() -> (TlsAcceptor, String) {
    let made =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).expect("certificate");
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.signing_key.serialize_der()));
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![made.cert.der().clone()], key)
        .expect("server certificate");
    (TlsAcceptor::from(Arc::new(config)), made.cert.pem())
}

/// What the dialogue ended with.
enum End {
    /// The client quit or went away.
    Done,
    /// The client asked for STARTTLS and was told to go ahead.
    Upgrade,
}

async fn session(
    sock: tokio::net::TcpStream,
    tls: SinkTls,
    acceptor: Option<TlsAcceptor>,
    rec: Arc<Record>,
) -> std::io::Result<()> {
    match tls {
        SinkTls::Plain => {
            let mut r = BufReader::new(sock);
            reply(&mut r, b"220 sink.test ESMTP ready\r\n").await?;
            dialogue(&mut r, false, false, &rec).await.map(drop)
        }
        SinkTls::Implicit => {
            let mut r = BufReader::new(handshake(acceptor.as_ref(), &rec, sock).await?);
            reply(&mut r, b"220 sink.test ESMTP ready\r\n").await?;
            dialogue(&mut r, false, true, &rec).await.map(drop)
        }
        SinkTls::StartTls => {
            let mut r = BufReader::new(sock);
            reply(&mut r, b"220 sink.test ESMTP ready\r\n").await?;
            if let End::Upgrade = dialogue(&mut r, true, false, &rec).await? {
                // The client waits for the handshake after "220 go ahead": nothing of its is buffered yet.
                let mut r = BufReader::new(handshake(acceptor.as_ref(), &rec, r.into_inner()).await?);
                dialogue(&mut r, false, true, &rec).await?;
            }
            Ok(())
        }
    }
}

/// The server side of a TLS handshake, its outcome recorded.
async fn handshake(
    acceptor: Option<&TlsAcceptor>,
    rec: &Record,
    sock: tokio::net::TcpStream,
) -> std::io::Result<tokio_rustls::server::TlsStream<tokio::net::TcpStream>> {
    let Some(a) = acceptor else { return Err(std::io::Error::other("no TLS configured")) };
    let out = a.accept(sock).await;
    push(&rec.handshakes, out.as_ref().map(|_| ()).map_err(|e| e.to_string()));
    out
}

/// Writes one reply and flushes it (a TLS stream holds records back until flushed).
async fn reply<S: AsyncWrite + Unpin>(w: &mut S, text: &[u8]) -> std::io::Result<()> {
    w.write_all(text).await?;
    w.flush().await
}

/// The SMTP conversation on one stream; `offer_tls` adds STARTTLS to the EHLO answer, `encrypted` says what
/// the stream is.
async fn dialogue<S: AsyncRead + AsyncWrite + Unpin>(
    r: &mut BufReader<S>,
    offer_tls: bool,
    encrypted: bool,
    rec: &Record,
) -> std::io::Result<End> {
    let mut mail = Mail { encrypted, ..Default::default() };
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            return Ok(End::Done);
        }
        let cmd = line.trim_end().to_owned();
        let upper = cmd.to_ascii_uppercase();
        let verb = upper.split([' ', ':']).next().unwrap_or_default().to_owned();
        push(&rec.seen, Seen { verb, encrypted });
        if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            let tls = if offer_tls { "250-STARTTLS\r\n" } else { "" };
            let ehlo = format!("250-sink.test\r\n{tls}250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n");
            reply(r, ehlo.as_bytes()).await?;
        } else if upper == "STARTTLS" && offer_tls {
            reply(r, b"220 2.0.0 Ready to start TLS\r\n").await?;
            return Ok(End::Upgrade);
        } else if upper.starts_with("AUTH") {
            mail.auth = Some(cmd[4..].trim().to_owned());
            push(&rec.logins, cmd[4..].trim().to_owned());
            reply(r, b"235 2.7.0 Authentication successful\r\n").await?;
        } else if upper.starts_with("MAIL FROM:") {
            mail.from = cmd[10..].trim().trim_matches(['<', '>']).to_owned();
            reply(r, b"250 OK\r\n").await?;
        } else if upper.starts_with("RCPT TO:") {
            mail.to.push(cmd[8..].trim().trim_matches(['<', '>']).to_owned());
            reply(r, b"250 OK\r\n").await?;
        } else if upper == "DATA" {
            reply(r, b"354 End data with <CR><LF>.<CR><LF>\r\n").await?;
            let mut data = String::new();
            loop {
                line.clear();
                if r.read_line(&mut line).await? == 0 {
                    return Ok(End::Done);
                }
                if line == ".\r\n" || line == ".\n" {
                    break;
                }
                data.push_str(line.strip_prefix('.').filter(|_| line.starts_with("..")).unwrap_or(&line));
            }
            mail.data = data;
            push(&rec.mails, std::mem::replace(&mut mail, Mail { encrypted, ..Default::default() }));
            reply(r, b"250 OK queued\r\n").await?;
        } else if upper == "RSET" || upper == "NOOP" {
            reply(r, b"250 OK\r\n").await?;
        } else if upper == "QUIT" {
            reply(r, b"221 Bye\r\n").await?;
            return Ok(End::Done);
        } else {
            reply(r, b"502 Command not implemented\r\n").await?;
        }
    }
}
