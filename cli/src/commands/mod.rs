//! One module per group of subcommands; [`run`] dispatches.

mod account;
mod contact;
mod device;
mod group;
mod messages;
mod recv;

pub use messages::{guess_type, safe_file_name};

use crate::args::{Cli, Command, LinkCommand};
use crate::home::Home;
use crate::output::Printer;
use crate::session::Session;

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let home = Home::resolve(cli.home)?;
    let out = Printer::new(cli.json);
    match cli.command {
        Command::Init(args) => return account::init(home, &args, out).await,
        Command::Link(LinkCommand::Accept {
            code,
            relay,
            timeout,
        }) => {
            return device::link_accept(home, code, &relay, timeout, out).await;
        }
        _ => {}
    }
    let session = Session::open(home).await?;
    let result = match cli.command {
        Command::Init(_) | Command::Link(LinkCommand::Accept { .. }) => Ok(()),
        Command::Link(LinkCommand::New { timeout, confirm }) => {
            device::link_new(&session, timeout, confirm, out).await
        }
        Command::Device(command) => device::run(&session, command, out).await,
        Command::Whoami => account::whoami(&session, out),
        Command::Contact(command) => contact::run(&session, command, out).await,
        Command::Send(args) => messages::send(&session, args, out).await,
        Command::SendFile(args) => messages::send_file(&session, args, out).await,
        Command::Download(args) => messages::download(&session, &args, out).await,
        Command::Recv(args) => recv::run(&session, &args, out).await,
        Command::History(args) => messages::history(&session, &args, out).await,
        Command::Search(args) => messages::search(&session, &args, out),
        Command::Group(command) => group::run(&session, command, out).await,
        Command::Chat => crate::tui::run(&session).await,
    };
    session.close().await;
    result
}
