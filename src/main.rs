//! The `mcbot` binary: parse arguments, load config, assemble, dispatch. The only place anyhow-style handling
//! lives: every error is printed once and mapped to its exit code (0 ok, 1 runtime failure, 2 usage/config).

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use mcbot::app::{self, App, AppError};
use mcbot::cli::{Cli, Command};
use mcbot::commands;
use mcbot::config::Config;
use mcbot_stages::SystemClock;
use mcbot_stages::control::Command as Control;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

async fn run(cli: Cli) -> Result<u8, AppError> {
    let json = cli.output == mcbot::cli::Output::Json;
    match &cli.command {
        Command::Backtest(args) => {
            return Ok(finish(commands::backtest::run(args, json).map_err(|e| (e.exit_code(), e.to_string()))));
        }
        Command::Validate(args) => {
            return Ok(finish(commands::validate::run(args, json).map_err(|e| (e.exit_code(), e.to_string()))));
        }
        _ => {}
    }
    let mut profiles = Vec::new();
    // The mode's own profile (paper.toml, live.toml) is layered in when it exists.
    if let Some(mode) = cli.mode.filter(|m| cli.config.join(format!("{}.toml", m.as_str())).exists()) {
        profiles.push(mode.as_str().to_owned());
    }
    profiles.extend(cli.profile.iter().cloned());
    let mut cfg = Config::load(&cli.config, &profiles, std::env::vars())?;
    if let Some(mode) = cli.mode {
        cfg.mode = mode;
    }
    mcbot::logging::init(cli.log_format.unwrap_or(cfg.log.format), &cfg.log.level);
    let url = app::database_url(&cfg, cli.database_url.clone())?;
    if let Command::Migrate = cli.command {
        commands::migrate::run(&url, cli.output).await?;
        return Ok(0);
    }
    let store = app::open_store(&url).await?;
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
        let code = commands::control::run(&store, &clock, command, reason, cli.output).await?;
        if code != 0 || !cancel {
            return Ok(code);
        }
        let app = App::build(cfg, store, Arc::new(SystemClock)).await?;
        return commands::control::cancel_open_orders(&app, cli.output).await;
    }
    if let Command::Events(args) = &cli.command {
        commands::events::run(&store, args, cli.output).await?;
        return Ok(0);
    }
    if let Command::Data(args) = &cli.command {
        let exchange = match args.exchange_wanted() {
            None => None,
            Some(name) => Some(app::data_source(&cfg, name, Arc::new(SystemClock), Arc::new(store.clone())).await?),
        };
        return match commands::data::run(args, exchange, json).await {
            Ok(()) => Ok(0),
            Err(e) if e.exit_code() == 2 => {
                eprintln!("error: {e}");
                Ok(2)
            }
            Err(e) => Err(AppError::Data(e)),
        };
    }
    let app = App::build(cfg, store, Arc::new(SystemClock)).await?;
    match &cli.command {
        Command::RunOnce(args) => Ok(u8::from(commands::run_once::run(&app, args, cli.output).await?)),
        Command::Scheduler => commands::scheduler::run(&app).await.map(|()| 0),
        Command::Jobs => commands::jobs::run(&app, cli.output).map(|()| 0),
        Command::Status => commands::status::run(&app, cli.output).await.map(|()| 0),
        Command::Migrate
        | Command::Backtest(_)
        | Command::Validate(_)
        | Command::Data(_)
        | Command::Pause(_)
        | Command::Resume(_)
        | Command::Kill(_)
        | Command::ResetSafeMode(_)
        | Command::ResetBreaker(_)
        | Command::Events(_) => Ok(0),
    }
}

fn finish(result: Result<(), (u8, String)>) -> u8 {
    match result {
        Ok(()) => 0,
        Err((code, message)) => {
            eprintln!("error: {message}");
            code
        }
    }
}
