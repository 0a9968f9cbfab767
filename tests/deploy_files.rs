//! The deployment as code: the container's health probe is the real binary asking the real admin server, the
//! Kubernetes ConfigMap carries exactly the shipped config/ files, and the manifests keep the promises the README
//! makes (two replicas, probes, a grace period longer than a cycle, a forbidding CronJob, an indexed sweep).
//! Their schemas are checked by `kubernetes-validate` and compose by `docker-compose config` in .ci/run.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::support::cli::{command, mcbot, workdir};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// deploy/k8s/configmap.yaml as it must be: every config/*.toml verbatim, as a literal block.
fn expected_configmap() -> String {
    let mut files: Vec<_> = std::fs::read_dir(root().join("config"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    let mut out = String::from(
        "# Generated from config/*.toml by `MCBOT_BLESS=1 cargo test --test e2e deploy_files`: edit config/, not this.\n\
         # Mounted at /app/config, so `--profile`/MCBOT_PROFILE pick among the same profiles as everywhere else.\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: mcbot-config\n  labels:\n    app.kubernetes.io/name: mcbot\ndata:\n",
    );
    for path in files {
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let body = std::fs::read_to_string(&path).unwrap();
        assert!(body.ends_with('\n') && !body.ends_with("\n\n"), "{name}: one trailing newline keeps the block exact");
        assert!(!body.contains('\t'), "{name}: a tab would not survive the YAML block");
        out.push_str(&format!("  {name}: |\n"));
        for line in body.lines() {
            if line.is_empty() {
                out.push('\n');
            } else {
                out.push_str(&format!("    {line}\n"));
            }
        }
    }
    out
}

#[test]
fn the_configmap_holds_exactly_the_shipped_config_files() {
    let want = expected_configmap();
    let path = root().join("deploy/k8s/configmap.yaml");
    if std::env::var_os("MCBOT_BLESS").is_some() {
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(have == want, "deploy/k8s/configmap.yaml differs from config/; rerun with MCBOT_BLESS=1 to regenerate");
}

/// The integer after `key: ` on the first line that has it.
fn number(doc: &str, key: &str) -> u64 {
    let line = doc.lines().find(|l| l.trim_start().starts_with(&format!("{key}:"))).unwrap_or_else(|| panic!("{key}"));
    line.split(':').nth(1).unwrap().trim().trim_matches('"').parse().unwrap_or_else(|_| panic!("{line}"))
}

/// The value of `name` in a Kubernetes `env:` list.
fn env_value(doc: &str, name: &str) -> String {
    let mut lines = doc.lines().skip_while(|l| l.trim() != format!("- name: {name}"));
    lines.next().unwrap_or_else(|| panic!("no env {name}"));
    let v = lines.next().unwrap().trim();
    v.strip_prefix("value: ").unwrap_or_else(|| panic!("{name}: {v}")).trim_matches('"').to_owned()
}

#[test]
fn the_manifests_keep_their_promises() {
    let default = read("config/default.toml");
    let stage_timeout: u64 = default
        .lines()
        .find_map(|l| l.strip_prefix("stage_timeout_secs = "))
        .and_then(|v| v.trim().parse().ok())
        .expect("pipeline.stage_timeout_secs in default.toml");
    let deployment = read("deploy/k8s/scheduler.yaml");
    assert_eq!(number(&deployment, "replicas"), 2);
    let grace = number(&deployment, "terminationGracePeriodSeconds");
    let shutdown: u64 = env_value(&deployment, "MCBOT_SCHEDULE__SHUTDOWN_GRACE_SECS").parse().unwrap();
    assert!(shutdown >= 4 * stage_timeout, "a whole cycle (4 stages x {stage_timeout} s) fits the shutdown grace");
    assert!(grace > shutdown, "the kubelet's SIGKILL ({grace} s) comes after the job's grace ({shutdown} s)");
    for (probe, path) in [("readinessProbe:", "/readyz"), ("livenessProbe:", "/healthz")] {
        let after = deployment.split(probe).nth(1).unwrap_or_else(|| panic!("no {probe}"));
        assert!(after.lines().take(4).any(|l| l.trim() == format!("path: {path}")), "{probe} asks {path}");
    }
    assert!(deployment.contains("runAsNonRoot: true") && deployment.contains("runAsUser: 10001"));
    assert!(deployment.contains("name: mcbot-config") && deployment.contains("secretName: mcbot-secrets"));
    // the env the deployment gives the binary is valid configuration for it
    let dir = workdir();
    let out = mcbot(
        dir.path(),
        &["config", "check"],
        &[("MCBOT_SCHEDULE__SHUTDOWN_GRACE_SECS", &shutdown.to_string()), ("MCBOT_HTTP__LISTEN", "0.0.0.0:9184")],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));

    let cron = read("deploy/k8s/cronjob.yaml");
    assert!(cron.contains("concurrencyPolicy: Forbid"));
    assert!(cron.contains("mcbot run-once --stage all"));
    let sweep = read("deploy/k8s/sweep-job.yaml");
    assert!(sweep.contains("completionMode: Indexed"));
    let shards = number(&sweep, "completions");
    assert!(sweep.contains(&format!("- $(SHARD)/{shards}")), "every pod's shard is k/{shards}");
    assert!(sweep.contains("batch.kubernetes.io/job-completion-index"));
    let secret = read("deploy/k8s/secret.yaml");
    assert!(secret.contains("kind: Secret") && secret.contains("database-url:"));

    let dockerfile = read("Dockerfile");
    assert!(dockerfile.contains(r#"CMD ["mcbot", "health", "--probe"]"#), "HEALTHCHECK calls the binary itself");
    let user = dockerfile.lines().rfind(|l| l.starts_with("USER ")).expect("a USER line");
    assert!(!user.contains("root") && !user.contains(" 0"), "{user}");
    let compose = read("docker-compose.yml");
    for service in ["mcbot-scheduler:", "postgres:", "prometheus:", "alertmanager:", "grafana:"] {
        assert!(compose.lines().any(|l| l == format!("  {service}")), "{service}");
    }
    assert!(
        compose.contains("MCBOT_RISK__KILL_SWITCH_FILE: /app/data/KILL") && compose.contains("mcbot-data:/app/data")
    );
    assert!(compose.contains("DATABASE_URL_FILE: /run/secrets/database_url"));
    assert!(compose.contains("./config:/app/config:ro"));
}

/// A one-shot HTTP server on loopback answering every request with `status`.
fn answer_with(status: &'static str) -> (String, std::thread::JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let handle = std::thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let body = "{\"ready\":false}";
            let _ = write!(s, "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
        }
    });
    (addr, handle)
}

#[test]
fn the_health_probe_asks_the_real_admin_server_and_exits_0_or_1() {
    let dir = workdir();
    let mut child =
        command(dir.path(), &["scheduler"], &[]).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = BufReader::new(stdout).lines().map_while(Result::ok).next().expect("the start-up line");
    let addr = line
        .split("metrics http://")
        .nth(1)
        .and_then(|rest| rest.split("/metrics").next())
        .unwrap_or_else(|| panic!("no metrics address in {line:?}"))
        .to_owned();
    // from the configured listen address (as in the container), silent when healthy
    let probe = mcbot(dir.path(), &["health", "--probe"], &[("MCBOT_HTTP__LISTEN", &addr)]);
    assert_eq!(probe.status.code(), Some(0), "{}", text(&probe.stderr));
    assert!(probe.stdout.is_empty() && probe.stderr.is_empty());
    // a wildcard listen address is asked on loopback
    let port = addr.rsplit(':').next().unwrap();
    let wildcard = format!("0.0.0.0:{port}");
    let probe = mcbot(dir.path(), &["health", "--probe"], &[("MCBOT_HTTP__LISTEN", &wildcard)]);
    assert_eq!(probe.status.code(), Some(0), "{}", text(&probe.stderr));
    let said = mcbot(dir.path(), &["health", "--addr", &addr], &[]);
    assert_eq!((said.status.code(), text(&said.stdout)), (Some(0), format!("{addr}: ok\n")));
    assert!(Command::new("kill").args(["-KILL", &child.id().to_string()]).status().unwrap().success());
    child.wait().unwrap();

    // nobody answering: 1, and why
    let probe = mcbot(dir.path(), &["health", "--probe"], &[("MCBOT_HTTP__LISTEN", &addr)]);
    assert_eq!(probe.status.code(), Some(1));
    assert!(text(&probe.stderr).contains("no answer"), "{}", text(&probe.stderr));
    // an answer other than 200: 1, with the body
    let (busy, server) = answer_with("503 Service Unavailable");
    let probe = mcbot(dir.path(), &["health", "--probe", "--ready", "--addr", &busy], &[]);
    server.join().unwrap();
    assert_eq!(probe.status.code(), Some(1));
    assert!(
        text(&probe.stderr).contains("HTTP 503") && text(&probe.stderr).contains("ready"),
        "{}",
        text(&probe.stderr)
    );
    // the server turned off, and a configuration that does not load: 1 (Docker reserves 2), never 2
    let probe = mcbot(dir.path(), &["health", "--probe"], &[("MCBOT_HTTP__LISTEN", "")]);
    assert_eq!(probe.status.code(), Some(1));
    assert!(text(&probe.stderr).contains("http.listen is empty"), "{}", text(&probe.stderr));
    let probe = mcbot(dir.path(), &["health", "--probe"], &[("MCBOT_RISK__STOP_LOSS_PCT", "-8")]);
    assert_eq!(probe.status.code(), Some(1), "{}", text(&probe.stderr));
    assert!(text(&probe.stderr).contains("stop_loss_pct"), "{}", text(&probe.stderr));
}
