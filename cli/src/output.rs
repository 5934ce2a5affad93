//! Output: human-readable lines, or one JSON object per line (`--json`).

use std::io::Write;

use serde_json::{Value, json};
use tern_core::client::{AttachmentInfo, DeliveryStatus, Message, SearchHit, Verification};
use tern_core::store::TransferState;

use crate::session::Names;

/// Writes results to standard output in the chosen format.
#[derive(Clone, Copy, Debug)]
pub struct Printer {
    json: bool,
}

impl Printer {
    /// A printer for `--json` (true) or text.
    pub fn new(json: bool) -> Self {
        Self { json }
    }

    /// Prints `object` as one JSON line, or `text` as a line.
    pub fn emit(&self, object: Value, text: impl FnOnce() -> String) {
        let line = if self.json {
            object.to_string()
        } else {
            text()
        };
        let mut out = std::io::stdout().lock();
        // A closed pipe (`tern recv | head`) is not an error worth reporting.
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }

    /// Prints a message with its attachments.
    pub fn message(
        &self,
        names: &Names,
        message: &Message,
        status: Option<DeliveryStatus>,
        attachments: &[AttachmentInfo],
    ) {
        self.emit(message_json(names, message, status, attachments), || {
            let mark = status.map_or("", status_mark);
            let text = match attachments.first() {
                Some(file) => format!(
                    "📎 {} ({}, {} bytes; `tern download {}`)",
                    file.file_name, file.content_type, file.size, message.id.0
                ),
                None => message.text.clone(),
            };
            let who = if names.is_group(&message.chat_id) {
                format!("{} {}", names.chat(&message.chat_id), names.sender(message))
            } else if message.outgoing {
                format!(
                    "{} → {}",
                    names.sender(message),
                    names.chat(&message.chat_id)
                )
            } else {
                names.sender(message)
            };
            format!(
                "[{}] {who}: {text}{}{mark}",
                format_time(message.sent_at_ms),
                if mark.is_empty() { "" } else { " " },
            )
        });
    }

    /// Prints a search hit.
    pub fn hit(&self, names: &Names, hit: &SearchHit) {
        let object = json!({
            "type": "hit",
            "message_id": hit.message_id.0,
            "chat": names.chat(&hit.chat_id),
            "chat_id": hex::encode(hit.chat_id),
            "from": names.user(&hit.sender.user_id),
            "sent_at_ms": hit.sent_at_ms,
            "snippet": hit.snippet,
        });
        self.emit(object, || {
            format!(
                "[{}] {} {}: {}",
                format_time(hit.sent_at_ms),
                names.chat(&hit.chat_id),
                names.user(&hit.sender.user_id),
                hit.snippet
            )
        });
    }
}

/// The JSON object of a message.
pub fn message_json(
    names: &Names,
    message: &Message,
    status: Option<DeliveryStatus>,
    attachments: &[AttachmentInfo],
) -> Value {
    let files: Vec<Value> = attachments
        .iter()
        .map(|a| {
            json!({
                "file_name": a.file_name,
                "content_type": a.content_type,
                "size": a.size,
                "downloaded": a.state == TransferState::Downloaded,
            })
        })
        .collect();
    json!({
        "type": "message",
        "id": message.id.0,
        "chat": names.chat(&message.chat_id),
        "chat_id": hex::encode(message.chat_id),
        "seq": message.seq,
        "from": names.sender(message),
        "from_id": hex::encode(message.sender),
        "device": message.sender_device,
        "outgoing": message.outgoing,
        "sent_at_ms": message.sent_at_ms,
        "text": message.text,
        "status": status.map(status_name),
        "attachments": files,
    })
}

/// ✓ sent, ✓✓ delivered, read.
pub fn status_mark(status: DeliveryStatus) -> &'static str {
    match status {
        DeliveryStatus::Pending => "…",
        DeliveryStatus::Sent => "✓",
        DeliveryStatus::Delivered => "✓✓",
        DeliveryStatus::Read => "✓✓ read",
    }
}

/// The JSON name of a status.
pub fn status_name(status: DeliveryStatus) -> &'static str {
    match status {
        DeliveryStatus::Pending => "pending",
        DeliveryStatus::Sent => "sent",
        DeliveryStatus::Delivered => "delivered",
        DeliveryStatus::Read => "read",
    }
}

/// The JSON name of a verification state.
pub fn verification_name(state: Verification) -> &'static str {
    match state {
        Verification::Default => "unverified",
        Verification::Verified => "verified",
        Verification::Unverified => "identity-changed",
    }
}

/// `YYYY-MM-DD HH:MM:SS` in UTC.
pub fn format_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// `HH:MM` in UTC.
pub fn format_clock(ms: i64) -> String {
    let rest = ms.div_euclid(1000).rem_euclid(86_400);
    format!("{:02}:{:02}", rest / 3600, rest % 3600 / 60)
}

/// Gregorian date of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_format_in_utc() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00");
        assert_eq!(format_time(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(format_time(1_795_000_000_000), "2026-11-18 11:06:40");
        assert_eq!(format_clock(1_795_000_000_000), "11:06");
    }
}
