//! The binary as a careful operator misuses it: bad settings, secrets that look like numbers, closed pipes,
//! concurrent first starts, two schedulers on one file. Each test runs the real `mcbot`.

use std::path::Path;

use crate::support::cli::{json, mcbot, workdir};

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
    assert!(stderr(&out).contains("strategy") && stderr(&out).contains("lookback"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("LOOKBACK"), "the parameter is named as the strategy knows it: {}", stderr(&out));
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
    // An argument clap refuses is reported the same way.
    let out = mcbot(dir.path(), &["run-once", "--stage", "sideways", "--output", "json"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let doc = crate::support::cli::json(&out);
    assert_eq!(doc["exit_code"], 2, "{doc}");
    assert!(doc["error"].as_str().unwrap().contains("sideways"), "{doc}");
}

#[test]
fn scheduler_logs_are_plain_text_without_the_cron_library_chatter() {
    use std::io::{BufRead, BufReader};
    let dir = workdir();
    let mut child = crate::support::cli::command(dir.path(), &["scheduler"], &[("RUST_LOG", "info")])
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
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
    assert!(!all.contains("Some("), "times are printed as times: {all}");
    let mut printed = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut printed).unwrap();
    for part in [
        "mcbot scheduler: mode mock, simulated exchange, 1h on BTCUSDT ETHUSDT",
        "database sqlite data/mcbot.db",
        "next trading cycle ",
        "Ctrl-C or SIGTERM stops it",
    ] {
        assert!(printed.contains(part), "{part:?} not in the start-up line: {printed}");
    }
}

#[test]
fn eight_concurrent_first_starts_on_a_fresh_sqlite_file_all_succeed() {
    for _trial in 0..3 {
        let dir = workdir();
        let children: Vec<_> = (0..8)
            .map(|i| {
                let args: &[&str] = if i % 2 == 0 { &["migrate"] } else { &["jobs"] };
                crate::support::cli::command(dir.path(), args, &[])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "{}", stderr(&out));
        }
    }
}

/// A running scheduler and everything it has logged so far (its stderr is drained by a thread).
struct Running {
    child: std::process::Child,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

/// Starts `mcbot scheduler` and waits until it has scheduled its jobs.
fn start_scheduler(dir: &Path, env: &[(&str, &str)]) -> Running {
    use std::io::{BufRead, BufReader};
    let mut env = env.to_vec();
    env.push(("RUST_LOG", "info"));
    let mut child = crate::support::cli::command(dir, &["scheduler"], &env)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if line.contains("scheduled") && line.contains("report-monthly") {
                let _ = ready_tx.send(());
            }
            sink.lock().unwrap().push(line);
        }
    });
    if ready_rx.recv_timeout(std::time::Duration::from_secs(60)).is_err() {
        panic!("the scheduler did not start: {:?}", log.lock().unwrap());
    }
    Running { child, log }
}

fn stop(mut running: Running) {
    let pid = running.child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let code = running.child.wait().unwrap().code();
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(code, Some(0), "{:?}", running.log.lock().unwrap());
}

