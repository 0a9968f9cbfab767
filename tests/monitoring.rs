//! Monitoring as code, checked against the real binary: `mcbot scheduler --mode paper` follows a loopback fake
//! Binance and trades a bar, its `/metrics` is linted by `promtool check metrics`, every metric a dashboard panel
//! or an alert rule names must be in that scrape, every dashboard panel has a query and a unit, the alert rules
//! pass their `promtool test rules` unit tests and the Alertmanager configuration passes `amtool check-config`.
//!
//! promtool and amtool come from Debian's `prometheus` and `prometheus-alertmanager` packages: on PATH, or
//! extracted under `~/.cache/mcbot/tools` (what `.ci/run` does). Missing tools fail the tests, never skip them.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use crate::support::cli::{command, workdir};
use crate::support::fake_binance::{FakeBinance, FakeConfig};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A tool of the Prometheus packages: on PATH, or where `.ci/run` extracts it.
fn tool(name: &str) -> PathBuf {
    if let Some(path) = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
    {
        return path;
    }
    let cached = PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/mcbot/tools/usr/bin").join(name);
    assert!(
        cached.is_file(),
        "{name} not found on PATH nor at {}: run .ci/run, or `apt-get download prometheus prometheus-alertmanager` \
         and `dpkg -x` both into ~/.cache/mcbot/tools",
        cached.display()
    );
    cached
}

/// Runs `tool args` in `dir` (feeding `stdin`); panics with its output unless it exits 0.
fn run_tool(name: &str, dir: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new(tool(name))
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{name} {args:?} failed ({:?}):\n{text}", out.status.code());
    text
}

#[test]
fn alert_rules_pass_their_unit_tests_and_the_configs_are_valid() {
    let prom = repo().join("monitoring/prometheus");
    run_tool("promtool", &prom, &["check", "config", "prometheus.yml"], None);
    run_tool("promtool", &prom, &["check", "rules", "--lint=all", "--lint-fatal", "alerts.yml"], None);
    let out = run_tool("promtool", &prom, &["test", "rules", "alerts_test.yml"], None);
    assert!(out.contains("SUCCESS"), "{out}");
    run_tool("amtool", &repo().join("monitoring/alertmanager"), &["check-config", "alertmanager.yml"], None);
}

/// Every alert in alerts.yml is exercised by a unit test that expects it to fire.
#[test]
fn every_alert_has_a_unit_test_that_fires_it() {
    let rules = std::fs::read_to_string(repo().join("monitoring/prometheus/alerts.yml")).unwrap();
    let tests = std::fs::read_to_string(repo().join("monitoring/prometheus/alerts_test.yml")).unwrap();
    let alerts: Vec<&str> = rules.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")).collect();
    assert!(alerts.len() >= 15, "{alerts:?}");
    let mut untested: Vec<&str> = Vec::new();
    for a in &alerts {
        // An `alertname: X` followed (before the next alertname) by a non-empty exp_alerts list.
        let fired = tests.split("alertname: ").skip(1).any(|block| {
            block.starts_with(&format!("{a}\n")) && block.contains("exp_labels") && !block.contains("exp_alerts: []")
        });
        if !fired {
            untested.push(*a);
        }
    }
    assert!(untested.is_empty(), "alerts never fired by a unit test: {untested:?}");
}

/// Metric names in a PromQL expression: identifiers that name the bot's or the process's series.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut word = String::new();
    for c in expr.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            word.push(c);
            continue;
        }
        if word.starts_with("mcbot_") || word.starts_with("process_") {
            out.insert(word.clone());
        }
        word.clear();
    }
    out
}

/// The histogram or counter family a sample name belongs to.
fn family(name: &str) -> &str {
    ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name)
}

struct Dashboards {
    exprs: Vec<(String, String)>,
}

/// Loads every dashboard, checking each panel has a data source, at least one query and a unit.
fn dashboards() -> Dashboards {
    let dir = repo().join("monitoring/grafana/dashboards");
    let mut exprs = Vec::new();
    let mut uids = BTreeSet::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(files.len() >= 6, "overview, strategy, execution, exchange, system, freshness: {files:?}");
    for path in files {
        let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
        let uid = doc["uid"].as_str().unwrap_or_else(|| panic!("{}: no uid", path.display())).to_owned();
        assert!(uids.insert(uid.clone()), "uid {uid} twice");
        assert!(doc["id"].is_null(), "{uid}: id must be null (Grafana upserts by uid)");
        let panels = doc["panels"].as_array().unwrap_or_else(|| panic!("{uid}: no panels"));
        assert!(!panels.is_empty(), "{uid}: no panels");
        for p in panels {
            let title = p["title"].as_str().unwrap_or_default();
            let unit = p["fieldConfig"]["defaults"]["unit"].as_str().unwrap_or_default();
            assert!(!unit.is_empty(), "{uid} / {title}: no unit");
            let ds = p["datasource"]["uid"].as_str().unwrap_or_default();
            assert!(["prom", "store"].contains(&ds), "{uid} / {title}: data source {ds:?} is not provisioned");
            let targets = p["targets"].as_array().cloned().unwrap_or_default();
            assert!(!targets.is_empty(), "{uid} / {title}: no query");
            for t in targets {
                let q = t["expr"].as_str().or_else(|| t["rawSql"].as_str()).unwrap_or_default();
                assert!(!q.trim().is_empty(), "{uid} / {title}: empty query");
                if let Some(e) = t["expr"].as_str() {
                    exprs.push((format!("{uid} / {title}"), e.to_owned()));
                }
            }
        }
    }
    Dashboards { exprs }
}

