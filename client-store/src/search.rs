//! Full-text search over message bodies (FTS5 inside the encrypted database).
//!
//! User text never reaches FTS5's query language: it is split on whitespace
//! and every term becomes a double-quoted string (inner quotes doubled), so
//! `AND`, `NEAR(`, `col:` or `*` typed by a user are searched for, not
//! interpreted. Terms are combined with AND and confined to the `body`
//! column.
//!
//! Ranking is BM25 (body column) over the newest [`RANK_WINDOW`] matches that
//! pass the filters. BM25 needs each term's document count, which FTS5 gets by
//! walking the term's whole document list: for stop-word-like terms that walk
//! alone would cost tens of milliseconds. A cheap probe estimates it first;
//! above [`BM25_MAX_POSTINGS`] the query is ordered by recency instead
//! ([`SearchHit::score`] is then `None`).

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
/// Estimated document-list entries (summed over the query's terms) above
/// which BM25's document-count walk is skipped and hits are ordered by
/// recency (about 6 ms of walking on a 2-core machine).
pub const BM25_MAX_POSTINGS: u64 = 100_000;
/// With a date filter, queries with at most this many candidate matches
/// check every match's send time instead of first bounding the id range.
const SCAN_ALL_MATCHES: u64 = 5_000;
/// Matches of one term read to estimate its document count.
const PROBE_WINDOW: u32 = 1_000;
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
    /// BM25 score, lower is better; `None` when the query's terms are so
    /// common that hits are ordered by recency.
    pub score: Option<f64>,
}

/// Estimated document counts of a query's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Postings {
    /// Summed over the terms: what BM25's document-count walk reads.
    total: u64,
    /// Of the rarest term: an upper bound on the query's matches.
    rarest: u64,
}

/// Cost thresholds of one search.
#[derive(Clone, Copy, Debug)]
struct Budget {
    /// Above this [`Postings::total`], order by recency.
    max_postings: u64,
    /// At most this [`Postings::rarest`], skip the id-range step of a date filter.
    scan_all_matches: u64,
}

/// How the hits of one query are ordered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ranking {
    Bm25,
    Recency,
}

/// Builds the search statement. The newest matches passing the filters are
/// collected first (`recent`), the best `?3` of them chosen (`best`), and
/// snippets built for those alone. With a date filter the index scan is
/// confined to the id range of the period (`?7`..`?8`) and each candidate's
/// send time checked exactly (`?9`..`?10`).
fn search_sql(ranking: Ranking, period: bool) -> String {
    let score = match ranking {
        Ranking::Bm25 => "bm25(messages_fts, 1.0, 0.0)",
        Ranking::Recency => "NULL",
    };
    let (join, in_period) = if period {
        (
            "JOIN messages m ON m.id = messages_fts.rowid",
            "AND messages_fts.rowid BETWEEN ?7 AND ?8 AND m.sent_at_ms >= ?9 AND m.sent_at_ms < ?10",
        )
    } else {
        ("", "")
    };
    format!(
        "WITH recent AS MATERIALIZED (
             SELECT messages_fts.rowid AS id, {score} AS score
             FROM messages_fts {join}
             WHERE messages_fts MATCH ?1 {in_period}
             ORDER BY messages_fts.rowid DESC LIMIT ?2),
         best AS (SELECT id, score FROM recent ORDER BY score, id DESC LIMIT ?3)
         SELECT m.id, m.chat_id, m.sender_user_id, m.sender_device_id, m.sent_at_ms,
                snippet(messages_fts, 0, ?4, ?5, '…', ?6), best.score
         FROM best
         JOIN messages_fts ON messages_fts.rowid = best.id
         JOIN messages m ON m.id = best.id
         WHERE messages_fts MATCH ?1
         ORDER BY best.score, best.id DESC"
    )
}

