//! The tables of `relay.db`, copied row by row into PostgreSQL with
//! `COPY … FROM STDIN (FORMAT binary)`, streamed (never a whole table in
//! memory) and checked column by column on the way.
//!
//! Differences between the schemas, handled here:
//! - SQLite's `chats.last_seq` is only raised by retention; a chat's last
//!   seq is the larger of it and its log's highest seq (`last_seq_of_c!` in
//!   the SQLite backend). PostgreSQL's must be the last assigned seq, since
//!   appends continue from it: the larger of the two is written.
//! - Booleans are integers 0/1 in SQLite, `boolean` in PostgreSQL; kinds
//!   become `smallint`, device and key ids `bigint`.
//! - `log.ciphertexts` has the same encoding in both (copied as it is, once
//!   checked to decode); entries whose ciphertexts are in `log_ciphertexts`
//!   (NULL there: large fan-outs, and everything written before SQLite
//!   schema version 4) keep them there.

use std::pin::pin;

use deadpool_postgres::Transaction;
use rusqlite::types::ValueRef;
use tern_protocol::wire::{ChatKind, EntryKind};
use tern_protocol::{ChatId, ClientMessageId, UserId};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

use super::{ImportCounts, TransferError};
use crate::store::ciphertexts;

/// One converted row: a value per PostgreSQL column.
type Values = Vec<Box<dyn ToSql + Sync + Send>>;

/// How one table is read from SQLite and written to PostgreSQL.
struct Table {
    /// Its name in both databases.
    name: &'static str,
    /// The SQLite query: every column, in primary key order.
    select: &'static str,
    /// The PostgreSQL columns the query's columns go to, in order.
    columns: &'static str,
    /// Their PostgreSQL types.
    types: &'static [Type],
    /// Checks and converts one row.
    convert: fn(&mut Columns<'_, '_>) -> Result<(), TransferError>,
}

/// `kind` values of the prekey tables: X25519 and ML-KEM keys.
const PREKEY_KINDS: &[i16] = &[0, 1];
const CHAT_KINDS: &[i16] = &[ChatKind::Direct as i16, ChatKind::Group as i16];
const ENTRY_KINDS: &[i16] = &[EntryKind::Message as i16, EntryKind::Membership as i16];

const ACCOUNTS: Table = Table {
    name: "accounts",
    select: "SELECT user_id, user_name, account_key, device_list, device_list_sig,
                    device_list_version FROM accounts ORDER BY user_id",
    columns: "user_id, user_name, account_key, device_list, device_list_sig, device_list_version",
    types: &[
        Type::BYTEA,
        Type::TEXT,
        Type::BYTEA,
        Type::BYTEA,
        Type::BYTEA,
        Type::INT8,
    ],
    convert: |c| {
        c.id(UserId::LEN)?;
        c.text()?;
        c.id(32)?;
        c.bytes()?;
        c.bytes()?;
        c.count()
    },
};

const DEVICES: Table = Table {
    name: "devices",
    select: "SELECT user_id, device_id, identity_key, registered, push_url
             FROM devices ORDER BY user_id, device_id",
    columns: "user_id, device_id, identity_key, registered, push_url",
    types: &[Type::BYTEA, Type::INT8, Type::BYTEA, Type::BOOL, Type::TEXT],
    convert: |c| {
        c.id(UserId::LEN)?;
        c.u32()?;
        c.id(32)?;
        c.flag()?;
        c.opt_text()
    },
};

const INVITES: Table = Table {
    name: "invites",
    select: "SELECT token_hash, created_ms FROM invites ORDER BY token_hash",
    columns: "token_hash, created_ms",
    types: &[Type::BYTEA, Type::INT8],
    convert: |c| {
        c.id(32)?;
        c.count()
    },
};

/// Both prekey tables have the same columns.
const PREKEY_TYPES: &[Type] = &[
    Type::BYTEA,
    Type::INT8,
    Type::INT2,
    Type::INT8,
    Type::BYTEA,
    Type::BYTEA,
];

