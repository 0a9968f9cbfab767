//! Two scheduler replicas on one PostgreSQL, as real processes on shared virtual time, over hundreds of bars of
//! the live path against the fake Binance; one replica is killed (SIGKILL) in the middle of a trading cycle.
//! Every job runs once per bar (the ledger), the survivor takes the dead one's cycle over, and every singleton
//! (a leased event-log consumer, the delivery worker, a named lease) has one holder at a time.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{Duration, Timelike};
use mcbot::store::SqlStore;
use mcbot_schedules::jobs::TradingCycleJob;
use mcbot_schedules::{FireOutcome, Job, JobContext, JobError, JobOutcome, Runtime, RuntimeConfig, Schedule};
use mcbot_stages::ports::{Claimant, JobStatus, Store};
use mcbot_stages::{Clock, ManualClock};

use crate::support::db::fresh_pg_url;
use crate::support::live_child::{Cluster, LogLine, books_match_the_exchange, kill9, read_log, signal};

/// Bars the two replicas trade together and after the kill.
const BARS: usize = 200;
/// The replica is killed in the first trading cycle it holds from this bar on.
const KILL_FROM: usize = BARS / 2;
const RECONCILE: &str = "reconcile";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_run_every_job_once_and_one_is_killed_mid_cycle() {
    let c = Cluster::start().await;
    let a = c.spec.spawn();
    let mut b = c.spec.spawn();
    let (a_pid, b_pid) = (a.id(), b.id());
    let mut bars = Vec::new();
    let mut killed_at = None;
    let mut reconciles = 0;
    for n in 1..=BARS {
        let close = c.close_bar();
        bars.push(close);
        if n >= KILL_FROM && killed_at.is_none() {
            // Catch B in the middle of this bar's cycle: it holds the claim and the run is not finished.
            let held_by_b = |r: &mcbot_stages::ports::JobRunRecord| {
                r.status == JobStatus::Running && r.claimant.as_ref().is_some_and(|h| h.pid == b_pid)
            };
            let started = std::time::Instant::now();
            while started.elapsed() < StdDuration::from_secs(30) {
                match c.run(TradingCycleJob::NAME, close).await {
                    Some(r) if held_by_b(&r) => {
                        // Frozen at once (a cycle takes milliseconds), then looked at once the server has
                        // finished what B had sent: a stopped B cannot finish the run between the look and the
                        // kill, so a run found still held is killed in the middle. Meanwhile A fires this bar
                        // too and finds it held (its loop looks every 5 ms), so the take-over is A looking again
                        // at a held run, not A's first look finding B dead.
                        signal(&b, "STOP");
                        c.settled(b_pid).await;
                        tokio::time::sleep(StdDuration::from_millis(25)).await;
                        let still = c.run(TradingCycleJob::NAME, close).await;
                        if still.as_ref().is_some_and(held_by_b) {
                            kill9(&mut b);
                            killed_at = Some(close);
                        } else {
                            signal(&b, "CONT");
                        }
                        break;
                    }
                    Some(r) if r.status != JobStatus::Running => break,
                    _ => tokio::task::yield_now().await,
                }
            }
            assert!(n < KILL_FROM + 40, "replica B never held a cycle in 40 bars");
        }
        let run = c.wait_done(TradingCycleJob::NAME, close, StdDuration::from_secs(60)).await;
        assert_ne!(run.status, JobStatus::Running);
        if Some(close) == killed_at {
            assert_eq!(run.claimant.as_ref().map(|h| h.pid), Some(a_pid), "A took the dead B's cycle over: {run:?}");
            assert!(run.attempt >= 2, "taken over, not started afresh: {run:?}");
        }
        if close.minute() % 5 == 0 {
            let fire = close + Duration::seconds(45);
            c.set_time(fire);
            let r = c.wait_done(RECONCILE, fire, StdDuration::from_secs(60)).await;
            assert_eq!(r.status, JobStatus::Succeeded, "{r:?}");
            reconciles += 1;
        }
    }
    let killed_at = killed_at.expect("B was killed");
    b.wait().unwrap(); // reaped by the kill already; this returns its status
    // A last stretch for the survivor's consumer and worker to take over the dead holder's leases and catch up.
    let end = c.clock.now() + Duration::minutes(2);
    c.set_time(end);
    tokio::time::sleep(StdDuration::from_millis(500)).await;
    c.stop(vec![a]);

    let (orders, trades) = books_match_the_exchange(&c, &bars).await;
    assert!(orders >= 20 && trades >= 20, "the replicas traded: {orders} orders, {trades} trades");
    assert!(reconciles >= BARS / 5 - 1, "{reconciles}");
    // both replicas ran cycles, before the kill
    let runs = c.store.recent_runs(Some(TradingCycleJob::NAME), 100_000).await.unwrap();
    let by = |pid: u32| runs.iter().filter(|r| r.claimant.as_ref().is_some_and(|h| h.pid == pid)).count();
    assert!(by(a_pid) > 10 && by(b_pid) > 10, "work was shared: A {} and B {} cycles", by(a_pid), by(b_pid));
    assert!(runs.iter().all(|r| r.scheduled_at <= killed_at || r.claimant.as_ref().is_none_or(|h| h.pid != b_pid)));

    // ---- singletons: one holder at a time ----
    let log = read_log(&c.spec.log);
    let b_holder = |h: &str| h.ends_with(&format!(":{b_pid}"));
    // The named lease: no two holders' tenures overlap.
    let mut tenures: Vec<(i64, i64, String)> = log
        .iter()
        .filter_map(|l| match l {
            LogLine::Lease { holder, from, until } => Some((*from, *until, holder.clone())),
            _ => None,
        })
        .collect();
    tenures.sort();
    let holders: BTreeSet<&str> = tenures.iter().map(|t| t.2.as_str()).collect();
    assert_eq!(holders.len(), 2, "both replicas held the lease at some time: {holders:?}");
    let mut reach: BTreeMap<&str, i64> = BTreeMap::new();
    for (from, until, holder) in &tenures {
        for (other, other_until) in &reach {
            assert!(
                *other == holder.as_str() || *other_until <= *from,
                "{holder} took the lease at {from} while {other} held it until {other_until}"
            );
        }
        let r = reach.entry(holder.as_str()).or_insert(*until);
        *r = (*r).max(*until);
    }
    // The event-log consumer: every event handled. Its handlers are idempotent by event id (at least once): a
    // holder overtaken mid-batch (its lease ran out while virtual time jumped) has its cursor write refused, and
    // the batch is handled again by the new holder, so a handled twice is allowed; what they produce is not
    // doubled: one delivery per event, sent once (twice only for the dead sender's last message).
    let mut handled: BTreeMap<i64, Vec<&str>> = BTreeMap::new();
    let mut sent: BTreeMap<i64, Vec<&str>> = BTreeMap::new();
    for l in &log {
        match l {
            LogLine::Handled { holder, id } => handled.entry(*id).or_default().push(holder),
            LogLine::Sent { holder, event } => sent.entry(*event).or_default().push(holder),
            LogLine::Lease { .. } => {}
        }
    }
    let last_event = c.store.recent_events(mcbot_stages::ports::Severity::Info, 1).await.unwrap()[0].id;
    let all_events: Vec<i64> = c
        .store
        .read_events(&mcbot_stages::ports::EventQuery { after: 0, limit: 0, ..Default::default() })
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert!(all_events.len() > 100, "{}", all_events.len());
    for id in &all_events {
        let h = handled.get(id).unwrap_or_else(|| panic!("event {id} of {last_event} never handled"));
        assert!(!h.is_empty(), "event {id} handled");
        let s = sent.get(id).unwrap_or_else(|| panic!("the delivery of event {id} was never sent"));
        assert!(s.len() == 1 || (s.len() == 2 && b_holder(s[0])), "delivery of event {id} sent by {s:?}");
    }
    let twice = handled.values().filter(|h| h.len() > 1).count();
    println!("replicas: {} events, {twice} handled again after a holder was overtaken", all_events.len());
    assert!(sent.values().filter(|s| s.len() > 1).count() <= 1, "at most the dead sender's last message twice");
    let handlers: BTreeSet<&str> = handled.values().flatten().copied().collect();
    assert_eq!(handlers.len(), 2, "both replicas consumed at some time: {handlers:?}");
}

