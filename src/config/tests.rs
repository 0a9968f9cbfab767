//! Tests of loading: layering, positions in messages, the range of every key, the rules across keys, and
//! secrets that are never printed.

use super::*;

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

/// A directory holding a copy of the shipped config files.
fn shipped() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, d.path().join(path.file_name().unwrap())).unwrap();
    }
    d
}

/// `[a.b]\nleaf = literal` for key `a.b.leaf`.
fn body(key: &str, literal: &str) -> String {
    match key.rsplit_once('.') {
        Some((section, leaf)) => format!("[{section}]\n{leaf} = {literal}\n"),
        None => format!("{key} = {literal}\n"),
    }
}

fn load_with(dir: &Path, profile_text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    write(dir, "bad.toml", profile_text);
    let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Config::load(dir, &["bad".into()], vars)
}

#[test]
fn layers_merge_and_env_overrides() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "default.toml",
        "[market]\nsymbols = [\"BTCUSDT\"]\ntimeframe = \"1h\"\n[risk]\nmax_drawdown_pct = \"20\"\n\
         [sim.start_prices]\nBTCUSDT = \"1\"\n",
    );
    write(d.path(), "paper.toml", "[risk]\nmax_daily_loss_pct = \"3\"\n");
    let vars = [
        ("MCBOT_RISK__MAX_DRAWDOWN_PCT".to_string(), "15".to_string()),
        ("MCBOT_SHARED_DIR".to_string(), "../shared".to_string()),
        ("MCBOT_SIM__START_PRICES__BTCUSDT".to_string(), "0.5".to_string()),
        ("MCBOT_STRATEGY__PARAMS__LOOKBACK".to_string(), "12".to_string()),
    ];
    let c = Config::load(d.path(), &["paper".into()], vars).unwrap();
    assert_eq!(c.risk.max_drawdown_pct, Decimal::from(15));
    assert_eq!(c.risk.max_daily_loss_pct, Decimal::from(3));
    assert_eq!(c.market.symbols.len(), 1);
    let btc = Symbol::new("BTCUSDT").unwrap();
    assert_eq!(c.sim.start_prices.get(&btc), Some(&Decimal::new(5, 1)), "the symbol under a map keeps its case");
    assert_eq!(c.strategy.params_as_strings().get("lookback").map(String::as_str), Some("12"), "{:?}", c.strategy);
}

#[test]
fn unknown_key_names_file_line_and_key() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "default.toml", "mode = \"mock\"\n\n[risk]\nmax_drawdwn_pct = \"20\"\n");
    let e = Config::load(d.path(), &[], []).unwrap_err().to_string();
    assert!(e.contains("default.toml"), "{e}");
    assert!(e.contains("max_drawdwn_pct"), "{e}");
    assert!(e.contains("line 4"), "{e}");
}

#[test]
fn a_missing_config_directory_says_how_to_point_at_one() {
    let d = tempfile::tempdir().unwrap();
    let e = Config::load(&d.path().join("config"), &[], []).unwrap_err().to_string();
    assert!(e.contains("--config DIR") && e.contains("MCBOT_CONFIG"), "{e}");
}

#[test]
fn the_shipped_files_and_built_in_defaults_are_valid() {
    let d = shipped();
    for profiles in [vec![], vec!["paper".to_string()], vec!["live".to_string()], vec!["upbit".to_string()]] {
        Config::load(d.path(), &profiles, []).unwrap_or_else(|e| panic!("{profiles:?}: {e}"));
    }
    // The built-in defaults (what an absent key means) are inside their own ranges and rules too.
    let defaults = toml::Value::try_from(Config::default()).unwrap();
    check_ranges(&defaults, "", &mut |_| String::new()).unwrap();
    let mut c = Config::default();
    c.sim.start_prices = c.market.symbols.iter().map(|s| (s.clone(), Decimal::ONE)).collect();
    c.validate(&Origins::new()).unwrap();
}

/// Every leaf of a document (arrays are leaves; the names under a map are leaves of their `*` row).
fn leaves(v: &toml::Value, prefix: &str, out: &mut Vec<String>) {
    if let Some(t) = v.as_table() {
        for (k, child) in t {
            let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
            if child.is_table() && keys::spec(&key).is_none() {
                leaves(child, &key, out);
            } else {
                out.push(key);
            }
        }
    }
}

