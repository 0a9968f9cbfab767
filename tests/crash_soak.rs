//! The crash soak: the live path in a process of its own (tests/support/live_child.rs), against the fake Binance
//! with 10 % random faults on every request and every kind of order fault scripted in, killed with SIGKILL at
//! random moments of hundreds of cycles and started again each time, as a supervisor would. Afterwards: zero
//! duplicate orders at the exchange, zero lost fills, and stored positions equal to the exchange's balances
//! after reconciliation.
//!
//! CI runs the short version; the full one is
//! `MCBOT_SOAK_CYCLES=200 cargo test --test e2e crash_soak_full -- --ignored --nocapture`.

use std::time::Duration as StdDuration;

use axum::http::Method;
use chrono::{Duration, Timelike};
use mcbot_schedules::jobs::TradingCycleJob;
use mcbot_stages::ports::Store;
use rand::{Rng, SeedableRng};

use crate::support::fake_binance::Fault;
use crate::support::live_child::{Cluster, books_match_the_exchange, kill9};

const ORDER: &str = "/api/v3/order";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_soak_short() {
    soak(40, 11).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the full soak (minutes): MCBOT_SOAK_CYCLES=200 cargo test --test e2e crash_soak_full -- --ignored --nocapture"]
async fn crash_soak_full() {
    let cycles = std::env::var("MCBOT_SOAK_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    soak(cycles, 7).await;
}

/// Half of the moments get a kill, anywhere from the start-up to past the end of a cycle.
fn kill_moment(rng: &mut rand::rngs::StdRng) -> Option<StdDuration> {
    rng.random_bool(0.5).then(|| StdDuration::from_millis(rng.random_range(0..250)))
}

async fn soak(cycles: usize, seed: u64) {
    let started = std::time::Instant::now();
    let c = Cluster::start().await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for fault in [
        Fault::ServerErrorAfter,
        Fault::Timeout,
        Fault::DuplicateAfterAccept,
        Fault::ServerErrorBefore,
        Fault::Malformed,
        Fault::PartialFill { percent: 40 },
        Fault::DropConnection,
    ] {
        c.fake.fault_after(Some(Method::POST), ORDER, 1, fault, 1);
    }
    c.fake.set_random_faults(0.10, seed);
    let mut child = c.spec.spawn();
    let (mut kills, mut mid_run_kills, mut bars) = (0usize, 0usize, Vec::new());
    for _ in 0..cycles {
        let close = c.close_bar();
        bars.push(close);
        if let Some(after) = kill_moment(&mut rng) {
            tokio::time::sleep(after).await;
            if c.run(TradingCycleJob::NAME, close)
                .await
                .is_some_and(|r| r.status == mcbot_stages::ports::JobStatus::Running)
            {
                mid_run_kills += 1;
            }
            kill9(&mut child);
            kills += 1;
            child = c.spec.spawn();
        }
        c.wait_done(TradingCycleJob::NAME, close, StdDuration::from_secs(120)).await;
        if close.minute() % 5 == 0 {
            let fire = close + Duration::seconds(45);
            c.set_time(fire);
            if let Some(after) = kill_moment(&mut rng) {
                tokio::time::sleep(after).await;
                kill9(&mut child);
                kills += 1;
                child = c.spec.spawn();
            }
            c.wait_done("reconcile", fire, StdDuration::from_secs(120)).await;
        }
    }
    let faults: u64 = c.fake.faults_injected().values().sum();
    c.fake.clear_faults();
    // One clean bar: whatever the faults and kills left unknown is resolved from the exchange.
    let close = c.close_bar();
    bars.push(close);
    c.wait_done(TradingCycleJob::NAME, close, StdDuration::from_secs(120)).await;
    c.stop(vec![child]);
    let (orders, trades) = books_match_the_exchange(&c, &bars).await;
    let runs = c.store.recent_runs(Some(TradingCycleJob::NAME), 100_000).await.unwrap();
    let taken_over = runs.iter().filter(|r| r.attempt > 1).count();
    let state = c.store.load_state().await.unwrap();
    println!(
        "crash soak: {cycles} cycles, {kills} SIGKILLs ({mid_run_kills} during a running cycle, {taken_over} runs taken \
         over), {faults} faults injected, {orders} orders and {trades} trades at the exchange, 0 duplicates, 0 lost \
         fills, positions = balances; safe mode {}; {:.1} s",
        state.safe_mode,
        started.elapsed().as_secs_f64()
    );
    assert!(kills >= cycles / 3, "{kills} kills");
    assert!(mid_run_kills >= 1 && taken_over >= 1, "some kills hit a running cycle: {mid_run_kills}, {taken_over}");
    assert!(faults >= cycles as u64 / 2, "{faults} faults");
    assert!(orders >= cycles / 4, "the strategy traded: {orders} orders");
}
