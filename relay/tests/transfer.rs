//! Moving a single SQLite relay to PostgreSQL (`tern-relay import-sqlite`):
//! a real relay's data directory is imported, then a relay on PostgreSQL
//! serves the same accounts, logs, cursors, prekeys and blobs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "transfer/fixture.rs"]
mod fixture;

use std::path::Path;
use std::time::Instant;

use fixture::{observe, single_relay, upload};
use tern_protocol::wire::*;
use tern_relay::store::postgres::PgSettings;
use tern_relay::store::transfer::{ImportCounts, TransferError, import_sqlite};
use tern_testkit::raw::*;
use tern_testkit::services::PostgresServer;
use tern_testkit::{Account, TestRelay, guard, random};

/// Rows of `table` in a relay database.
fn sqlite_rows(dir: &Path, table: &str) -> u64 {
    let db = rusqlite::Connection::open(dir.join("relay.db")).unwrap();
    let n: i64 = db
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap();
    n as u64
}

/// Imports `dir` into database `db` of `pg` (a blocking call, off the
/// runtime's workers).
async fn import(pg: &PostgresServer, db: &str, dir: &Path) -> Result<ImportCounts, TransferError> {
    let settings = PgSettings {
        url: pg.url(db),
        chat_shards: Vec::new(),
        pool_size: 2,
        queue_quota: u64::MAX,
    };
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || import_sqlite(&dir, &settings))
        .await
        .unwrap()
}

fn postgres() -> PostgresServer {
    PostgresServer::start_with(&[("fsync", "off")]).unwrap()
}