#[test]
fn a_second_scheduler_on_one_sqlite_file_exits_2_naming_the_first() {
    let dir = workdir();
    let first = start_scheduler(dir.path(), &[]);
    let out = mcbot(dir.path(), &["scheduler"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let want = format!("another mcbot scheduler (pid {}) holds data/mcbot.db", first.child.id());
    assert!(stderr(&out).contains(&want), "{}", stderr(&out));
    // Other commands still work beside it.
    assert_eq!(mcbot(dir.path(), &["status"], &[]).status.code(), Some(0));
    stop(first);
    // Once the owner is gone (cleanly or not), the next scheduler starts.
    let mut second = start_scheduler(dir.path(), &[]);
    second.child.kill().unwrap();
    second.child.wait().unwrap();
    stop(start_scheduler(dir.path(), &[]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replicas_may_run_side_by_side() {
    let db = crate::support::db::fresh_pg_url().await;
    let url = db.url().to_owned();
    tokio::task::spawn_blocking(move || {
        let (a, b) = (workdir(), workdir());
        let first = start_scheduler(a.path(), &[("DATABASE_URL", &url)]);
        let second = start_scheduler(b.path(), &[("DATABASE_URL", &url)]);
        stop(second);
        stop(first);
    })
    .await
    .unwrap();
}

#[cfg(unix)]
fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn the_database_file_alone_holds_everything_after_a_command_and_backup_copies_it() {
    let dir = workdir();
    let out = mcbot(dir.path(), &["run-once", "--output", "json"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let db = dir.path().join("data/mcbot.db");
    #[cfg(unix)]
    assert_eq!(mode_of(&db), 0o600, "the database is readable by its owner only");
    let status = |url: &str| {
        let out = mcbot(dir.path(), &["status", "--output", "json"], &[("DATABASE_URL", url)]);
        assert!(out.status.success(), "{url}: {}", stderr(&out));
        crate::support::cli::json(&out)["positions"].clone()
    };
    let original = status("sqlite://data/mcbot.db");
    assert!(!original.as_array().unwrap().is_empty(), "{original}");
    // The write-ahead log was checkpointed at exit: a plain copy of the file is complete.
    std::fs::copy(&db, dir.path().join("copy.db")).unwrap();
    assert_eq!(status("sqlite://copy.db"), original);

    let out = mcbot(dir.path(), &["backup", "backup.db"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    #[cfg(unix)]
    assert_eq!(mode_of(&dir.path().join("backup.db")), 0o600);
    assert_eq!(status("sqlite://backup.db"), original);
    let again = mcbot(dir.path(), &["backup", "backup.db"], &[]);
    assert_eq!(again.status.code(), Some(2), "an existing file is never overwritten");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_on_postgres_points_at_pg_dump() {
    let db = crate::support::db::fresh_pg_url().await;
    let url = db.url().to_owned();
    let out =
        tokio::task::spawn_blocking(move || mcbot(workdir().path(), &["backup", "x.dump"], &[("DATABASE_URL", &url)]))
            .await
            .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("pg_dump"), "{}", stderr(&out));
}

#[test]
fn database_errors_name_their_cause() {
    let dir = workdir();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/mcbot.db"), "this is a text file, not a database\n").unwrap();
    let started = std::time::Instant::now();
    let out = mcbot(dir.path(), &["status"], &[]);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("data/mcbot.db is not an SQLite database"), "{}", stderr(&out));
    assert!(started.elapsed() < std::time::Duration::from_secs(3), "no pool time-out: {:?}", started.elapsed());

    // A URL without mode=rwc still creates its file; an in-memory database gets its schema.
    let out = mcbot(dir.path(), &["jobs"], &[("DATABASE_URL", "sqlite://new.db")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(dir.path().join("new.db").exists());
    let out = mcbot(dir.path(), &["run-once", "--output", "json"], &[("DATABASE_URL", "sqlite::memory:")]);
    assert!(out.status.success(), "{}", stderr(&out));

    // An unknown scheme is a usage error that shows the scheme only.
    let out = mcbot(dir.path(), &["status"], &[("DATABASE_URL", "mysql://admin:hunter2@db/x")]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("\"mysql\"") && !stderr(&out).contains("hunter2"), "{}", stderr(&out));
}

#[test]
fn bad_candle_files_exit_2_naming_file_and_row_in_backtest_and_import_alike() {
    let dir = workdir();
    let header_only = dir.path().join("empty.csv");
    std::fs::write(&header_only, "timestamp,open,high,low,close,volume\n").unwrap();
    let bad_row = dir.path().join("bad.csv");
    std::fs::write(
        &bad_row,
        "timestamp,open,high,low,close,volume\n2026-01-01T00:00:00Z,1,2,0.5,1.5,10\n2026-01-01T01:00:00Z,1,x,0.5,1.5,10\n",
    )
    .unwrap();
    for (file, says) in [(&header_only, "no candles"), (&bad_row, "3")] {
        let f = file.display().to_string();
        let backtest = mcbot(dir.path(), &["backtest", "--data", &f, "--strategy", "sma-cross"], &[]);
        let import = mcbot(dir.path(), &["data", "import", &f, "--symbol", "BTCUSDT", "--timeframe", "1h"], &[]);
        for (what, out) in [("backtest", backtest), ("import", import)] {
            assert_eq!(out.status.code(), Some(2), "{what} {f}: {}", stderr(&out));
            assert!(stderr(&out).contains(file.file_name().unwrap().to_str().unwrap()), "{what}: {}", stderr(&out));
            assert!(stderr(&out).contains(says), "{what} {f}: {}", stderr(&out));
        }
    }
}

#[test]
fn a_backtest_shorter_than_the_warm_up_is_refused_not_reported_as_zero() {
    let dir = workdir();
    let short = dir.path().join("short.csv");
    let mut text = String::from("timestamp,open,high,low,close,volume\n");
    for h in 0..20 {
        text.push_str(&format!("2026-01-01T{h:02}:00:00Z,100,101,99,100.5,10\n"));
    }
    std::fs::write(&short, text).unwrap();
    let f = short.display().to_string();
    let args = ["backtest", "--data", &f, "--strategy", "sma-cross", "--param", "fast=10", "--param", "slow=30"];
    let out = mcbot(dir.path(), &args, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("20 bars") && stderr(&out).contains("warm-up"), "{}", stderr(&out));
    let sweep = ["backtest", "--data", &f, "--strategy", "sma-cross", "--param", "fast=10", "--sweep", "slow=25,30,35"];
    let out = mcbot(dir.path(), &sweep, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let validate =
        ["validate", "--data", &f, "--strategy", "sma-cross", "--method", "is-oos", "--sweep", "slow=25,30,35"];
    let out = mcbot(dir.path(), &validate, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("warm-up"), "{}", stderr(&out));
}

#[test]
fn status_in_an_empty_directory_creates_no_database() {
    let dir = workdir();
    let out = mcbot(dir.path(), &["status"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("no database"), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(!dir.path().join("data/mcbot.db").exists());
}

#[test]
fn validate_exits_1_when_its_verdict_is_fail() {
    let dir = workdir();
    let csv = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/backtest/BTC_USD-1h.csv");
    let csv = csv.display().to_string();
    let base =
        ["validate", "--data", &csv, "--sweep", "fast=5..25:10", "--sweep", "slow=40..120:40", "--method", "is-oos"];
    let mut failing = base.to_vec();
    failing.extend(["--min-dsr", "1000", "--output", "json"]);
    let out = mcbot(dir.path(), &failing, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let doc = crate::support::cli::json(&out);
    assert_eq!(doc["verdict"]["overall"], "fail", "one JSON document, the report: {doc}");
    let mut lenient = base.to_vec();
    lenient.extend([
        "--min-dsr=-1000",
        "--max-degradation=1000",
        "--max-pbo=1",
        "--min-oos-sharpe=-1000",
        "--min-consistency=0",
        "--output=json",
    ]);
    let out = mcbot(dir.path(), &lenient, &[]);
    let doc = crate::support::cli::json(&out);
    assert_ne!(doc["verdict"]["overall"], "fail", "every threshold loosened: {doc}");
    assert_eq!(out.status.code(), Some(0), "{doc}");
}

#[test]
fn status_shows_quote_totals_to_the_cent_and_breakers_by_name() {
    let dir = workdir();
    assert!(mcbot(dir.path(), &["run-once"], &[]).status.success());
    let out = mcbot(dir.path(), &["status"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let value_of = |label: &str| -> String {
        let line = text.lines().find(|l| l.contains(label)).unwrap_or_else(|| panic!("{label} missing: {text}"));
        line.split('┆').nth(1).unwrap().trim().trim_end_matches('│').trim().to_owned()
    };
    for label in ["equity ", "cash ", "peak equity"] {
        let v = value_of(label);
        let decimals = v.split_once('.').map_or(0, |(_, d)| d.len());
        assert!(decimals <= 2, "{label}: {v}");
    }
    assert_eq!(value_of("breakers tripped"), "none", "{text}");
}

/// One database holds one mode's book: after a mock run, shadow refuses it (its orders would read as already
/// placed) naming the owner and the way out, status says whose book it shows, and `--adopt-book` hands it over.
#[test]
fn a_database_keeps_one_modes_book_and_another_mode_is_refused_until_it_adopts_it() {
    let dir = workdir();
    let out = mcbot(dir.path(), &["run-once", "--stage", "all"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Nothing listens on port 9: a shadow run that got past the book check would fail on the venue instead.
    let venue = [("MCBOT_EXCHANGE__BINANCE__REST_URL", "http://127.0.0.1:9")];
    let out = mcbot(dir.path(), &["--mode", "shadow", "run-once", "--stage", "all"], &venue);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("holds the book of mode mock on sim") && err.contains("--adopt-book"), "{err}");

    let status = json(&mcbot(dir.path(), &["--mode", "shadow", "status", "--output", "json"], &venue));
    assert_eq!((status["book"]["mode"].as_str(), status["book_is_this_mode"].as_bool()), (Some("mock"), Some(false)));
    let text = mcbot(dir.path(), &["--mode", "shadow", "status"], &venue);
    assert!(String::from_utf8_lossy(&text.stdout).contains("not this mode's"), "{text:?}");

    let out = mcbot(dir.path(), &["--mode", "shadow", "--adopt-book", "run-once", "--stage", "all"], &venue);
    assert!(!stderr(&out).contains("holds the book"), "{}", stderr(&out));
    let status = json(&mcbot(dir.path(), &["--mode", "shadow", "status", "--output", "json"], &venue));
    assert_eq!((status["book"]["mode"].as_str(), status["book_is_this_mode"].as_bool()), (Some("shadow"), Some(true)));
    // And now mock is the stranger.
    let out = mcbot(dir.path(), &["run-once", "--stage", "all"], &[]);
    assert!(stderr(&out).contains("holds the book of mode shadow on binance"), "{}", stderr(&out));
}

/// The shipped replay example works as a demo: the replayed series runs on a clock that follows its data, so its
/// bars are fresh, and each `run-once` trades the next bar of the file.
#[test]
fn a_replayed_series_trades_on_its_own_clock_one_bar_per_run() {
    let dir = workdir();
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/backtest/BTC_USD-1h.csv");
    let shipped = std::fs::read_to_string(dir.path().join("config/default.toml")).unwrap();
    assert!(shipped.contains("tests/fixtures/backtest/BTC_USD-1h.csv"), "the shipped example names the fixture");
    let profile = format!("[market]\nsymbols = [\"BTCUSDT\"]\n\n[sim]\nreplay = {{ BTCUSDT = {:?} }}\n", file);
    std::fs::write(dir.path().join("config/replay.toml"), profile).unwrap();
    let run =
        || json(&mcbot(dir.path(), &["--profile", "replay", "run-once", "--stage", "all", "--output", "json"], &[]));
    let first = run();
    let second = run();
    for doc in [&first, &second] {
        let data = doc["stages"].as_array().unwrap().iter().find(|s| s["stage"] == "data_collection").unwrap();
        assert_eq!(data["status"], "ok", "the replayed bars are fresh: {doc}");
        assert!(doc["bar_close"].as_str().unwrap().starts_with("2017-"), "{doc}");
    }
    let close =
        |d: &serde_json::Value| d["bar_close"].as_str().unwrap().parse::<chrono::DateTime<chrono::Utc>>().unwrap();
    assert_eq!(close(&second) - close(&first), chrono::Duration::hours(1), "one bar per run");
}
