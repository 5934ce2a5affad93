//! Versioned SQLite schema. `PRAGMA user_version` records the applied
//! version; each migration runs once, in its own transaction, in order.
//! Never edit a released migration: append a new one.

use rusqlite::Connection;

use crate::error::StoreError;

/// Migrations, index `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // Version 1: accounts, devices, prekeys, chats, the message log, cursors.
    "
    CREATE TABLE accounts (
        user_id BLOB PRIMARY KEY,
        user_name TEXT NOT NULL UNIQUE,
        account_key BLOB NOT NULL,
        device_list BLOB NOT NULL,
        device_list_sig BLOB NOT NULL,
        device_list_version INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE devices (
        user_id BLOB NOT NULL,
        device_id INTEGER NOT NULL,
        identity_key BLOB NOT NULL,
        registered INTEGER NOT NULL DEFAULT 0,
        push_url TEXT,
        PRIMARY KEY (user_id, device_id)
    ) WITHOUT ROWID;
    CREATE TABLE invites (
        token_hash BLOB PRIMARY KEY,
        created_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE signed_prekeys (
        user_id BLOB NOT NULL,
        device_id INTEGER NOT NULL,
        kind INTEGER NOT NULL,
        id INTEGER NOT NULL,
        public_key BLOB NOT NULL,
        signature BLOB NOT NULL,
        PRIMARY KEY (user_id, device_id, kind)
    ) WITHOUT ROWID;
    CREATE TABLE one_time_prekeys (
        user_id BLOB NOT NULL,
        device_id INTEGER NOT NULL,
        kind INTEGER NOT NULL,
        id INTEGER NOT NULL,
        public_key BLOB NOT NULL,
        signature BLOB NOT NULL,
        PRIMARY KEY (user_id, device_id, kind, id)
    ) WITHOUT ROWID;
    CREATE TABLE chats (
        chat_id BLOB PRIMARY KEY,
        kind INTEGER NOT NULL,
        last_seq INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE chat_members (
        chat_id BLOB NOT NULL,
        user_id BLOB NOT NULL,
        joined_seq INTEGER NOT NULL,
        PRIMARY KEY (chat_id, user_id)
    ) WITHOUT ROWID;
    CREATE INDEX chat_members_by_user ON chat_members (user_id, chat_id);
    CREATE TABLE log (
        chat_id BLOB NOT NULL,
        seq INTEGER NOT NULL,
        kind INTEGER NOT NULL,
        sender_user BLOB NOT NULL,
        sender_device INTEGER NOT NULL,
        client_message_id BLOB,
        server_time_ms INTEGER NOT NULL,
        common_ciphertext BLOB,
        added BLOB,
        removed BLOB,
        PRIMARY KEY (chat_id, seq)
    ) WITHOUT ROWID;
    CREATE UNIQUE INDEX log_by_client_id ON log (sender_user, client_message_id)
        WHERE client_message_id IS NOT NULL;
    CREATE TABLE log_ciphertexts (
        chat_id BLOB NOT NULL,
        seq INTEGER NOT NULL,
        user_id BLOB NOT NULL,
        device_id INTEGER NOT NULL,
        ciphertext BLOB NOT NULL,
        PRIMARY KEY (chat_id, seq, user_id, device_id)
    ) WITHOUT ROWID;
    CREATE TABLE cursors (
        user_id BLOB NOT NULL,
        device_id INTEGER NOT NULL,
        chat_id BLOB NOT NULL,
        seq INTEGER NOT NULL,
        PRIMARY KEY (user_id, device_id, chat_id)
    ) WITHOUT ROWID;
    ",
    // Version 2: per-device lookups of queued ciphertexts (queue quota).
    "
    CREATE INDEX log_ciphertexts_by_device ON log_ciphertexts (user_id, device_id, chat_id, seq);
    ",
    // Version 3: the queue quota reads a device's ciphertexts chat by chat
    // through the primary key, so the per-device index (one more random
    // B-tree write per stored ciphertext) goes.
    "
    DROP INDEX log_ciphertexts_by_device;
    ",
    // Version 4: fewer pages per append (see docs/operations.md).
    // - `log` becomes a rowid table: rows are appended at the end of the
    //   table in commit order instead of into a random chat's leaf (as a
    //   WITHOUT ROWID table, its ~200-byte rows also filled interior pages:
    //   about two leaf and 0.4 interior pages were rewritten per append);
    //   `(chat_id, seq)` is a small unique index.
    // - A message's per-device ciphertexts go inline in its row
    //   (`ciphertexts`, relay-internal encoding, see `ciphertexts.rs`); NULL
    //   means they are in `log_ciphertexts`, as for every entry written
    //   before this version and for large fan-outs.
    // - The idempotency index leads with the client message id, so
    //   time-ordered ids (docs/protocol.md) append at its end.
    // Existing rows are copied as they are.
    "
    ALTER TABLE log RENAME TO log_v3;
    CREATE TABLE log (
        chat_id BLOB NOT NULL,
        seq INTEGER NOT NULL,
        kind INTEGER NOT NULL,
        sender_user BLOB NOT NULL,
        sender_device INTEGER NOT NULL,
        client_message_id BLOB,
        server_time_ms INTEGER NOT NULL,
        common_ciphertext BLOB,
        added BLOB,
        removed BLOB,
        ciphertexts BLOB,
        PRIMARY KEY (chat_id, seq)
    );
    INSERT INTO log (chat_id, seq, kind, sender_user, sender_device, client_message_id,
                     server_time_ms, common_ciphertext, added, removed)
        SELECT chat_id, seq, kind, sender_user, sender_device, client_message_id,
               server_time_ms, common_ciphertext, added, removed
        FROM log_v3 ORDER BY chat_id, seq;
    DROP TABLE log_v3;
    CREATE UNIQUE INDEX log_by_client_id ON log (client_message_id, sender_user)
        WHERE client_message_id IS NOT NULL;
    ",
    // Version 5: group roles. `chat_members.admin` marks admins; a
    // membership entry records whom it made admin (`log.promoted`, ids
    // concatenated like `added`). A group's creator (the sender of its
    // seq-1 entry, where retention kept it) becomes its admin; a group
    // left without one keeps the rule it had: every member is an admin.
    "
    ALTER TABLE chat_members ADD COLUMN admin INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE log ADD COLUMN promoted BLOB;
    UPDATE chat_members SET admin = 1 WHERE EXISTS (
        SELECT 1 FROM chats c JOIN log l ON l.chat_id = c.chat_id AND l.seq = 1
        WHERE c.chat_id = chat_members.chat_id AND c.kind = 2
          AND l.sender_user = chat_members.user_id);
    UPDATE chat_members SET admin = 1 WHERE chat_id IN (
        SELECT c.chat_id FROM chats c WHERE c.kind = 2 AND NOT EXISTS (
            SELECT 1 FROM chat_members m WHERE m.chat_id = c.chat_id AND m.admin = 1));
    ",
];

/// The schema version this build creates.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database to [`SCHEMA_VERSION`].
pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    migrate_to(conn, SCHEMA_VERSION)
}

/// Brings the database to `target` (tests build older schemas with it).
pub(super) fn migrate_to(conn: &mut Connection, target: i64) -> Result<(), StoreError> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found: current,
            supported: SCHEMA_VERSION,
        });
    }
    let pending = MIGRATIONS
        .iter()
        .take(usize::try_from(target).unwrap_or(0))
        .skip(usize::try_from(current).unwrap_or(0));
    for (version, sql) in (current..).zip(pending) {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", version + 1)?;
        tx.commit()?;
        tracing::info!(version = version + 1, "database schema migrated");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_once_and_refuse_newer_schemas() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        migrate(&mut conn).unwrap();
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        assert!(matches!(
            migrate(&mut conn),
            Err(StoreError::SchemaTooNew { .. })
        ));
    }
}
