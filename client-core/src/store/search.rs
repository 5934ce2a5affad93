//! Full-text search over message bodies (FTS5 inside the encrypted database).
//!
//! User text never reaches FTS5's query language: it is split on whitespace
//! and every term becomes a double-quoted string (inner quotes doubled), so
//! `AND`, `NEAR(`, `col:` or `*` typed by a user are searched for, not
//! interpreted. Terms are combined with AND and confined to the `body`
//! column; results are ranked by BM25 (body column only).

use rusqlite::params;
use rusqlite::types::ToSql;

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
/// Matches ranked per query: the newest this many that pass the filters.
pub const RANK_WINDOW: u32 = 5_000;
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

/// Columns of the final result: snippets are built for the best hits only.
const SELECT_HITS: &str = "
    SELECT m.id, m.chat_id, m.sender_user_id, m.sender_device_id, m.sent_at_ms,
           snippet(messages_fts, 0, ?4, ?5, '…', ?6), best.score
    FROM best
    JOIN messages_fts ON messages_fts.rowid = best.id
    JOIN messages m ON m.id = best.id
    WHERE messages_fts MATCH ?1
    ORDER BY best.score, best.id DESC";

/// Without a date filter the index alone yields the newest matches.
const RECENT_MATCHES: &str = "
    SELECT messages_fts.rowid AS id, bm25(messages_fts, 1.0, 0.0) AS score
    FROM messages_fts
    WHERE messages_fts MATCH ?1
    ORDER BY messages_fts.rowid DESC LIMIT ?2";

/// With a date filter the scan is confined to the id range of messages sent
/// in that period, and each candidate's send time is checked exactly.
const RECENT_MATCHES_IN_PERIOD: &str = "
    SELECT messages_fts.rowid AS id, bm25(messages_fts, 1.0, 0.0) AS score
    FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid
    WHERE messages_fts MATCH ?1
      AND messages_fts.rowid BETWEEN ?7 AND ?8
      AND m.sent_at_ms >= ?9 AND m.sent_at_ms < ?10
    ORDER BY messages_fts.rowid DESC LIMIT ?2";

fn search_sql(recent: &str) -> String {
    format!(
        "WITH recent AS MATERIALIZED ({recent}),
              best AS (SELECT id, score FROM recent ORDER BY score, id DESC LIMIT ?3)
         {SELECT_HITS}"
    )
}

impl Tx<'_> {
    /// Ranked full-text search; an empty result when the text holds no
    /// searchable term.
    ///
    /// BM25 ranks the newest [`RANK_WINDOW`] matches that pass the filters, so
    /// a query's cost stays bounded however common its terms are; the chat
    /// and date filters reach further back.
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
        let Some(terms) = match_expression(&query.text, query.prefix) else {
            return Ok(Vec::new());
        };
        let expression = match &query.chat_id {
            Some(chat_id) => format!("chat_key : \"{}\" AND body : ({terms})", upper_hex(chat_id)),
            None => format!("body : ({terms})"),
        };
        let since = query.since_ms.unwrap_or(i64::MIN);
        let until = query.until_ms.unwrap_or(i64::MAX);
        let period = if query.since_ms.is_some() || query.until_ms.is_some() {
            match self.id_range_sent_between(since, until)? {
                Some(range) => Some(range),
                None => return Ok(Vec::new()),
            }
        } else {
            None
        };
        let limit = query.limit.min(MAX_HITS);
        let mut bound: Vec<&dyn ToSql> = vec![
            &expression,
            &RANK_WINDOW,
            &limit,
            &query.highlight_start,
            &query.highlight_end,
            &SNIPPET_TOKENS,
        ];
        let sql = match &period {
            Some((first_id, last_id)) => {
                bound.extend([first_id as &dyn ToSql, last_id, &since, &until]);
                search_sql(RECENT_MATCHES_IN_PERIOD)
            }
            None => search_sql(RECENT_MATCHES),
        };
        let mut stmt = self.conn().prepare_cached(&sql)?;
        let mut rows = stmt.query(bound.as_slice())?;
        let mut hits = Vec::new();
        while let Some(row) = rows.next()? {
            hits.push(SearchHit {
                message_id: MessageId(row.get(0)?),
                chat_id: row.get(1)?,
                sender: DeviceAddress {
                    user_id: row.get(2)?,
                    device_id: row.get(3)?,
                },
                sent_at_ms: row.get(4)?,
                snippet: row.get(5)?,
                score: row.get(6)?,
            });
        }
        Ok(hits)
    }

    /// The smallest and largest local id of messages sent in `[since, until)`,
    /// or `None` when there are none.
    fn id_range_sent_between(
        &self,
        since: i64,
        until: i64,
    ) -> Result<Option<(i64, i64)>, StoreError> {
        let range: (Option<i64>, Option<i64>) = self
            .conn()
            .prepare_cached(
                "SELECT min(id), max(id) FROM messages WHERE sent_at_ms >= ?1 AND sent_at_ms < ?2",
            )?
            .query_row(params![since, until], |row| Ok((row.get(0)?, row.get(1)?)))?;
        Ok(range.0.zip(range.1))
    }
}

/// The chat id as SQLite's `hex()` renders it (the `chat_key` column).
fn upper_hex(id: &ChatId) -> String {
    id.iter().map(|byte| format!("{byte:02X}")).collect()
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
