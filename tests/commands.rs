//! Commands from the command line against the database a scheduler uses: each changes the trading state once,
//! records who issued it and why as an event, refuses what does not apply, and is obeyed by the next cycle.

use std::process::Output;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use mcbot::app::{App, open_store};
use mcbot::config::Config;
use mcbot_schedules::FireOutcome;
use mcbot_schedules::jobs::TradingCycleJob;
use mcbot_stages::ManualClock;
use mcbot_stages::domain::{Decimal, RunId, Symbol};
use mcbot_stages::ports::{Claimant, JobClaim, JobStatus, Store};

use crate::support::cli::{json, mcbot, workdir};
use crate::support::db::{fresh_pg_url, fresh_sqlite_url};

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}\n{}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn commands_change_state_once_and_are_logged(db: Option<&str>) {
    let dir = workdir();
    let env: Vec<(&str, &str)> = db.map(|u| vec![("DATABASE_URL", u)]).unwrap_or_default();
    let run = |args: &[&str]| mcbot(dir.path(), args, &env);

    ok(&run(&["pause", "--reason", "exchange maintenance"]));
    let again = run(&["pause"]);
    assert_eq!(again.status.code(), Some(2), "pausing a paused bot changes nothing");
    assert!(String::from_utf8_lossy(&again.stderr).contains("nothing changed"));

    let cycle = run(&["run-once", "--output", "json"]);
    ok(&cycle);
    let doc = json(&cycle);
    let blocked = doc["blocked_by"].to_string();
    assert!(blocked.contains("entries paused"), "{doc}");
    assert!(doc["orders"].as_array().unwrap().is_empty(), "a paused bot buys nothing: {doc}");

    ok(&run(&["resume", "--reason", "maintenance over"]));
    let no_safe = run(&["reset-safe-mode", "--reason", "checked"]);
    assert_eq!(no_safe.status.code(), Some(2), "safe mode is not on");
    let no_breaker = run(&["reset-breaker", "daily_loss", "--reason", "checked"]);
    assert_eq!(no_breaker.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_breaker.stderr).contains("not tripped"));
    let kill = run(&["kill", "--flatten", "--reason", "going on holiday"]);
    ok(&kill);
    assert!(String::from_utf8_lossy(&kill.stdout).contains("open orders canceled: none"), "{kill:?}");

    let status = json(&run(&["status", "--output", "json"]));
    assert_eq!(status["trading"], "halted", "{status}");

    let events = run(&["events", "--kind", "trading_paused,trading_resumed,trading_killed", "--output", "json"]);
    ok(&events);
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&events.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let kinds: Vec<&str> = lines.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["trading_paused", "trading_resumed", "trading_killed"], "one event per applied command");
    assert_eq!(lines[0]["payload"]["issuer"], "cli");
    assert_eq!(lines[0]["payload"]["reason"], "exchange maintenance");
    assert_eq!(lines[2]["severity"], "emergency");
    assert!(lines.windows(2).all(|w| w[0]["id"].as_i64() < w[1]["id"].as_i64()));

    let bad = run(&["events", "--kind", "no_such_kind"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("order_filled"), "the error lists the kinds");
}

#[test]
fn commands_change_state_once_and_are_logged_sqlite() {
    commands_change_state_once_and_are_logged(None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_change_state_once_and_are_logged_postgres() {
    let db = fresh_pg_url().await;
    let url = db.url().to_owned();
    tokio::task::spawn_blocking(move || commands_change_state_once_and_are_logged(Some(&url))).await.unwrap();
}

fn start() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z").unwrap().to_utc()
}

/// A run claimed by a process that died on this host (a killed `run-once`) is taken over at once by the next
/// start's catch-up, within the grace period, instead of blocking its bar until the claim goes stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bar_whose_process_died_is_traded_by_the_next_start() {
    let db = fresh_sqlite_url();
    let mut cfg = Config::default();
    cfg.market.symbols = ["BTCUSDT", "ETHUSDT"].iter().map(|s| Symbol::new(s).unwrap()).collect();
    cfg.sim.start = start();
    cfg.sim.tick_size = Decimal::new(1, 4);
    cfg.risk.kill_switch_file = db.dir().join("KILL");
    cfg.database.data_dir = db.dir().to_path_buf();
    let bar = start() + Duration::hours(30);
    let clock = Arc::new(ManualClock::new(bar + Duration::seconds(7)));

    // The dead claimant: a child process that has exited, on this host.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = Claimant { pid: child.id(), host: mcbot::liveness::host_name() };
    child.wait().unwrap();
    let store = open_store(db.url()).await.unwrap();
    let run = RunId::new(TradingCycleJob::NAME, bar);
    let stale = Duration::seconds(900);
    let claim = store.claim_run(run.as_str(), TradingCycleJob::NAME, bar, bar, stale, &dead).await.unwrap();
    assert!(matches!(claim, JobClaim::Claimed { .. }));

    let app = App::build(cfg, store, clock.clone()).await.unwrap();
    let caught_up = app.runtime.catch_up().await;
    let cycle = caught_up.iter().find(|(job, _)| job == TradingCycleJob::NAME).map(|(_, o)| o.clone());
    let Some(FireOutcome::Ran { status, .. }) = cycle else { panic!("the dead claim is taken over: {caught_up:?}") };
    assert_eq!(status, JobStatus::Succeeded);
    let rec = &app.store.recent_runs(Some(TradingCycleJob::NAME), 1).await.unwrap()[0];
    assert_eq!((rec.attempt, rec.status), (2, JobStatus::Succeeded), "{rec:?}");
}

