//! Running the real `mcbot` binary the way a user does: in a scratch directory holding a copy of the shipped
//! config, with a clean environment plus the overrides a test names.

// Shared by several test modules; not every helper is used by each.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// A working directory holding a copy of every shipped config file (so `./data` lands in a temp dir).
pub fn workdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config");
    std::fs::create_dir(&cfg).unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    for entry in std::fs::read_dir(&shipped).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            std::fs::copy(&path, cfg.join(path.file_name().unwrap())).unwrap();
        }
    }
    dir
}

/// `mcbot args` in `dir` with no inherited `MCBOT_*`, `DATABASE_URL` or `SENTRY_DSN`, warnings logged, the
/// admin server on a port the OS picks (tests run side by side), then `env` set.
pub fn command(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mcbot"));
    cmd.current_dir(dir).args(args).env_remove("DATABASE_URL").env("RUST_LOG", "warn");
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("MCBOT_") || k.starts_with("SENTRY_")) {
        cmd.env_remove(k);
    }
    cmd.env("MCBOT_HTTP__LISTEN", "127.0.0.1:0");
    cmd.envs(env.iter().copied());
    cmd
}

/// Runs [`command`] to completion.
pub fn mcbot(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    command(dir, args, env).output().unwrap()
}

/// The JSON on stdout, or a panic showing both streams.
pub fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("not JSON ({e}): {}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    })
}

/// `mcbot [profile args] run-once --stage all --mode paper --output json` off the async runtime (the fake venue
/// keeps serving meanwhile): exit 0 and the four stages in order are checked; the cycle report is returned.
pub async fn paper_run_once(profile: &'static [&'static str], env: Vec<(&'static str, String)>) -> serde_json::Value {
    let run = move || {
        let dir = workdir();
        let mut args = profile.to_vec();
        args.extend(["run-once", "--stage", "all", "--mode", "paper", "--output", "json"]);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        mcbot(dir.path(), &args, &env)
    };
    let out = tokio::task::spawn_blocking(run).await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc = json(&out);
    let stages: Vec<_> =
        doc["stages"].as_array().unwrap().iter().map(|s| s["stage"].as_str().unwrap().to_owned()).collect();
    assert_eq!(stages, ["risk_check", "data_collection", "analysis", "execution"], "{doc}");
    doc
}
