//! The `mcbot` binary: parse arguments, load config, assemble, dispatch. The only place anyhow-style handling
//! lives: every error is printed once and mapped to its exit code (0 ok, 1 runtime failure, 2 usage/config).

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use mcbot::app::{self, App, AppError};
use mcbot::cli::{Cli, Command};
use mcbot::commands;
use mcbot::config::Config;
use mcbot::store::SqlStore;
use mcbot_stages::SystemClock;
use mcbot_stages::control::Command as Control;

fn main() -> ExitCode {
    quiet_on_closed_stdout();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    let json = cli.output == mcbot::cli::Output::Json;
    // A backtest needs neither the async runtime nor configuration: it runs before either is built, so a one-shot
    // run pays for no worker threads it never uses.
    if let Command::Backtest(args) = &cli.command {
        mcbot_stages::backtest::buffers::one_heap();
        if args.run.sweep.is_empty() {
            mcbot_stages::backtest::buffers::map_large_buffers();
        }
        return ExitCode::from(finish(
            json,
            commands::backtest::run_cli(args, json).map_err(|e| (e.exit_code(), e.to_string())),
        ));
    }
    // The error tracker's process hub belongs to this thread; every runtime thread reports to it.
    let _ = sentry::Hub::main();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_start(mcbot::error_tracking::bind_thread_to_main_hub)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            report(json, e.exit_code(), &e.to_string());
            ExitCode::from(e.exit_code())
        }
    }
}

/// `mcbot ... | head -1`: once the reader has gone, printing fails with a broken pipe and `println!` panics.
/// The output is no longer wanted, so the process ends quietly with exit 0, as `yes | head` does; every
/// other panic keeps the default report.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

/// A command line clap refused: `--help` and `--version` print as usual; a real error is reported like every
/// other (exit 2), as one JSON document too when the words on the command line (or `MCBOT_OUTPUT`) asked for
/// JSON, so a script never has to parse clap's text.
fn usage_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    let args: Vec<String> = std::env::args().collect();
    let json = args.windows(2).any(|w| w[0] == "--output" && w[1] == "json")
        || args.iter().any(|a| a == "--output=json")
        || std::env::var("MCBOT_OUTPUT").is_ok_and(|v| v == "json");
    if json {
        let rendered = e.render().to_string();
        let message = rendered.lines().next().unwrap_or_default().trim_start_matches("error: ");
        println!("{}", serde_json::json!({ "error": message, "exit_code": 2 }));
    }
    let _ = e.print();
    ExitCode::from(2)
}

/// Prints an error once: `error: ...` on stderr, or with `--output json` also one JSON document on stdout, so a
/// script reading stdout learns why there is no result.
fn report(json: bool, code: u8, message: &str) {
    eprintln!("error: {message}");
    if json {
        let doc = serde_json::json!({ "error": message, "exit_code": code });
        println!("{doc}");
    }
}

/// default.toml, the mode's own profile (paper.toml, live.toml) when it exists, the `--profile`s, the env.
fn load_config(cli: &Cli) -> Result<Config, AppError> {
    let mut profiles = Vec::new();
    if let Some(mode) = cli.mode.filter(|m| cli.config.join(format!("{}.toml", m.as_str())).exists()) {
        profiles.push(mode.as_str().to_owned());
    }
    profiles.extend(cli.profile.iter().cloned());
    Ok(Config::load_as(&cli.config, &profiles, std::env::vars(), cli.mode)?)
}

async fn run(cli: Cli) -> Result<u8, AppError> {
    let json = cli.output == mcbot::cli::Output::Json;
    match &cli.command {
        Command::Validate(args) => {
            return Ok(match commands::validate::run(args, json) {
                Ok(code) => code,
                Err(e) => finish(json, Err((e.exit_code(), e.to_string()))),
            });
        }
        Command::Config(mcbot::cli::ConfigCommand::Keys) => {
            print!("{}", Config::reference_markdown());
            return Ok(0);
        }
        Command::Health(args) => {
            // A probe exits 0 or 1 whatever goes wrong, a bad configuration included (Docker reserves 2).
            let listen = load_config(&cli).map(|c| c.http.listen).map_err(|e| e.to_string());
            return Ok(commands::health::run(listen, args, json).await);
        }
        _ => {}
    }
    let cfg = load_config(&cli)?;
    mcbot::logging::init(cli.log_format.unwrap_or(cfg.log.format), &cfg.log.level);
    if let Command::Config(_) = cli.command {
        println!("configuration valid (mode {})", cfg.mode.as_str());
        return Ok(0);
    }
    // The scheduler's metrics recorder goes in before anything is assembled, so what the adapters record while
    // they start is kept.
    if let Command::Scheduler = cli.command {
        mcbot::metrics::install().map_err(mcbot::admin::AdminError::from)?;
    }
    // Error tracking (when a DSN is configured) for the long-running scheduler; flushed when this returns.
    let tracking = match cli.command {
        Command::Scheduler => mcbot::error_tracking::ErrorTracking::init(&cfg)?,
        _ => None,
    };
    let url = app::database_url(&cfg, cli.database_url.clone())?;
    if let Command::Migrate = cli.command {
        commands::migrate::run(&url, cli.output).await?;
        return Ok(0);
    }
    // `status` looks; it never creates a database where nothing has run.
    if let Command::Status = cli.command
        && let Some(db) = SqlStore::sqlite_file(&url)
        && !db.exists()
    {
        let note = format!(
            "no database at {} yet: nothing has run here (mcbot run-once or scheduler creates it)",
            db.display()
        );
        if json {
            println!("{}", serde_json::json!({ "database": db, "exists": false, "note": note }));
        } else {
            println!("{note}");
        }
        return Ok(0);
    }
    // Held until the process ends: the OS releases it even after a crash.
    let _owner = match cli.command {
        Command::Scheduler => app::own_database(&url)?,
        _ => None,
    };
    let store = app::open_store(&url).await?;
    if let Command::Scheduler = cli.command {
        // A panic records a crash event and tries to tell people at once, before the process dies.
        let report = mcbot::notify::lifecycle::CrashReport::new(
            url.clone(),
            cfg.notify.clone(),
            std::time::Duration::from_secs(3),
        );
        mcbot::notify::lifecycle::install_panic_hook(report);
    }
    let result = serve(&cli, cfg, store.clone(), json).await;
    // Closing the pool lets SQLite checkpoint its write-ahead log into the database file, so the file alone
    // holds everything once the command has ended.
    store.close().await;
    if let Some(t) = &tracking
        && !t.flush()
    {
        tracing::warn!("error tracking: some events were not sent before the time-out");
    }
    result
}

