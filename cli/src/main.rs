//! `tern`: the Tern terminal chat client.
//!
//! - `args`: the command line (clap).
//! - `commands`: one module per group of subcommands, on top of
//!   [`tern_core::Client`].
//! - `output`: human-readable or `--json` lines.
//! - `record`: the `--json` records, one enum (documented in `docs/cli.md`).
//! - `tui`: the interactive client (`tern chat`, ratatui).
//! - `home`, `session`: the state directory, config and the open client.
//! - `failure`: errors a person understands and the documented exit codes.

mod args;
mod commands;
mod failure;
mod home;
mod output;
mod peer_text;
mod qr;
mod record;
mod session;
mod tui;

/// `docs/cli.md` read as a schema, shared with the end-to-end tests.
#[cfg(test)]
#[path = "../tests/cli_doc/mod.rs"]
mod cli_doc;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command};
use failure::{Exit, exit_code, explain};
use output::Printer;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return command_line_error(&e),
    };
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
        Ok(()) => ExitCode::from(Exit::Ok.code()),
        Err(e) => report(&e, json),
    }
}

/// Prints what clap has to say: the help or version asked for (success), or
/// why the command line is wrong (a usage error, as a JSON `error` record
/// when `--json` is among the arguments).
fn command_line_error(error: &clap::Error) -> ExitCode {
    if !error.use_stderr() {
        // A closed stdout is not worth reporting.
        let _ = error.print();
        return ExitCode::from(Exit::Ok.code());
    }
    if std::env::args_os().any(|arg| arg == "--json") {
        let text = error.render().to_string();
        let text = text.trim();
        let text = text.strip_prefix("error: ").unwrap_or(text);
        Printer::new(true).error(Exit::Usage, text.to_owned());
    } else {
        let _ = error.print();
    }
    ExitCode::from(Exit::Usage.code())
}

/// Prints the error on stderr (as JSON with `--json`) and picks the exit code.
fn report(error: &anyhow::Error, json: bool) -> ExitCode {
    let exit = exit_code(error);
    Printer::new(json).error(exit, explain(error));
    ExitCode::from(exit.code())
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
        builder
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .init();
    }
}
