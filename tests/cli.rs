//! The `mcbot` binary as a user runs it: exit codes, output, exactly-once across invocations, on both stores.

use std::path::Path;
use std::process::{Command, Output};

use crate::support;
use crate::support::cli::{json, workdir};
use crate::support::db::fresh_pg_url;

fn mcbot(dir: &Path, args: &[&str], db: Option<&str>) -> Output {
    match db {
        Some(url) => support::cli::mcbot(dir, args, &[("DATABASE_URL", url)]),
        None => support::cli::mcbot(dir, args, &[]),
    }
}

fn run_once_twice(db: Option<&str>) {
    let dir = workdir();
    let first = mcbot(dir.path(), &["run-once", "--stage", "all", "--output", "json"], db);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let a = json(&first);
    let stages: Vec<_> =
        a["stages"].as_array().unwrap().iter().map(|s| s["stage"].as_str().unwrap().to_owned()).collect();
    assert_eq!(stages, ["risk_check", "data_collection", "analysis", "execution"]);
    let placed = a["orders"].as_array().unwrap().len();
    assert!(placed > 0, "a fresh account with 8 symbols buys the ones with positive momentum: {a}");

    let second = mcbot(dir.path(), &["run-once", "--stage", "all", "--output", "json"], db);
    assert!(second.status.success());
    let b = json(&second);
    if b["run_id"] == a["run_id"] {
        assert_eq!(b["already_processed"], true);
        assert_eq!(b["orders"].as_array().unwrap().len(), 0, "nothing placed the second time");
        assert_eq!(b["previously_placed"].as_array().unwrap().len(), placed);
    } // else the wall clock crossed an hour between the calls: a new bar, legitimately traded.

    let status = mcbot(dir.path(), &["status", "--output", "json"], db);
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let s = json(&status);
    assert_eq!(s["safe_mode"], false);
    assert!(!s["positions"].as_array().unwrap().is_empty());
    let text = mcbot(dir.path(), &["status"], db);
    assert!(String::from_utf8_lossy(&text.stdout).contains("trading-cycle"));
    if db.is_none() {
        assert!(dir.path().join("data/mcbot.db").exists(), "the embedded default is a file under ./data");
    }
}

#[test]
fn run_once_twice_places_nothing_the_second_time_sqlite() {
    run_once_twice(None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_once_twice_places_nothing_the_second_time_postgres() {
    let db = fresh_pg_url().await;
    let url = db.url().to_owned();
    tokio::task::spawn_blocking(move || run_once_twice(Some(&url))).await.unwrap();
}

#[test]
fn jobs_lists_the_six_jobs() {
    let dir = workdir();
    let out = mcbot(dir.path(), &["jobs", "--output", "json"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let names: Vec<_> = json(&out).as_array().unwrap().iter().map(|j| j["name"].as_str().unwrap().to_owned()).collect();
    assert_eq!(names, ["trading-cycle", "health", "reconcile", "report-daily", "report-weekly", "report-monthly"]);
    let text = String::from_utf8_lossy(&mcbot(dir.path(), &["jobs"], None).stdout).to_string();
    assert!(text.contains("5 0 */1 * * *"), "{text}");
}

#[test]
fn a_bad_config_key_exits_2_naming_file_line_and_key() {
    let dir = workdir();
    let path = dir.path().join("config/default.toml");
    let text = std::fs::read_to_string(&path).unwrap().replace("max_drawdown_pct", "max_drawdown_percent");
    std::fs::write(&path, text).unwrap();
    let out = mcbot(dir.path(), &["run-once"], None);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("default.toml") && err.contains("max_drawdown_percent") && err.contains("line"), "{err}");
    assert!(!dir.path().join("data").exists(), "nothing opened before the config is valid");
}

#[test]
fn usage_errors_exit_2() {
    let dir = workdir();
    assert_eq!(mcbot(dir.path(), &["run-once", "--stage", "everything"], None).status.code(), Some(2));
    assert_eq!(mcbot(dir.path(), &["frobnicate"], None).status.code(), Some(2));
    let out = mcbot(dir.path(), &["status"], Some("mysql://nope"));
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn env_override_of_an_unknown_key_exits_2_naming_the_variable() {
    let dir = workdir();
    let out = Command::new(env!("CARGO_BIN_EXE_mcbot"))
        .current_dir(dir.path())
        .args(["jobs"])
        .env_remove("DATABASE_URL")
        .env("MCBOT_RISK__NO_SUCH_LIMIT", "3")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("MCBOT_RISK__NO_SUCH_LIMIT"));
}

#[test]
fn single_stages_run_in_order_through_the_store() {
    let dir = workdir();
    for stage in ["risk", "data", "analysis", "execution"] {
        let out = mcbot(dir.path(), &["run-once", "--stage", stage, "--output", "json"], None);
        assert!(out.status.success(), "{stage}: {}", String::from_utf8_lossy(&out.stderr));
        let doc = json(&out);
        if stage == "analysis" {
            assert_eq!(doc["targets"].as_array().unwrap().len(), 8, "analysis reads the candles the data stage stored");
        }
        if stage == "execution" {
            assert!(!doc["orders"].as_array().unwrap().is_empty(), "execution acts on the recorded decision: {doc}");
        }
    }
}

#[test]
fn scheduler_stops_cleanly_on_sigterm() {
    use std::io::{BufRead, BufReader};
    let dir = workdir();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mcbot"))
        .current_dir(dir.path())
        .args(["scheduler", "--log-format", "json"])
        .env_remove("DATABASE_URL")
        .env("MCBOT_HTTP__LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    // Wait until the runtime has scheduled its jobs (the log says so), then ask it to stop.
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let ready = line.contains("\"scheduled\"") && line.contains("report-monthly");
        seen.push(line);
        if ready {
            break;
        }
    }
    assert!(seen.iter().any(|l| l.contains("trading-cycle")), "{seen:?}");
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{rest:?}");
    assert!(rest.iter().any(|l| l.contains("shutdown requested")), "{rest:?}");
}
