//! The binary as a careful operator misuses it: bad settings, secrets that look like numbers, closed pipes,
//! concurrent first starts, two schedulers on one file. Each test runs the real `mcbot`.

use std::path::Path;

use crate::support::cli::{mcbot, workdir};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_secret_that_looks_like_a_number_is_read_as_text_and_never_echoed() {
    let dir = workdir();
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, "0x1F\n").unwrap();
    let file = secret_file.display().to_string();
    for env in [
        vec![("MCBOT_EXCHANGE__BINANCE__API_SECRET", "98765432109876")],
        vec![("MCBOT_EXCHANGE__UPBIT__SECRET_KEY", "true")],
        vec![("MCBOT_EXCHANGE__BINANCE__API_KEY_FILE", file.as_str())],
    ] {
        let out = mcbot(dir.path(), &["jobs"], &env);
        assert_eq!(out.status.code(), Some(0), "{env:?}: {}", stderr(&out));
        let mut with_error = env.clone();
        with_error.push(("MCBOT_RISK__STOP_LOSS_PCT", "-8"));
        let out = mcbot(dir.path(), &["jobs"], &with_error);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("config key risk.stop_loss_pct: must be in (0, 100], got -8"), "{err}");
        for secret in ["98765432109876", "0x1F", "31"] {
            assert!(!err.contains(secret), "{secret} echoed: {err}");
        }
    }
    // A database URL is a secret too: a wrong one is refused without being shown.
    let out = mcbot(dir.path(), &["jobs"], &[("MCBOT_DATABASE__URL", "98765432109876")]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("database.url") && !stderr(&out).contains("98765432109876"), "{}", stderr(&out));
}

#[test]
fn an_out_of_range_setting_stops_the_bot_at_start_with_file_and_line() {
    let dir = workdir();
    let path = dir.path().join("config/default.toml");
    let text = std::fs::read_to_string(&path).unwrap().replace("stop_loss_pct = \"8\"", "stop_loss_pct = \"-8\"");
    std::fs::write(&path, &text).unwrap();
    let line = text.lines().position(|l| l.starts_with("stop_loss_pct")).unwrap() + 1;
    let out = mcbot(dir.path(), &["run-once"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "config key risk.stop_loss_pct: must be in (0, 100], got -8 (config/default.toml, line {line})"
        )),
        "{err}"
    );
    assert!(!dir.path().join("data").exists(), "nothing opened before the config is valid");
    // A strategy parameter is judged by the strategy when the bot is assembled: also exit 2.
    std::fs::write(&path, text.replace("stop_loss_pct = \"-8\"", "stop_loss_pct = \"8\"")).unwrap();
    let out = mcbot(dir.path(), &["jobs"], &[("MCBOT_STRATEGY__PARAMS__LOOKBACK", "0")]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("strategy"), "{}", stderr(&out));
}

#[test]
fn config_keys_prints_the_list_the_readme_shows_and_config_check_validates() {
    let dir = workdir();
    let out = mcbot(dir.path(), &["config", "keys"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    assert!(readme.contains(&printed), "README.md's key list is not what `mcbot config keys` prints");
    assert!(printed.contains("| `risk.stop_loss_pct` | decimal string | (0, 100] | `\"8\"` |"), "{printed}");
    assert_eq!(mcbot(dir.path(), &["config", "check"], &[]).status.code(), Some(0));
    let out = mcbot(dir.path(), &["config", "check"], &[("MCBOT_LOG__LEVEL", "verbose")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("config key log.level"), "{}", stderr(&out));
}

/// Runs `mcbot args` with stdout connected to a pipe whose reader has already gone, as in `mcbot ... | head -1`
/// once head has exited.
fn with_closed_stdout(dir: &Path, args: &[&str]) -> std::process::Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut cmd = crate::support::cli::command(dir, args, &[]);
    cmd.stdout(writer).stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    drop(cmd);
    child.wait_with_output().unwrap()
}

#[test]
fn a_closed_stdout_ends_every_command_quietly() {
    let dir = workdir();
    let candles = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/backtest/BTC_USD-1h.csv");
    let candles = candles.display().to_string();
    let backtest =
        ["backtest", "--data", &candles, "--strategy", "sma-cross", "--param", "fast=10", "--param", "slow=30"];
    let commands: [&[&str]; 6] = [
        &["jobs"],
        &["config", "keys"],
        &["run-once", "--output", "json"],
        &["status"],
        &backtest,
        &["jobs", "--output", "json"],
    ];
    for args in commands {
        let out = with_closed_stdout(dir.path(), args);
        let err = stderr(&out);
        assert!(!err.contains("panicked") && !err.contains("Broken pipe"), "{args:?}: {err}");
        assert!(matches!(out.status.code(), Some(0) | Some(141)), "{args:?}: {:?} {err}", out.status);
    }
}

#[test]
fn mcbot_output_json_selects_json_and_errors_are_json_too() {
    let dir = workdir();
    let out = mcbot(dir.path(), &["jobs"], &[("MCBOT_OUTPUT", "json")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let doc = crate::support::cli::json(&out);
    assert_eq!(doc.as_array().map(Vec::len), Some(6), "{doc}");
    let out = mcbot(dir.path(), &["jobs", "--output", "json"], &[("MCBOT_RISK__STOP_LOSS_PCT", "-8")]);
    assert_eq!(out.status.code(), Some(2));
    let doc = crate::support::cli::json(&out);
    assert_eq!(doc["exit_code"], 2, "{doc}");
    assert!(doc["error"].as_str().unwrap().contains("config key risk.stop_loss_pct"), "{doc}");
}

#[test]
fn scheduler_logs_are_plain_text_without_the_cron_library_chatter() {
    use std::io::{BufRead, BufReader};
    let dir = workdir();
    let mut child = crate::support::cli::command(dir.path(), &["scheduler"], &[("RUST_LOG", "info")])
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let ready = line.contains("scheduled") && line.contains("report-monthly");
        seen.push(line);
        if ready {
            break;
        }
    }
    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    seen.extend(lines.map_while(Result::ok));
    assert_eq!(child.wait().unwrap().code(), Some(0), "{seen:?}");
    let all = seen.join("\n");
    assert!(all.contains("report-monthly"), "{all}");
    assert!(!all.contains('\u{1b}'), "colour codes in a log that is not a terminal: {all:?}");
    assert!(!all.contains("Job creator created") && !all.contains("Uninited"), "{all}");
}