/// A job that counts its runs.
struct Counting(std::sync::atomic::AtomicUsize);

#[async_trait::async_trait]
impl Job for Counting {
    fn name(&self) -> &str {
        "counting"
    }
    async fn run(&self, _cx: &JobContext) -> Result<JobOutcome, JobError> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(JobOutcome::ok("counted", serde_json::Value::Null))
    }
}

/// Liveness that knows one claimant is dead.
struct Knows {
    me: Claimant,
    dead: Claimant,
}

impl mcbot_schedules::Liveness for Knows {
    fn me(&self) -> Claimant {
        self.me.clone()
    }
    fn is_dead(&self, c: &Claimant) -> bool {
        *c == self.dead
    }
}

/// The runtime's own part of a take-over: a fire another replica held is looked at again, finished by the holder
/// it is forgotten, its holder dead the run is taken over once, and a newer fire supersedes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_held_by_a_replica_that_dies_is_taken_over_by_the_next_look() {
    let db = fresh_pg_url().await;
    let store = Arc::new(SqlStore::open(db.url()).await.unwrap());
    store.migrate().await.unwrap();
    let dyn_store: Arc<dyn Store> = store.clone();
    let t0 = chrono::DateTime::parse_from_rfc3339("2024-03-01T00:00:30Z").unwrap().to_utc();
    let clock = Arc::new(ManualClock::new(t0));
    let dead = Claimant { pid: 999_999, host: "replica-b".into() };
    let me = Claimant { pid: 1, host: "replica-a".into() };
    let job = Arc::new(Counting(Default::default()));
    let rcfg = RuntimeConfig { grace: Duration::seconds(600), stale_after: Duration::seconds(900) };
    let runtime = Runtime::new(
        vec![(Schedule::parse("0 * * * * *").unwrap(), job.clone() as Arc<dyn Job>)],
        dyn_store.clone(),
        clock.clone(),
        rcfg,
    )
    .with_liveness(Arc::new(Knows { me: me.clone(), dead: dead.clone() }));
    // B claims the 00:00 run and dies before finishing it.
    let fire = chrono::DateTime::parse_from_rfc3339("2024-03-01T00:00:00Z").unwrap().to_utc();
    let run_id = mcbot_stages::domain::RunId::new("counting", fire);
    let claim = store.claim_run(run_id.as_str(), "counting", fire, t0, Duration::seconds(900), &dead).await.unwrap();
    assert!(matches!(claim, mcbot_stages::ports::JobClaim::Claimed { .. }), "{claim:?}");
    let alive = Runtime::new(
        vec![(Schedule::parse("0 * * * * *").unwrap(), job.clone() as Arc<dyn Job>)],
        dyn_store,
        clock.clone(),
        RuntimeConfig { grace: Duration::seconds(600), stale_after: Duration::seconds(900) },
    )
    .with_liveness(Arc::new(Knows { me: me.clone(), dead: Claimant { pid: 0, host: String::new() } }));
    // A runtime that believes B alive sees the run busy, and keeps seeing it busy on every look.
    let out = alive.tick().await;
    assert!(matches!(out.as_slice(), [(_, FireOutcome::Busy { .. })]), "{out:?}");
    let out = alive.retry_held().await;
    assert!(matches!(out.as_slice(), [(_, FireOutcome::Busy { .. })]), "{out:?}");
    assert_eq!(job.0.load(std::sync::atomic::Ordering::SeqCst), 0);
    // One that knows B is dead takes it over at its next look, once.
    let out = runtime.tick().await;
    assert!(matches!(out.as_slice(), [(_, FireOutcome::Ran { status: JobStatus::Succeeded, .. })]), "{out:?}");
    assert_eq!(job.0.load(std::sync::atomic::Ordering::SeqCst), 1);
    // The other replica's next look finds it done and forgets it.
    let out = alive.retry_held().await;
    assert!(matches!(out.as_slice(), [(_, FireOutcome::AlreadyDone { .. })]), "{out:?}");
    assert!(alive.retry_held().await.is_empty(), "forgotten once done");
    // A held fire is dropped when a newer fire of its job has come.
    let fire2 = fire + Duration::minutes(1);
    let run2 = mcbot_stages::domain::RunId::new("counting", fire2);
    store
        .claim_run(
            run2.as_str(),
            "counting",
            fire2,
            fire2,
            Duration::seconds(900),
            &Claimant { pid: 5, host: "c".into() },
        )
        .await
        .unwrap();
    clock.set(fire2 + Duration::seconds(1));
    let out = alive.tick().await;
    assert!(matches!(out.as_slice(), [(_, FireOutcome::Busy { .. })]), "{out:?}");
    clock.set(fire2 + Duration::minutes(1));
    assert!(alive.retry_held().await.is_empty(), "superseded by the 00:02 fire");
    assert_eq!(job.0.load(std::sync::atomic::Ordering::SeqCst), 1, "every run ran once");
}