async fn serve(cli: &Cli, cfg: Config, store: SqlStore, json: bool) -> Result<u8, AppError> {
    if let Command::Backup(args) = &cli.command {
        return commands::backup::run(&store, &args.file, cli.output).await.map(|()| 0);
    }
    let clock = SystemClock;
    let (command, reason) = match &cli.command {
        Command::Pause(a) => (Some(Control::Pause), a.reason.as_str()),
        Command::Resume(a) => (Some(Control::Resume), a.reason.as_str()),
        Command::Kill(a) => {
            (Some(Control::Kill { cancel_orders: !a.no_cancel, flatten: a.flatten }), a.reason.as_str())
        }
        Command::ResetSafeMode(a) => (Some(Control::ResetSafeMode), a.reason.as_str()),
        Command::ResetBreaker(a) => (Some(Control::ResetBreaker { name: a.name.clone() }), a.reason.as_str()),
        _ => (None, ""),
    };
    if let Some(command) = command {
        let cancel = matches!(command, Control::Kill { cancel_orders: true, .. });
        let (mut code, mut doc) = commands::control::run(&store, &clock, command, reason, cli.output).await?;
        if code == 0 && cancel {
            let app = App::build(cfg, store, Arc::new(SystemClock)).await?;
            let (canceled, orders) = commands::control::cancel_open_orders(&app, cli.output).await?;
            code = canceled;
            doc["open_orders"] = orders;
        }
        // One JSON document per command, the kill's cancellations in it.
        if json {
            mcbot::output::print_json(&doc).map_err(AppError::Runtime)?;
        }
        return Ok(code);
    }
    if let Command::Events(args) = &cli.command {
        commands::events::run(&store, args, cli.output).await?;
        return Ok(0);
    }
    if let Command::Notify(sub) = &cli.command {
        return commands::notify::run(&cfg, &store, sub, cli.output).await;
    }
    if let Command::Data(args) = &cli.command {
        let exchange = match args.exchange_wanted() {
            None => None,
            Some(name) => Some(app::data_source(&cfg, name, Arc::new(SystemClock), Arc::new(store.clone())).await?),
        };
        return match commands::data::run(args, exchange, json).await {
            Ok(()) => Ok(0),
            Err(e) if e.exit_code() == 2 => {
                report(json, 2, &e.to_string());
                Ok(2)
            }
            Err(e) => Err(AppError::Data(e)),
        };
    }
    if let Command::Preflight = &cli.command {
        return commands::preflight::run(cfg, store, Arc::new(SystemClock), cli.output).await;
    }
    if matches!(cli.command, Command::RunOnce(_) | Command::Scheduler) {
        app::claim_book(&cfg, &store, cli.adopt_book).await?;
    }
    let clock = app::clock_for(&cfg, &store).await?;
    // Only the commands that trade check the live guards; the others get a venue that places nothing.
    let app = match &cli.command {
        Command::RunOnce(_) | Command::Scheduler => {
            App::start(cfg, store, clock, &mcbot::live::GuardEnv::from_process()).await?
        }
        _ => App::build(cfg, store, clock).await?,
    };
    match &cli.command {
        Command::RunOnce(args) => Ok(u8::from(commands::run_once::run(&app, args, cli.output).await?)),
        Command::Scheduler => commands::scheduler::run(&app).await.map(|()| 0),
        Command::Jobs => commands::jobs::run(&app, cli.output).map(|()| 0),
        Command::Status => commands::status::run(&app, cli.output).await.map(|()| 0),
        Command::Report(args) => commands::report::run(&app, args, cli.output).await.map(|()| 0),
        Command::Migrate
        | Command::Health(_)
        | Command::Backtest(_)
        | Command::Validate(_)
        | Command::Data(_)
        | Command::Pause(_)
        | Command::Resume(_)
        | Command::Kill(_)
        | Command::ResetSafeMode(_)
        | Command::ResetBreaker(_)
        | Command::Events(_)
        | Command::Config(_)
        | Command::Notify(_)
        | Command::Preflight
        | Command::Backup(_) => Ok(0),
    }
}

fn finish(json: bool, result: Result<(), (u8, String)>) -> u8 {
    match result {
        Ok(()) => 0,
        Err((code, message)) => {
            report(json, code, &message);
            code
        }
    }
}
