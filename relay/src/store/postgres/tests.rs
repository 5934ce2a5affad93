//! The PostgreSQL backend: the conformance suite every backend passes, and
//! what is its own — several stores (nodes) on one database appending,
//! resending and claiming at the same time, one retention sweep at a
//! time, and a server that goes away and comes back. Each test process
//! starts its own throw-away server (`tern_testkit::services`).

use std::sync::Arc;

use tern_protocol::{ClientMessageId, UserId};
use tern_testkit::services::PostgresServer;

use super::{PgSettings, PgStore, retention};
use crate::error::StoreError;
use crate::store::conformance::{
    Backend, CHAT, append, conformance_suite, message, message_in, populate_group, prekey_upload,
    send, seq,
};
use crate::store::{DeviceAddr, LogAppend, LogStore, PrekeyStore, RetentionStore, Store};

/// A fresh database on `server` and the settings of a store on it.
fn fresh_database(server: &PostgresServer, queue_quota: u64) -> PgSettings {
    PgSettings {
        url: server.fresh_database().unwrap(),
        chat_shards: Vec::new(),
        pool_size: 4,
        queue_quota,
    }
}

/// A store on databases of its own.
pub(super) struct PgBackend {
    /// The servers of its databases, kept running while the store uses
    /// them.
    pub(super) servers: Vec<Arc<PostgresServer>>,
    pub(super) settings: PgSettings,
    pub(super) store: Option<PgStore>,
}

impl PgBackend {
    /// A store opened with `settings` on databases of `servers`.
    pub(super) fn open(servers: Vec<Arc<PostgresServer>>, settings: PgSettings) -> Self {
        let store = Some(PgStore::open(&settings).unwrap());
        Self {
            servers,
            settings,
            store,
        }
    }
}

impl Backend for PgBackend {
    fn fresh(queue_quota: u64) -> Self {
        let server = PostgresServer::shared().unwrap();
        let settings = fresh_database(&server, queue_quota);
        Self::open(vec![server], settings)
    }

    fn store(&self) -> &dyn Store {
        self.store.as_ref().unwrap()
    }

    fn reopen(&mut self) {
        self.store = None;
        self.store = Some(PgStore::open(&self.settings).unwrap());
    }
}

conformance_suite!(super::PgBackend);

impl PgBackend {
    /// Another node: a second store on the same database.
    fn node(&self) -> PgStore {
        PgStore::open(&self.settings).unwrap()
    }
}

/// Message `n` of device 1 of user `from` to the other two members.
fn numbered(from: u8, n: u32) -> LogAppend {
    let mut id = [from; 16];
    id[12..].copy_from_slice(&n.to_be_bytes());
    let to: Vec<u8> = [1, 2, 3].into_iter().filter(|u| *u != from).collect();
    message_in(CHAT, DeviceAddr::test(from, 1), ClientMessageId(id), &to, 8)
}

#[test]
fn two_nodes_appending_to_one_chat_assign_every_seq_exactly_once() {
    let b = PgBackend::fresh(u64::MAX);
    populate_group(b.store());
    let nodes = [Arc::new(b.node()), Arc::new(b.node())];
    let batches = 25;
    let per_batch = 8;
    let workers: Vec<_> = nodes
        .iter()
        .enumerate()
        .map(|(i, node)| {
            let node = node.clone();
            let from = i as u8 + 1;
            std::thread::spawn(move || {
                let mut seqs = Vec::new();
                for batch in 0..batches {
                    let items: Vec<_> = (0..per_batch)
                        .map(|k| numbered(from, batch * per_batch + k))
                        .collect();
                    for result in node.append_batch(&items, 1_000).unwrap() {
                        let (seq, duplicate) = seq(&result);
                        assert!(!duplicate);
                        seqs.push(seq);
                    }
                }
                seqs
            })
        })
        .collect();
    let mut all: Vec<u64> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    all.sort_unstable();
    let total = u64::from(2 * batches * per_batch);
    assert_eq!(all, (2..=total + 1).collect::<Vec<_>>());
    let (entries, more) = b
        .store()
        .read_log(DeviceAddr::test(3, 1), &[], 1_000, 1 << 24)
        .unwrap();
    assert!(!more);
    let read: Vec<u64> = entries.iter().map(|e| e.seq).collect();
    assert_eq!(read, (1..=total + 1).collect::<Vec<_>>());
}

