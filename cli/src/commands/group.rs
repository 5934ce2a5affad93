//! `tern group create|add|remove|promote|rename|list`.

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
        GroupCommand::Add { group, name } => change(session, &group, &name, Change::Add, out).await,
        GroupCommand::Remove { group, name } => {
            change(session, &group, &name, Change::Remove, out).await
        }
        GroupCommand::Promote { group, name } => {
            change(session, &group, &name, Change::Promote, out).await
        }
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

/// `group list`'s line: `NAME (N unread): MEMBER (admin), MEMBER, …`.
fn list_line(group: &GroupRecord) -> String {
    let unread = match group.unread {
        0 => String::new(),
        n => format!(" ({n} unread)"),
    };
    let members: Vec<String> = group
        .members
        .iter()
        .map(|member| {
            if group.admins.contains(member) {
                format!("{member} (admin)")
            } else {
                member.clone()
            }
        })
        .collect();
    format!("{}{unread}: {}", group.name, members.join(", "))
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

/// A membership change `tern group` asks the relay for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    /// `group add`.
    Add,
    /// `group remove` (this account's own name leaves).
    Remove,
    /// `group promote`: make a member an admin.
    Promote,
}

impl Change {
    /// The `membership` record's `change`.
    fn name(self) -> &'static str {
        match self {
            Change::Add => "added",
            Change::Remove => "removed",
            Change::Promote => "promoted",
        }
    }

    /// The text output: `added NAME to #GROUP`, `removed NAME from #GROUP`,
    /// `promoted NAME to admin of #GROUP`.
    fn text(self, name: &str, group: &str) -> String {
        let preposition = match self {
            Change::Add => "to",
            Change::Remove => "from",
            Change::Promote => "to admin of",
        };
        format!("{} {name} {preposition} {group}", self.name())
    }
}

/// Adds, removes or promotes a member; a user added who is not a contact
/// yet is looked up on the relay first. The relay refuses a change this
/// account may not make (only admins change others).
async fn change(
    session: &Session,
    group: &str,
    name: &str,
    change: Change,
    out: Printer,
) -> anyhow::Result<()> {
    let chat = session.group(group)?;
    let account = session.client.account();
    let user = if change == Change::Add {
        session.contact_or_add(name, RELAY_TIMEOUT).await?.user_id
    } else if name == account.user_name {
        account.user_id
    } else {
        session.contact(name)?.user_id
    };
    session.online(RELAY_TIMEOUT).await?;
    match change {
        Change::Add => {
            session
                .client
                .change_members(chat.chat_id, vec![user], Vec::new())
                .await?;
        }
        Change::Remove => {
            session
                .client
                .change_members(chat.chat_id, Vec::new(), vec![user])
                .await?;
        }
        Change::Promote => session.client.promote(chat.chat_id, vec![user]).await?,
    }
    let names = session.names()?;
    let record = MembershipRecord {
        group: names.chat(&chat.chat_id),
        chat_id: hex::encode(chat.chat_id),
        user: name.to_owned(),
        change: change.name(),
    };
    let text = change.text(name, &record.group);
    out.emit(&Record::Membership(record), || text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_lines_mark_admins() {
        let group = GroupRecord {
            name: "team".into(),
            chat_id: "ab".repeat(16),
            members: vec!["alice".into(), "bob".into(), "carol".into()],
            admins: vec!["alice".into()],
            unread: 0,
        };
        assert_eq!(list_line(&group), "team: alice (admin), bob, carol");
        let unread = GroupRecord { unread: 2, ..group };
        assert_eq!(
            list_line(&unread),
            "team (2 unread): alice (admin), bob, carol"
        );
    }

    #[test]
    fn changes_read_as_sentences() {
        assert_eq!(Change::Add.text("dave", "#team"), "added dave to #team");
        assert_eq!(
            Change::Remove.text("bob", "#team"),
            "removed bob from #team"
        );
        assert_eq!(
            Change::Promote.text("bob", "#team"),
            "promoted bob to admin of #team"
        );
        assert_eq!(Change::Promote.name(), "promoted");
    }
}
