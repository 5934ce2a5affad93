//! The SQLite backend: the conformance suite every backend passes, and
//! what is its own — the log writer's bookkeeping against a real database
//! file, inline and per-device ciphertexts, the page cost of appends, WAL
//! checkpoints and schema migrations.

use tern_protocol::{ChatId, ClientMessageId, UserId};

use super::{SqliteStore, schema};
use crate::config::Synchronous;
use crate::error::{RelayError, StoreError};
use crate::store::conformance::{
    Backend, CHAT, account, append, ciphertext, conformance_suite, message, message_in,
    populate_group, refusal, send, seq,
};
use tern_protocol::wire::ChatKind;

use crate::store::{
    ChatStore, CursorStore, DeviceAddr, LogAppend, LogStore, MembershipAppend, Store,
};

/// A store in a temporary directory.
struct SqliteBackend {
    dir: tempfile::TempDir,
    store: SqliteStore,
    queue_quota: u64,
}

impl Backend for SqliteBackend {
    fn fresh(queue_quota: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(&dir);
        store.set_device_queue_quota(queue_quota);
        Self {
            dir,
            store,
            queue_quota,
        }
    }

    fn store(&self) -> &dyn Store {
        &self.store
    }

    fn reopen(&mut self) {
        // The old store closes before the new one opens.
        self.store = SqliteStore::open(&db_path(&self.dir), Synchronous::Full).unwrap();
        self.store.set_device_queue_quota(self.queue_quota);
    }
}

conformance_suite!(super::SqliteBackend);

fn db_path(dir: &tempfile::TempDir) -> std::path::PathBuf {
    dir.path().join("relay.db")
}

fn open(dir: &tempfile::TempDir) -> SqliteStore {
    SqliteStore::open(&db_path(dir), Synchronous::Full).unwrap()
}

/// A second connection, to look at or damage what the store wrote.
fn raw(dir: &tempfile::TempDir) -> rusqlite::Connection {
    rusqlite::Connection::open(db_path(dir)).unwrap()
}

/// A store in `dir` with accounts 1, 2, 3 in the group chat [`CHAT`].
fn group(dir: &tempfile::TempDir) -> SqliteStore {
    let store = open(dir);
    populate_group(&store);
    store
}

/// What device 1 of user `u` reads from the start: (seq, own ciphertext).
fn read_all(store: &SqliteStore, u: u8) -> Vec<(u64, Vec<u8>)> {
    let (entries, more) = store
        .read_log(DeviceAddr::test(u, 1), &[(CHAT, 0)], 100, 1 << 20)
        .unwrap();
    assert!(!more);
    entries
        .into_iter()
        .map(|e| (e.seq, e.ciphertext.to_vec()))
        .collect()
}

#[test]
fn few_ciphertexts_ride_in_the_log_row_and_many_get_rows_of_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let store = group(&dir);
    let got = append(
        &store,
        vec![message(1, 1, &[2, 3], 100), message(1, 2, &[2, 3], 3_000)],
    );
    assert_eq!((seq(&got[0]), seq(&got[1])), ((2, false), (3, false)));
    let spilled: i64 = raw(&dir)
        .query_row("SELECT count(*) FROM log_ciphertexts", [], |r| r.get(0))
        .unwrap();
    assert_eq!(spilled, 2);
    for u in [2, 3] {
        let own = read_all(&store, u);
        let expected = vec![
            (1, Vec::new()),
            (2, ciphertext(1, u, 100)),
            (3, ciphertext(2, u, 3_000)),
        ];
        assert_eq!(own, expected);
    }
    assert_eq!(read_all(&store, 1)[1], (2, Vec::new()));
    drop(store);
    // Reopened, the store computes each queue from the log: 100 bytes
    // inline plus 3,000 in their own row.
    let mut store = open(&dir);
    store.set_device_queue_quota(3_100);
    let over = send(&store, 1, 3, &[2, 3], 1);
    assert!(matches!(refusal(&over), Some(RelayError::QuotaExceeded(_))));
    store.set_device_queue_quota(3_101);
    assert_eq!(seq(&send(&store, 1, 3, &[2, 3], 1)), (4, false));
}

