//! `mcbot health`: asks a running scheduler's admin server whether it is alive (`/healthz`) or ready
//! (`/readyz`). The slim container image has no curl, so Docker's `HEALTHCHECK` and Kubernetes' exec probes call
//! the binary itself: `mcbot health --probe` prints nothing when healthy and exits 0, else says why on stderr
//! and exits 1 (Docker reserves 2, so a probe never exits 2, not even on a bad configuration).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// `health` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct HealthArgs {
    /// Probe mode for Docker/Kubernetes: silent when healthy; every failure exits 1.
    #[arg(long)]
    pub probe: bool,
    /// Ask `/readyz` (database, market data, not halted) instead of `/healthz` (the process answers).
    #[arg(long)]
    pub ready: bool,
    /// The admin server's address; default: `http.listen` from the configuration (a wildcard address such as
    /// 0.0.0.0 is asked on loopback).
    #[arg(long, value_name = "IP:PORT")]
    pub addr: Option<SocketAddr>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub timeout: u64,
}

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    /// The admin server is off, so there is nothing to ask.
    #[error("http.listen is empty: the admin server is off, so there is nothing to probe (set http.listen)")]
    Off,
    /// The configuration does not load, so the listen address is unknown.
    #[error("configuration: {0}")]
    Config(String),
    /// `http.listen` is not an address.
    #[error("http.listen {0:?} is not ip:port")]
    BadListen(String),
    /// No answer, or not an HTTP one.
    #[error("{url}: no answer: {message}")]
    Unreachable {
        /// What was asked.
        url: String,
        /// Why.
        message: String,
    },
    /// An answer other than 200.
    #[error("{url}: HTTP {status}: {body}")]
    Unhealthy {
        /// What was asked.
        url: String,
        /// Status code.
        status: u16,
        /// The first part of the body (the readiness checks).
        body: String,
    },
}

/// The address to ask for a server listening on `listen`: a wildcard bind is reached on loopback.
pub fn probe_addr(listen: &str) -> Result<SocketAddr, HealthError> {
    let listen = listen.trim();
    if listen.is_empty() {
        return Err(HealthError::Off);
    }
    let mut addr: SocketAddr = listen.parse().map_err(|_| HealthError::BadListen(listen.to_owned()))?;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    Ok(addr)
}

/// GETs `/healthz` (or `/readyz`) on `addr`; `Ok(body)` on HTTP 200.
pub async fn check(addr: SocketAddr, ready: bool, timeout: Duration) -> Result<String, HealthError> {
    let url = format!("http://{addr}/{}", if ready { "readyz" } else { "healthz" });
    let unreachable = |e: reqwest::Error| HealthError::Unreachable { url: url.clone(), message: e.to_string() };
    let client = reqwest::Client::builder().timeout(timeout).no_proxy().build().map_err(unreachable)?;
    let resp = client.get(&url).send().await.map_err(unreachable)?;
    let status = resp.status().as_u16();
    let body = resp.text().await.map_err(unreachable)?;
    if status != 200 {
        let body: String = body.trim().chars().take(500).collect();
        return Err(HealthError::Unhealthy { url, status, body });
    }
    Ok(body)
}

/// Runs the command: 0 when the server answered 200, else 1 (after saying why on stderr).
pub async fn run(listen: Result<String, String>, args: &HealthArgs, json: bool) -> u8 {
    let result = async {
        let addr = match args.addr {
            Some(a) => a,
            None => probe_addr(&listen.map_err(HealthError::Config)?)?,
        };
        check(addr, args.ready, Duration::from_secs(args.timeout)).await.map(|body| (addr, body))
    }
    .await;
    match result {
        Ok((addr, body)) => {
            if !args.probe && json {
                println!("{}", serde_json::json!({ "healthy": true, "addr": addr.to_string(), "body": body.trim() }));
            } else if !args.probe {
                println!("{addr}: {}", body.trim());
            }
            0
        }
        Err(e) => {
            eprintln!("unhealthy: {e}");
            if json && !args.probe {
                println!("{}", serde_json::json!({ "healthy": false, "error": e.to_string() }));
            }
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_listen_addresses_are_probed_on_loopback() {
        assert_eq!(probe_addr("0.0.0.0:9184").unwrap().to_string(), "127.0.0.1:9184");
        assert_eq!(probe_addr("[::]:9184").unwrap().to_string(), "[::1]:9184");
        assert_eq!(probe_addr(" 10.0.0.5:80 ").unwrap().to_string(), "10.0.0.5:80");
        assert!(matches!(probe_addr(""), Err(HealthError::Off)));
        assert!(matches!(probe_addr("localhost:1"), Err(HealthError::BadListen(_))));
    }
}
