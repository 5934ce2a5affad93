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
];

/// The schema version this build creates.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database to [`SCHEMA_VERSION`].
pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found: current,
            supported: SCHEMA_VERSION,
        });
    }
    for (version, sql) in (current..).zip(MIGRATIONS.iter().skip(current as usize)) {
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
