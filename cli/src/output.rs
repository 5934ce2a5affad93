//! Output: human-readable lines, or one JSON [`Record`] per line (`--json`).

use std::io::Write;

use tern_core::{AttachmentInfo, DeliveryStatus, Message, SearchHit};

use crate::failure::Exit;
use crate::peer_text;
use crate::record::{ErrorRecord, HitRecord, MessageRecord, Record, WarningRecord};
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

    /// Prints `record` as one JSON line (exact), or `text` as a line on
    /// stdout with every control character but its line breaks made visible
    /// (see [`peer_text`]).
    pub fn emit(&self, record: &Record, text: impl FnOnce() -> String) -> anyhow::Result<()> {
        let line = if self.json {
            serde_json::to_string(record)?
        } else {
            peer_text::keep_newlines(&text())
        };
        let mut out = std::io::stdout().lock();
        // A closed pipe (`tern recv | head`) is not an error worth reporting.
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
        Ok(())
    }

    /// Prints a warning on stderr: a `warning` record, or `tern: warning: …`.
    pub fn warn(&self, warning: String) {
        let text = format!("tern: warning: {warning}");
        self.stderr_line(&Record::Warning(WarningRecord { warning }), text);
    }

    /// Prints why the command failed on stderr: an `error` record, or
    /// `tern: …`.
    pub fn error(&self, exit: Exit, error: String) {
        let text = format!("tern: {error}");
        self.stderr_line(&Record::Error(ErrorRecord::new(exit, error)), text);
    }

    /// Prints `record` (with `--json`) or `text` as a line on stderr.
    fn stderr_line(&self, record: &Record, text: String) {
        let json = self.json.then(|| serde_json::to_string(record).ok());
        let line = json
            .flatten()
            .unwrap_or_else(|| peer_text::keep_newlines(&text));
        eprintln!("{line}");
    }

    /// Prints a message with its attachments.
    pub fn message(
        &self,
        names: &Names,
        message: &Message,
        status: Option<DeliveryStatus>,
        attachments: &[AttachmentInfo],
    ) -> anyhow::Result<()> {
        let record = MessageRecord::new(names, message, status, attachments);
        self.emit(&Record::Message(record), || {
            let mark = status.map_or("", status_mark);
            let text = match attachments.first() {
                Some(file) => format!(
                    "📎 {} ({}, {} bytes; `tern download {}`)",
                    peer_text::visible(&file.file_name),
                    peer_text::visible(&file.content_type),
                    file.size,
                    message.id.0
                ),
                None => peer_text::visible_lines(&message.text),
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
            let who = peer_text::visible(&who);
            format!(
                "[{}] {who}: {text}{}{mark}",
                format_time(message.sent_at_ms),
                if mark.is_empty() { "" } else { " " },
            )
        })
    }

    /// Prints a search hit.
    pub fn hit(&self, names: &Names, hit: &SearchHit) -> anyhow::Result<()> {
        let record = HitRecord::new(names, hit);
        let text = format!(
            "[{}] {} {}: {}",
            format_time(record.sent_at_ms),
            peer_text::visible(&record.chat),
            peer_text::visible(&record.from),
            peer_text::visible(&record.snippet)
        );
        self.emit(&Record::Hit(record), || text)
    }
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