#[test]
fn a_damaged_inline_encoding_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let store = group(&dir);
    send(&store, 1, 1, &[2, 3], 100).unwrap();
    raw(&dir)
        .execute("UPDATE log SET ciphertexts = x'01ff' WHERE seq = 2", [])
        .unwrap();
    let read = store.read_log(DeviceAddr::test(2, 1), &[], 100, 1 << 20);
    assert!(matches!(read, Err(StoreError::Corrupt(_))));
}

/// Writes the schema v3 layout of the group chat, as a v3 relay stored it:
/// the creation (seq 1), a message from user 1 with one `log_ciphertexts`
/// row per recipient (seq 2), a common-ciphertext message from user 2
/// (seq 3), and user 2's cursor at seq 2.
fn v3_database(dir: &tempfile::TempDir) {
    let mut conn = raw(dir);
    schema::migrate_to(&mut conn, 3).unwrap();
    let tx = conn.transaction().unwrap();
    for u in 1u8..=3 {
        tx.execute(
            "INSERT INTO accounts VALUES (?1, ?2, ?3, x'', x'', 1)",
            rusqlite::params![[u; 16], format!("user{u}"), [u; 32]],
        )
        .unwrap();
        tx.execute(
            "INSERT INTO devices VALUES (?1, 1, ?2, 1, NULL)",
            rusqlite::params![[u; 16], [u; 32]],
        )
        .unwrap();
        tx.execute(
            "INSERT INTO chat_members VALUES (?1, ?2, 1)",
            rusqlite::params![CHAT.0, [u; 16]],
        )
        .unwrap();
    }
    let members: Vec<u8> = (1u8..=3).flat_map(|u| [u; 16]).collect();
    let sql = [
        "INSERT INTO chats VALUES (?1, 2, 3)",
        "INSERT INTO log (chat_id, seq, kind, sender_user, sender_device, server_time_ms, added)
         VALUES (?1, 1, 2, x'01010101010101010101010101010101', 1, 5, ?2)",
        "INSERT INTO log (chat_id, seq, kind, sender_user, sender_device, client_message_id,
                          server_time_ms)
         VALUES (?1, 2, 1, x'01010101010101010101010101010101', 1,
                 x'11111111111111111111111111111111', 6)",
        "INSERT INTO log_ciphertexts VALUES
             (?1, 2, x'02020202020202020202020202020202', 1, x'2222'),
             (?1, 2, x'03030303030303030303030303030303', 1, x'3333')",
        "INSERT INTO log (chat_id, seq, kind, sender_user, sender_device, client_message_id,
                          server_time_ms, common_ciphertext)
         VALUES (?1, 3, 1, x'02020202020202020202020202020202', 1,
                 x'12121212121212121212121212121212', 7, x'c0c0')",
        "INSERT INTO cursors VALUES (x'02020202020202020202020202020202', 1, ?1, 2)",
    ];
    for stmt in sql {
        let mut stmt = tx.prepare(stmt).unwrap();
        let params: Vec<&dyn rusqlite::ToSql> = match stmt.parameter_count() {
            1 => vec![&CHAT.0],
            _ => vec![&CHAT.0, &members],
        };
        stmt.execute(&params[..]).unwrap();
    }
    tx.commit().unwrap();
}

#[test]
fn a_v3_database_opens_as_v4_with_its_entries_ciphertexts_and_cursors() {
    let dir = tempfile::tempdir().unwrap();
    v3_database(&dir);
    let store = open(&dir);
    let version: i64 = raw(&dir)
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, schema::SCHEMA_VERSION);
    let chat = store.chat(&CHAT).unwrap().unwrap();
    assert_eq!(chat.last_seq, 3);
    assert_eq!(
        chat.admins,
        [UserId([1; 16])],
        "the group's creator is its admin"
    );
    let (entries, _) = store
        .read_log(DeviceAddr::test(3, 1), &[], 100, 1 << 20)
        .unwrap();
    let seen: Vec<_> = entries
        .iter()
        .map(|e| (e.seq, &e.ciphertext[..], &e.common_ciphertext[..]))
        .collect();
    let none: &[u8] = &[];
    let expected = vec![
        (1, none, none),
        (2, &[0x33, 0x33][..], none),
        (3, none, &[0xc0, 0xc0][..]),
    ];
    assert_eq!(seen, expected);
    assert_eq!(entries[0].added.len(), 3);
    let (from_cursor, _) = store
        .read_log(DeviceAddr::test(2, 1), &[], 100, 1 << 20)
        .unwrap();
    assert_eq!(from_cursor.iter().map(|e| e.seq).collect::<Vec<_>>(), [3]);
    let resend = send(&store, 1, 0x11, &[2, 3], 10);
    assert_eq!(seq(&resend), (2, true));
    let fresh = send(&store, 1, 0x13, &[2, 3], 10);
    assert_eq!(seq(&fresh), (4, false));
    assert_eq!(
        read_all(&store, 2)[1..],
        [
            (2, vec![0x22, 0x22]),
            (3, Vec::new()),
            (4, ciphertext(0x13, 2, 10))
        ]
    );
}

