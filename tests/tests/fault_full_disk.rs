//! A full disk: the relay's data directory lives on a small tmpfs that
//! fills up under load. Sends are refused with `UNAVAILABLE` ("relay
//! storage is full") and never acknowledged unless durable; reads and
//! deliveries keep working; once space is freed sends succeed again; and
//! nothing acknowledged is lost, also across a restart.
//!
//! Mounting a tmpfs needs root (CI runs as root); elsewhere the test says
//! so and passes without running.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tern_protocol::wire::*;
use tern_testkit::raw::*;
use tern_testkit::{Account, RelayProcess, random, relay_binary};

/// Size of the relay's filesystem.
const FS_SIZE_MIB: u64 = 24;
/// Space taken by a ballast file at the start, freed to end the full phase.
const BALLAST_MIB: u64 = 12;
/// Ciphertext bytes per message.
const MESSAGE_LEN: usize = 16 * 1024;

/// A tmpfs mounted for the test, unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount() -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={FS_SIZE_MIB}m"),
                "tmpfs",
            ])
            .arg(dir.path())
            .status()
            .ok()?;
        status.success().then_some(Self { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Counts of the run.
#[derive(Default, Debug)]
struct Counts {
    sent: usize,
    acknowledged: usize,
    refused_full: usize,
}

/// Sends one message of `MESSAGE_LEN` bytes to `to`; `Ok(Some(id))` when
/// acknowledged, `Ok(None)` when refused because storage is full.
async fn send_one(
    a: &RawClient,
    chat: [u8; 16],
    to: &Account,
    counts: &mut Counts,
) -> Option<[u8; 16]> {
    let id: [u8; 16] = random();
    let body = vec![0x33; MESSAGE_LEN];
    counts.sent += 1;
    match a
        .request(send_to(chat, id, &[(&to.user_id, 1, &body[..])], b""))
        .await
    {
        Ok(kind) => {
            ack(kind);
            counts.acknowledged += 1;
            Some(id)
        }
        Err(e) => {
            assert_eq!(code(&e), ErrorCode::Unavailable, "{}", e.message);
            assert!(e.message.contains("storage is full"), "{}", e.message);
            assert!(e.retry_after_ms > 0);
            counts.refused_full += 1;
            None
        }
    }
}

/// Every message id in `chat` as `b` reads it with `Sync` from the start.
async fn stored_ids(b: &RawClient, chat: [u8; 16]) -> Vec<[u8; 16]> {
    let mut ids = Vec::new();
    let mut after = 0;
    loop {
        let page = batch(b.ok(sync_req(&[(chat, after)])).await);
        for e in &page.entries {
            after = e.seq;
            if e.kind == EntryKind::Message as i32 {
                ids.push(<[u8; 16]>::try_from(&e.client_message_id[..]).unwrap());
            }
        }
        if !page.more {
            return ids;
        }
    }
}

fn fill(path: &Path, mib: u64) -> PathBuf {
    let ballast = path.join("ballast");
    std::fs::write(&ballast, vec![0u8; (mib * 1024 * 1024) as usize]).unwrap();
    ballast
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_sends_keeps_serving_reads_and_recovers() {
    let Some(disk) = SmallDisk::mount() else {
        println!("skipped: mounting a tmpfs needs root");
        return;
    };
    let ballast = fill(disk.path(), BALLAST_MIB);
    let data = disk.path().join("relay");
    let mut relay = RelayProcess::start_on(relay_binary(), "", Some(data));
    let at = &relay.address();
    let (alice, bob) = (Account::new("alice", 1), Account::new("bob", 1));
    let a = RawClient::register(at, &alice).await.unwrap();
    let b = RawClient::register(at, &bob).await.unwrap();
    let chat = direct_chat(&a, &bob).await;
    let mut counts = Counts::default();
    let mut acknowledged = Vec::new();

    // Fill the disk until sends are refused, and keep trying a while.
    while counts.refused_full < 20 {
        acknowledged.extend(send_one(&a, chat, &bob, &mut counts).await);
        assert!(counts.sent < 10_000, "the disk never filled: {counts:?}");
    }
    let full_at = counts.acknowledged;
    // Reads and deliveries keep working while full.
    let while_full = stored_ids(&b, chat).await;
    assert_eq!(
        while_full, acknowledged,
        "bob reads every acknowledged message, in order"
    );
    b.ok(request::Kind::ListChats(ListChats {})).await;

    // Space freed: sends succeed again.
    std::fs::remove_file(ballast).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..20 {
        let id = send_one(&a, chat, &bob, &mut counts).await;
        acknowledged.push(id.expect("a send after space was freed is acknowledged"));
    }

    // Nothing acknowledged is lost, also after a crash and restart.
    drop((a, b));
    relay.restart();
    let b = RawClient::login(&relay.address(), &bob, 1).await.unwrap();
    let stored = stored_ids(&b, chat).await;
    let lost = acknowledged
        .iter()
        .filter(|id| !stored.contains(id))
        .count();
    let duplicates = stored.len() - {
        let mut unique = stored.clone();
        unique.sort_unstable();
        unique.dedup();
        unique.len()
    };
    println!(
        "full disk ({FS_SIZE_MIB} MiB tmpfs, {} KiB messages): sent {}, acknowledged {} ({full_at} before the disk filled), refused as full {}, delivered {}, duplicates {duplicates}, lost {lost}",
        MESSAGE_LEN / 1024,
        counts.sent,
        counts.acknowledged,
        counts.refused_full,
        stored.len()
    );
    assert_eq!((lost, duplicates), (0, 0));
    assert_eq!(stored, acknowledged);
}
