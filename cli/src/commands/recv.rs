//! `tern recv [--follow]`: print what arrived since the last run.
//!
//! The last printed local message id is kept in `recv.mark` in the home, so
//! that messages stored by any earlier command (a `tern send` also receives)
//! are printed exactly once, in per-chat order.

use std::collections::BTreeMap;
use std::time::Duration;

use tern_core::ClientEvent;
use tern_core::{ChatId, Message};

use crate::args::RecvArgs;
use crate::output::Printer;
use crate::peer_text::renamed_notice;
use crate::session::Session;

/// Messages read per history page while collecting new ones.
const PAGE: u32 = 200;

/// Runs `tern recv`.
pub async fn run(session: &Session, args: &RecvArgs, out: Printer) -> anyhow::Result<()> {
    let mut events = session.client.subscribe();
    session.synced(Duration::from_secs(args.timeout)).await?;
    let mut mark = Mark::load(session)?;
    print_new(session, &mut mark, args.mark_read, out)?;
    while let Some(event) = events.try_next() {
        warn_renamed(session, &event, out)?;
    }
    if !args.follow {
        flush_receipts(session, args, out).await;
        return Ok(());
    }
    loop {
        let event = tokio::select! {
            event = events.next() => event,
            _ = tokio::signal::ctrl_c() => {
                flush_receipts(session, args, out).await;
                return Ok(());
            }
        };
        match event {
            Some(ClientEvent::MessageReceived(_) | ClientEvent::Lagged { .. }) => {
                print_new(session, &mut mark, args.mark_read, out)?;
            }
            Some(event) => warn_renamed(session, &event, out)?,
            None => return Ok(()),
        }
    }
}

/// Warns (a `warning` record) when another member renamed a group: a
/// script addressing groups by name must notice that a name moved.
fn warn_renamed(session: &Session, event: &ClientEvent, out: Printer) -> anyhow::Result<()> {
    if let ClientEvent::ChatTitleChanged { chat_id, title, by } = event
        && *by != session.client.account().user_id
    {
        let by = session.names()?.user(by);
        let id = hex::encode(&chat_id[..4]);
        out.warn(format!("{} (group {id})", renamed_notice(None, title, &by)));
    }
    Ok(())
}

/// Sends what receiving queued (delivered and read receipts, session
/// resets) before the command exits, waiting at most `--timeout`: what the
/// relay has not acknowledged by then stays queued for the next command,
/// with a warning (the messages were received and printed either way).
async fn flush_receipts(session: &Session, args: &RecvArgs, out: Printer) {
    if let Err(e) = session.flushed(Duration::from_secs(args.timeout)).await {
        out.warn(format!("receipts stay queued for the next command: {e}"));
    }
}

/// The last local message id printed by `tern recv`.
struct Mark {
    path: std::path::PathBuf,
    last: i64,
}

impl Mark {
    fn load(session: &Session) -> anyhow::Result<Self> {
        let path = session.home.recv_mark_path();
        let last = match std::fs::read_to_string(&path) {
            Ok(text) => text.trim().parse().unwrap_or(0),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e.into()),
        };
        Ok(Self { path, last })
    }

    fn advance(&mut self, last: i64) -> anyhow::Result<()> {
        if last <= self.last {
            return Ok(());
        }
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, last.to_string())?;
        std::fs::rename(&tmp, &self.path)?;
        self.last = last;
        Ok(())
    }
}

/// Prints every message stored after the mark that another device or user
/// sent, chat by chat in relay order, and advances the mark.
fn print_new(
    session: &Session,
    mark: &mut Mark,
    mark_read: bool,
    out: Printer,
) -> anyhow::Result<()> {
    let own_device = session.client.account().device_id;
    let mut newest = mark.last;
    let mut by_chat: BTreeMap<ChatId, Vec<Message>> = BTreeMap::new();
    for chat in session.client.chats()? {
        let fresh = newer_than(session, chat.chat_id, mark.last)?;
        newest = fresh.iter().map(|m| m.id.0).fold(newest, i64::max);
        let incoming: Vec<Message> = fresh
            .into_iter()
            .filter(|m| !(m.outgoing && m.sender_device == own_device))
            .collect();
        if !incoming.is_empty() {
            by_chat.insert(chat.chat_id, incoming);
        }
    }
    let names = session.names()?;
    let mut chats: Vec<(ChatId, Vec<Message>)> = by_chat.into_iter().collect();
    chats.sort_by_key(|(_, messages)| messages.first().map(|m| m.id.0));
    for (chat, messages) in chats {
        for message in &messages {
            let attachments = session.client.attachments(message.id)?;
            out.message(&names, message, None, &attachments)?;
        }
        if mark_read {
            if let Some(seq) = messages.iter().filter_map(|m| m.seq).max() {
                session.client.mark_read(chat, seq)?;
            }
        }
    }
    mark.advance(newest)
}

/// The messages of `chat` with a local id above `after`, in relay order.
fn newer_than(session: &Session, chat: ChatId, after: i64) -> anyhow::Result<Vec<Message>> {
    let mut collected: Vec<Message> = Vec::new();
    let mut before = None;
    loop {
        let page = session.client.messages(chat, before, PAGE)?;
        let full = page.len() == PAGE as usize;
        let oldest_seq = page.iter().filter_map(|m| m.seq).min();
        let reached_mark = page.iter().any(|m| m.id.0 <= after);
        collected.extend(page.into_iter().filter(|m| m.id.0 > after));
        match oldest_seq {
            Some(seq) if full && !reached_mark && Some(seq) != before => before = Some(seq),
            _ => break,
        }
    }
    collected.sort_by_key(|m| (m.seq.unwrap_or(u64::MAX), m.id.0));
    collected.dedup_by_key(|m| m.id.0);
    Ok(collected)
}
