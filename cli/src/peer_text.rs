//! Text that came from peers, made safe for a terminal.
//!
//! Message bodies, user names, group titles, file names and search snippets
//! are written by other people (or a hostile relay's choice of them). Printed
//! raw, escape sequences in them could recolour the terminal, set its title,
//! ring the bell or move the cursor, and a newline could start a line that
//! looks like a message from someone else. Text output therefore shows every
//! control character as a visible escape (`\x1b`, `\u{202e}`) and indents the
//! continuation lines of a message body. JSON output carries the exact text.

use std::fmt::Write as _;

/// Indentation of a message body's continuation lines, so no line of a
/// message can look like the start of another message.
pub const CONTINUATION: &str = "    ";

/// Whether `c` must not reach a terminal as it is: C0 controls (tab and
/// newline included; callers that keep newlines handle them first), DEL, C1
/// controls, and the bidirectional overrides and isolates that reorder what
/// the user sees.
fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn push_visible(out: &mut String, c: char) {
    if !is_hidden(c) {
        out.push(c);
    } else if u32::from(c) < 0x100 {
        let _ = write!(out, "\\x{:02x}", u32::from(c));
    } else {
        let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
    }
}

/// One line: every control character, newlines included, shown escaped.
pub fn visible(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        push_visible(&mut out, c);
    }
    out
}

/// Several lines: control characters escaped, newlines kept, and every line
/// after the first indented with [`CONTINUATION`].
pub fn visible_lines(text: &str) -> String {
    lines_joined(text, &format!("\n{CONTINUATION}"))
}

/// A whole output line of this program: newlines (its own line breaks, as in
/// a QR code) kept, every other control character escaped. The last line of
/// defence behind [`visible`] and [`visible_lines`].
pub fn keep_newlines(text: &str) -> String {
    lines_joined(text, "\n")
}

/// The notice shown when another member renames a group: any member may,
/// so a group renamed to the name of another one must not go unnoticed.
/// Both titles are escaped like every peer text.
pub fn renamed_notice(old: Option<&str>, new: &str, by: &str) -> String {
    let new = visible(new);
    let by = visible(by);
    match old {
        Some(old) => format!("{by} renamed the group #{} to #{new}", visible(old)),
        None => format!("{by} renamed a group to #{new}"),
    }
}

/// Each line made [`visible`], joined again with `separator`.
fn lines_joined(text: &str, separator: &str) -> String {
    text.split('\n')
        .map(visible)
        .collect::<Vec<_>>()
        .join(separator)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_reach_the_terminal_only_as_visible_text() {
        let hostile = "\u{1b}]0;pwned\u{7}\u{1b}[31mred\u{9b}2J\u{7f}\r";
        let shown = visible(hostile);
        assert_eq!(shown, "\\x1b]0;pwned\\x07\\x1b[31mred\\x9b2J\\x7f\\x0d");
        assert!(!shown.chars().any(char::is_control));
        assert_eq!(visible("a\u{202e}b\u{2066}"), "a\\u{202e}b\\u{2066}");
        assert_eq!(visible("plain ✓✓ text 📎"), "plain ✓✓ text 📎");
        assert_eq!(visible("two\nlines\t"), "two\\x0alines\\x09");
    }

    #[test]
    fn message_bodies_keep_their_lines_but_cannot_fake_another_message() {
        let body = "hi\n[2026-12-03 10:00] bob: send me the code\n\u{1b}[2K";
        assert_eq!(
            visible_lines(body),
            "hi\n    [2026-12-03 10:00] bob: send me the code\n    \\x1b[2K"
        );
        assert_eq!(keep_newlines("█▀\n▀█\u{7}"), "█▀\n▀█\\x07");
    }
}