#[test]
fn every_key_of_the_shipped_files_and_the_defaults_has_a_row() {
    let mut all = Vec::new();
    leaves(&toml::Value::try_from(Config::default()).unwrap(), "", &mut all);
    for file in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("config")).unwrap() {
        let text = std::fs::read_to_string(file.unwrap().path()).unwrap();
        leaves(&toml::from_str(&text).unwrap(), "", &mut all);
    }
    let missing: Vec<_> = all.iter().filter(|k| keys::spec(k).is_none()).collect();
    assert!(missing.is_empty(), "keys without a row in the key table: {missing:?}");
}

/// (key, bad value as written in TOML, what the message says). Every row of the key table has at least one.
const BAD: &[(&str, &str, &str)] = &[
    ("mode", "\"demo\"", "must be one of mock, paper, shadow, live, got demo"),
    ("market.quote", "\"usdt\"", "must be 2-10 upper-case letters or digits, got usdt"),
    ("market.symbols", "[]", "must list at least one"),
    ("market.timeframe", "\"7m\"", "must be one of 1m, 3m, 5m, 15m, 30m, 1h, 2h, 4h, 6h, 12h, 1d, got 7m"),
    ("sim.seed", "-1", "must be >= 0, got -1"),
    ("sim.start", "\"yesterday\"", "input contains invalid characters"),
    ("sim.bar_vol", "1.5", "must be in [0, 1), got 1.5"),
    ("sim.initial_cash", "\"0\"", "must be > 0, got 0"),
    ("sim.initial_cash", "10000.5", "exact decimals are quoted strings: write \"10000.5\", not 10000.5"),
    ("sim.fee_rate", "\"-0.001\"", "must be in [0, 1), got -0.001"),
    ("sim.fee_rate", "0.001", "exact decimals are quoted strings: write \"0.001\", not 0.001"),
    ("sim.slippage_bps", "\"-1\"", "must be in [0, 1000], got -1"),
    ("sim.tick_size", "\"0\"", "must be > 0, got 0"),
    ("sim.step_size", "\"-0.1\"", "must be > 0, got -0.1"),
    ("sim.min_notional", "\"-1\"", "must be >= 0, got -1"),
    ("sim.replay.BTCUSDT", "5", "invalid type: integer `5`"),
    ("sim.start_prices.BTCUSDT", "\"-5\"", "must be > 0, got -5"),
    ("exchange.venue", "\"kraken\"", "must be one of binance, upbit, got kraken"),
    ("exchange.paper_cash", "\"0\"", "must be > 0, got 0"),
    ("exchange.paper_fee_rate", "\"-0.001\"", "must be in [0, 1), got -0.001"),
    ("exchange.binance.rest_url", "\"ftp://x\"", "must start with http:// or https://, got ftp://x"),
    ("exchange.binance.ws_url", "\"http://x\"", "must start with ws:// or wss://, got http://x"),
    ("exchange.binance.api_key", "{ a = 1 }", "invalid type: map, expected a string"),
    ("exchange.binance.api_secret", "[\"x\"]", "invalid type: sequence, expected a string"),
    ("exchange.binance.recv_window_ms", "60001", "must be in [1, 60000], got 60001"),
    ("exchange.binance.weight_budget_per_min", "0", "must be in [1, 6000], got 0"),
    ("exchange.binance.max_limit_wait_ms", "-1", "must be in [0, 600000], got -1"),
    ("exchange.binance.request_timeout_ms", "0", "must be in [100, 600000], got 0"),
    ("exchange.binance.connect_timeout_ms", "99", "must be in [100, 600000], got 99"),
    ("exchange.binance.lookup_before_place", "\"yes\"", "invalid type: string \"yes\", expected a boolean"),
    ("exchange.binance.order_submit_attempts", "0", "must be in [1, 10], got 0"),
    ("exchange.binance.order_lookup_attempts", "0", "must be in [1, 20], got 0"),
    ("exchange.binance.order_lookup_delay_ms", "-5", "must be in [0, 60000], got -5"),
    ("exchange.binance.stream.aggregate_from_1m", "1", "invalid type: integer `1`, expected a boolean"),
    ("exchange.binance.stream.warmup_bars", "1001", "must be in [0, 1000], got 1001"),
    ("exchange.binance.stream.cache_bars", "0", "must be in [1, 100000], got 0"),
    ("exchange.binance.stream.ping_interval_ms", "10", "must be in [1000, 600000], got 10"),
    ("exchange.binance.stream.idle_timeout_ms", "10", "must be in [1000, 3600000], got 10"),
    ("exchange.binance.stream.reconnect_base_ms", "0", "must be in [1, 600000], got 0"),
    ("exchange.binance.stream.reconnect_max_ms", "0", "must be in [1, 3600000], got 0"),
    ("exchange.binance.stream.max_connection_age_secs", "86400", "must be in [60, 86399], got 86400"),
    ("exchange.binance.stream.jitter_seed", "-3", "must be >= 0, got -3"),
    ("exchange.upbit.rest_url", "\"api.upbit.com\"", "must start with http:// or https://, got api.upbit.com"),
    ("exchange.upbit.access_key", "{ a = 1 }", "invalid type: map, expected a string"),
    ("exchange.upbit.secret_key", "{ a = 1 }", "invalid type: map, expected a string"),
    ("exchange.upbit.request_timeout_ms", "0", "must be in [100, 600000], got 0"),
    ("exchange.upbit.quote", "\"krw\"", "must be 2-10 upper-case letters or digits, got krw"),
    ("exchange.upbit.min_order_total", "\"-1\"", "must be >= 0, got -1"),
    ("exchange.upbit.volume_step", "\"0\"", "must be > 0, got 0"),
    ("exchange.upbit.tick_table", "\"x\"", "invalid type: string \"x\", expected a sequence"),
    ("exchange.upbit.lookup_attempts", "0", "must be in [1, 20], got 0"),
    ("exchange.upbit.fill_polls", "101", "must be in [0, 100], got 101"),
    ("exchange.upbit.fill_poll_interval_ms", "-1", "must be in [0, 60000], got -1"),
    ("exchange.upbit.ban_secs", "0", "must be in [1, 86400], got 0"),
    ("exchange.upbit.rate_limit_backoff_ms", "-1", "must be in [0, 600000], got -1"),
    ("strategy.name", "5", "invalid type: integer `5`, expected a string"),
    ("strategy.gate.enabled", "\"no\"", "invalid type: string \"no\", expected a boolean"),
    ("strategy.gate.window_bars", "5", "must be in [10, 100000], got 5"),
    ("strategy.gate.min_return_pct", "-150.0", "must be >= -100, got -150"),
    ("strategy.gate.min_win_rate_pct", "101.0", "must be in [0, 100], got 101"),
    ("strategy.gate.min_profit_factor", "-1.0", "must be >= 0, got -1"),
    ("strategy.gate.min_sharpe", "\"high\"", "invalid type: string \"high\", expected f64"),
    ("strategy.gate.max_drawdown_pct", "0.0", "must be in (0, 100], got 0"),
    ("risk.max_daily_loss_pct", "\"150\"", "must be in (0, 100], got 150"),
    ("risk.max_weekly_loss_pct", "\"0\"", "must be in (0, 100], got 0"),
    ("risk.max_drawdown_pct", "\"-20\"", "must be in (0, 100], got -20"),
    ("risk.stop_loss_pct", "\"-8\"", "must be in (0, 100], got -8"),
    ("risk.stop_loss_pct", "\"150\"", "must be in (0, 100], got 150"),
    ("risk.stop_loss_pct", "8.5", "exact decimals are quoted strings: write \"8.5\", not 8.5"),
    ("risk.take_profit_pct", "\"0\"", "must be in (0, 10000], got 0"),
    ("risk.kill_switch_file", "5", "invalid type: integer `5`"),
    ("pretrade.max_order_notional", "\"-100\"", "must be > 0, got -100"),
    ("pretrade.max_open_positions", "0", "must be in [1, 1000], got 0"),
    ("pretrade.allow_list", "[\"lower\"]", "invalid symbol"),
    ("sizing.rebalance_band_pct", "\"-1\"", "must be in [0, 100), got -1"),
    ("sizing.cash_buffer_pct", "\"150\"", "must be in [0, 100), got 150"),
    ("sizing.max_slippage_pct", "\"-1\"", "must be in (0, 10], got -1"),
    ("pipeline.lookback_bars", "1", "must be in [2, 100000], got 1"),
    ("pipeline.stage_timeout_secs", "0", "must be in [5, 3600], got 0"),
    ("pipeline.max_stale_bars", "-1", "must be in [0, 1000], got -1"),
    ("pipeline.retry_attempts", "0", "must be in [1, 10], got 0"),
    ("pipeline.retry_delay_ms", "-1", "must be in [0, 600000], got -1"),
    ("schedule.bar_delay_secs", "7200", "must be in [0, 3599], got 7200"),
    ("schedule.trigger_on_stream", "1", "invalid type: integer `1`, expected a boolean"),
    ("schedule.grace_secs", "-5", "must be in [0, 86400], got -5"),
    ("schedule.stale_run_secs", "-1", "must be in [60, 86400], got -1"),
    ("schedule.unplaced_order_secs", "0", "must be in [10, 86400], got 0"),
    ("schedule.shutdown_grace_secs", "0", "must be in [1, 600], got 0"),
    ("reconcile.drift_tolerance_pct", "\"0\"", "must be in (0, 50], got 0"),
    ("reconcile.unmanaged_holdings", "\"keep\"", "must be one of ignore, adopt, got keep"),
    ("events.retention_days", "0", "must be in [1, 36500], got 0"),
    ("schedule.health", "\"every minute\"", "config key schedule.health:"),
    ("schedule.reconcile", "\"* * *\"", "config key schedule.reconcile:"),
    ("schedule.report_daily", "\"0 5 0 * *\"", "config key schedule.report_daily:"),
    ("schedule.report_weekly", "\"0 10 0 * * 9\"", "config key schedule.report_weekly:"),
    ("schedule.report_monthly", "\"0 15 0 32 * *\"", "config key schedule.report_monthly:"),
    ("database.url", "\"mysql://db\"", "must start with sqlite:// or postgres:// or postgresql://, got [redacted]"),
    ("database.data_dir", "[]", "invalid type: sequence"),
    ("notify.alert_min_severity", "\"loud\"", "must be one of info, warning, critical, emergency, got loud"),
    ("notify.routes.order_filled", "\"phone\"", "must be one of trades, alerts, reports, none, got phone"),
    ("notify.cooldown_secs", "-1", "must be in [0, 86400], got -1"),
    ("notify.retry_base_ms", "5", "must be in [100, 600000], got 5"),
    ("notify.retry_max_secs", "0", "must be in [1, 86400], got 0"),
    ("notify.max_attempts", "0", "must be in [1, 1000], got 0"),
    ("notify.fallback", "\"pager\"", "must be one of log, telegram, discord, email, none, got pager"),
    ("notify.flush_timeout_secs", "601", "must be in [0, 600], got 601"),
    ("notify.request_timeout_ms", "1", "must be in [100, 600000], got 1"),
    ("notify.group_window_secs", "3601", "must be in [0, 3600], got 3601"),
    ("notify.repeat_emergency_secs", "5", "must be in [30, 86400], got 5"),
    ("notify.escalate_after_secs", "0", "must be in [60, 604800], got 0"),
    ("notify.retention_days", "0", "must be in [1, 36500], got 0"),
    ("notify.telegram.token", "{ a = 1 }", "invalid type: map, expected a string"),
    ("notify.telegram.chat_ids", "[]", "must list at least one"),
    ("notify.telegram.api_url", "\"api.telegram.org\"", "must start with http:// or https://, got api.telegram.org"),
    ("notify.discord.webhooks.trades", "\"discord.com/x\"", "must start with http:// or https://, got [redacted]"),
    ("notify.discord.webhooks.alerts", "\"ftp://x\"", "must start with http:// or https://, got [redacted]"),
    ("notify.discord.webhooks.reports", "5", "must start with http:// or https://, got [redacted]"),
    ("notify.discord.critical_role_id", "5", "invalid type: integer `5`, expected a string"),
    ("notify.email.smtp_url", "\"http://mail\"", "must start with smtp:// or smtps://, got [redacted]"),
    ("notify.email.tls", "\"never\"", "must be one of opportunistic, required, got never"),
    ("notify.email.user", "5", "invalid type: integer `5`, expected a string"),
    ("notify.email.password", "{ a = 1 }", "invalid type: map, expected a string"),
    ("notify.email.from", "[]", "invalid type: sequence, expected a string"),
    ("notify.email.to", "[]", "must list at least one"),
    ("notify.email.alert_min_severity", "\"all\"", "must be one of info, warning, critical, emergency, got all"),
    ("notify.email.ca_file", "5", "invalid type: integer `5`"),
    ("log.format", "\"xml\"", "must be one of pretty, json, got xml"),
    ("log.level", "\"verbose\"", "must be a level (trace, debug, info, warn, error, off) or target=level directives"),
    ("http.listen", "\"localhost\"", "must be ip:port (127.0.0.1:9184) or empty to turn it off, got localhost"),
    ("http.api_token", "{ a = 1 }", "invalid type: map, expected a string"),
    ("risk.max_order_equity_pct", "\"0\"", "must be in (0, 100], got 0"),
    ("risk.min_entry_interval_secs", "-1", "must be in [0, 2592000], got -1"),
    ("risk.max_entries_per_day", "10001", "must be in [0, 10000], got 10001"),
    ("risk.max_api_failures", "-1", "must be in [0, 1000], got -1"),
    ("risk.max_stream_down_secs", "86401", "must be in [0, 86400], got 86401"),
    ("live.confirmation_file", "5", "invalid type: integer `5`"),
    ("live.account", "5", "invalid type: integer `5`, expected a string"),
    ("live.key_cannot_withdraw", "\"yes\"", "invalid type: string \"yes\", expected a boolean"),
    ("live.allow_withdrawal_key", "1", "invalid type: integer `1`, expected a boolean"),
    ("live.dry_run_cycles", "-1", "must be in [0, 1000], got -1"),
    ("live.max_clock_offset_ms", "5000", "must be in [1, 1000], got 5000"),
    ("live.capital_fraction", "\"1.5\"", "must be in (0, 1], got 1.5"),
    ("live.max_order_notional", "\"0\"", "must be > 0, got 0"),
    ("live.max_trades_per_day", "-3", "must be in [0, 10000], got -3"),
    ("sentry.dsn", "{ a = 1 }", "invalid type: map, expected a string"),
    ("sentry.environment", "5", "invalid type: integer `5`, expected a string"),
    ("sentry.shutdown_timeout_ms", "0", "must be in [100, 60000], got 0"),
    ("monitor.rss_limit_bytes", "1024", "must be >= 1048576, got 1024"),
    ("monitor.runtime_lag_secs", "0", "must be in (0, 3600], got 0"),
    ("monitor.open_fds_limit", "8", "must be in [16, 1048576], got 8"),
    ("monitor.execution.slippage_p95_bps", "-1", "must be in (0, 10000], got -1"),
    ("monitor.execution.slippage_max_bps", "0", "must be in (0, 10000], got 0"),
    ("monitor.execution.latency_p95_secs", "0", "must be in (0, 3600], got 0"),
    ("monitor.execution.latency_max_secs", "-3", "must be in (0, 3600], got -3"),
    ("monitor.execution.fees_per_hour_pct", "150", "must be in (0, 100], got 150"),
    ("monitor.returns.min_days", "1", "must be in [5, 3650], got 1"),
    ("monitor.returns.drawdown_confidence", "1.0", "must be in (0.5, 1), got 1"),
    ("monitor.returns.drift_delta_sd", "-0.5", "must be in [0, 10], got -0.5"),
    ("monitor.returns.drift_threshold_sd", "0", "must be in (0, 1000], got 0"),
    ("monitor.returns.ks_window_days", "0", "must be in [5, 3650], got 0"),
    ("monitor.returns.ks_p_value", "0.9", "must be in (0, 0.5], got 0.9"),
];