fn prekey(c: &mut Columns<'_, '_>) -> Result<(), TransferError> {
    c.id(UserId::LEN)?;
    c.u32()?;
    c.kind(PREKEY_KINDS)?;
    c.u32()?;
    c.bytes()?;
    c.bytes()
}

const SIGNED_PREKEYS: Table = Table {
    name: "signed_prekeys",
    select: "SELECT user_id, device_id, kind, id, public_key, signature
             FROM signed_prekeys ORDER BY user_id, device_id, kind",
    columns: "user_id, device_id, kind, id, public_key, signature",
    types: PREKEY_TYPES,
    convert: prekey,
};

const ONE_TIME_PREKEYS: Table = Table {
    name: "one_time_prekeys",
    select: "SELECT user_id, device_id, kind, id, public_key, signature
             FROM one_time_prekeys ORDER BY user_id, device_id, kind, id",
    columns: "user_id, device_id, kind, id, public_key, signature",
    types: PREKEY_TYPES,
    convert: prekey,
};

const CHATS: Table = Table {
    name: "chats",
    // The chat's last assigned seq (see the module docs).
    select: "SELECT c.chat_id, c.kind,
                    max(c.last_seq, coalesce((SELECT max(l.seq) FROM log l
                                              WHERE l.chat_id = c.chat_id), 0))
             FROM chats c ORDER BY c.chat_id",
    columns: "chat_id, kind, last_seq",
    types: &[Type::BYTEA, Type::INT2, Type::INT8],
    convert: |c| {
        c.id(ChatId::LEN)?;
        c.kind(CHAT_KINDS)?;
        c.count()
    },
};

const CHAT_MEMBERS: Table = Table {
    name: "chat_members",
    select: "SELECT chat_id, user_id, joined_seq, admin FROM chat_members
             ORDER BY chat_id, user_id",
    columns: "chat_id, user_id, joined_seq, admin",
    types: &[Type::BYTEA, Type::BYTEA, Type::INT8, Type::BOOL],
    convert: |c| {
        c.id(ChatId::LEN)?;
        c.id(UserId::LEN)?;
        c.count()?;
        c.flag()
    },
};

const LOG: Table = Table {
    name: "log",
    select: "SELECT chat_id, seq, kind, sender_user, sender_device, client_message_id,
                    server_time_ms, common_ciphertext, ciphertexts, added, removed, promoted
             FROM log ORDER BY chat_id, seq",
    columns: "chat_id, seq, kind, sender_user, sender_device, client_message_id,
              server_time_ms, common_ciphertext, ciphertexts, added, removed, promoted",
    types: &[
        Type::BYTEA,
        Type::INT8,
        Type::INT2,
        Type::BYTEA,
        Type::INT8,
        Type::BYTEA,
        Type::INT8,
        Type::BYTEA,
        Type::BYTEA,
        Type::BYTEA,
        Type::BYTEA,
        Type::BYTEA,
    ],
    convert: |c| {
        c.id(ChatId::LEN)?;
        c.count()?;
        c.kind(ENTRY_KINDS)?;
        c.id(UserId::LEN)?;
        c.u32()?;
        c.opt_id(ClientMessageId::LEN)?;
        c.count()?;
        c.opt_bytes()?;
        c.inline_ciphertexts()?;
        c.id_list()?;
        c.id_list()?;
        c.id_list()
    },
};

const LOG_CIPHERTEXTS: Table = Table {
    name: "log_ciphertexts",
    select: "SELECT chat_id, seq, user_id, device_id, ciphertext FROM log_ciphertexts
             ORDER BY chat_id, seq, user_id, device_id",
    columns: "chat_id, seq, user_id, device_id, ciphertext",
    types: &[
        Type::BYTEA,
        Type::INT8,
        Type::BYTEA,
        Type::INT8,
        Type::BYTEA,
    ],
    convert: |c| {
        c.id(ChatId::LEN)?;
        c.count()?;
        c.id(UserId::LEN)?;
        c.u32()?;
        c.bytes()
    },
};