#[test]
fn every_dashboard_panel_has_a_query_and_a_unit() {
    let d = dashboards();
    assert!(d.exprs.len() > 30, "{}", d.exprs.len());
}

/// Series only a venue with signed requests produces (the paper account reads public data only).
const ONLY_WITH_SIGNED_REQUESTS: &[&str] = &["mcbot_exchange_clock_offset_seconds"];

/// The scrape test: a paper scheduler against the fake venue trades one bar; `/metrics` is then linted, and
/// every metric the dashboards and rules name is in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_binary_exports_every_metric_the_dashboards_and_alerts_use_and_promtool_accepts_it() {
    let fake = FakeBinance::start(FakeConfig::new(Arc::new(mcbot_stages::SystemClock))).await;
    let dir = workdir();
    let env = [
        ("MCBOT_EXCHANGE__BINANCE__REST_URL", fake.rest_url.clone()),
        ("MCBOT_EXCHANGE__BINANCE__WS_URL", fake.ws_url.clone()),
        ("MCBOT_MARKET__SYMBOLS", r#"["BTCUSDT", "ETHUSDT"]"#.to_owned()),
        ("MCBOT_MARKET__TIMEFRAME", "1m".to_owned()),
        ("MCBOT_STRATEGY__PARAMS__LOOKBACK", "3".to_owned()),
        ("MCBOT_PIPELINE__LOOKBACK_BARS", "10".to_owned()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut child = command(dir.path(), &["scheduler", "--mode", "paper"], &env)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || BufReader::new(stdout).lines().map_while(Result::ok).next())
        .await
        .unwrap()
        .expect("the start-up line");
    let base = line
        .split("metrics http://")
        .nth(1)
        .and_then(|rest| rest.split("/metrics").next())
        .unwrap_or_else(|| panic!("no metrics address in {line:?}"))
        .to_owned();
    let http = reqwest::Client::new();
    let get = |path: &str| {
        let (http, url) = (http.clone(), format!("http://{base}{path}"));
        async move {
            let resp = http.get(url).send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        }
    };
    assert_eq!(get("/healthz").await, (200, "ok\n".to_owned()));
    // One bar closes on the fake venue; the cycle trades it, and the metrics consumer counts its fills.
    for _ in 0..400 {
        if fake.ws_connections() == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    fake.advance_bar();
    let mut body = String::new();
    for _ in 0..600 {
        body = get("/metrics").await.1;
        let traded = body.lines().any(|l| l.starts_with("mcbot_slippage_bps_count") && !l.ends_with(" 0"));
        let cycled = body.contains("mcbot_stage_duration_seconds_count{stage=\"execution\"}");
        if traded && cycled {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (status, ready) = get("/readyz").await;
    let ready: serde_json::Value = serde_json::from_str(&ready).unwrap();
    assert_eq!(ready["checks"]["database"], "ok", "{ready}");
    assert_eq!(ready["checks"]["trading"], "active", "{ready}");
    assert_eq!(status == 200, ready["ready"] == true, "{ready}");
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let exit = tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
    assert_eq!(exit.code(), Some(0));

    // promtool finds nothing to complain about.
    run_tool("promtool", dir.path(), &["check", "metrics"], Some(&body));
    let exported: BTreeSet<String> = body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(|n| family(n).to_owned())
        .collect();
    for (want, why) in [
        ("mcbot_fills_total", "the cycle's fills"),
        ("mcbot_slippage_bps", "slippage of the fills"),
        ("mcbot_stage_duration_seconds", "stage durations"),
        ("mcbot_job_duration_seconds", "the trading cycle's run"),
        ("mcbot_exchange_requests_total", "REST requests to the venue"),
        ("process_resident_memory_bytes", "the process section"),
    ] {
        assert!(exported.contains(want), "{want} ({why}) is not exported:\n{body}");
    }
    let mut named = Vec::new();
    for (where_, expr) in dashboards().exprs {
        named.extend(metric_names(&expr).into_iter().map(|m| (m, where_.clone())));
    }
    let rules = std::fs::read_to_string(repo().join("monitoring/prometheus/alerts.yml")).unwrap();
    for line in rules.lines().filter_map(|l| l.trim().strip_prefix("expr: ")) {
        named.extend(metric_names(line).into_iter().map(|m| (m, "alerts.yml".to_owned())));
    }
    let missing: BTreeSet<String> = named
        .iter()
        .filter(|(m, _)| !exported.contains(family(m)) && !ONLY_WITH_SIGNED_REQUESTS.contains(&m.as_str()))
        .map(|(m, w)| format!("{m} (in {w})"))
        .collect();
    assert!(missing.is_empty(), "named but not exported: {missing:#?}\n--- scrape ---\n{body}");
    // A consumer an alert rule selects is one the binary runs and exports: rules name consumers exactly (never by
    // regular expression), so a renamed consumer cannot leave an alert silently matching nothing.
    assert!(!rules.contains("consumer=~") && !rules.contains("consumer!"), "select consumers by exact name");
    for name in rules.split("consumer=\"").skip(1).filter_map(|rest| rest.split('"').next()) {
        let series = format!("mcbot_event_consumer_lag_events{{consumer=\"{name}\"}}");
        assert!(body.contains(&series), "alerts.yml selects consumer {name:?}, not in the scrape:\n{body}");
    }
    assert!(rules.contains("consumer=\""), "the consumer alerts select by name");
}