impl Tx<'_> {
    /// Ranked full-text search; an empty result when the text holds no
    /// searchable term. See the [module documentation](self) for ranking.
    pub fn search(&self, query: &SearchQuery) -> Result<Vec<SearchHit>, StoreError> {
        self.search_with_budget(
            query,
            Budget {
                max_postings: BM25_MAX_POSTINGS,
                scan_all_matches: SCAN_ALL_MATCHES,
            },
        )
    }

    fn search_with_budget(
        &self,
        query: &SearchQuery,
        budget: Budget,
    ) -> Result<Vec<SearchHit>, StoreError> {
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
        let terms = quoted_terms(&query.text, query.prefix);
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        let body = format!("body : ({})", terms.join(" "));
        let expression = match &query.chat_id {
            Some(chat_id) => format!("chat_key : \"{}\" AND {body}", upper_hex(chat_id)),
            None => body,
        };
        let since = query.since_ms.unwrap_or(i64::MIN);
        let until = query.until_ms.unwrap_or(i64::MAX);
        let postings = self.estimated_postings(&terms)?;
        let period = if query.since_ms.is_none() && query.until_ms.is_none() {
            None
        } else if postings.rarest <= budget.scan_all_matches {
            Some((i64::MIN, i64::MAX))
        } else {
            match self.id_range_sent_between(since, until)? {
                Some(range) => Some(range),
                None => return Ok(Vec::new()),
            }
        };
        let limit = query.limit.min(MAX_HITS);
        let (ranking, window) = if postings.total > budget.max_postings {
            (Ranking::Recency, limit)
        } else {
            (Ranking::Bm25, RANK_WINDOW)
        };
        let mut bound: Vec<&dyn ToSql> = vec![
            &expression,
            &window,
            &limit,
            &query.highlight_start,
            &query.highlight_end,
            &SNIPPET_TOKENS,
        ];
        if let Some((first_id, last_id)) = &period {
            bound.extend([first_id as &dyn ToSql, last_id, &since, &until]);
        }
        let mut stmt = self
            .conn()
            .prepare_cached(&search_sql(ranking, period.is_some()))?;
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

    /// Estimates each term's document count: exact below [`PROBE_WINDOW`]
    /// matches, otherwise extrapolated from the density of its newest
    /// matches in the id space.
    fn estimated_postings(&self, terms: &[String]) -> Result<Postings, StoreError> {
        let conn = self.conn();
        let newest_id: i64 = conn
            .prepare_cached("SELECT coalesce(max(id), 0) FROM messages")?
            .query_row([], |row| row.get(0))?;
        let newest = u64::try_from(newest_id).unwrap_or(0);
        let mut probe = conn.prepare_cached(
            "SELECT count(*), coalesce(min(id), 0) FROM (
                 SELECT rowid AS id FROM messages_fts WHERE messages_fts MATCH ?1
                 ORDER BY rowid DESC LIMIT ?2)",
        )?;
        let mut postings = Postings {
            total: 0,
            rarest: u64::MAX,
        };
        for term in terms {
            let (count, oldest_id): (i64, i64) = probe
                .query_row(params![format!("body : {term}"), PROBE_WINDOW], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })?;
            let count = u64::try_from(count).unwrap_or(0);
            let estimate = if count < u64::from(PROBE_WINDOW) {
                count
            } else {
                let span = u64::try_from(newest_id.saturating_sub(oldest_id)).unwrap_or(0) + 1;
                count.saturating_mul(newest) / span
            };
            postings.total = postings.total.saturating_add(estimate);
            postings.rarest = postings.rarest.min(estimate);
        }
        Ok(postings)
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