const CURSORS: Table = Table {
    name: "cursors",
    select: "SELECT user_id, device_id, chat_id, seq FROM cursors
             ORDER BY user_id, device_id, chat_id",
    columns: "user_id, device_id, chat_id, seq",
    types: &[Type::BYTEA, Type::INT8, Type::BYTEA, Type::INT8],
    convert: |c| {
        c.id(UserId::LEN)?;
        c.u32()?;
        c.id(ChatId::LEN)?;
        c.count()
    },
};

/// Copies every table of `source` into `target`; returns the row counts.
pub(super) async fn copy(
    source: &rusqlite::Connection,
    target: &Transaction<'_>,
) -> Result<ImportCounts, TransferError> {
    let n = async |table: &Table| copy_table(source, target, table).await;
    Ok(ImportCounts {
        accounts: n(&ACCOUNTS).await?,
        devices: n(&DEVICES).await?,
        invites: n(&INVITES).await?,
        signed_prekeys: n(&SIGNED_PREKEYS).await?,
        one_time_prekeys: n(&ONE_TIME_PREKEYS).await?,
        chats: n(&CHATS).await?,
        members: n(&CHAT_MEMBERS).await?,
        log_entries: n(&LOG).await?,
        log_ciphertexts: n(&LOG_CIPHERTEXTS).await?,
        cursors: n(&CURSORS).await?,
        ..ImportCounts::default()
    })
}

/// Streams one table from `source` into `target`; returns its row count.
async fn copy_table(
    source: &rusqlite::Connection,
    target: &Transaction<'_>,
    table: &Table,
) -> Result<u64, TransferError> {
    let sql = format!(
        "COPY {} ({}) FROM STDIN (FORMAT binary)",
        table.name, table.columns
    );
    let sink = target.copy_in(sql.as_str()).await?;
    let mut writer = pin!(BinaryCopyInWriter::new(sink, table.types));
    let mut select = source.prepare(table.select)?;
    let mut rows = select.query([])?;
    while let Some(row) = rows.next()? {
        let mut columns = Columns {
            row,
            table: table.name,
            next: 0,
            values: Vec::with_capacity(table.types.len()),
        };
        (table.convert)(&mut columns)?;
        // The writer panics on a wrong number of values.
        if columns.values.len() != table.types.len() {
            return Err(columns.bad("wrong number of columns converted"));
        }
        let values = columns
            .values
            .iter()
            .map(|v| -> &(dyn ToSql + Sync) { &**v });
        writer.as_mut().write_raw(values).await?;
    }
    let copied = writer.as_mut().finish().await?;
    tracing::info!(table = table.name, rows = copied, "table imported");
    Ok(copied)
}

/// The columns of one source row, checked and converted in order.
struct Columns<'r, 's> {
    row: &'r rusqlite::Row<'s>,
    table: &'static str,
    /// Index of the next column to read.
    next: usize,
    /// The converted values so far.
    values: Values,
}

