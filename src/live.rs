//! Mode live's guards: what must be true before real orders go out. `mcbot preflight` prints them and every start
//! in mode live checks them again, with the same code. All are required; each is checked on its own and says
//! why it failed. A failed guard never stops the bot: it trades paper, says which guard failed at start and in
//! `status`, records a `live_refused` event and sets `mcbot_live_guard_ok{guard}` to 0. Only a verdict with
//! every guard met yields a [`Clearance`], and only a clearance builds the live order path.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use mcbot_schedules::jobs::ReconcileJob;
use mcbot_stages::Clock;
use mcbot_stages::control::mutate_state;
use mcbot_stages::domain::Decimal;
use mcbot_stages::live::LiveExchange;
use mcbot_stages::ports::{EventKind, Exchange, LiveStatus, NewEvent, Severity, Store};
use serde::Serialize;

use crate::config::{Config, Mode, Venue};
use crate::exchange::binance::BinanceExchange;

/// The environment variable that must be `1` for real orders.
pub const LIVE_TRADING_VAR: &str = "LIVE_TRADING";

/// The guards, in the order they are checked and printed.
pub const GUARDS: [&str; 10] = [
    "mode",
    "live_trading_env",
    "confirmation_file",
    "exchange_reachable",
    "clock_offset",
    "balances_readable",
    "risk_limits",
    "key_cannot_withdraw",
    "dry_run",
    "reconciliation_clean",
];

/// One guard's finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// The guard, one of [`GUARDS`].
    pub name: &'static str,
    /// True when the guard is met.
    pub ok: bool,
    /// What was found, or why it failed and what to do.
    pub detail: String,
}

/// Every guard's finding at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct LiveVerdict {
    /// When the guards were checked.
    pub checked_at: DateTime<Utc>,
    /// One per guard, in [`GUARDS`] order.
    pub checks: Vec<Check>,
}

impl LiveVerdict {
    /// True when every guard is met.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }

    /// The failed guards with why.
    pub fn failed(&self) -> BTreeMap<String, String> {
        self.checks.iter().filter(|c| !c.ok).map(|c| (c.name.to_owned(), c.detail.clone())).collect()
    }

    /// The clearance to trade live, when every guard is met.
    pub fn clearance(&self) -> Option<Clearance> {
        self.passed().then_some(Clearance(()))
    }
}

/// Proof that every live guard was met at start: the only way to build the live order path.
#[derive(Debug)]
pub struct Clearance(());

/// What the guards read from the process: the `LIVE_TRADING` variable.
#[derive(Debug, Clone, Default)]
pub struct GuardEnv {
    /// The value of `LIVE_TRADING`, if set.
    pub live_trading: Option<String>,
}

impl GuardEnv {
    /// From this process's environment.
    pub fn from_process() -> Self {
        Self { live_trading: std::env::var(LIVE_TRADING_VAR).ok() }
    }
}

/// The venue the guards question: the trading port and, for Binance, the adapter with its time and key calls.
pub struct GuardVenue {
    /// The venue as the bot trades on it.
    pub exchange: Arc<dyn Exchange>,
    /// The Binance adapter, when it is the venue.
    pub binance: Option<Arc<BinanceExchange>>,
}

/// A path under `data/` lives in the data directory (as the kill switch does), so one volume holds both.
pub fn in_data_dir(path: &Path, data_dir: &Path) -> PathBuf {
    if path.is_relative() && !path.starts_with(data_dir) {
        match path.strip_prefix("data") {
            Ok(rest) => data_dir.join(rest),
            Err(_) => path.to_path_buf(),
        }
    } else {
        path.to_path_buf()
    }
}

/// The confirmation file's expected content for this deployment.
pub fn expected_confirmation(cfg: &Config) -> String {
    format!("venue = \"{}\"\naccount = \"{}\"\n", venue_name(cfg.exchange.venue), cfg.live.account)
}

fn venue_name(v: Venue) -> &'static str {
    match v {
        Venue::Binance => "binance",
        Venue::Upbit => "upbit",
    }
}

fn ok(name: &'static str, detail: impl Into<String>) -> Check {
    Check { name, ok: true, detail: detail.into() }
}

fn fail(name: &'static str, detail: impl Into<String>) -> Check {
    Check { name, ok: false, detail: detail.into() }
}