/// Turns user text into FTS5 string literals, one per term: terms without a
/// letter or digit are dropped, inner quotes doubled, and with `prefix` the
/// last term gets a `*`. The result contains no FTS5 operator.
fn quoted_terms(text: &str, prefix: bool) -> Vec<String> {
    let terms: Vec<&str> = text
        .split_whitespace()
        .filter(|term| term.chars().any(char::is_alphanumeric))
        .take(MAX_QUERY_TERMS)
        .collect();
    let last = terms.len().saturating_sub(1);
    terms
        .iter()
        .enumerate()
        .map(|(index, term)| {
            let star = if prefix && index == last { "*" } else { "" };
            format!("\"{}\"{star}", term.replace('"', "\"\""))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Chat, ChatKind, KeySource, NewMessage, Store};

    fn joined(text: &str, prefix: bool) -> String {
        quoted_terms(text, prefix).join(" ")
    }

    #[test]
    fn operators_and_quotes_are_quoted_terms() {
        assert_eq!(
            joined(r#"a AND "b NEAR(c) col:d -e"#, false),
            r#""a" "AND" """b" "NEAR(c)" "col:d" "-e""#
        );
    }

    #[test]
    fn prefix_applies_to_last_term_only() {
        assert_eq!(joined("hel wor", true), r#""hel" "wor"*"#);
    }

    #[test]
    fn punctuation_only_text_has_no_terms() {
        assert!(quoted_terms(" \"\" ** ( ", false).is_empty());
        assert!(quoted_terms("", true).is_empty());
    }

    fn store_with(bodies: &[&str]) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("s.db"), KeySource::raw([1; 32])).unwrap();
        store
            .transaction(|tx| {
                let chat = Chat {
                    chat_id: [2; 16],
                    kind: ChatKind::Direct,
                    title: String::new(),
                    created_at_ms: 0,
                };
                tx.upsert_chat(&chat)?;
                for (n, body) in (0u8..).zip(bodies) {
                    tx.insert_message(&NewMessage {
                        chat_id: chat.chat_id,
                        relay_seq: Some(u64::from(n)),
                        client_message_id: [n; 16],
                        sender: DeviceAddress {
                            user_id: [3; 16],
                            device_id: 1,
                        },
                        sent_at_ms: i64::from(n),
                        received_at_ms: i64::from(n),
                        body: (*body).to_owned(),
                    })?;
                }
                Ok::<_, StoreError>(())
            })
            .unwrap();
        (dir, store)
    }

    #[test]
    fn postings_are_counted_per_term() {
        let (_dir, store) = store_with(&["tea time", "tea", "coffee"]);
        let estimate = store
            .transaction(|tx| tx.estimated_postings(&quoted_terms("tea coffee", false)))
            .unwrap();
        assert_eq!(
            estimate,
            Postings {
                total: 3,
                rarest: 1
            }
        );
    }

    #[test]
    fn over_budget_queries_are_ordered_by_recency() {
        let (_dir, store) =
            store_with(&["tea tea tea", "tea and a long tail of other words", "tea"]);
        let query = SearchQuery::new("tea");
        let unlimited = Budget {
            max_postings: u64::MAX,
            scan_all_matches: 0,
        };
        let ranked = store
            .transaction(|tx| tx.search_with_budget(&query, unlimited))
            .unwrap();
        assert!(ranked.iter().all(|hit| hit.score.is_some()));
        assert_ne!(
            ranked[0].sent_at_ms, 2,
            "BM25 prefers the densest body, not the newest"
        );
        let tight = Budget {
            max_postings: 0,
            scan_all_matches: 0,
        };
        let recent = store
            .transaction(|tx| tx.search_with_budget(&query, tight))
            .unwrap();
        assert_eq!(
            recent.iter().map(|hit| hit.sent_at_ms).collect::<Vec<_>>(),
            [2, 1, 0]
        );
        assert!(recent.iter().all(|hit| hit.score.is_none()));
    }

    #[test]
    fn date_filter_is_exact_on_both_paths() {
        let (_dir, store) = store_with(&["tea", "tea", "tea", "tea"]);
        let mut query = SearchQuery::new("tea");
        query.since_ms = Some(1);
        query.until_ms = Some(3);
        for scan_all_matches in [0, u64::MAX] {
            let budget = Budget {
                max_postings: u64::MAX,
                scan_all_matches,
            };
            let hits = store
                .transaction(|tx| tx.search_with_budget(&query, budget))
                .unwrap();
            let mut sent: Vec<i64> = hits.iter().map(|hit| hit.sent_at_ms).collect();
            sent.sort_unstable();
            assert_eq!(sent, [1, 2], "scan_all_matches = {scan_all_matches}");
        }
        query.since_ms = Some(10);
        let budget = Budget {
            max_postings: u64::MAX,
            scan_all_matches: 0,
        };
        assert!(
            store
                .transaction(|tx| tx.search_with_budget(&query, budget))
                .unwrap()
                .is_empty()
        );
    }
}