impl<'r> Columns<'r, '_> {
    /// The error for the column last read (or about to be).
    fn bad(&self, problem: &'static str) -> TransferError {
        let index = self.next.saturating_sub(1);
        let column = self
            .row
            .as_ref()
            .column_name(index)
            .map_or_else(|_| format!("#{index}"), str::to_owned);
        TransferError::BadRow {
            table: self.table,
            column,
            problem,
        }
    }

    /// The next column's value.
    fn value(&mut self) -> Result<ValueRef<'r>, TransferError> {
        let index = self.next;
        self.next += 1;
        let row: &'r rusqlite::Row<'_> = self.row;
        Ok(row.get_ref(index)?)
    }

    fn push(&mut self, value: impl ToSql + Sync + Send + 'static) -> Result<(), TransferError> {
        self.values.push(Box::new(value));
        Ok(())
    }

    /// A blob or NULL.
    fn blob_or_null(&mut self) -> Result<Option<Vec<u8>>, TransferError> {
        match self.value()? {
            ValueRef::Blob(b) => Ok(Some(b.to_vec())),
            ValueRef::Null => Ok(None),
            _ => Err(self.bad("not a blob")),
        }
    }

    /// An integer in `min..=max`.
    fn int(&mut self, min: i64, max: i64) -> Result<i64, TransferError> {
        match self.value()? {
            ValueRef::Integer(i) if (min..=max).contains(&i) => Ok(i),
            ValueRef::Integer(_) => Err(self.bad("integer out of range")),
            _ => Err(self.bad("not an integer")),
        }
    }

    /// A blob (possibly empty).
    fn bytes(&mut self) -> Result<(), TransferError> {
        let b = self.blob_or_null()?.ok_or_else(|| self.bad("NULL"))?;
        self.push(b)
    }

    /// A blob or NULL.
    fn opt_bytes(&mut self) -> Result<(), TransferError> {
        let b = self.blob_or_null()?;
        self.push(b)
    }

    /// An id or key of exactly `len` bytes.
    fn id(&mut self, len: usize) -> Result<(), TransferError> {
        match self.blob_or_null()? {
            Some(b) if b.len() == len => self.push(b),
            Some(_) => Err(self.bad("wrong length")),
            None => Err(self.bad("NULL")),
        }
    }

    /// NULL or an id of exactly `len` bytes.
    fn opt_id(&mut self, len: usize) -> Result<(), TransferError> {
        match self.blob_or_null()? {
            Some(b) if b.len() != len => Err(self.bad("wrong length")),
            b => self.push(b),
        }
    }

    /// NULL or account ids concatenated (`added`, `removed`, `promoted`).
    fn id_list(&mut self) -> Result<(), TransferError> {
        match self.blob_or_null()? {
            Some(b) if b.len() % UserId::LEN != 0 => Err(self.bad("not a list of account ids")),
            b => self.push(b),
        }
    }

    /// NULL or a message's inline ciphertexts, which must decode.
    fn inline_ciphertexts(&mut self) -> Result<(), TransferError> {
        let encoded = self.blob_or_null()?;
        if let Some(encoded) = &encoded {
            for entry in ciphertexts::entries(encoded) {
                entry.map_err(|_| self.bad("inline ciphertexts do not decode"))?;
            }
        }
        self.push(encoded)
    }

    /// Text.
    fn text(&mut self) -> Result<(), TransferError> {
        match self.value()? {
            ValueRef::Text(t) => match std::str::from_utf8(t) {
                Ok(t) => {
                    let t = t.to_owned();
                    self.push(t)
                }
                Err(_) => Err(self.bad("not UTF-8")),
            },
            _ => Err(self.bad("not text")),
        }
    }

    /// Text or NULL.
    fn opt_text(&mut self) -> Result<(), TransferError> {
        match self.value()? {
            ValueRef::Null => self.push(None::<String>),
            ValueRef::Text(t) => match std::str::from_utf8(t) {
                Ok(t) => {
                    let t = Some(t.to_owned());
                    self.push(t)
                }
                Err(_) => Err(self.bad("not UTF-8")),
            },
            _ => Err(self.bad("not text")),
        }
    }

    /// A non-negative integer: seq, time, version.
    fn count(&mut self) -> Result<(), TransferError> {
        let n = self.int(0, i64::MAX)?;
        self.push(n)
    }

    /// A device or key id.
    fn u32(&mut self) -> Result<(), TransferError> {
        let n = self.int(0, i64::from(u32::MAX))?;
        self.push(n)
    }

    /// One of the `kinds` the relay writes.
    fn kind(&mut self, kinds: &[i16]) -> Result<(), TransferError> {
        let n = self.int(i64::from(i16::MIN), i64::from(i16::MAX))?;
        match kinds.iter().find(|k| i64::from(**k) == n) {
            Some(k) => self.push(*k),
            None => Err(self.bad("unknown kind")),
        }
    }

    /// A boolean stored as 0 or 1.
    fn flag(&mut self) -> Result<(), TransferError> {
        let n = self.int(0, 1)?;
        self.push(n == 1)
    }
}