/// Rows whose values only their component can judge: a strategy's parameters are checked by the strategy
/// when the bot is assembled (exit 2 "strategy: ..."), which the end-to-end tests show.
const JUDGED_ELSEWHERE: &[&str] = &["strategy.params.*"];

#[test]
fn every_key_refuses_a_value_outside_its_range_naming_key_value_file_and_line() {
    let d = shipped();
    for (key, literal, expected) in BAD {
        let Err(e) = load_with(d.path(), &body(key, literal), &[]) else { panic!("{key} = {literal} was accepted") };
        let e = e.to_string();
        assert!(e.contains(expected), "{key} = {literal}: expected {expected:?} in\n{e}");
        assert!(e.contains("bad.toml"), "{key} = {literal}: the file is named\n{e}");
        let leaf = key.rsplit('.').next().unwrap();
        assert!(e.contains(key) || e.contains(leaf), "{key} = {literal}: the key is named\n{e}");
        if e.starts_with("config key ") {
            assert!(e.starts_with(&format!("config key {key}: ")), "{e}");
            assert!(e.contains("bad.toml, line "), "{key}: {e}");
        }
    }
    let covered: Vec<&str> = BAD.iter().map(|(k, _, _)| *k).collect();
    let missing: Vec<_> = keys::KEYS
        .iter()
        .filter(|s| !JUDGED_ELSEWHERE.contains(&s.key) && !covered.iter().any(|k| s.matches(k)))
        .map(|s| s.key)
        .collect();
    assert!(missing.is_empty(), "rows without a bad-value case: {missing:?}");
}

