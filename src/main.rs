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
        Command::Config(mcbot::cli::ConfigCommand::Keys) => {
            print!("{}", Config::reference_markdown());
            return Ok(0);
        }
        _ => {}
    }
    let mut profiles = Vec::new();
    // The mode's own profile (paper.toml, live.toml) is layered in when it exists.
    if let Some(mode) = cli.mode.filter(|m| cli.config.join(format!("{}.toml", m.as_str())).exists()) {
        profiles.push(mode.as_str().to_owned());
    }
    profiles.extend(cli.profile.iter().cloned());
    let cfg = Config::load_as(&cli.config, &profiles, std::env::vars(), cli.mode)?;
    mcbot::logging::init(cli.log_format.unwrap_or(cfg.log.format), &cfg.log.level);
    if let Command::Config(_) = cli.command {
        println!("configuration valid (mode {})", cfg.mode.as_str());
        return Ok(0);
    }
    let url = app::database_url(&cfg, cli.database_url.clone())?;
    if let Command::Migrate = cli.command {
        commands::migrate::run(&url, cli.output).await?;
        return Ok(0);
    }
    let store = app::open_store(&url).await?;
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
        Command::Migrate | Command::Backtest(_) | Command::Validate(_) | Command::Data(_) | Command::Config(_) => Ok(0),
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
