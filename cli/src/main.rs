//! `tern`: the Tern terminal chat client.
//!
//! - `args`: the command line (clap).
//! - `commands`: one module per group of subcommands, on top of
//!   [`tern_core::Client`].
//! - `output`: human-readable or `--json` lines.
//! - `tui`: the interactive client (`tern chat`, ratatui).
//! - `home`, `session`: the state directory, config and the open client.
//! - `failure`: errors a person understands and the documented exit codes.

mod args;
mod commands;
mod failure;
mod home;
mod output;
mod qr;
mod session;
mod tui;

use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command};
use failure::{Exit, exit_code, explain};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    init_logging(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return report(&anyhow::Error::new(e), json),
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::from(Exit::Ok as u8),
        Err(e) => report(&e, json),
    }
}

/// Prints the error on stderr (as JSON with `--json`) and picks the exit code.
fn report(error: &anyhow::Error, json: bool) -> ExitCode {
    let code = exit_code(error) as u8;
    let text = explain(error);
    if json {
        eprintln!(
            "{}",
            serde_json::json!({"type": "error", "code": code, "error": text})
        );
    } else {
        eprintln!("tern: {text}");
    }
    ExitCode::from(code)
}

/// Diagnostics go to stderr when `TERN_LOG` is set; `tern chat` writes them
/// to `tern.log` in the home instead, since the screen is taken.
fn init_logging(cli: &Cli) {
    let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("TERN_LOG") else {
        return;
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if matches!(cli.command, Command::Chat) {
        let Ok(home) = home::Home::resolve(cli.home.clone()) else {
            return;
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(home.log_path());
        if let Ok(file) = file {
            builder
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(file))
                .init();
        }
    } else {
        builder.with_writer(std::io::stderr).init();
    }
}
