//! One module per group of subcommands; [`run`] dispatches.

mod account;
mod contact;
mod group;
mod messages;
mod recv;

use crate::args::{Cli, Command};
use crate::home::Home;
use crate::output::Printer;
use crate::session::Session;

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let home = Home::resolve(cli.home)?;
    let out = Printer::new(cli.json);
    if let Command::Init(args) = cli.command {
        return account::init(home, &args, out).await;
    }
    let session = Session::open(home).await?;
    let result = match cli.command {
        Command::Init(_) => Ok(()),
        Command::Whoami => account::whoami(&session, out),
        Command::Contact(command) => contact::run(&session, command, out).await,
        Command::Send(args) => messages::send(&session, args, out).await,
        Command::Recv(args) => recv::run(&session, &args, out).await,
        Command::History(args) => messages::history(&session, &args, out),
        Command::Search(args) => messages::search(&session, &args, out),
        Command::Group(command) => group::run(&session, command, out).await,
        Command::Chat => crate::tui::run(&session).await,
    };
    session.close().await;
    result
}