#[test]
fn the_message_has_the_documented_form() {
    let d = shipped();
    let e = load_with(d.path(), "[risk]\nstop_loss_pct = \"-8\"\n", &[]).unwrap_err();
    let shown = e.to_string();
    let want = "config key risk.stop_loss_pct: must be in (0, 100], got -8 (";
    assert!(shown.starts_with(want) && shown.ends_with("bad.toml, line 2)"), "{shown}");
    assert!(matches!(e, ConfigError::Invalid { .. }));
}

#[test]
fn environment_values_are_checked_and_name_the_variable() {
    let d = shipped();
    let e = load_with(d.path(), "", &[("MCBOT_RISK__STOP_LOSS_PCT", "-8")]).map(|_| ()).unwrap_err().to_string();
    assert_eq!(
        e,
        "config key risk.stop_loss_pct: must be in (0, 100], got -8 (environment variable MCBOT_RISK__STOP_LOSS_PCT)"
    );
    let e = load_with(d.path(), "", &[("MCBOT_PIPELINE__STAGE_TIMEOUT_SECS", "0")]).map(|_| ()).unwrap_err();
    assert!(e.to_string().contains("must be in [5, 3600], got 0"), "{e}");
    let ok = load_with(d.path(), "", &[("MCBOT_SIM__FEE_RATE", "0.002")]).unwrap();
    assert_eq!(ok.sim.fee_rate, Decimal::new(2, 3), "a decimal from the environment is read exactly");
}

