//! Full-text search over message bodies (FTS5 inside the encrypted database).
//!
//! User text never reaches FTS5's query language: it is split on whitespace
//! and every term becomes a double-quoted string (inner quotes doubled), so
//! `AND`, `NEAR(`, `col:` or `*` typed by a user are searched for, not
//! interpreted. Terms are combined with AND; results are ranked by BM25.

use rusqlite::params;

use super::messages::MessageId;
use super::sql::check_len;
use super::{ChatId, DeviceAddress, StoreError, Tx};

/// Longest query text accepted, in bytes.
pub const MAX_QUERY_LEN: usize = 1024;
/// Most terms used from one query; further terms are ignored.
pub const MAX_QUERY_TERMS: usize = 16;
/// Most hits returned by one search.
pub const MAX_HITS: u32 = 200;
/// Longest highlight marker accepted, in bytes.
pub const MAX_MARKER_LEN: usize = 16;
/// Tokens of context in a snippet.
const SNIPPET_TOKENS: i64 = 12;

/// A search request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchQuery {
    /// What the user typed.
    pub text: String,
    /// Match the last term as a prefix (search-as-you-type).
    pub prefix: bool,
    /// Only this chat.
    pub chat_id: Option<ChatId>,
    /// Only messages sent at or after this time (ms since the Unix epoch).
    pub since_ms: Option<i64>,
    /// Only messages sent before this time (ms since the Unix epoch).
    pub until_ms: Option<i64>,
    /// Most hits to return (capped at [`MAX_HITS`]).
    pub limit: u32,
    /// Inserted before each matched term in the snippet.
    pub highlight_start: String,
    /// Inserted after each matched term in the snippet.
    pub highlight_end: String,
}

impl SearchQuery {
    /// A query for `text` over all chats and times: 20 hits, whole terms,
    /// matches highlighted with `[` and `]`.
    pub fn new(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            prefix: false,
            chat_id: None,
            since_ms: None,
            until_ms: None,
            limit: 20,
            highlight_start: "[".into(),
            highlight_end: "]".into(),
        }
    }
}

/// One search result.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchHit {
    /// The matching message.
    pub message_id: MessageId,
    /// Its chat.
    pub chat_id: ChatId,
    /// Its sender.
    pub sender: DeviceAddress,
    /// Its send time, ms since the Unix epoch.
    pub sent_at_ms: i64,
    /// An excerpt of the body with matches highlighted.
    pub snippet: String,
    /// BM25 score; lower is a better match.
    pub score: f64,
}

/// The best hits (ids and scores only) pass the filters first; snippets are
/// then built for those few rows alone, not for every match.
const SEARCH_SQL: &str = "
    WITH best AS (
        SELECT messages_fts.rowid AS id, bm25(messages_fts) AS score
        FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid
        WHERE messages_fts MATCH ?1
          AND (?2 IS NULL OR m.chat_id = ?2)
          AND (?3 IS NULL OR m.sent_at_ms >= ?3)
          AND (?4 IS NULL OR m.sent_at_ms < ?4)
        ORDER BY score, m.sent_at_ms DESC
        LIMIT ?5
    )
    SELECT m.id, m.chat_id, m.sender_user_id, m.sender_device_id, m.sent_at_ms,
           snippet(messages_fts, 0, ?6, ?7, '…', ?8), best.score
    FROM best
    JOIN messages_fts ON messages_fts.rowid = best.id
    JOIN messages m ON m.id = best.id
    WHERE messages_fts MATCH ?1
    ORDER BY best.score, m.sent_at_ms DESC";

impl Tx<'_> {
    /// Ranked full-text search; an empty result when the text holds no
    /// searchable term.
    pub fn search(&self, query: &SearchQuery) -> Result<Vec<SearchHit>, StoreError> {
        check_len("search query", query.text.len(), MAX_QUERY_LEN)?;
        check_len(
            "highlight marker",
            query.highlight_start.len(),
            MAX_MARKER_LEN,
        )?;
        check_len(
            "highlight marker",
            query.highlight_end.len(),
            MAX_MARKER_LEN,
        )?;
        let Some(expression) = match_expression(&query.text, query.prefix) else {
            return Ok(Vec::new());
        };
        let mut stmt = self.conn().prepare_cached(SEARCH_SQL)?;
        let hits = stmt
            .query_map(
                params![
                    expression,
                    query.chat_id,
                    query.since_ms,
                    query.until_ms,
                    query.limit.min(MAX_HITS),
                    query.highlight_start,
                    query.highlight_end,
                    SNIPPET_TOKENS,
                ],
                |row| {
                    Ok(SearchHit {
                        message_id: MessageId(row.get(0)?),
                        chat_id: row.get(1)?,
                        sender: DeviceAddress {
                            user_id: row.get(2)?,
                            device_id: row.get(3)?,
                        },
                        sent_at_ms: row.get(4)?,
                        snippet: row.get(5)?,
                        score: row.get(6)?,
                    })
                },
            )?
            .collect::<Result<_, _>>()?;
        Ok(hits)
    }
}

/// Turns user text into an FTS5 expression made only of quoted strings, or
/// `None` when no term contains a letter or digit.
fn match_expression(text: &str, prefix: bool) -> Option<String> {
    let terms: Vec<&str> = text
        .split_whitespace()
        .filter(|term| term.chars().any(char::is_alphanumeric))
        .take(MAX_QUERY_TERMS)
        .collect();
    let last = terms.len().checked_sub(1)?;
    let mut expression = String::with_capacity(text.len() + 4 * terms.len());
    for (index, term) in terms.iter().enumerate() {
        if index > 0 {
            expression.push(' ');
        }
        expression.push('"');
        expression.push_str(&term.replace('"', "\"\""));
        expression.push('"');
        if prefix && index == last {
            expression.push('*');
        }
    }
    Some(expression)
}

#[cfg(test)]
mod tests {
    use super::match_expression;

    #[test]
    fn operators_and_quotes_are_quoted_terms() {
        assert_eq!(
            match_expression(r#"a AND "b NEAR(c) col:d -e"#, false).as_deref(),
            Some(r#""a" "AND" """b" "NEAR(c)" "col:d" "-e""#)
        );
    }

    #[test]
    fn prefix_applies_to_last_term_only() {
        assert_eq!(
            match_expression("hel wor", true).as_deref(),
            Some(r#""hel" "wor"*"#)
        );
    }

    #[test]
    fn punctuation_only_text_has_no_expression() {
        assert_eq!(match_expression(" \"\" ** ( ", false), None);
        assert_eq!(match_expression("", true), None);
    }
}