#[test]
fn a_group_whose_creation_entry_is_gone_keeps_every_member_an_admin() {
    let dir = tempfile::tempdir().unwrap();
    v3_database(&dir);
    raw(&dir)
        .execute("DELETE FROM log WHERE seq = 1", [])
        .unwrap();
    let store = open(&dir);
    let admins = store.chat(&CHAT).unwrap().unwrap().admins;
    assert_eq!(admins, [1u8, 2, 3].map(|u| UserId([u; 16])));
}

/// The point of the v4 layout, counted in pages (deterministic, unlike
/// time): commits of 1:1 messages over many chats, with time-ordered client
/// message ids, write well under one WAL page per message (schema v3 wrote
/// a leaf of `log`, of `log_ciphertexts` and of the id index per message).
#[test]
fn a_commit_over_many_chats_writes_under_one_page_per_message() {
    const PAIRS: u8 = 50;
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    for u in 1..=2 * PAIRS {
        account(&store, u);
    }
    let chat = |p: u8| ChatId([p; 16]);
    let creates = (1..=PAIRS).map(|p| {
        LogAppend::Membership(MembershipAppend {
            chat_id: chat(p),
            actor: DeviceAddr::test(2 * p - 1, 1),
            create: Some(ChatKind::Direct),
            added: vec![UserId([2 * p - 1; 16]), UserId([2 * p; 16])],
            removed: Vec::new(),
            promote: Vec::new(),
        })
    });
    let commit = |items: Vec<LogAppend>| {
        for result in append(&store, items) {
            result.unwrap();
        }
    };
    commit(creates.collect());
    let round = |r: u64| {
        let messages = (1..=PAIRS).map(|p| {
            let id = ClientMessageId::time_ordered(1_800_000_000_000 + r, [p; 10]);
            message_in(chat(p), DeviceAddr::test(2 * p - 1, 1), id, &[2 * p], 150)
        });
        commit(messages.collect());
    };
    (0..20).for_each(round);
    raw(&dir)
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    (20..30).for_each(round);
    let wal = std::fs::metadata(dir.path().join("relay.db-wal")).unwrap();
    let pages = (wal.len() - 32) / (4096 + 24);
    let messages = 10 * u64::from(PAIRS);
    assert!(pages < messages, "{pages} pages for {messages} messages");
}

#[test]
fn checkpoints_restart_the_wal_while_appends_continue() {
    const BATCHES: u64 = 400;
    const PER_BATCH: u64 = 100;
    let dir = tempfile::tempdir().unwrap();
    let store = group(&dir);
    for b in 0..BATCHES {
        let messages = (0..PER_BATCH).map(|i| {
            let mut random = [0u8; 10];
            random[..8].copy_from_slice(&(b * PER_BATCH + i).to_be_bytes());
            let id = ClientMessageId::time_ordered(1_800_000_000_000 + b, random);
            message_in(CHAT, DeviceAddr::test(1, 1), id, &[2, 3], 150)
        });
        for result in append(&store, messages.collect()) {
            result.unwrap();
        }
        store.after_batch().unwrap();
    }
    let stored: i64 = raw(&dir)
        .query_row("SELECT count(*) FROM log", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        stored,
        (BATCHES * PER_BATCH + 1) as i64,
        "every entry is stored"
    );
    // Without a restart the WAL would hold every frame written: about ten
    // pages per batch of 100, 16 MB in all. Restarted after each
    // checkpoint, it stays near the frames of one checkpoint interval.
    let wal = std::fs::metadata(dir.path().join("relay.db-wal")).unwrap();
    assert!(wal.len() < 8 << 20, "WAL grew to {} bytes", wal.len());
}