/// The relay binary run with `args`: success, stdout, stderr.
async fn relay_command(args: &[&std::ffi::OsStr]) -> (bool, String, String) {
    let out = guard(
        tokio::process::Command::new(env!("CARGO_BIN_EXE_tern-relay"))
            .args(args)
            .env("RUST_LOG", "warn")
            .output(),
    )
    .await
    .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_relay_moves_to_postgres_whole() {
    let f = single_relay().await;
    let pg = postgres();
    pg.create_database("cluster").unwrap();
    let started = Instant::now();
    let counts = import(&pg, "cluster", f.dir.path()).await.unwrap();
    eprintln!(
        "imported the test data directory in {:?}: {counts:?}",
        started.elapsed()
    );
    let rows = |table| sqlite_rows(f.dir.path(), table);
    assert_eq!(counts.accounts, 2);
    assert_eq!(counts.devices, 3);
    assert_eq!(counts.invites, 1);
    assert_eq!(counts.signed_prekeys, 4, "X25519 and KEM of two devices");
    assert_eq!(counts.one_time_prekeys, 20 + 5 - 2 + 10 + 3);
    assert_eq!(counts.chats, 2);
    assert_eq!(counts.members, 4);
    assert_eq!(counts.log_entries, rows("log"));
    assert_eq!(counts.log_entries, 8 + 4);
    assert_eq!(counts.log_ciphertexts, 2, "the wide fan-out");
    assert_eq!(counts.cursors, rows("cursors"));
    assert_eq!(
        (counts.blobs, counts.blob_bytes),
        (1, f.blob.0.len() as u64)
    );
    assert_eq!(counts.blob_charges, 1, "the partial upload's charge stays");
    assert_eq!(counts.partial_uploads_skipped, 1);
    let pg_rows = |sql: &str| pg.psql("cluster", sql).unwrap().trim().to_owned();
    assert_eq!(
        pg_rows("SELECT registered, coalesce(push_url, '-') FROM devices ORDER BY push_url"),
        "t|https://push.example/up/alice-1\nt|-\nt|-"
    );
    assert_eq!(
        pg_rows("SELECT kind, last_seq FROM chats ORDER BY kind"),
        "1|8\n2|4",
        "last_seq is the chats' last assigned seq"
    );
    assert_eq!(
        pg_rows("SELECT count(*) FILTER (WHERE admin), count(*) FROM chat_members"),
        "2|4",
        "the group's creator and the promoted member are admins"
    );

    // The CLI: the same import into another database, then refused.
    pg.create_database("cli").unwrap();
    let config = f.dir.path().join("cluster.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\nbackend = \"postgres\"\nurl = \"{}\"\n",
            pg.url("cli")
        ),
    )
    .unwrap();
    let args = [
        "import-sqlite".as_ref(),
        "--config".as_ref(),
        config.as_os_str(),
        "--from".as_ref(),
        f.dir.path().as_os_str(),
    ];
    let (ok, out, err) = relay_command(&args).await;
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains("accounts: 2") && out.contains("log entries: 12"),
        "{out}"
    );
    let (ok, _, err) = relay_command(&args).await;
    assert!(!ok);
    assert!(err.contains("already holds accounts"), "{err}");

    let relay = TestRelay::start_with(|c| {
        c.store.backend = tern_relay::Backend::Postgres;
        c.store.url = Some(pg.url("cluster"));
        c.store.pool_size = 4;
        c.registration = tern_relay::Registration::Invite;
        c.push.enabled = false;
    })
    .await;
    let at = &relay.address();
    let a1 = RawClient::login(at, &f.alice, 1).await.unwrap();
    let a2 = RawClient::login(at, &f.alice, 2).await.unwrap();
    let b = RawClient::login(at, &f.bob, 1).await.unwrap();
    let after = observe([&a1, &a2, &b], &f, f.direct, f.group).await;
    assert_eq!(after, f.before, "the same entries, chats, accounts, stock");
    assert!(
        !after.syncs[2]
            .0
            .entries
            .iter()
            .any(|e| e.seq <= 3 && e.chat_id[..] == f.direct)
    );

    // New sends continue each chat's seqs; an old send is found again.
    let next = ack(a1
        .ok(send_to(
            f.direct,
            random(),
            &[(&f.bob.user_id, 1, b"new"), (&f.alice.user_id, 2, b"new")],
            b"",
        ))
        .await);
    assert_eq!(next.seq, 9);
    assert!(!next.duplicate);
    let next = ack(b.ok(send_to(f.group, random(), &[], b"sender key 3")).await);
    assert_eq!(next.seq, 5);
    let (old_cmid, old_seq) = f.old_send;
    let again = ack(a1
        .ok(send_to(
            f.direct,
            old_cmid,
            &[
                (&f.bob.user_id, 1, &[0u8; 10][..]),
                (&f.alice.user_id, 2, &[0u8; 11][..]),
            ],
            b"",
        ))
        .await);
    assert_eq!((again.seq, again.duplicate), (old_seq, true));
    let tail = batch(b.ok(sync_req(&[(f.direct, 8)])).await);
    let seqs: Vec<u64> = tail
        .entries
        .iter()
        .filter(|e| e.chat_id[..] == f.direct)
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs, vec![9], "no gap, no second copy of the resend");

    // The blob downloads identical; the unfinished upload starts over.
    assert_eq!(download_blob(&b.conn, f.blob.1, 0).await, f.blob.0);
    let (first, _) = upload(&b.conn, &f.partial, 0).await;
    let response::Kind::BlobUploadStatus(status) = first else {
        panic!("expected a status, got {first:?}")
    };
    assert_eq!((status.received, status.complete), (0, false));

    // The invite was moved: it registers an account, once.
    RawClient::register_with_invite(at, &Account::new("carol", 1), &f.invite)
        .await
        .unwrap();
    relay.stop().await;

    let again = import(&pg, "cluster", f.dir.path()).await.unwrap_err();
    assert!(
        matches!(again, TransferError::TargetNotEmpty { table: "accounts" }),
        "{again}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_data_fails_the_import_whole() {
    let f = single_relay().await;
    let pg = postgres();
    let accounts = |db: &str| pg.psql(db, "SELECT count(*) FROM accounts").unwrap();

    // A blob whose bytes do not match its name: found after every table
    // was copied, and nothing stays.
    let hex: String = f.blob.1.iter().map(|b| format!("{b:02x}")).collect();
    let path = f.dir.path().join("blobs").join(&hex[..2]).join(&hex);
    let good = std::fs::read(&path).unwrap();
    let mut bad = good.clone();
    bad[1000] ^= 1;
    std::fs::write(&path, &bad).unwrap();
    pg.create_database("damaged_blob").unwrap();
    let err = import(&pg, "damaged_blob", f.dir.path()).await.unwrap_err();
    assert!(matches!(err, TransferError::BadBlobFile { .. }), "{err}");
    assert_eq!(accounts("damaged_blob").trim(), "0", "all or nothing");
    std::fs::write(&path, &good).unwrap();

    // Rows that the relay never writes, each in a copy of the database.
    let source = rusqlite::Connection::open(f.dir.path().join("relay.db")).unwrap();
    for (i, (damage, table, column)) in [
        (
            "UPDATE log SET sender_user = x'0102' WHERE seq = 2",
            "log",
            "sender_user",
        ),
        (
            "UPDATE log SET ciphertexts = x'01ffff' WHERE ciphertexts IS NOT NULL",
            "log",
            "ciphertexts",
        ),
        ("UPDATE devices SET registered = 7", "devices", "registered"),
        ("UPDATE chats SET kind = 9", "chats", "kind"),
        (
            "UPDATE accounts SET user_name = CAST(x'ff' AS TEXT) WHERE user_name = 'alice'",
            "accounts",
            "user_name",
        ),
        ("UPDATE cursors SET seq = -1", "cursors", "seq"),
    ]
    .into_iter()
    .enumerate()
    {
        let copy = tempfile::tempdir().unwrap();
        let db = copy.path().join("relay.db");
        source
            .execute("VACUUM INTO ?1", [db.to_str().unwrap()])
            .unwrap();
        rusqlite::Connection::open(&db)
            .unwrap()
            .execute_batch(damage)
            .unwrap();
        let name = format!("damaged_{i}");
        pg.create_database(&name).unwrap();
        let err = import(&pg, &name, copy.path()).await.unwrap_err();
        match &err {
            TransferError::BadRow {
                table: t,
                column: c,
                ..
            } => assert_eq!((*t, c.as_str()), (table, column), "{err}"),
            other => panic!("{damage}: expected a bad row, got {other}"),
        }
        assert_eq!(accounts(&name).trim(), "0");
    }

    // A database of another schema version.
    let copy = tempfile::tempdir().unwrap();
    let db = copy.path().join("relay.db");
    source
        .execute("VACUUM INTO ?1", [db.to_str().unwrap()])
        .unwrap();
    rusqlite::Connection::open(&db)
        .unwrap()
        .pragma_update(None, "user_version", 4)
        .unwrap();
    let err = import(&pg, "postgres", copy.path()).await.unwrap_err();
    assert!(
        matches!(err, TransferError::SourceSchema { found: 4, .. }),
        "{err}"
    );

    // Not a data directory.
    let empty = tempfile::tempdir().unwrap();
    let err = import(&pg, "postgres", empty.path()).await.unwrap_err();
    assert!(matches!(err, TransferError::NoDatabase(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serving_relay_is_read_as_one_snapshot() {
    let relay = TestRelay::start_with(|c| c.push.enabled = false).await;
    let (_alice, a, bob, _b) = pair(&relay).await;
    let chat = direct_chat(&a, &bob).await;
    for _ in 0..20 {
        ack(a
            .ok(send_to(chat, random(), &[(&bob.user_id, 1, b"x")], b""))
            .await);
    }
    // Sends go on while the import reads.
    let conn = a.conn.clone();
    let to = bob.user_id;
    let busy = tokio::spawn(async move {
        while try_request(&conn, send_to(chat, random(), &[(&to, 1, b"y")], b""))
            .await
            .is_some()
        {}
    });
    let pg = postgres();
    pg.create_database("live").unwrap();
    let counts = import(&pg, "live", relay.dir.path()).await.unwrap();
    busy.abort();
    relay.stop().await;
    assert!(counts.log_entries > 20, "{counts:?}");
    // Every entry up to the chat's last seq, none missing, none beyond.
    let seqs = pg
        .psql(
            "live",
            "SELECT c.last_seq, count(l.seq), max(l.seq) FROM chats c
             JOIN log l ON l.chat_id = c.chat_id GROUP BY c.last_seq",
        )
        .unwrap();
    let n = counts.log_entries;
    assert_eq!(seqs.trim(), format!("{n}|{n}|{n}"));
}

/// Import throughput of a larger log, written with the SQLite store API:
/// `cargo test -p tern-relay --test transfer -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a check"]
fn import_throughput_of_a_large_log() {
    use bytes::Bytes;
    use tern_protocol::{ChatId, ClientMessageId, UserId};
    use tern_relay::store::*;

    const CHATS: usize = 100;
    const ENTRIES: usize = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let store = tern_relay::store::sqlite::SqliteStore::open(
        &dir.path().join("relay.db"),
        tern_relay::Synchronous::Normal,
    )
    .unwrap();
    let device = |user: UserId| DeviceAddr { user, device: 1 };
    let users = [UserId(random()), UserId(random())];
    for (i, user) in users.iter().enumerate() {
        let key = [i as u8 + 1; 32];
        store
            .create_account(&NewAccount {
                user_name: format!("user{i}"),
                account_key: key,
                list: DeviceListUpdate {
                    user_id: *user,
                    signed: SignedDeviceList {
                        device_list: Bytes::from_static(b"list"),
                        signature: Bytes::from_static(&[0; 64]),
                    },
                    version: 1,
                    devices: vec![(1, key)],
                },
                device_id: 1,
                invite_hash: None,
            })
            .unwrap();
    }
    let chats: Vec<ChatId> = (0..CHATS).map(|_| ChatId(random())).collect();
    let created: Vec<LogAppend> = chats
        .iter()
        .map(|chat| {
            LogAppend::Membership(MembershipAppend {
                chat_id: *chat,
                actor: device(users[0]),
                create: Some(ChatKind::Direct),
                added: users.to_vec(),
                removed: vec![],
                promote: vec![],
            })
        })
        .collect();
    store.append_batch(&created, 1).unwrap();
    let started = Instant::now();
    for batch in 0..ENTRIES / 1000 {
        let items: Vec<LogAppend> = (0..1000)
            .map(|i| {
                LogAppend::Message(MessageAppend {
                    chat_id: chats[(batch * 1000 + i) % CHATS],
                    sender: device(users[0]),
                    client_message_id: ClientMessageId(random()),
                    device_ciphertexts: vec![DeviceCiphertext {
                        user_id: users[1].to_wire(),
                        device_id: 1,
                        ciphertext: vec![7; 200].into(),
                    }],
                    common_ciphertext: Bytes::new(),
                })
            })
            .collect();
        for appended in store.append_batch(&items, 2).unwrap() {
            appended.unwrap();
        }
    }
    drop(store);
    eprintln!(
        "wrote {ENTRIES} entries to SQLite in {:?}",
        started.elapsed()
    );

    let pg = postgres();
    pg.create_database("large").unwrap();
    let settings = PgSettings {
        url: pg.url("large"),
        chat_shards: Vec::new(),
        pool_size: 2,
        queue_quota: u64::MAX,
    };
    let started = Instant::now();
    let counts = import_sqlite(dir.path(), &settings).unwrap();
    let took = started.elapsed();
    assert_eq!(counts.log_entries, (ENTRIES + CHATS) as u64);
    eprintln!(
        "imported {} log entries in {took:?}: {:.0} entries/s",
        counts.log_entries,
        counts.log_entries as f64 / took.as_secs_f64()
    );
}