#[test]
fn a_resend_through_another_node_gets_its_original_seq() {
    let b = PgBackend::fresh(u64::MAX);
    populate_group(b.store());
    let first = send(b.store(), 1, 5, &[2, 3], 10);
    let other = b.node();
    let resent = append(&other, vec![message(1, 5, &[2, 3], 10)]).remove(0);
    assert_eq!(seq(&first), (2, false));
    assert_eq!(seq(&resent), (2, true));
    let next = send(&other, 2, 6, &[1, 3], 10);
    assert_eq!(seq(&next), (3, false));
}

#[test]
fn one_time_prekeys_claimed_through_two_nodes_go_out_once() {
    let b = PgBackend::fresh(u64::MAX);
    populate_group(b.store());
    let owner = DeviceAddr::test(3, 1);
    let stock = 40;
    b.store()
        .upload_prekeys(owner, &prekey_upload(0..stock), 1_000)
        .unwrap();
    let nodes = [Arc::new(b.node()), Arc::new(b.node())];
    let claimers: Vec<_> = (0..4)
        .map(|i| {
            let node = nodes[i % 2].clone();
            std::thread::spawn(move || {
                let mut ids = Vec::new();
                for _ in 0..15 {
                    let claimed = node
                        .claim_bundles(&UserId([3; 16]), &[], &mut |_| true)
                        .unwrap();
                    ids.extend(
                        claimed
                            .bundles
                            .iter()
                            .filter_map(|b| b.one_time_prekey.as_ref().map(|k| k.id)),
                    );
                }
                ids
            })
        })
        .collect();
    let mut ids: Vec<u32> = claimers
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..stock).collect::<Vec<_>>());
}

#[test]
fn only_one_node_sweeps_at_a_time() {
    let b = PgBackend::fresh(u64::MAX);
    populate_group(b.store());
    send(b.store(), 1, 1, &[2, 3], 10).unwrap();
    let sweeper = b.node();
    let holder = b.node();
    let held = holder.run(async |c: &mut super::Conn| {
        super::exec(
            &*c,
            "SELECT pg_advisory_lock($1)",
            &[&retention::RETENTION_LOCK],
        )
        .await
    });
    held.unwrap();
    assert_eq!(sweeper.collect_garbage(u64::MAX).unwrap(), 0);
    let released = holder.run(async |c: &mut super::Conn| {
        super::exec(
            &*c,
            "SELECT pg_advisory_unlock($1)",
            &[&retention::RETENTION_LOCK],
        )
        .await
    });
    released.unwrap();
    assert_eq!(sweeper.collect_garbage(u64::MAX).unwrap(), 2);
}

#[test]
fn a_server_that_goes_away_is_unreachable_then_serves_again() {
    let mut server = PostgresServer::start_with(&[("fsync", "off")]).unwrap();
    let settings = fresh_database(&server, u64::MAX);
    let store = PgStore::open(&settings).unwrap();
    populate_group(&store);
    send(&store, 1, 1, &[2, 3], 10).unwrap();
    server.kill().unwrap();
    let down = store.append_batch(&[message(1, 2, &[2, 3], 10)], 1_000);
    assert!(matches!(down, Err(StoreError::Unreachable(_))), "{down:?}");
    server.restart().unwrap();
    let mut after = None;
    for _ in 0..50 {
        match store.append_batch(&[message(1, 2, &[2, 3], 10)], 1_000) {
            Ok(mut results) => {
                after = Some(results.remove(0));
                break;
            }
            Err(StoreError::Unreachable(_)) => {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Err(e) => panic!("{e}"),
        }
    }
    let after = after.expect("the store serves again after the restart");
    assert_eq!(seq(&after), (3, false));
}
