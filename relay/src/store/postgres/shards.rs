//! Chat shards: the chat-scoped tables spread over several PostgreSQL
//! primaries when one is not enough (`[store] chat_shards`,
//! docs/cluster.md §8).
//!
//! The *directory* database (`store.url`) keeps accounts, devices,
//! invites, prekeys and blobs. Each chat lives in exactly one *chat
//! database*: shard `first 8 bytes of the chat id (big-endian) mod N`, or
//! the directory itself when no shards are configured. Everything that
//! orders a chat — its row lock, seqs, idempotency, cursors — stays in that
//! one database, so the per-chat guarantees of one database hold per shard
//! unchanged. Every database carries the whole schema; the tables of the
//! other role stay empty.
//!
//! Which database plays which part is recorded in it (`tern_layout`) the
//! first time a store opens it, and checked on every later open, so a
//! list of shards that was reordered, shortened or extended — which would
//! silently hide chats — is refused with [`StoreError::Layout`] instead.

use std::fmt;

use deadpool_postgres::{GenericClient, Pool};
use tern_protocol::ChatId;

use super::{exec, get, get_u64, row};
use crate::error::StoreError;
use crate::store::quota::QueuedBytes;

/// A database holding chats, with the queued-bytes figures of the chats it
/// holds (each database's figures are its own: the queue quota applies
/// per chat database).
pub(super) struct ChatDb {
    /// Its connections.
    pub(super) pool: Pool,
    /// Queued bytes per device in its chats.
    pub(super) queued: QueuedBytes,
}

impl ChatDb {
    pub(super) fn new(pool: Pool) -> Self {
        Self {
            pool,
            queued: QueuedBytes::default(),
        }
    }
}

/// The shard of `chat` among `shards` chat databases.
pub(super) fn shard_of(chat: &ChatId, shards: usize) -> usize {
    let mut head = [0u8; 8];
    head.copy_from_slice(&chat.0[..8]);
    let n = u64::try_from(shards.max(1)).unwrap_or(u64::MAX);
    usize::try_from(u64::from_be_bytes(head) % n).unwrap_or(0)
}

/// `items` grouped by the shard of their chat, shards in ascending order,
/// items in their original order within a group.
pub(super) fn by_shard<T>(
    items: impl IntoIterator<Item = (ChatId, T)>,
    shards: usize,
) -> Vec<(usize, Vec<T>)> {
    let mut groups: Vec<(usize, Vec<T>)> = Vec::new();
    for (chat, item) in items {
        let shard = shard_of(&chat, shards);
        match groups.iter_mut().find(|(s, _)| *s == shard) {
            Some((_, group)) => group.push(item),
            None => groups.push((shard, vec![item])),
        }
    }
    groups.sort_by_key(|(shard, _)| *shard);
    groups
}

/// The part a database plays in a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Layout {
    /// `store.url`: accounts and devices, and the chats too when `shards`
    /// is 0.
    Directory {
        /// How many chat shards the store has.
        shards: u64,
    },
    /// Chat shard `position` of `shards`.
    Shard {
        /// Its index in `store.chat_shards`.
        position: u64,
        /// How many chat shards the store has.
        shards: u64,
    },
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Directory { shards: 0 } => write!(f, "a directory holding its own chats"),
            Self::Directory { shards } => write!(f, "the directory of {shards} chat shards"),
            Self::Shard { position, shards } => write!(f, "chat shard {position} of {shards}"),
        }
    }
}

impl Layout {
    fn columns(self) -> (&'static str, i64, i64) {
        let big = super::big;
        match self {
            Self::Directory { shards } => ("directory", 0, big(shards)),
            Self::Shard { position, shards } => ("shard", big(position), big(shards)),
        }
    }

    fn from_columns(role: &str, position: u64, shards: u64) -> Result<Self, StoreError> {
        match role {
            "directory" => Ok(Self::Directory { shards }),
            "shard" => Ok(Self::Shard { position, shards }),
            _ => Err(StoreError::Corrupt("layout role")),
        }
    }

    /// Whether the database keeps chats from before it had a layout: only
    /// an unsharded directory may (a store created before shards existed).
    fn may_hold_chats_already(self) -> bool {
        self == Self::Directory { shards: 0 }
    }
}

/// Checks that the database (in the migration's transaction) plays the
/// part `expected`; records it on first open.
pub(super) async fn check_layout(
    tx: &impl GenericClient,
    expected: Layout,
) -> Result<(), StoreError> {
    if let Some(r) = row(tx, "SELECT role, position, shards FROM tern_layout", &[]).await? {
        let found = Layout::from_columns(&get::<String>(&r, 0)?, get_u64(&r, 1)?, get_u64(&r, 2)?)?;
        if found != expected {
            return Err(StoreError::Layout(format!(
                "a database configured as {expected} was created as {found}; \
                 the chat shards of a store cannot be added, removed or reordered"
            )));
        }
        return Ok(());
    }
    if !expected.may_hold_chats_already()
        && row(tx, "SELECT 1 FROM chats LIMIT 1", &[]).await?.is_some()
    {
        return Err(StoreError::Layout(format!(
            "a database configured as {expected} already holds chats; \
             an existing store cannot be split into shards"
        )));
    }
    let (role, position, shards) = expected.columns();
    exec(
        tx,
        "INSERT INTO tern_layout (role, position, shards) VALUES ($1, $2, $3)",
        &[&role, &position, &shards],
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chats_spread_over_the_shards_by_their_first_eight_bytes() {
        let mut chat = ChatId([0; 16]);
        chat.0[7] = 5;
        assert_eq!(shard_of(&chat, 2), 1);
        assert_eq!(shard_of(&chat, 3), 2);
        assert_eq!(shard_of(&chat, 1), 0);
        chat.0[8..].fill(0xff);
        assert_eq!(shard_of(&chat, 2), 1, "only the first eight bytes count");
    }

    #[test]
    fn a_stored_layout_reads_back_and_an_unknown_role_is_corrupt() {
        for layout in [
            Layout::Directory { shards: 0 },
            Layout::Directory { shards: 3 },
            Layout::Shard {
                position: 2,
                shards: 3,
            },
        ] {
            let (role, position, shards) = layout.columns();
            let read = Layout::from_columns(role, position as u64, shards as u64).unwrap();
            assert_eq!(read, layout);
        }
        let unknown = Layout::from_columns("replica", 0, 1);
        assert!(matches!(unknown, Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn grouping_keeps_the_order_within_a_shard() {
        let chat = |b: u8| ChatId([b; 16]);
        let groups = by_shard([(chat(1), 'a'), (chat(2), 'b'), (chat(3), 'c')], 2);
        assert_eq!(groups, vec![(0, vec!['b']), (1, vec!['a', 'c'])]);
    }
}
