//! Resident memory of an idle `mcbot scheduler` as shipped: the built binary in mode mock with the shipped
//! config, a fresh data directory, the admin server and `/metrics` on, and Sentry on (its DSN points at a
//! loopback listener that accepts whatever is sent). Once the first trading cycle has run and the process has
//! settled, `VmRSS` and `VmHWM` are read from `/proc`. Target: under 40 MB resident while idle.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TARGET_MB: f64 = 40.0;
/// How long the process is left alone after its first cycle before it is measured.
const SETTLE: Duration = Duration::from_secs(5);

/// A copy of the shipped config in a scratch directory, so `./data` lands there.
fn workdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("config");
    std::fs::create_dir(&cfg).expect("config dir");
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    for entry in std::fs::read_dir(&shipped).expect("shipped config").flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "toml")
            && let Some(name) = path.file_name()
        {
            std::fs::copy(&path, cfg.join(name)).expect("copy config");
        }
    }
    dir
}

/// A Sentry endpoint that accepts every envelope and answers 200, so the client never retries or backs off.
fn sentry_sink() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("sentry sink");
    let addr = listener.local_addr().expect("sink address");
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let _ = conn.set_read_timeout(Some(Duration::from_millis(200)));
            let mut buf = [0u8; 8192];
            while matches!(conn.read(&mut buf), Ok(n) if n > 0) {}
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}");
        }
    });
    format!("http://0123456789abcdef@{addr}/1")
}

/// `GET path` over loopback; the body, or empty when the server does not answer.
fn get(addr: &str, path: &str) -> String {
    let Ok(mut conn) = TcpStream::connect(addr) else { return String::new() };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(conn, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let mut text = String::new();
    let _ = conn.read_to_string(&mut text);
    text.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default()
}

/// A `kB` line of `/proc/<pid>/status`, in MB.
fn status_mb(status: &str, key: &str) -> Option<f64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn main() {
    let dir = workdir();
    let dsn = sentry_sink();
    let sim_start = (chrono::Utc::now() - chrono::Duration::days(1)).format("%Y-%m-%dT00:00:00Z").to_string();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mcbot"));
    cmd.current_dir(dir.path()).args(["scheduler", "--mode", "mock"]).env_remove("DATABASE_URL");
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("MCBOT_") || k.starts_with("SENTRY_")) {
        cmd.env_remove(k);
    }
    cmd.env("RUST_LOG", "warn")
        .env("MCBOT_HTTP__LISTEN", "127.0.0.1:0")
        .env("SENTRY_DSN", &dsn)
        // One-minute bars: the first cycle comes within a minute whatever the time of day. The simulated market
        // starts a day ago, as a bot's history would: the random walk keeps every close since its start (8 bytes
        // a bar and symbol), which from the shipped start date in 1m bars would be 30 MB of its own.
        .env("MCBOT_MARKET__TIMEFRAME", "1m")
        .env("MCBOT_SIM__START", &sim_start)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().expect("mcbot scheduler");
    let pid = child.id();
    let stdout = child.stdout.take().expect("stdout");
    let line = BufReader::new(stdout).lines().map_while(Result::ok).next().unwrap_or_default();
    let addr = line
        .split("metrics http://")
        .nth(1)
        .and_then(|rest| rest.split("/metrics").next())
        .unwrap_or_else(|| panic!("no metrics address in the start-up line {line:?}"))
        .to_owned();
    let started = Instant::now();
    let cycled = "mcbot_job_runs_total{job=\"trading-cycle\",outcome=\"succeeded\"}";
    loop {
        let body = get(&addr, "/metrics");
        let done = body.lines().any(|l| l.starts_with(cycled) && !l.ends_with(" 0"));
        if done {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(180), "no trading cycle within 3 minutes:\n{body}");
        std::thread::sleep(Duration::from_millis(250));
    }
    let first_cycle = started.elapsed();
    std::thread::sleep(SETTLE);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status_mb(&status, "VmRSS:").unwrap_or(f64::NAN);
    let hwm = status_mb(&status, "VmHWM:").unwrap_or(f64::NAN);
    let threads = status.lines().find_map(|l| l.strip_prefix("Threads:")).map(str::trim).unwrap_or("?").to_owned();
    let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    let exit = child.wait().expect("scheduler exit");
    println!(
        "scheduler idle after its first cycle ({:.1} s after start, then {} s idle; mode mock, metrics and Sentry \
         on): VmRSS {rss:.1} MB, VmHWM {hwm:.1} MB, {threads} threads; target {TARGET_MB} MB; ratio target/actual \
         = {:.2}x; exit {:?}",
        first_cycle.as_secs_f64(),
        SETTLE.as_secs(),
        TARGET_MB / rss,
        exit.code()
    );
}