/// A real `kill -9` of `run-once` at spread-out moments of its cycle: the next `run-once` trades the bar at once
/// (the dead process's claim does not block it), and every stored position equals the sum of its stored fills.
#[test]
fn run_once_killed_at_any_moment_is_completed_by_the_next_and_books_stay_consistent() {
    use std::time::Instant;
    let timed = workdir();
    let begun = Instant::now();
    let first = mcbot(timed.path(), &["run-once"], &[]);
    let full = begun.elapsed();
    ok(&first);
    // The human summary shows equity in cents, as `status` does.
    let text = String::from_utf8_lossy(&first.stdout);
    let equity = text.lines().find_map(|l| l.strip_prefix("equity ")).expect("an equity line");
    assert!(equity.split_once('.').is_none_or(|(_, cents)| cents.len() <= 2), "equity {equity}");
    for k in 0..8u32 {
        let dir = workdir();
        let mut child = crate::support::cli::command(dir.path(), &["run-once"], &[])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(full * k / 8);
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let again = mcbot(dir.path(), &["run-once", "--output", "json"], &[]);
        ok(&again);
        let doc = json(&again);
        assert!(doc["already_processed"] == true || doc["job_status"] == "succeeded", "kill at {k}/8: {doc}");
        let status = json(&mcbot(dir.path(), &["status", "--output", "json"], &[]));
        assert_eq!(status["safe_mode"], false, "kill at {k}/8: {status}");
        let url = mcbot::store::SqlStore::embedded_url(&dir.path().join("data"));
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let store = mcbot::store::SqlStore::open(&url).await.unwrap();
            let fills = store.fills_between(DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC).await.unwrap();
            for p in store.positions().await.unwrap() {
                let sum: Decimal = fills
                    .iter()
                    .filter(|f| f.symbol == p.symbol)
                    .map(|f| if f.side == mcbot_stages::domain::Side::Buy { f.qty } else { -f.qty })
                    .sum();
                assert_eq!(p.qty, sum, "kill at {k}/8: {} position is the sum of its fills", p.symbol);
            }
            assert!(store.open_orders().await.unwrap().is_empty(), "kill at {k}/8: nothing left pending");
            store.close().await;
        });
    }
}

/// After a crash, `status` says who holds a running claim, whether that process still lives, and when another
/// process may take the run over: a dead claimant's run is taken at once, a live one's only after it is stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_names_who_holds_a_running_claim_and_whether_it_lives() {
    let db = fresh_sqlite_url();
    let store = open_store(db.url()).await.unwrap();
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = Claimant { pid: child.id(), host: mcbot::liveness::host_name() };
    child.wait().unwrap();
    let alive = Claimant { pid: std::process::id(), host: mcbot::liveness::host_name() };
    let remote = Claimant { pid: 4242, host: "another-host.invalid".into() };
    let since = Utc::now() - Duration::minutes(1);
    let stale = Duration::seconds(900);
    for (job, who) in [("health", &alive), ("reconcile", &dead), ("report", &remote)] {
        let run = RunId::new(job, since);
        let claim = store.claim_run(run.as_str(), job, since, since, stale, who).await.unwrap();
        assert!(matches!(claim, JobClaim::Claimed { .. }));
    }
    store.close().await;

    let dir = workdir();
    let out = mcbot(dir.path(), &["status", "--output", "json"], &[("DATABASE_URL", db.url())]);
    ok(&out);
    let doc = json(&out);
    let claim_of = |job: &str| {
        let runs = doc["last_runs"].as_array().expect("last runs");
        let run = runs.iter().find(|r| r["job"] == job).unwrap_or_else(|| panic!("{job} listed: {doc}"));
        run["claim"].as_str().unwrap_or_else(|| panic!("{job} has a claim description: {run}")).to_owned()
    };
    let takeover = (since + stale).format("%H:%M:%S").to_string();
    let live = claim_of("health");
    assert!(live.contains(&format!("pid {}", alive.pid)) && live.contains("alive"), "{live}");
    assert!(live.contains(&takeover), "when a live claim may be taken over: {live}");
    let gone = claim_of("reconcile");
    assert!(gone.contains(&format!("pid {}", dead.pid)) && gone.contains("gone") && gone.contains("at once"), "{gone}");
    let far = claim_of("report");
    assert!(far.contains("another-host.invalid") && far.contains("not checked") && far.contains(&takeover), "{far}");
}

/// `kill --output json` is one JSON document: the state the command left and the open orders it canceled; a
/// command that does not apply is one JSON error document with its exit code.
#[test]
fn kill_with_json_output_prints_one_document() {
    let dir = workdir();
    let out = mcbot(dir.path(), &["kill", "--reason", "test", "--output", "json"], &[]);
    ok(&out);
    let doc = json(&out);
    assert_eq!(doc["state"]["trading"], "halted", "{doc}");
    assert!(doc["open_orders"]["canceled"].is_array() && doc["open_orders"]["not_canceled"].is_array(), "{doc}");
    let other = workdir();
    ok(&mcbot(other.path(), &["pause", "--reason", "test"], &[]));
    let again = mcbot(other.path(), &["pause", "--reason", "test", "--output", "json"], &[]);
    assert_eq!(again.status.code(), Some(2));
    let doc = json(&again);
    assert_eq!(doc["exit_code"], 2, "{doc}");
    assert!(doc["error"].as_str().is_some_and(|e| e.contains("nothing changed")), "{doc}");
}
