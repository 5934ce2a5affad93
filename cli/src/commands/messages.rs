//! `tern send`, `tern history` and `tern search`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use tern_core::ClientEvent;
use tern_core::{DeliveryStatus, EventSubscription, Message, MessageId, SearchQuery};

use crate::args::{DownloadArgs, HistoryArgs, SearchArgs, SendArgs, SendFileArgs};
use crate::failure::Failure;
use crate::output::Printer;
use crate::record::{DownloadRecord, Record};
use crate::session::Session;

/// Largest text read from standard input for `tern send NAME -`.
const MAX_STDIN_TEXT: u64 = 64 * 1024;
/// Newest messages of a chat searched for one just acknowledged (others
/// may have arrived meanwhile).
const ACKED_LOOKBACK: u32 = 200;
/// How long a download waits for the relay connection.
const DOWNLOAD_RELAY_TIMEOUT: Duration = Duration::from_secs(10);

/// Splits `NAME X` (or `X` with `--group`) into the target and X.
fn target<'a>(
    group: Option<&str>,
    args: &'a [String],
) -> anyhow::Result<(Option<&'a str>, &'a str)> {
    match (group, args) {
        (Some(_), [only]) => Ok((None, only)),
        (None, [name, rest]) => Ok((Some(name.as_str()), rest)),
        (Some(_), _) => {
            Err(Failure::Usage("with --group, give one argument after the options".into()).into())
        }
        (None, _) => Err(Failure::Usage("give a contact NAME and what to send".into()).into()),
    }
}

/// Queues a text message and waits for the relay's ✓ (unless `--no-wait`).
pub async fn send(session: &Session, args: SendArgs, out: Printer) -> anyhow::Result<()> {
    let (name, text) = target(args.group.as_deref(), &args.args)?;
    let chat = session.chat(name, args.group.as_deref())?;
    let text = if text == "-" {
        read_stdin()?
    } else {
        text.to_owned()
    };
    let mut events = session.client.subscribe();
    let message = session.client.send_text(chat, text)?;
    let names = session.names()?;
    if args.no_wait {
        return out.message(&names, &message, Some(DeliveryStatus::Pending), &[]);
    }
    let message = acknowledged(session, &mut events, message, args.timeout).await?;
    let status = status_of(session, &message)?.unwrap_or(DeliveryStatus::Sent);
    out.message(&names, &message, Some(status), &[])
}

/// Encrypts and uploads a file, sends it and waits for the relay's ✓.
pub async fn send_file(session: &Session, args: SendFileArgs, out: Printer) -> anyhow::Result<()> {
    let (name, path) = target(args.group.as_deref(), &args.args)?;
    let chat = session.chat(name, args.group.as_deref())?;
    let path = PathBuf::from(path);
    if !path.is_file() {
        return Err(Failure::Usage(format!("{} is not a readable file", path.display())).into());
    }
    let content_type = args
        .content_type
        .unwrap_or_else(|| guess_type(&path).to_owned());
    session.online(Duration::from_secs(args.timeout)).await?;
    let mut events = session.client.subscribe();
    let message = session
        .client
        .send_attachment(chat, path.clone(), content_type)
        .await
        .with_context(|| format!("cannot send {}", path.display()))?;
    let message = acknowledged(session, &mut events, message, args.timeout).await?;
    let names = session.names()?;
    let status = status_of(session, &message)?.unwrap_or(DeliveryStatus::Sent);
    out.message(
        &names,
        &message,
        Some(status),
        &session.client.attachments(message.id)?,
    )
}

