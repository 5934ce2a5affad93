//! The database schema and its migrations, all in one place.
//!
//! `PRAGMA user_version` holds the number of migrations applied. Each entry of
//! [`MIGRATIONS`] runs in its own transaction together with the version bump,
//! so a crash mid-migration leaves the previous version intact. Migrations are
//! append-only: a released entry is never edited.

use rusqlite::Connection;

use super::error::StoreError;

/// Schema version 1: every table of the first release.
const V1: &str = r#"
-- Opaque, versioned crypto-state encodings (owned by `tern_crypto`).
CREATE TABLE identity (
    slot          INTEGER PRIMARY KEY,
    state         BLOB    NOT NULL,
    updated_at_ms INTEGER NOT NULL
) STRICT;

CREATE TABLE prekeys (
    kind          INTEGER NOT NULL,
    id            INTEGER NOT NULL,
    state         BLOB    NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (kind, id)
) STRICT, WITHOUT ROWID;

CREATE TABLE sessions (
    user_id       BLOB    NOT NULL,
    device_id     INTEGER NOT NULL,
    session_id    BLOB    NOT NULL,
    state         BLOB    NOT NULL,
    active        INTEGER NOT NULL CHECK (active IN (0, 1)),
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (user_id, device_id, session_id)
) STRICT, WITHOUT ROWID;
CREATE UNIQUE INDEX sessions_one_active ON sessions (user_id, device_id) WHERE active = 1;

CREATE TABLE sender_keys (
    chat_id          BLOB    NOT NULL,
    sender_user_id   BLOB    NOT NULL,
    sender_device_id INTEGER NOT NULL,
    state            BLOB    NOT NULL,
    updated_at_ms    INTEGER NOT NULL,
    PRIMARY KEY (chat_id, sender_user_id, sender_device_id)
) STRICT, WITHOUT ROWID;

CREATE TABLE contacts (
    user_id       BLOB    PRIMARY KEY,
    display_name  TEXT    NOT NULL,
    identity_key  BLOB,
    verification  INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
) STRICT;

CREATE TABLE chats (
    chat_id       BLOB    PRIMARY KEY,
    kind          INTEGER NOT NULL,
    title         TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL
) STRICT;

CREATE TABLE chat_members (
    chat_id BLOB NOT NULL REFERENCES chats (chat_id) ON DELETE CASCADE,
    user_id BLOB NOT NULL,
    PRIMARY KEY (chat_id, user_id)
) STRICT, WITHOUT ROWID;

CREATE TABLE messages (
    id                INTEGER PRIMARY KEY,
    chat_id           BLOB    NOT NULL REFERENCES chats (chat_id) ON DELETE CASCADE,
    relay_seq         INTEGER,
    client_message_id BLOB    NOT NULL,
    sender_user_id    BLOB    NOT NULL,
    sender_device_id  INTEGER NOT NULL,
    sent_at_ms        INTEGER NOT NULL,
    received_at_ms    INTEGER NOT NULL,
    body              TEXT    NOT NULL,
    chat_key          TEXT    GENERATED ALWAYS AS (hex(chat_id)) VIRTUAL,
    UNIQUE (chat_id, sender_user_id, client_message_id)
) STRICT;
CREATE UNIQUE INDEX messages_chat_seq ON messages (chat_id, relay_seq) WHERE relay_seq IS NOT NULL;
CREATE INDEX messages_sent_at ON messages (sent_at_ms);

CREATE TABLE message_status (
    message_id        INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    recipient_user_id BLOB    NOT NULL,
    status            INTEGER NOT NULL,
    updated_at_ms     INTEGER NOT NULL,
    PRIMARY KEY (message_id, recipient_user_id)
) STRICT, WITHOUT ROWID;

CREATE TABLE attachments (
    id             INTEGER PRIMARY KEY,
    message_id     INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    content_type   TEXT    NOT NULL,
    file_name      TEXT    NOT NULL,
    size           INTEGER NOT NULL,
    key            BLOB    NOT NULL,
    digest         BLOB    NOT NULL,
    blob_id        BLOB,
    local_path     TEXT,
    transfer_state INTEGER NOT NULL,
    transferred    INTEGER NOT NULL
) STRICT;
CREATE INDEX attachments_message ON attachments (message_id);

CREATE TABLE relay_cursors (
    chat_id       BLOB    PRIMARY KEY,
    delivered_seq INTEGER NOT NULL,
    read_seq      INTEGER NOT NULL
) STRICT;

CREATE TABLE outbox (
    id                 INTEGER PRIMARY KEY,
    chat_id            BLOB    NOT NULL,
    client_message_id  BLOB    NOT NULL UNIQUE,
    payload            BLOB    NOT NULL,
    attempts           INTEGER NOT NULL,
    next_attempt_at_ms INTEGER NOT NULL,
    created_at_ms      INTEGER NOT NULL
) STRICT;
CREATE INDEX outbox_due ON outbox (next_attempt_at_ms);