/// (rule key, profile text, what the message says): every rule across keys.
const CROSS: &[(&str, &str, &str)] = &[
    ("market.symbols", "[market]\nsymbols = [\"BTCUSDT\", \"ETHUSDT\", \"BTCUSDT\"]\n", "lists BTCUSDT twice"),
    ("market.symbols", "[market]\nsymbols = [\"ETHBTC\"]\n", "ETHBTC does not trade against the quote USDT"),
    (
        "sim.start_prices",
        "[market]\nsymbols = [\"BTCUSDT\", \"NEWUSDT\"]\n",
        "NEWUSDT has no start price (add NEWUSDT = \"<price>\" under [sim.start_prices])",
    ),
    ("sim.replay", "[sim.replay]\nBTCUSDT = \"btc.csv\"\n", "ETHUSDT has no replay file"),
    (
        "schedule.bar_delay_secs",
        "[market]\ntimeframe = \"1m\"\n[schedule]\nbar_delay_secs = 60\n",
        "must be shorter than one 1m bar (60 s), got 60",
    ),
    ("schedule.stale_run_secs", "[schedule]\nstale_run_secs = 300\n", "must be longer than the longest cycle (360 s"),
    ("pretrade.allow_list", "[pretrade]\nallow_list = [\"XYZUSDT\"]\n", "XYZUSDT is not in market.symbols"),
    (
        "market.quote",
        "mode = \"paper\"\n[exchange]\nvenue = \"upbit\"\n",
        "must be KRW for venue upbit (exchange.upbit.quote), got USDT",
    ),
    (
        "exchange.upbit.tick_table",
        "[exchange.upbit]\ntick_table = [{ from = \"0\", tick = \"0\" }]\n",
        "tick band from 0: tick 0 must be positive",
    ),
    (
        "exchange.binance.stream.reconnect_max_ms",
        "[exchange.binance.stream]\nreconnect_base_ms = 5000\nreconnect_max_ms = 4000\n",
        "must be at least reconnect_base_ms (5000), got 4000",
    ),
    (
        "exchange.binance.stream.idle_timeout_ms",
        "[exchange.binance.stream]\nping_interval_ms = 30000\nidle_timeout_ms = 30000\n",
        "must be longer than ping_interval_ms (30000), got 30000",
    ),
    (
        "exchange.binance.stream.cache_bars",
        "[exchange.binance.stream]\nwarmup_bars = 500\ncache_bars = 100\n",
        "must be at least warmup_bars (500), got 100",
    ),
    ("notify.routes", "[notify.routes]\norder_filed = \"trades\"\n", "order_filed is not an event kind"),
    ("notify.telegram", "[notify.telegram]\nchat_ids = [111]\n", "has no token"),
    (
        "notify.discord.webhooks",
        "[notify.discord.webhooks]\ntrades = \"http://127.0.0.1:9/api/webhooks/1/t\"\n",
        "has no alerts webhook",
    ),
    ("notify.email", "[notify.email]\nsmtp_url = \"smtp://127.0.0.1:2525\"\n", "needs from and at least one to"),
];