/// Downloads a message's attachment to a file.
pub async fn download(session: &Session, args: &DownloadArgs, out: Printer) -> anyhow::Result<()> {
    let id = MessageId(args.message_id);
    let attachment = session
        .client
        .attachments(id)?
        .into_iter()
        .next()
        .ok_or(Failure::UnknownMessage(args.message_id))?;
    let dest = match &args.out {
        Some(path) => path.clone(),
        None => PathBuf::from(safe_file_name(&attachment.file_name)),
    };
    if dest.exists() {
        return Err(
            Failure::Usage(format!("{} exists; choose another --out", dest.display())).into(),
        );
    }
    session.online(DOWNLOAD_RELAY_TIMEOUT).await?;
    session
        .client
        .download_attachment(id, dest.clone())
        .await
        .with_context(|| format!("cannot download {}", attachment.file_name))?;
    let record = DownloadRecord {
        message_id: args.message_id,
        file_name: attachment.file_name,
        content_type: attachment.content_type,
        size: attachment.size,
        path: dest.to_string_lossy().into_owned(),
    };
    let text = format!(
        "saved {} ({} bytes) to {}",
        record.file_name,
        record.size,
        dest.display()
    );
    out.emit(&Record::Download(record), || text)
}

/// A sender-chosen file name reduced to one harmless path component.
pub fn safe_file_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = base.chars().filter(|c| !c.is_control()).collect();
    match cleaned.trim_start_matches('.') {
        "" => "attachment".into(),
        rest => rest.to_owned(),
    }
}

/// A MIME type from the file extension.
pub fn guess_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match ext.as_str() {
        "txt" | "md" | "log" => "text/plain",
        "csv" => "text/csv",
        "html" | "htm" => "text/html",
        "json" => "application/json",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "mp3" => "audio/mpeg",
        "ogg" => "audio/ogg",
        "wav" => "audio/wav",
        "mp4" => "video/mp4",
        _ => "application/octet-stream",
    }
}

/// Waits for the relay's ✓ of `message` (a timeout means it stays queued)
/// and returns it as stored then, with the seq the relay gave it.
async fn acknowledged(
    session: &Session,
    events: &mut EventSubscription,
    message: Message,
    timeout: u64,
) -> anyhow::Result<Message> {
    wait_for_ack(session, events, &message, timeout).await?;
    let newest = session
        .client
        .messages(message.chat_id, None, ACKED_LOOKBACK)?;
    Ok(newest
        .into_iter()
        .find(|m| m.id == message.id)
        .unwrap_or(message))
}

/// Waits for the relay's ✓ of `message`; a timeout means it stays queued.
async fn wait_for_ack(
    session: &Session,
    events: &mut EventSubscription,
    message: &Message,
    timeout: u64,
) -> anyhow::Result<()> {
    let acked = tokio::time::timeout(Duration::from_secs(timeout), async {
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
                    return Err(Failure::Refused(reason).into());
                }
                _ => {}
            }
        }
        Err(anyhow::anyhow!("the client stopped"))
    })
    .await;
    acked.unwrap_or_else(|_| {
        Err(Failure::RelayUnreachable(format!(
            "no ✓ from {} within {timeout} s; the message is queued and will be sent by the next tern command",
            session.config.relay
        ))
        .into())
    })
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

/// Prints a chat's newest messages, oldest first, after fetching what is new
/// (a relay that does not answer leaves the local history, with a warning).
pub async fn history(session: &Session, args: &HistoryArgs, out: Printer) -> anyhow::Result<()> {
    let chat = session.chat(args.name.as_deref(), args.group.as_deref())?;
    if !args.offline {
        let timeout = Duration::from_secs(args.timeout);
        if let Err(e) = session.synced(timeout).await {
            out.warn(format!("showing the local history only: {e:#}"));
        }
    }
    let names = session.names()?;
    for message in session.client.messages(chat, None, args.limit)? {
        let status = status_of(session, &message)?;
        let attachments = session.client.attachments(message.id)?;
        out.message(&names, &message, status, &attachments)?;
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
        out.hit(&names, &hit)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn received_file_names_cannot_escape_the_directory() {
        assert_eq!(safe_file_name("../../etc/passwd"), "passwd");
        assert_eq!(safe_file_name("..\\x\\evil.txt"), "evil.txt");
        assert_eq!(safe_file_name(".bashrc"), "bashrc");
        assert_eq!(safe_file_name(".."), "attachment");
        assert_eq!(safe_file_name("a\u{1b}[2Jb.png"), "a[2Jb.png");
        assert_eq!(guess_type(Path::new("x/photo.JPG")), "image/jpeg");
        assert_eq!(guess_type(Path::new("noext")), "application/octet-stream");
    }
}
