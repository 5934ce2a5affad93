//! Full-text search: ranking, filters, snippets and query-syntax safety.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::{chat_id, message, store_with_chats};
use tern_store::{MessageId, SearchQuery, Store, StoreError};

/// Stores `(chat, n, body)` messages; returns their ids in order.
fn seed(store: &Store, messages: &[(u8, u32, &str)]) -> Vec<MessageId> {
    store
        .transaction(|tx| {
            messages
                .iter()
                .map(|(chat, n, body)| Ok(tx.insert_message(&message(*chat, *n, body))?.id()))
                .collect::<Result<Vec<_>, StoreError>>()
        })
        .unwrap()
}

fn ids(store: &Store, query: &SearchQuery) -> Vec<MessageId> {
    store
        .search(query)
        .unwrap()
        .into_iter()
        .map(|hit| hit.message_id)
        .collect()
}

#[test]
fn better_matches_rank_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_chats(&dir);
    let m = seed(
        &store,
        &[
            (
                1,
                1,
                "a long message about many things, the weather, lunch, and once about kayak trips",
            ),
            (1, 2, "kayak kayak: the kayak trip"),
            (2, 3, "nothing relevant here"),
            (2, 4, "kayak"),
        ],
    );
    let hits = store.search(&SearchQuery::new("kayak")).unwrap();
    assert_eq!(hits.len(), 3);
    assert_eq!(hits[2].message_id, m[0], "the long message ranks last");
    assert!(
        hits.windows(2)
            .all(|w| w[0].score.unwrap() <= w[1].score.unwrap())
    );
    let short = hits.iter().find(|hit| hit.message_id == m[3]).unwrap();
    assert_eq!(short.chat_id, chat_id(2));
    assert_eq!(short.sender, support::device(1, 1));
    assert_eq!(short.sent_at_ms, message(2, 4, "").sent_at_ms);
    assert_eq!(short.snippet, "[kayak]");
}

#[test]
fn all_terms_must_match_and_case_and_accents_fold() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_chats(&dir);
    let m = seed(
        &store,
        &[
            (1, 1, "Café at noon"),
            (1, 2, "cafe tomorrow"),
            (1, 3, "noon only"),
        ],
    );
    assert_eq!(ids(&store, &SearchQuery::new("CAFE noon")), [m[0]]);
    let mut both = ids(&store, &SearchQuery::new("café"));
    both.sort();
    assert_eq!(both, [m[0], m[1]]);
}

#[test]
fn filters_by_chat_and_date_range() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_chats(&dir);
    let m = seed(
        &store,
        &[
            (1, 1, "report draft"),
            (1, 2, "report final"),
            (2, 3, "report other chat"),
        ],
    );
    let mut in_chat = SearchQuery::new("report");
    in_chat.chat_id = Some(chat_id(1));
    let mut found = ids(&store, &in_chat);
    found.sort();
    assert_eq!(found, [m[0], m[1]]);

    let mut range = SearchQuery::new("report");
    range.since_ms = Some(message(1, 2, "").sent_at_ms);
    range.until_ms = Some(message(1, 3, "").sent_at_ms);
    assert_eq!(ids(&store, &range), [m[1]]);
    range.chat_id = Some(chat_id(2));
    assert!(ids(&store, &range).is_empty());

    let mut empty_period = SearchQuery::new("report");
    empty_period.until_ms = Some(0);
    assert!(ids(&store, &empty_period).is_empty());

    // The chat key indexed for filtering is not searchable as text.
    let chat_hex: String = chat_id(1).iter().map(|b| format!("{b:02X}")).collect();
    assert!(ids(&store, &SearchQuery::new(chat_hex)).is_empty());

    let mut limited = SearchQuery::new("report");
    limited.limit = 2;
    assert_eq!(store.search(&limited).unwrap().len(), 2);
}

#[test]
fn query_syntax_is_never_interpreted() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_chats(&dir);
    let m = seed(
        &store,
        &[
            (1, 1, "cats and dogs"),
            (1, 2, "cats or birds"),
            (1, 3, "body text"),
        ],
    );
    let hostile = [
        "cats OR birds",
        "NEAR(cats dogs)",
        "body:cats",
        "\"cats",
        "cats\"",
        "-cats",
        "cats*",
        "^cats",
        "{body}: cats",
        "cats AND",
        "(cats",
        "'; DROP TABLE messages; --",
    ];
    for text in hostile {
        assert!(store.search(&SearchQuery::new(text)).is_ok(), "{text}");
    }
    // "OR" is a term, not an operator: only the message containing "or" matches.
    assert_eq!(ids(&store, &SearchQuery::new("cats OR birds")), [m[1]]);
    // "body:" is not a column filter.
    assert_eq!(ids(&store, &SearchQuery::new("body:text")), [m[2]]);
    assert!(ids(&store, &SearchQuery::new("\"\" ** ()")).is_empty());
    assert_eq!(
        store
            .transaction(|tx| tx.chat_messages(&chat_id(1), None, 10))
            .unwrap()
            .len(),
        3
    );
}

#[test]
fn prefix_matches_last_term_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_chats(&dir);
    let m = seed(
        &store,
        &[(1, 1, "lighthouse keeper"), (1, 2, "light keeper")],
    );
    let mut query = SearchQuery::new("keeper ligh");
    assert!(ids(&store, &query).is_empty());
    query.prefix = true;
    let mut found = ids(&store, &query);
    found.sort();
    assert_eq!(found, [m[0], m[1]]);
}

#[test]
fn deleted_messages_leave_the_index_and_markers_are_configurable() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_chats(&dir);
    let m = seed(&store, &[(1, 1, "secret plan"), (1, 2, "public plan")]);
    store.transaction(|tx| tx.delete_message(m[0])).unwrap();
    let mut query = SearchQuery::new("plan");
    query.highlight_start = "<b>".into();
    query.highlight_end = "</b>".into();
    let hits = store.search(&query).unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].snippet, "public <b>plan</b>");
}

#[test]
fn oversized_queries_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_chats(&dir);
    let err = store
        .search(&SearchQuery::new("a".repeat(2000)))
        .unwrap_err();
    assert!(matches!(err, StoreError::TooLarge { .. }), "{err:?}");
    let mut query = SearchQuery::new("a");
    query.highlight_start = "<".repeat(100);
    assert!(matches!(
        store.search(&query),
        Err(StoreError::TooLarge { .. })
    ));
}