/// `mcbot scheduler` replicas on one PostgreSQL record their own starts and stops: a replica starting beside a
/// running one does not report it as crashed; one killed with SIGKILL is reported by the next start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_starting_beside_a_running_one_does_not_report_it_crashed() {
    use std::io::{BufRead, BufReader};

    use crate::support::cli::{command, json, mcbot, workdir};
    let db = fresh_pg_url().await;
    let dir = workdir();
    let url = db.url().to_owned();
    let start = |dir: &std::path::Path| {
        let mut child = command(dir, &["scheduler"], &[("DATABASE_URL", url.as_str())])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let line = BufReader::new(stdout).lines().map_while(Result::ok).next().expect("the start-up line");
        assert!(line.starts_with("mcbot scheduler"), "{line}");
        child
    };
    let crashed = |dir: &std::path::Path| {
        let out = mcbot(dir, &["events", "--kind", "crashed", "--output", "json"], &[("DATABASE_URL", url.as_str())]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.trim().is_empty()).count()
    };
    let (d1, d2) = (dir.path().join("a"), dir.path().join("b"));
    for d in [&d1, &d2] {
        std::fs::create_dir(d).unwrap();
        std::fs::create_dir(d.join("config")).unwrap();
        for f in std::fs::read_dir(dir.path().join("config")).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, d.join("config").join(f.file_name().unwrap())).unwrap();
        }
    }
    let mut a = start(&d1);
    let a_pid = a.id();
    let mut b = start(&d2);
    assert_eq!(crashed(&d2), 0, "B's start does not call the running A crashed");
    kill9(&mut a);
    let mut c = start(&d1);
    assert_eq!(crashed(&d1), 1, "the killed A is reported by the next start");
    let out = mcbot(&d1, &["events", "--kind", "crashed", "--output", "json"], &[("DATABASE_URL", url.as_str())]);
    let doc = json(&std::process::Output {
        stdout: String::from_utf8_lossy(&out.stdout).lines().next().unwrap().as_bytes().to_vec(),
        ..out
    });
    assert!(doc["payload"]["holder"].as_str().is_some_and(|h| h.ends_with(&format!(":{a_pid}"))), "{doc}");
    for child in [&mut b, &mut c] {
        assert!(
            std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success()
        );
        assert_eq!(child.wait().unwrap().code(), Some(0));
    }
    // Two clean stops: the next start reports nothing new.
    let mut d = start(&d2);
    assert_eq!(crashed(&d2), 1);
    kill9(&mut d);
}
