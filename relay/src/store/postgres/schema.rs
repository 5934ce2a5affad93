//! Versioned PostgreSQL schema. `tern_schema.version` records the applied
//! version; pending migrations run once, in order, in one transaction
//! under an advisory lock, so nodes starting together migrate once.
//! Never edit a released migration: append a new one.
//!
//! The tables mirror the SQLite backend's (docs/operations.md), except that
//! `chats.last_seq` is always the chat's last assigned seq: appends lock
//! and update it, which is what orders concurrent nodes.

use deadpool_postgres::GenericClient;

use super::shards::{self, Layout};
use super::{Conn, exec, row};
use crate::error::StoreError;

/// Advisory lock key held while migrating ("tern" + 1).
const MIGRATION_LOCK: i64 = 0x7465_726e_0000_0001;

/// Migrations, index `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // Version 1: accounts, devices, prekeys, chats, the message log, cursors.
    "
    CREATE TABLE accounts (
        user_id bytea PRIMARY KEY,
        user_name text NOT NULL UNIQUE,
        account_key bytea NOT NULL,
        device_list bytea NOT NULL,
        device_list_sig bytea NOT NULL,
        device_list_version bigint NOT NULL
    );
    CREATE TABLE devices (
        user_id bytea NOT NULL,
        device_id bigint NOT NULL,
        identity_key bytea NOT NULL,
        registered boolean NOT NULL DEFAULT false,
        push_url text,
        PRIMARY KEY (user_id, device_id)
    );
    CREATE TABLE invites (
        token_hash bytea PRIMARY KEY,
        created_ms bigint NOT NULL
    );
    CREATE TABLE signed_prekeys (
        user_id bytea NOT NULL,
        device_id bigint NOT NULL,
        kind smallint NOT NULL,
        id bigint NOT NULL,
        public_key bytea NOT NULL,
        signature bytea NOT NULL,
        PRIMARY KEY (user_id, device_id, kind)
    );
    CREATE TABLE one_time_prekeys (
        user_id bytea NOT NULL,
        device_id bigint NOT NULL,
        kind smallint NOT NULL,
        id bigint NOT NULL,
        public_key bytea NOT NULL,
        signature bytea NOT NULL,
        PRIMARY KEY (user_id, device_id, kind, id)
    );
    CREATE TABLE chats (
        chat_id bytea PRIMARY KEY,
        kind smallint NOT NULL,
        last_seq bigint NOT NULL
    );
    CREATE TABLE chat_members (
        chat_id bytea NOT NULL,
        user_id bytea NOT NULL,
        joined_seq bigint NOT NULL,
        admin boolean NOT NULL DEFAULT false,
        PRIMARY KEY (chat_id, user_id)
    );
    CREATE INDEX chat_members_by_user ON chat_members (user_id, chat_id);
    CREATE TABLE log (
        chat_id bytea NOT NULL,
        seq bigint NOT NULL,
        kind smallint NOT NULL,
        sender_user bytea NOT NULL,
        sender_device bigint NOT NULL,
        client_message_id bytea,
        server_time_ms bigint NOT NULL,
        common_ciphertext bytea,
        ciphertexts bytea,
        added bytea,
        removed bytea,
        promoted bytea,
        PRIMARY KEY (chat_id, seq)
    );
    CREATE UNIQUE INDEX log_by_client_id ON log (client_message_id, sender_user)
        WHERE client_message_id IS NOT NULL;
    CREATE TABLE log_ciphertexts (
        chat_id bytea NOT NULL,
        seq bigint NOT NULL,
        user_id bytea NOT NULL,
        device_id bigint NOT NULL,
        ciphertext bytea NOT NULL,
        PRIMARY KEY (chat_id, seq, user_id, device_id)
    );
    CREATE TABLE cursors (
        user_id bytea NOT NULL,
        device_id bigint NOT NULL,
        chat_id bytea NOT NULL,
        seq bigint NOT NULL,
        PRIMARY KEY (user_id, device_id, chat_id)
    );
    ",
    // Version 2: blobs (crate::blobs::postgres). A chunk belongs to one
    // upload; a partial upload is one device's, a complete blob points at
    // the upload that proved its hash, so finishing moves no data.
    "
    CREATE SEQUENCE blob_upload_ids;
    CREATE TABLE blob_partials (
        blob_id bytea NOT NULL,
        user_id bytea NOT NULL,
        device_id bigint NOT NULL,
        upload_id bigint NOT NULL UNIQUE DEFAULT nextval('blob_upload_ids'),
        len bigint NOT NULL DEFAULT 0,
        touched_ms bigint NOT NULL,
        PRIMARY KEY (blob_id, user_id, device_id)
    );
    CREATE INDEX blob_partials_by_age ON blob_partials (touched_ms);
    CREATE TABLE blobs (
        blob_id bytea PRIMARY KEY,
        upload_id bigint NOT NULL UNIQUE,
        size bigint NOT NULL,
        created_ms bigint NOT NULL
    );
    CREATE INDEX blobs_by_age ON blobs (created_ms);
    CREATE TABLE blob_chunks (
        upload_id bigint NOT NULL,
        pos bigint NOT NULL,
        data bytea NOT NULL,
        PRIMARY KEY (upload_id, pos)
    );
    -- Ciphertext does not compress: store it out of line, uncompressed.
    ALTER TABLE blob_chunks ALTER COLUMN data SET STORAGE EXTERNAL;
    CREATE TABLE blob_charges (
        user_id bytea NOT NULL,
        blob_id bytea NOT NULL,
        size bigint NOT NULL,
        charged_ms bigint NOT NULL,
        PRIMARY KEY (user_id, blob_id)
    );
    CREATE INDEX blob_charges_by_blob ON blob_charges (blob_id);
    ",
    // Version 3: the database's place in the store's layout
    // (super::shards::Layout), one row written on first open.
    "
    CREATE TABLE tern_layout (
        role text NOT NULL,
        position bigint NOT NULL,
        shards bigint NOT NULL
    );
    ",
];

/// The schema version this build creates.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The applied schema version (0 for an empty database).
async fn current(c: &impl GenericClient) -> Result<i64, StoreError> {
    exec(
        c,
        "CREATE TABLE IF NOT EXISTS tern_schema (version bigint NOT NULL)",
        &[],
    )
    .await?;
    let found = row(c, "SELECT max(version) FROM tern_schema", &[]).await?;
    Ok(match found {
        Some(r) => r.try_get::<_, Option<i64>>(0)?.unwrap_or(0),
        None => 0,
    })
}

/// Brings the database to [`SCHEMA_VERSION`] and checks that it plays the
/// part `layout` says (recording it on first open).
pub(super) async fn migrate(c: &mut Conn, layout: Layout) -> Result<(), StoreError> {
    let tx = c.transaction().await?;
    exec(&tx, "SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
    let found = current(&tx).await?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    let pending = MIGRATIONS.iter().skip(usize::try_from(found).unwrap_or(0));
    for (version, sql) in (found..).zip(pending) {
        tx.batch_execute(sql).await?;
        exec(&tx, "DELETE FROM tern_schema", &[]).await?;
        exec(
            &tx,
            "INSERT INTO tern_schema (version) VALUES ($1)",
            &[&(version + 1)],
        )
        .await?;
        tracing::info!(version = version + 1, "PostgreSQL schema migrated");
    }
    shards::check_layout(&tx, layout).await?;
    tx.commit().await?;
    Ok(())
}
