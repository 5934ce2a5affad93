//! `tern group create|add|remove|rename|list`.

use std::time::Duration;

use serde_json::json;
use tern_core::client::ChatKind;

use crate::args::GroupCommand;
use crate::output::Printer;
use crate::session::Session;

/// How long group creation and renaming wait for the relay (renaming and
/// the title of a new group go out through the outbox; the command returns
/// once the relay has them).
const RELAY_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs a group subcommand.
pub async fn run(session: &Session, command: GroupCommand, out: Printer) -> anyhow::Result<()> {
    match command {
        GroupCommand::Create { name, members } => {
            let ids = members
                .iter()
                .map(|m| session.contact(m).map(|c| c.user_id))
                .collect::<anyhow::Result<Vec<_>>>()?;
            session.online(RELAY_TIMEOUT).await?;
            let chat_id = session.client.create_group(name.clone(), ids).await?;
            session.flushed(RELAY_TIMEOUT).await?;
            out.emit(
                json!({"type": "group", "name": name, "chat_id": hex::encode(chat_id), "members": members}),
                || format!("created group {name} with {}", members.join(", ")),
            );
            Ok(())
        }
        GroupCommand::Add { group, name } => change(session, &group, &name, true, out).await,
        GroupCommand::Remove { group, name } => change(session, &group, &name, false, out).await,
        GroupCommand::Rename { group, name } => {
            let chat = session.group(&group)?;
            session.client.rename_group(chat.chat_id, name.clone())?;
            session.flushed(RELAY_TIMEOUT).await?;
            out.emit(
                json!({"type": "group", "name": name, "chat_id": hex::encode(chat.chat_id)}),
                || format!("renamed group {} to {name}", chat.title),
            );
            Ok(())
        }
        GroupCommand::List => {
            let names = session.names()?;
            for chat in session.client.chats()? {
                if chat.kind != ChatKind::Group {
                    continue;
                }
                let members: Vec<String> = chat.members.iter().map(|m| names.user(m)).collect();
                out.emit(
                    json!({
                        "type": "group",
                        "name": chat.title,
                        "chat_id": hex::encode(chat.chat_id),
                        "members": members,
                        "unread": chat.unread,
                    }),
                    || {
                        let unread = match chat.unread {
                            0 => String::new(),
                            n => format!(" ({n} unread)"),
                        };
                        format!("{}{unread}: {}", chat.title, members.join(", "))
                    },
                );
            }
            Ok(())
        }
    }
}

/// Adds (`add`) or removes a member.
async fn change(
    session: &Session,
    group: &str,
    name: &str,
    add: bool,
    out: Printer,
) -> anyhow::Result<()> {
    let chat = session.group(group)?;
    let account = session.client.account();
    let user = if !add && name == account.user_name {
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
    let verb = if add { "added" } else { "removed" };
    out.emit(
        json!({
            "type": "membership",
            "group": names.chat(&chat.chat_id),
            "chat_id": hex::encode(chat.chat_id),
            "user": name,
            "change": verb,
        }),
        || {
            format!(
                "{verb} {name} {} {}",
                if add { "to" } else { "from" },
                names.chat(&chat.chat_id)
            )
        },
    );
    Ok(())
}