/// Checks every guard. Nothing is written: reconciliation is a dry run (a bot that ends up trading paper must not
/// have taken over the venue's holdings); the real one runs when the bot starts trading.
pub async fn assess(
    cfg: &Config,
    env: &GuardEnv,
    venue: &GuardVenue,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
) -> LiveVerdict {
    let checked_at = clock.now();
    let mut checks = Vec::new();
    checks.push(if cfg.mode == Mode::Live {
        ok("mode", "live")
    } else {
        fail("mode", format!("mode is {}: run with --mode live (or mode = \"live\")", cfg.mode.as_str()))
    });
    checks.push(match env.live_trading.as_deref() {
        Some("1") => ok("live_trading_env", format!("{LIVE_TRADING_VAR}=1")),
        Some(other) => fail("live_trading_env", format!("{LIVE_TRADING_VAR}={other:?}: set it to 1")),
        None => fail("live_trading_env", format!("{LIVE_TRADING_VAR} is not set: set it to 1")),
    });
    checks.push(confirmation(cfg));
    let reachable = match &venue.binance {
        Some(b) => b.rest().ping().await.map_err(|e| e.to_string()),
        None => match cfg.market.symbols.first() {
            Some(s) => venue.exchange.last_price(s).await.map(|_| ()).map_err(|e| e.to_string()),
            None => Err("no symbol configured".into()),
        },
    };
    checks.push(match &reachable {
        Ok(()) => ok("exchange_reachable", format!("{} answers", venue_name(cfg.exchange.venue))),
        Err(e) => fail("exchange_reachable", format!("{}: {e}", venue_name(cfg.exchange.venue))),
    });
    checks.push(clock_offset(cfg, venue).await);
    let equity = equity(cfg, venue.exchange.as_ref()).await;
    checks.push(match &equity {
        Ok(e) => ok("balances_readable", format!("equity {} {}", e.round_dp(2), cfg.market.quote)),
        Err(e) => fail("balances_readable", e.clone()),
    });
    checks.push(risk_limits(cfg, equity.as_ref().ok().copied()));
    checks.push(key_rights(cfg, venue).await);
    checks.push(ok(
        "dry_run",
        match cfg.live.dry_run_cycles {
            0 => "no dry run: orders go out from the first cycle".to_owned(),
            n => format!("the first {n} cycle(s) after every start simulate their orders and send nothing"),
        },
    ));
    let reconcile = ReconcileJob::new(store, venue.exchange.clone(), clock, cfg.market.symbols.clone())
        .with_unplaced_after(chrono::Duration::seconds(cfg.schedule.unplaced_order_secs))
        .with_tolerance(cfg.reconcile.drift_tolerance_pct / Decimal::ONE_HUNDRED)
        .with_unmanaged_holdings(cfg.reconcile.unmanaged_holdings);
    checks.push(match reconcile.check().await {
        Ok(r) if r.is_clean() => ok("reconciliation_clean", "stored positions and open orders match the exchange"),
        Ok(r) => fail("reconciliation_clean", unclean(&r)),
        Err(e) => fail("reconciliation_clean", format!("could not reconcile: {e}")),
    });
    LiveVerdict { checked_at, checks }
}

fn unclean(r: &mcbot_schedules::jobs::ReconcileReport) -> String {
    let mut why = Vec::new();
    why.extend(r.drifts.iter().map(|(s, a, b)| format!("{s}: stored {a}, exchange {b}")));
    why.extend(r.unknown_open_orders.iter().map(|o| format!("open order {o} at the exchange is not the bot's")));
    why.extend(r.awaiting_orders.iter().map(|o| format!("order {o} not yet known to the exchange")));
    format!("not clean: {}", why.join("; "))
}

fn confirmation(cfg: &Config) -> Check {
    const NAME: &str = "confirmation_file";
    let path = in_data_dir(&cfg.live.confirmation_file, &cfg.database.data_dir);
    let want = expected_confirmation(cfg).replace('\n', " ");
    if cfg.live.account.trim().is_empty() {
        return fail(NAME, "live.account is empty: name the account this deployment trades");
    }
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => return fail(NAME, format!("{}: {e}; write it with: {want}", path.display())),
    };
    let doc: toml::Table = match toml::from_str(&text) {
        Ok(d) => d,
        Err(_) => return fail(NAME, format!("{} is not `key = \"value\"` lines; it must say: {want}", path.display())),
    };
    let field = |k: &str| doc.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_owned();
    let (venue, account) = (field("venue"), field("account"));
    if venue != venue_name(cfg.exchange.venue) || account != cfg.live.account {
        return fail(
            NAME,
            format!(
                "{} confirms venue {venue:?} account {account:?}, not this deployment's: it must say: {want}",
                path.display()
            ),
        );
    }
    ok(NAME, format!("{} confirms {venue} account {account}", path.display()))
}

