//! A store whose chats are spread over two PostgreSQL instances: the
//! conformance suite every backend passes, and what sharding adds — chats
//! in their shard and accounts in the directory, one account's chats read
//! and acknowledged across shards, link points in every shard, a batch
//! spanning shards when one of them is down, and a layout that cannot be
//! changed by accident.

use bytes::Bytes;
use tern_protocol::wire::{ChatKind, DeviceCiphertext};
use tern_protocol::{ChatId, ClientMessageId, UserId};
use tern_testkit::services::PostgresServer;

use super::shards::shard_of;
use super::tests::PgBackend;
use super::{PgSettings, PgStore};
use crate::error::StoreError;
use crate::store::conformance::{
    Backend, CHAT, account, append, conformance_suite, message_in, populate_group, seq,
};
use crate::store::{
    DeviceAddr, DeviceListUpdate, LogAppend, LogStore, MembershipAppend, MessageAppend, PoolStats,
    Store,
};

/// A chat of shard 0 (of two): its first eight bytes are even.
const EVEN: ChatId = ChatId([2; 16]);

/// The directory and shard 0 on one server, shard 1 on another.
fn sharded_settings(one: &PostgresServer, other: &PostgresServer, quota: u64) -> PgSettings {
    PgSettings {
        url: one.fresh_database().unwrap(),
        chat_shards: vec![
            one.fresh_database().unwrap(),
            other.fresh_database().unwrap(),
        ],
        pool_size: 4,
        queue_quota: quota,
    }
}

/// A sharded store on databases of its own on the two shared servers.
struct ShardedBackend(PgBackend);

impl Backend for ShardedBackend {
    fn fresh(queue_quota: u64) -> Self {
        let servers = vec![
            PostgresServer::shared().unwrap(),
            PostgresServer::shared_other().unwrap(),
        ];
        let settings = sharded_settings(&servers[0], &servers[1], queue_quota);
        Self(PgBackend::open(servers, settings))
    }

    fn store(&self) -> &dyn Store {
        self.0.store()
    }

    fn reopen(&mut self) {
        self.0.reopen();
    }
}

conformance_suite!(super::ShardedBackend);

/// Creates group `chat` of accounts 1, 2 and 3 (by account 1).
fn create(store: &dyn Store, chat: ChatId) {
    let ids = [1, 2, 3].map(|u| UserId([u; 16])).to_vec();
    let create = LogAppend::Membership(MembershipAppend {
        chat_id: chat,
        actor: DeviceAddr::test(1, 1),
        create: Some(ChatKind::Group),
        added: ids,
        removed: Vec::new(),
        promote: Vec::new(),
    });
    append(store, vec![create]).remove(0).unwrap();
}

/// Message `n` from device 1 of account 1 to accounts 2 and 3 in `chat`.
fn note(chat: ChatId, n: u8) -> LogAppend {
    message_in(chat, DeviceAddr::test(1, 1), note_id(chat, n), &[2, 3], 8)
}

/// The client message id of [`note`] `n` in `chat`.
fn note_id(chat: ChatId, n: u8) -> ClientMessageId {
    let mut id = [n; 16];
    id[0] = chat.0[0];
    ClientMessageId(id)
}

/// Rows of `table` in the database at `url` on `server`.
fn count(server: &PostgresServer, url: &str, table: &str) -> u64 {
    let db = url.rsplit("dbname=").next().unwrap();
    let out = server
        .psql(db, &format!("SELECT count(*) FROM {table}"))
        .unwrap();
    out.trim().parse().unwrap()
}

/// The seqs of the entries device `d` has not acknowledged, by chat.
fn pending(store: &dyn Store, d: DeviceAddr) -> Vec<(ChatId, u64)> {
    let (entries, more) = store.read_log(d, &[], 100, 1 << 20).unwrap();
    assert!(!more);
    let mut seqs: Vec<(ChatId, u64)> = entries
        .iter()
        .map(|e| (ChatId::from_slice("chat", &e.chat_id).unwrap(), e.seq))
        .collect();
    seqs.sort_unstable();
    seqs
}