-- Full-text index over message bodies, kept in sync by triggers. It lives in
-- the same encrypted database; only the index, not a second copy of bodies.
-- `chat_key` (the chat id in hex, one token) lets a chat filter run inside
-- the index instead of after it.
CREATE VIRTUAL TABLE messages_fts USING fts5 (
    body,
    chat_key,
    content = 'messages',
    content_rowid = 'id',
    tokenize = 'unicode61 remove_diacritics 2'
);
CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts (rowid, body, chat_key) VALUES (new.id, new.body, new.chat_key);
END;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, body, chat_key)
        VALUES ('delete', old.id, old.body, old.chat_key);
END;
CREATE TRIGGER messages_fts_update AFTER UPDATE OF body ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, body, chat_key)
        VALUES ('delete', old.id, old.body, old.chat_key);
    INSERT INTO messages_fts (rowid, body, chat_key) VALUES (new.id, new.body, new.chat_key);
END;
"#;

/// Schema version 2: messages not yet sequenced by the relay, per chat, found
/// without visiting the chat's whole history.
const V2: &str = "
CREATE INDEX messages_chat_pending ON messages (chat_id, id) WHERE relay_seq IS NULL;
";

/// Schema version 3: the last accepted account-signed device list per user
/// (rollback protection that survives restarts).
const V3: &str = "
CREATE TABLE device_lists (
    user_id       BLOB    PRIMARY KEY,
    user_name     TEXT    NOT NULL,
    account_key   BLOB    NOT NULL,
    version       INTEGER NOT NULL,
    device_list   BLOB    NOT NULL,
    signature     BLOB    NOT NULL,
    updated_at_ms INTEGER NOT NULL
) STRICT;
";

/// Schema version 4: attachment uploads in progress (key and ciphertext
/// digest per chat and file), so that an interrupted upload resumes.
const V4: &str = "
CREATE TABLE pending_uploads (
    chat_id       BLOB    NOT NULL,
    path          TEXT    NOT NULL,
    size          INTEGER NOT NULL,
    key           BLOB    NOT NULL,
    digest        BLOB    NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (chat_id, path)
) STRICT;
";

/// Schema version 5: the rotation schedule of the signed prekey and of the
/// last-resort KEM prekey (one opaque `RotationSchedule` encoding per prekey kind).
const V5: &str = "
CREATE TABLE prekey_schedules (
    kind          INTEGER PRIMARY KEY,
    state         BLOB    NOT NULL,
    updated_at_ms INTEGER NOT NULL
) STRICT;
";

/// Schema version 6: group admins (1 marks an admin; the relay's chat
/// listing and membership entries say who is one).
const V6: &str = "
ALTER TABLE chat_members ADD COLUMN admin INTEGER NOT NULL DEFAULT 0;
";

/// Schema version 7: the outbox is sent in order per chat; this finds a
/// chat's oldest entry.
const V7: &str = "
CREATE INDEX outbox_by_chat ON outbox (chat_id, id);
";

/// Every migration, in order. Entry `i` moves the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[V1, V2, V3, V4, V5, V6, V7];

/// The schema version this build creates and understands.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database up to [`SCHEMA_VERSION`].
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let found: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    let applied = usize::try_from(found)
        .map_err(|_| StoreError::Corrupt("negative schema version".into()))?;
    for (version, sql) in (1..=SCHEMA_VERSION).zip(MIGRATIONS).skip(applied) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
    }
    Ok(())
}

/// The schema version stored in the database.
pub(crate) fn version(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.pragma_query_value(None, "user_version", |row| row.get(0))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table_count(conn: &Connection) -> i64 {
        conn.query_row(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'table'",
            [],
            |row| row.get(0),
        )
        .unwrap()
    }

    #[test]
    fn migrates_an_empty_database_once() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(version(&conn).unwrap(), 0);
        migrate(&mut conn).unwrap();
        assert_eq!(version(&conn).unwrap(), SCHEMA_VERSION);
        let tables = table_count(&conn);
        assert!(tables >= 12, "{tables} tables");
        migrate(&mut conn).unwrap();
        assert_eq!(table_count(&conn), tables);
    }

    #[test]
    fn upgrades_version_one_keeping_rows() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(V1).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute("INSERT INTO chats VALUES (x'01', 1, 't', 0)", [])
            .unwrap();
        migrate(&mut conn).unwrap();
        assert_eq!(version(&conn).unwrap(), SCHEMA_VERSION);
        let pending_index: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE name = 'messages_chat_pending'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(pending_index, 1);
        let chats: i64 = conn
            .query_row("SELECT count(*) FROM chats", [], |row| row.get(0))
            .unwrap();
        assert_eq!(chats, 1);
    }

    #[test]
    fn refuses_a_newer_schema() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        let err = migrate(&mut conn).unwrap_err();
        assert!(
            matches!(err, StoreError::SchemaTooNew { found, .. } if found == SCHEMA_VERSION + 1)
        );
    }

    #[test]
    fn failed_migration_leaves_version_unchanged() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE messages (x INTEGER)")
            .unwrap();
        assert!(migrate(&mut conn).is_err());
        assert_eq!(version(&conn).unwrap(), 0);
        assert_eq!(table_count(&conn), 1);
    }
}