#[test]
fn rules_across_keys_refuse_contradictions() {
    let d = shipped();
    for (key, text, expected) in CROSS {
        let Err(e) = load_with(d.path(), text, &[]) else { panic!("{text} was accepted") };
        let e = e.to_string();
        assert!(e.starts_with(&format!("config key {key}: ")) && e.contains(expected), "{text}: {e}");
    }
    for rule in RULES {
        assert!(CROSS.iter().any(|(k, _, _)| *k == rule.key), "rule without a case: {}", rule.key);
    }
    // The same symbols without a start price are fine where no random walk runs.
    let paper = "mode = \"paper\"\n[market]\nsymbols = [\"BTCUSDT\", \"NEWUSDT\"]\n";
    load_with(d.path(), paper, &[]).unwrap();
}

/// Values that do not look like strings: digits, a boolean, a hex literal, an exponent.
const SECRET_LOOKALIKES: [&str; 4] = ["98765432109876", "true", "0x1F", "1e5"];

fn secret_of(c: &Config, key: &str) -> Option<String> {
    match key {
        "exchange.binance.api_key" => c.exchange.binance.api_key.as_ref().map(|s| s.expose().to_owned()),
        "exchange.binance.api_secret" => c.exchange.binance.api_secret.as_ref().map(|s| s.expose().to_owned()),
        "exchange.upbit.access_key" => c.exchange.upbit.access_key.as_ref().map(|s| s.expose().to_owned()),
        "exchange.upbit.secret_key" => c.exchange.upbit.secret_key.as_ref().map(|s| s.expose().to_owned()),
        "database.url" => c.database.url.clone(),
        "notify.telegram.token" => c.notify.telegram.as_ref().and_then(|t| t.token.clone()),
        "notify.email.password" => c.notify.email.as_ref().and_then(|e| e.password.clone()),
        "sentry.dsn" => c.sentry.dsn.clone(),
        "http.api_token" => c.http.api_token.clone(),
        other => panic!("a secret key without a reader in this test: {other}"),
    }
}

