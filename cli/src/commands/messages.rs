//! `tern send`, `tern history` and `tern search`.

use std::io::Read;
use std::time::Duration;

use tern_core::ClientEvent;
use tern_core::client::{DeliveryStatus, Message, SearchQuery};

use crate::args::{HistoryArgs, SearchArgs, SendArgs};
use crate::failure::Failure;
use crate::output::Printer;
use crate::session::Session;

/// Largest text read from standard input for `tern send NAME -`.
const MAX_STDIN_TEXT: u64 = 64 * 1024;

/// Queues a text message and waits for the relay's ✓ (unless `--no-wait`).
pub async fn send(session: &Session, args: SendArgs, out: Printer) -> anyhow::Result<()> {
    let (name, text) = match (args.group.as_deref(), args.args.as_slice()) {
        (Some(_), [text]) => (None, text.clone()),
        (None, [name, text]) => (Some(name.as_str()), text.clone()),
        (Some(_), _) => {
            return Err(Failure::Usage("with --group, give only the TEXT".into()).into());
        }
        (None, _) => return Err(Failure::Usage("give a NAME and a TEXT".into()).into()),
    };
    let chat = session.chat(name, args.group.as_deref())?;
    let text = if text == "-" { read_stdin()? } else { text };
    let mut events = session.client.subscribe();
    let message = session.client.send_text(chat, text)?;
    let names = session.names()?;
    if args.no_wait {
        out.message(&names, &message, Some(DeliveryStatus::Pending));
        return Ok(());
    }
    let acked = tokio::time::timeout(Duration::from_secs(args.timeout), async {
        while let Some(event) = events.next().await {
            match event {
                ClientEvent::MessageStatus { message_id, .. } if message_id == message.id => {
                    return Ok(());
                }
                ClientEvent::SendFailed {
                    message_id: Some(id),
                    reason,
                    ..
                } if id == message.id => {
                    return Err(anyhow::anyhow!("the relay refused the message: {reason}"));
                }
                _ => {}
            }
        }
        Err(anyhow::anyhow!("the client stopped"))
    })
    .await;
    match acked {
        Ok(result) => result?,
        Err(_) => {
            return Err(Failure::RelayUnreachable(format!(
                "no ✓ from {} within {} s; the message is queued and will be sent by the next tern command",
                session.config.relay, args.timeout
            ))
            .into());
        }
    }
    out.message(
        &names,
        &message,
        Some(status_of(session, &message)?.unwrap_or(DeliveryStatus::Sent)),
    );
    Ok(())
}

fn read_stdin() -> anyhow::Result<String> {
    let mut text = String::new();
    std::io::stdin()
        .take(MAX_STDIN_TEXT + 1)
        .read_to_string(&mut text)
        .map_err(|e| Failure::Usage(format!("standard input: {e}")))?;
    if text.len() as u64 > MAX_STDIN_TEXT {
        return Err(Failure::Usage(format!(
            "standard input is longer than {MAX_STDIN_TEXT} bytes"
        ))
        .into());
    }
    let trimmed = text.strip_suffix('\n').unwrap_or(&text);
    Ok(trimmed.strip_suffix('\r').unwrap_or(trimmed).to_owned())
}

/// The least advanced status over the recipients of an outgoing message.
pub fn status_of(session: &Session, message: &Message) -> anyhow::Result<Option<DeliveryStatus>> {
    if !message.outgoing {
        return Ok(None);
    }
    let statuses = session.client.message_status(message.id)?;
    Ok(statuses.into_iter().map(|(_, s)| s).min())
}

/// Prints a chat's newest messages, oldest first.
pub fn history(session: &Session, args: &HistoryArgs, out: Printer) -> anyhow::Result<()> {
    let chat = session.chat(args.name.as_deref(), args.group.as_deref())?;
    let names = session.names()?;
    for message in session.client.messages(chat, None, args.limit)? {
        let status = status_of(session, &message)?;
        out.message(&names, &message, status);
    }
    Ok(())
}

/// Prints the local history's best matches.
pub fn search(session: &Session, args: &SearchArgs, out: Printer) -> anyhow::Result<()> {
    let mut query = SearchQuery::new(args.query.clone());
    query.prefix = args.prefix;
    query.limit = args.limit;
    query.chat_id = args
        .chat
        .as_deref()
        .map(|c| session.chat_by_name(c))
        .transpose()?;
    let names = session.names()?;
    for hit in session.client.search(query)? {
        out.hit(&names, &hit);
    }
    Ok(())
}