async fn clock_offset(cfg: &Config, venue: &GuardVenue) -> Check {
    const NAME: &str = "clock_offset";
    let max = cfg.live.max_clock_offset_ms;
    match &venue.binance {
        Some(b) => match b.rest().sync_time().await {
            Ok(ms) if ms.abs() < max => ok(NAME, format!("{ms} ms from Binance's clock (limit {max} ms)")),
            Ok(ms) => fail(NAME, format!("{ms} ms from Binance's clock, over {max} ms: sync the host clock (NTP)")),
            Err(e) => fail(NAME, format!("Binance's time could not be read: {e}")),
        },
        // Upbit has no time endpoint and signs with a nonce, not a timestamp: nothing to measure against.
        None => ok(NAME, "not measurable on Upbit (no time endpoint; requests are signed with a nonce): keep NTP on"),
    }
}

/// Equity on the venue: the quote balance plus each configured symbol's base balance at the last price.
async fn equity(cfg: &Config, exchange: &dyn Exchange) -> Result<Decimal, String> {
    let balances = exchange.balances().await.map_err(|e| format!("balances unreadable: {e}"))?;
    let total = |asset: &str| balances.iter().filter(|b| b.asset == asset).map(|b| b.total()).sum::<Decimal>();
    let mut equity = total(&cfg.market.quote);
    for s in &cfg.market.symbols {
        let inst = exchange.instrument(s).await.map_err(|e| format!("{s}: {e}"))?;
        let held = total(&inst.base);
        if !held.is_zero() {
            equity += held * exchange.last_price(s).await.map_err(|e| format!("{s} price: {e}"))?;
        }
    }
    Ok(equity)
}

/// The limits in force for the live order path: the smaller of the two notional caps.
pub fn live_max_order_notional(cfg: &Config) -> Decimal {
    cfg.pretrade.max_order_notional.min(cfg.live.max_order_notional)
}

fn risk_limits(cfg: &Config, equity: Option<Decimal>) -> Check {
    const NAME: &str = "risk_limits";
    let r = &cfg.risk;
    let mut problems = Vec::new();
    if r.stop_loss_pct.is_none() {
        problems.push("risk.stop_loss_pct is not set".to_owned());
    }
    if r.max_daily_loss_pct > r.max_weekly_loss_pct {
        problems.push(format!(
            "risk.max_daily_loss_pct {} is above risk.max_weekly_loss_pct {}",
            r.max_daily_loss_pct, r.max_weekly_loss_pct
        ));
    }
    if r.max_weekly_loss_pct > r.max_drawdown_pct {
        problems.push(format!(
            "risk.max_weekly_loss_pct {} is above risk.max_drawdown_pct {}",
            r.max_weekly_loss_pct, r.max_drawdown_pct
        ));
    }
    let cap = live_max_order_notional(cfg);
    match equity {
        Some(e) => {
            let share = e * r.max_order_equity_pct / Decimal::ONE_HUNDRED;
            if cap > share {
                problems.push(format!(
                    "max order notional {cap} is more than risk.max_order_equity_pct {}% of equity {} ({})",
                    r.max_order_equity_pct,
                    e.round_dp(2),
                    share.round_dp(2)
                ));
            }
        }
        None => problems.push("equity unknown (balances unreadable): max order notional not checked".into()),
    }
    if problems.is_empty() {
        ok(
            NAME,
            format!(
                "daily {}%, weekly {}%, drawdown {}%, stop-loss {}%, max order {cap} (<= {}% of equity), canary {}",
                r.max_daily_loss_pct,
                r.max_weekly_loss_pct,
                r.max_drawdown_pct,
                r.stop_loss_pct.unwrap_or_default(),
                r.max_order_equity_pct,
                cfg.live.capital_fraction
            ),
        )
    } else {
        fail(NAME, problems.join("; "))
    }
}