#[test]
fn chats_live_in_their_shard_and_accounts_in_the_directory() {
    assert_eq!((shard_of(&EVEN, 2), shard_of(&CHAT, 2)), (0, 1));
    let b = ShardedBackend::fresh(u64::MAX);
    let store = b.store();
    populate_group(store);
    create(store, EVEN);
    let both = vec![note(EVEN, 1), note(CHAT, 2), note(EVEN, 3)];
    let seqs: Vec<u64> = append(store, both).iter().map(|r| seq(r).0).collect();
    assert_eq!(seqs, [2, 2, 3], "each chat numbers its own entries");

    let pools: Vec<String> =
        b.0.store
            .as_ref()
            .unwrap()
            .pool_status()
            .into_iter()
            .map(|p| p.database)
            .collect();
    assert_eq!(pools, ["directory", "shard0", "shard1"]);
    let [one, other] = &b.0.servers[..] else {
        panic!("two servers")
    };
    let s = &b.0.settings;
    let (directory, shard0, shard1) = (&s.url, &s.chat_shards[0], &s.chat_shards[1]);
    assert_eq!(count(one, directory, "accounts"), 3);
    assert_eq!(count(one, directory, "log"), 0);
    assert_eq!(count(one, shard0, "accounts"), 0);
    assert_eq!(
        count(one, shard0, "log"),
        3,
        "EVEN: creation and 2 messages"
    );
    assert_eq!(
        count(other, shard1, "log"),
        2,
        "CHAT: creation and 1 message"
    );

    let chats: Vec<ChatId> = store
        .chats_of(&UserId([2; 16]))
        .unwrap()
        .iter()
        .map(|c| c.chat_id)
        .collect();
    assert_eq!(chats, [EVEN, CHAT]);
    assert_eq!(
        store.contacts_of(&UserId([2; 16])).unwrap(),
        [1, 2, 3].map(|u| UserId([u; 16]))
    );
    let reader = DeviceAddr::test(2, 1);
    let all = [(EVEN, 1), (EVEN, 2), (EVEN, 3), (CHAT, 1), (CHAT, 2)];
    let mut expected = all.to_vec();
    expected.sort_unstable();
    assert_eq!(pending(store, reader), expected);
    // A page too small for both shards says more is waiting.
    let (page, more) = store.read_log(reader, &[], 2, 1 << 20).unwrap();
    assert_eq!((page.len(), more), (2, true));

    // Acknowledging across shards: all or none.
    let stranger = ChatId([5; 16]);
    assert_eq!(shard_of(&stranger, 2), 1);
    let refused = store.ack_cursors(reader, &[(EVEN, 3), (stranger, 1)]);
    assert!(
        matches!(refused, Err(StoreError::Rejected(_))),
        "{refused:?}"
    );
    assert_eq!(pending(store, reader).len(), 5, "nothing moved");
    store.ack_cursors(reader, &[(EVEN, 3), (CHAT, 1)]).unwrap();
    assert_eq!(pending(store, reader), [(CHAT, 2)]);

    // Retention sweeps every shard.
    for u in [1, 3] {
        let d = DeviceAddr::test(u, 1);
        store.ack_cursors(d, &[(EVEN, 3), (CHAT, 2)]).unwrap();
    }
    store.ack_cursors(reader, &[(CHAT, 2)]).unwrap();
    assert_eq!(store.collect_garbage(0).unwrap(), 5);
    assert_eq!(count(one, shard0, "log") + count(other, shard1, "log"), 0);
}

