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