async fn key_rights(cfg: &Config, venue: &GuardVenue) -> Check {
    const NAME: &str = "key_cannot_withdraw";
    let allowed = cfg.live.allow_withdrawal_key;
    match (&venue.binance, cfg.exchange.venue) {
        (Some(b), _) => match b.rest().api_restrictions().await {
            Ok(r) => {
                let ip = if r.ip_restrict {
                    "IP-restricted"
                } else {
                    "not IP-restricted (recommended: restrict the key to this host's IP)"
                };
                match (r.enable_withdrawals, allowed) {
                    (false, _) => ok(NAME, format!("withdrawals disabled; {ip}")),
                    (true, true) => {
                        ok(NAME, format!("the key CAN withdraw, allowed by live.allow_withdrawal_key; {ip}"))
                    }
                    (true, false) => fail(
                        NAME,
                        format!(
                            "the key can withdraw: disable withdrawals on the key (or set live.allow_withdrawal_key); {ip}"
                        ),
                    ),
                }
            }
            Err(e) => fail(NAME, format!("the key's rights could not be read (apiRestrictions): {e}")),
        },
        (None, Venue::Upbit) if cfg.live.key_cannot_withdraw || allowed => ok(
            NAME,
            "Upbit does not show a key's rights: the owner states it cannot withdraw (live.key_cannot_withdraw)",
        ),
        (None, _) => fail(
            NAME,
            "Upbit's API does not show a key's rights, so this cannot be checked: make sure the key has no \
             withdrawal right, then set live.key_cannot_withdraw = true",
        ),
    }
}

/// Records the verdict: the state says whether live trading is on and which guards failed, an event tells the
/// owner (every start), the metrics show each guard.
pub async fn record(
    cfg: &Config,
    verdict: &LiveVerdict,
    store: &dyn Store,
) -> Result<(), mcbot_stages::ports::StoreError> {
    let active = verdict.passed();
    let failed = verdict.failed();
    let status = LiveStatus {
        active,
        checked_at: Some(verdict.checked_at),
        failed: failed.clone(),
        dry_run_cycles: cfg.live.dry_run_cycles,
        capital_fraction: cfg.live.capital_fraction,
    };
    let message = start_message(cfg, verdict);
    let (kind, severity) =
        if active { (EventKind::LiveStarted, Severity::Warning) } else { (EventKind::LiveRefused, Severity::Critical) };
    let payload = serde_json::json!({
        "active": active,
        "failed": failed,
        "capital_fraction": cfg.live.capital_fraction.to_string(),
        "dry_run_cycles": cfg.live.dry_run_cycles,
        "max_order_notional": live_max_order_notional(cfg).to_string(),
        "max_trades_per_day": cfg.live.max_trades_per_day,
    });
    let now = verdict.checked_at;
    mutate_state(store, None, |st| {
        st.live = Some(status.clone());
        vec![NewEvent::new(now, kind, severity, message.clone()).payload(payload.clone())]
    })
    .await?;
    for c in &verdict.checks {
        metrics::gauge!(crate::metrics::names::LIVE_GUARD_OK, "guard" => c.name).set(if c.ok { 1.0 } else { 0.0 });
    }
    metrics::gauge!(crate::metrics::names::LIVE_ACTIVE).set(if active { 1.0 } else { 0.0 });
    metrics::gauge!(crate::metrics::names::LIVE_CAPITAL_FRACTION)
        .set(crate::metrics::state::f(cfg.live.capital_fraction));
    Ok(())
}

/// The start message: live with the canary's size, or paper and every failed guard with why.
pub fn start_message(cfg: &Config, verdict: &LiveVerdict) -> String {
    if verdict.passed() {
        let pct = (cfg.live.capital_fraction * Decimal::ONE_HUNDRED).normalize();
        format!(
            "LIVE trading on {} account {}: {pct}% of equity (live.capital_fraction {}), at most {} {} per buy and {} \
             order(s) a day; the first {} cycle(s) are dry runs",
            venue_name(cfg.exchange.venue),
            cfg.live.account,
            cfg.live.capital_fraction,
            live_max_order_notional(cfg),
            cfg.market.quote,
            cfg.live.max_trades_per_day,
            cfg.live.dry_run_cycles
        )
    } else {
        let why: Vec<String> = verdict.failed().into_iter().map(|(k, v)| format!("{k}: {v}")).collect();
        format!("mode live refused, trading PAPER instead: {}", why.join("; "))
    }
}

/// The live order path, which only a [`Clearance`] builds.
pub fn live_exchange(
    _clearance: Clearance,
    cfg: &Config,
    venue: Arc<dyn Exchange>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
) -> Arc<LiveExchange> {
    Arc::new(LiveExchange::cleared(venue, store, clock, cfg.live.dry_run_cycles, cfg.risk.max_api_failures))
}

/// Counts finished trading cycles for the dry-run guard.
pub struct DryRunCounter(pub Arc<LiveExchange>);

impl mcbot_schedules::RunObserver for DryRunCounter {
    fn run_finished(&self, run: &mcbot_schedules::RunEnd<'_>) {
        if run.job == mcbot_schedules::jobs::TradingCycleJob::NAME {
            self.0.cycle_finished();
        }
    }
}