#[test]
fn a_device_linked_later_starts_at_the_link_point_in_every_shard() {
    let b = ShardedBackend::fresh(u64::MAX);
    let store = b.store();
    populate_group(store);
    create(store, EVEN);
    append(store, vec![note(EVEN, 1), note(CHAT, 2)]);
    store
        .replace_device_list(&DeviceListUpdate {
            user_id: UserId([2; 16]),
            signed: Default::default(),
            version: 2,
            devices: vec![(1, [2; 32]), (2, [9; 32])],
        })
        .unwrap();
    let linked = DeviceAddr::test(2, 2);
    assert!(
        pending(store, linked).is_empty(),
        "{:?}",
        pending(store, linked)
    );
    let to_all = |chat: ChatId, n: u8| {
        let devices = [(2, 1), (2, 2), (3, 1)].map(|(u, d)| DeviceCiphertext {
            user_id: Bytes::copy_from_slice(&[u; 16]),
            device_id: d,
            ciphertext: Bytes::from_static(b"sealed"),
        });
        LogAppend::Message(MessageAppend {
            chat_id: chat,
            sender: DeviceAddr::test(1, 1),
            client_message_id: note_id(chat, n),
            device_ciphertexts: devices.to_vec(),
            common_ciphertext: Bytes::new(),
        })
    };
    let after_link = append(store, vec![to_all(EVEN, 3), to_all(CHAT, 4)]);
    assert!(after_link.iter().all(Result::is_ok), "{after_link:?}");
    assert_eq!(pending(store, linked), [(EVEN, 3), (CHAT, 3)]);
    // The new device is a recipient in both shards: a message without a
    // ciphertext for it is refused there.
    let missing = append(store, vec![note(EVEN, 5)]).remove(0);
    assert!(
        matches!(missing, Err(StoreError::Rejected(_))),
        "{missing:?}"
    );
}

#[test]
fn a_batch_spanning_shards_commits_where_it_can_when_one_is_down() {
    let one = PostgresServer::shared().unwrap();
    let mut other = PostgresServer::start_with(&[("fsync", "off")]).unwrap();
    let settings = sharded_settings(&one, &other, u64::MAX);
    let store = PgStore::open(&settings).unwrap();
    populate_group(&store);
    create(&store, EVEN);
    other.kill().unwrap();

    let mut results = store
        .append_batch(&[note(EVEN, 1), note(CHAT, 2)], 1_000)
        .unwrap();
    assert!(
        matches!(results[1], Err(StoreError::Unreachable(_))),
        "{results:?}"
    );
    assert_eq!(seq(&results.remove(0)), (2, false));
    let down = store.append_batch(&[note(CHAT, 2)], 1_000);
    assert!(matches!(down, Err(StoreError::Unreachable(_))), "{down:?}");

    other.restart().unwrap();
    let mut resent = None;
    for _ in 0..50 {
        match store.append_batch(&[note(EVEN, 1), note(CHAT, 2)], 1_000) {
            Ok(r) if r.iter().all(Result::is_ok) => {
                resent = Some(r);
                break;
            }
            _ => std::thread::sleep(std::time::Duration::from_millis(100)),
        }
    }
    let resent = resent.expect("both shards serve again");
    let seqs: Vec<(u64, bool)> = resent.iter().map(seq).collect();
    assert_eq!(seqs, [(2, true), (2, false)]);
}

#[test]
fn the_layout_of_a_store_cannot_change() {
    let one = PostgresServer::shared().unwrap();
    let other = PostgresServer::shared_other().unwrap();
    let settings = sharded_settings(&one, &other, u64::MAX);
    drop(PgStore::open(&settings).unwrap());
    let refused = |changed: PgSettings| match PgStore::open(&changed) {
        Err(StoreError::Layout(why)) => why,
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("opened {:?}", changed.chat_shards),
    };
    let mut swapped = settings.clone();
    swapped.chat_shards.reverse();
    assert!(refused(swapped).contains("chat shard 0 of 2"));
    let mut shorter = settings.clone();
    shorter.chat_shards.pop();
    refused(shorter);
    let mut unsharded = settings.clone();
    unsharded.chat_shards.clear();
    refused(unsharded);

    // An existing single-database store cannot be split after the fact.
    let single = PgSettings {
        url: one.fresh_database().unwrap(),
        chat_shards: Vec::new(),
        pool_size: 2,
        queue_quota: u64::MAX,
    };
    let store = PgStore::open(&single).unwrap();
    for u in 1..=3 {
        account(&store, u);
    }
    create(&store, EVEN);
    drop(store);
    let mut split = single.clone();
    split.chat_shards = vec![one.fresh_database().unwrap(), one.fresh_database().unwrap()];
    assert!(refused(split.clone()).contains("holding its own chats"));
    // Nor can one from before layouts were recorded (schema version 2).
    let db = single.url.rsplit("dbname=").next().unwrap();
    one.psql(db, "DELETE FROM tern_layout").unwrap();
    assert!(refused(split).contains("already holds chats"));
}
