//! A parameter sweep split into shards (as a Kubernetes indexed job runs it, one pod per completion index) and
//! merged back: the real binary, the shipped fixture, compared with the unsharded run byte for byte.

use std::path::Path;
use std::process::Output;

use crate::support::cli::{mcbot, workdir};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "exit {:?}: {}", out.status.code(), text(&out.stderr));
    text(&out.stdout)
}

/// The only figure that may differ between two runs of one sweep is its wall time on the last line.
fn without_wall_time(stdout: &str) -> String {
    let (body, last) = stdout.trim_end().rsplit_once('\n').expect("a table and a summary line");
    let (summary, seconds) = last.rsplit_once(" in ").expect("`... in N s` at the end");
    assert!(seconds.ends_with(" s") && seconds.trim_end_matches(" s").parse::<f64>().is_ok(), "{last}");
    format!("{body}\n{summary}\n")
}

fn without_seconds(doc: &str) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_str(doc).unwrap();
    let doc = v.as_object_mut().unwrap();
    doc.remove("seconds").expect("a seconds field");
    // Where the time went is measured, not computed: it differs from run to run.
    doc.remove("timings").expect("a timings field");
    v
}

const GRID: [&str; 4] = ["--sweep", "fast=5..50:5", "--sweep", "slow=20..200:20"];

#[test]
fn four_merged_shards_print_exactly_the_unsharded_sweep() {
    let dir = workdir();
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/backtest/BTC_USD-1h.csv");
    let data = data.to_str().unwrap();
    let sweep = |extra: &[&str]| {
        let mut args = vec!["backtest", "--data", data, "--strategy", "sma-cross", "--top", "100"];
        args.extend(GRID);
        args.extend(extra);
        mcbot(dir.path(), &args, &[])
    };
    let whole = ok(sweep(&[]));
    let whole_json = ok(sweep(&["--output", "json"]));
    let shards = dir.path().join("shards");
    for k in 0..4 {
        // each pod writes into its own directory here, as pods with separate volumes would
        let out = shards.join(format!("pod-{k}"));
        ok(sweep(&["--shard", &format!("{k}/4"), "--out", out.to_str().unwrap()]));
        assert!(out.join(format!("shard-{k}-of-4.json")).is_file());
    }
    let pods: Vec<String> = (0..4).map(|k| shards.join(format!("pod-{k}")).display().to_string()).collect();
    let mut merge = vec!["backtest", "merge", "--top", "100"];
    merge.extend(pods.iter().map(String::as_str));
    let merged = ok(mcbot(dir.path(), &merge, &[]));
    assert_eq!(whole.lines().count(), 90 + 5, "90 valid combinations, header and frame lines, a summary:\n{whole}");
    assert!(whole.contains("90 combinations run (shard 0/1, grid 100, 10 skipped: "), "{whole}");
    assert_eq!(without_wall_time(&merged), without_wall_time(&whole));
    merge.extend(["--output", "json"]);
    let merged_json = ok(mcbot(dir.path(), &merge, &[]));
    assert_eq!(without_seconds(&merged_json), without_seconds(&whole_json));

    // the default (top 20) too, from one directory holding every shard file
    let all = dir.path().join("all");
    std::fs::create_dir(&all).unwrap();
    for k in 0..4 {
        let name = format!("shard-{k}-of-4.json");
        std::fs::copy(shards.join(format!("pod-{k}")).join(&name), all.join(&name)).unwrap();
    }
    let top20 = |args: &[&str]| {
        let mut a = vec!["backtest", "--data", data, "--strategy", "sma-cross"];
        a.extend(GRID);
        a.extend(args);
        ok(mcbot(dir.path(), &a, &[]))
    };
    let merged20 = ok(mcbot(dir.path(), &["backtest", "merge", all.to_str().unwrap()], &[]));
    assert_eq!(without_wall_time(&merged20), without_wall_time(&top20(&[])));
}

#[test]
fn a_merge_refuses_missing_duplicate_and_foreign_shards() {
    let dir = workdir();
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/backtest/BTC_USD-1h.csv");
    let data = data.to_str().unwrap();
    let out = dir.path().join("out");
    let o = out.to_str().unwrap();
    let shard = |k: usize, n: usize, strategy_param: &str| {
        let s = format!("{k}/{n}");
        let args = ["backtest", "--data", data, "--sweep", strategy_param, "--shard", &s, "--out", o];
        ok(mcbot(dir.path(), &args, &[]));
    };
    let merge = |dirs: &[&str]| {
        let mut args = vec!["backtest", "merge"];
        args.extend(dirs);
        mcbot(dir.path(), &args, &[])
    };
    shard(0, 3, "fast=5,10,15,20");
    shard(2, 3, "fast=5,10,15,20");
    let r = merge(&[o]);
    assert_eq!(r.status.code(), Some(2), "{}", text(&r.stderr));
    assert!(text(&r.stderr).contains("shard(s) 1 of 3 missing"), "{}", text(&r.stderr));
    assert!(r.stdout.is_empty(), "no table from an incomplete sweep");
    shard(1, 3, "fast=5,10,15,20");
    ok(merge(&[o]));
    // the same shard given twice
    let r = merge(&[o, &out.join("shard-1-of-3.json").display().to_string()]);
    assert_eq!(r.status.code(), Some(2), "{}", text(&r.stderr));
    assert!(text(&r.stderr).contains("shard 1/3 is also in"), "{}", text(&r.stderr));
    // a shard of another grid in the same place
    let other = dir.path().join("other");
    let ot = other.to_str().unwrap();
    let args = ["backtest", "--data", data, "--sweep", "fast=5,10,15,25", "--shard", "1/3", "--out", ot];
    ok(mcbot(dir.path(), &args, &[]));
    std::fs::remove_file(out.join("shard-1-of-3.json")).unwrap();
    let r = merge(&[o, ot]);
    assert_eq!(r.status.code(), Some(2), "{}", text(&r.stderr));
    assert!(text(&r.stderr).contains("belongs to another sweep"), "{}", text(&r.stderr));
    // not a shard file, and nothing there
    std::fs::write(other.join("shard-9-of-9.json"), "{}").unwrap();
    let r = merge(&[ot]);
    assert_eq!(r.status.code(), Some(2), "{}", text(&r.stderr));
    let r = merge(&[dir.path().join("nowhere").to_str().unwrap()]);
    assert_eq!(r.status.code(), Some(2), "{}", text(&r.stderr));
    // --out describes a sweep
    let r = mcbot(dir.path(), &["backtest", "--data", data, "--out", o], &[]);
    assert_eq!(r.status.code(), Some(2), "{}", text(&r.stderr));
}
