//! `tern group create|add|remove|rename|list`.

use std::time::Duration;

use tern_core::{ChatId, ChatKind};

use crate::args::GroupCommand;
use crate::failure::Failure;
use crate::output::Printer;
use crate::record::{GroupRecord, MembershipRecord, Record};
use crate::session::Session;

/// How long group commands wait for the relay (renaming and the title of a
/// new group go out through the outbox; the command returns once the relay
/// has them).
const RELAY_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs a group subcommand.
pub async fn run(session: &Session, command: GroupCommand, out: Printer) -> anyhow::Result<()> {
    match command {
        GroupCommand::Create { name, members } => {
            let mut ids = Vec::with_capacity(members.len());
            for member in &members {
                ids.push(session.contact_or_add(member, RELAY_TIMEOUT).await?.user_id);
            }
            session.online(RELAY_TIMEOUT).await?;
            let chat_id = session.client.create_group(name.clone(), ids).await?;
            session.flushed(RELAY_TIMEOUT).await?;
            print_group(session, chat_id, out, || {
                format!("created group {name} with {}", members.join(", "))
            })
        }
        GroupCommand::Add { group, name } => change(session, &group, &name, true, out).await,
        GroupCommand::Remove { group, name } => change(session, &group, &name, false, out).await,
        GroupCommand::Rename { group, name } => {
            let chat = session.group(&group)?;
            session.client.rename_group(chat.chat_id, name.clone())?;
            session.flushed(RELAY_TIMEOUT).await?;
            print_group(session, chat.chat_id, out, || {
                format!("renamed group {} to {name}", chat.title)
            })
        }
        GroupCommand::List => {
            let names = session.names()?;
            for chat in session.client.chats()? {
                if chat.kind == ChatKind::Group {
                    let record = GroupRecord::new(&names, &chat);
                    let text = list_line(&record);
                    out.emit(&Record::Group(record), || text)?;
                }
            }
            Ok(())
        }
    }
}

/// `group list`'s line: `NAME (N unread): MEMBER, …`.
fn list_line(group: &GroupRecord) -> String {
    let unread = match group.unread {
        0 => String::new(),
        n => format!(" ({n} unread)"),
    };
    format!("{}{unread}: {}", group.name, group.members.join(", "))
}

/// Prints the `group` record of the group `chat_id` as it is stored now, or
/// `text`.
fn print_group(
    session: &Session,
    chat_id: ChatId,
    out: Printer,
    text: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    let chat = session
        .client
        .chats()?
        .into_iter()
        .find(|c| c.chat_id == chat_id)
        .ok_or_else(|| Failure::UnknownGroup(hex::encode(chat_id)))?;
    let record = GroupRecord::new(&session.names()?, &chat);
    out.emit(&Record::Group(record), text)
}

/// Adds (`add`) or removes a member; a user added who is not a contact yet
/// is looked up on the relay first.
async fn change(
    session: &Session,
    group: &str,
    name: &str,
    add: bool,
    out: Printer,
) -> anyhow::Result<()> {
    let chat = session.group(group)?;
    let account = session.client.account();
    let user = if add {
        session.contact_or_add(name, RELAY_TIMEOUT).await?.user_id
    } else if name == account.user_name {
        account.user_id
    } else {
        session.contact(name)?.user_id
    };
    session.online(RELAY_TIMEOUT).await?;
    let (added, removed) = if add {
        (vec![user], Vec::new())
    } else {
        (Vec::new(), vec![user])
    };
    session
        .client
        .change_members(chat.chat_id, added, removed)
        .await?;
    let names = session.names()?;
    let record = MembershipRecord {
        group: names.chat(&chat.chat_id),
        chat_id: hex::encode(chat.chat_id),
        user: name.to_owned(),
        change: if add { "added" } else { "removed" },
    };
    let text = format!(
        "{} {name} {} {}",
        record.change,
        if add { "to" } else { "from" },
        record.group
    );
    out.emit(&Record::Membership(record), || text)
}