/// What a secret's section needs besides the secret to be complete (the rules across keys ask for it).
fn companion(key: &str) -> &'static str {
    match key {
        "notify.telegram.token" => "chat_ids = [1]\n",
        "notify.email.password" => {
            "smtp_url = \"smtp://127.0.0.1:2525\"\nfrom = \"a@b.example\"\nto = [\"c@d.example\"]\n"
        }
        _ => "",
    }
}

/// How a value is given: a name, the profile text, the environment.
type Way<'a> = (&'static str, String, Vec<(&'a str, &'a str)>);

#[test]
fn secrets_are_raw_strings_and_never_appear_in_a_message() {
    let d = shipped();
    let secret_keys: Vec<&str> = keys::KEYS.iter().filter(|s| s.kind == Kind::Secret).map(|s| s.key).collect();
    assert!(secret_keys.len() >= 5, "{secret_keys:?}");
    for key in &secret_keys {
        let var = format!("MCBOT_{}", key.replace('.', "__").to_uppercase());
        for value in SECRET_LOOKALIKES {
            let file = d.path().join("secret.txt");
            std::fs::write(&file, format!("{value}\n")).unwrap();
            let file_var = format!("{var}_FILE");
            let file_path = file.display().to_string();
            let extra = companion(key);
            let section = key.rsplit_once('.').map_or("", |(s, _)| s);
            let alone = if extra.is_empty() { String::new() } else { format!("[{section}]\n{extra}") };
            let ways: [Way<'_>; 3] = [
                ("file", format!("{}{extra}", body(key, value)), vec![]),
                ("env", alone.clone(), vec![(var.as_str(), value)]),
                ("_FILE", alone, vec![(file_var.as_str(), file_path.as_str())]),
            ];
            for (way, text, vars) in ways {
                let loaded = load_with(d.path(), &text, &vars);
                if keys::spec(key).is_some_and(|s| matches!(s.range, keys::Range::Url(_))) {
                    // Not a URL: refused, without showing it.
                    let e = loaded.map(|_| ()).unwrap_err().to_string();
                    assert!(e.contains(key) && !e.contains(value), "{way} {value}: {e}");
                } else {
                    let c = loaded.unwrap_or_else(|e| panic!("{key} via {way} = {value}: {e}"));
                    assert_eq!(secret_of(&c, key).as_deref(), Some(value), "{key} via {way}");
                }
                // Another key is wrong in the same load: the message must not carry the secret.
                let mut vars = vars.clone();
                vars.push(("MCBOT_RISK__STOP_LOSS_PCT", "-8"));
                let e = load_with(d.path(), &text, &vars).map(|_| ()).unwrap_err().to_string();
                assert!(!e.contains(value) || value == "true", "{key} via {way}: {e}");
            }
        }
    }
}

#[test]
fn a_broken_secret_line_is_reported_without_its_value() {
    let d = shipped();
    for text in [
        "[exchange.binance]\napi_secret = 0x1F_zz9876\"\n",
        "[exchange.binance]\napi_secret = \"s3cr3t-value\nrest_url = \"http://x\"\n",
        "[exchange.upbit]\nsecret_key = { nested = \"s3cr3t-value\" }\n",
    ] {
        let e = load_with(d.path(), text, &[]).map(|_| ()).unwrap_err().to_string();
        assert!(e.contains("bad.toml"), "{e}");
        assert!(!e.contains("0x1F_zz9876") && !e.contains("s3cr3t-value"), "{e}");
    }
}

#[test]
fn the_readme_key_list_is_generated_from_the_table() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let begin = "<!-- config-keys:begin (generated: MCBOT_BLESS=1 cargo test --lib config::) -->\n";
    let end = "<!-- config-keys:end -->";
    let generated = Config::reference_markdown();
    let (Some(a), Some(b)) = (readme.find(begin), readme.find(end)) else {
        panic!("README.md lacks the markers {begin:?} .. {end:?}")
    };
    let current = &readme[a + begin.len()..b];
    if current != generated {
        if std::env::var_os("MCBOT_BLESS").is_some() {
            let updated = format!("{}{}{}", &readme[..a + begin.len()], generated, &readme[b..]);
            std::fs::write(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"), updated).unwrap();
        }
        panic!("README.md's key list differs from the key table; rerun with MCBOT_BLESS=1 to regenerate");
    }
    for s in keys::KEYS {
        assert!(current.contains(&format!("`{}`", s.key)), "{}", s.key);
    }
}
