//! Opening the encrypted store: keys, wrong keys, tampering and what reaches disk.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::fs;
use std::path::Path;

use support::{chat, db_path, message, open, passphrase};
use tern_crypto::store_key::{self as key, KdfParams};
use tern_store::key::header_path;
use tern_store::{Contact, KeySource, MessageId, SCHEMA_VERSION, Store, StoreError, Verification};

const SECRET_BODY: &str = "zebra-quartz-marmalade-7741 meet at the lighthouse";
const SECRET_NAME: &str = "Ottoline Wrexham-Pemberton";

fn write_sample(store: &Store) -> MessageId {
    store
        .transaction(|tx| {
            tx.upsert_chat(&chat(1))?;
            tx.upsert_contact(&Contact {
                user_id: [9; 16],
                display_name: SECRET_NAME.into(),
                identity_key: Some(vec![0x42; 32]),
                verification: Verification::Default,
            })?;
            Ok::<_, StoreError>(tx.insert_message(&message(1, 1, SECRET_BODY))?.id())
        })
        .unwrap()
}

fn read_body(store: &Store, id: MessageId) -> Result<String, StoreError> {
    store.transaction(|tx| {
        tx.message(id)?
            .map(|m| m.message.body)
            .ok_or(StoreError::NotFound("message"))
    })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// Every file of the store: database, WAL, shared memory and key header.
fn store_files(path: &Path) -> Vec<Vec<u8>> {
    ["", "-wal", "-shm", "-key"]
        .iter()
        .filter_map(|suffix| fs::read(format!("{}{suffix}", path.display())).ok())
        .collect()
}

#[test]
fn create_close_reopen_keeps_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let id = write_sample(&open(&path, passphrase("correct horse")));
    let store = open(&path, passphrase("correct horse"));
    assert_eq!(read_body(&store, id).unwrap(), SECRET_BODY);
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    store.verify_integrity().unwrap();
}

#[test]
fn wrong_passphrase_is_wrong_key_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let id = write_sample(&open(&path, passphrase("correct horse")));
    let err = Store::open(&path, passphrase("battery staple")).unwrap_err();
    assert!(matches!(err, StoreError::WrongKey), "{err:?}");
    let store = open(&path, passphrase("correct horse"));
    assert_eq!(read_body(&store, id).unwrap(), SECRET_BODY);
}

#[test]
fn raw_key_opens_and_a_wrong_raw_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let id = write_sample(&open(&path, KeySource::raw([3; 32])));
    let err = Store::open(&path, KeySource::raw([4; 32])).unwrap_err();
    assert!(matches!(err, StoreError::WrongKey), "{err:?}");
    let err = Store::open(&path, passphrase("not a raw key")).unwrap_err();
    assert!(matches!(err, StoreError::WrongKey), "{err:?}");
    assert_eq!(
        read_body(&open(&path, KeySource::raw([3; 32])), id).unwrap(),
        SECRET_BODY
    );
}

#[test]
fn raw_key_store_opens_without_its_key_header() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let id = write_sample(&open(&path, KeySource::raw([3; 32])));
    fs::remove_file(header_path(&path)).unwrap();
    let err = Store::open(&path, KeySource::raw([4; 32])).unwrap_err();
    assert!(matches!(err, StoreError::WrongKey), "{err:?}");
    assert_eq!(
        read_body(&open(&path, KeySource::raw([3; 32])), id).unwrap(),
        SECRET_BODY
    );
}

#[test]
fn passphrase_store_needs_its_key_header() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    write_sample(&open(&path, passphrase("pw")));
    fs::remove_file(header_path(&path)).unwrap();
    let err = Store::open(&path, passphrase("pw")).unwrap_err();
    assert!(matches!(err, StoreError::KeyHeader("missing")), "{err:?}");
}

#[test]
fn malformed_key_headers_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    write_sample(&open(&path, passphrase("pw")));
    let header_path = header_path(&path);
    let good = fs::read(&header_path).unwrap();
    assert_eq!(good.len(), key::HEADER_LEN);

    let mut hostile_memory = good.clone();
    hostile_memory[10..14].copy_from_slice(&u32::MAX.to_le_bytes());
    let mut bad_magic = good.clone();
    bad_magic[0] ^= 1;
    let mut bad_version = good.clone();
    bad_version[8] = 2;
    let mut oversized = good.clone();
    oversized.extend_from_slice(&[0; 4096]);
    let cases = [
        (hostile_memory, "memory"),
        (bad_magic, "bad magic"),
        (bad_version, "unsupported version"),
        (good[..40].to_vec(), "wrong length"),
        (oversized, "wrong length"),
    ];
    for (bytes, expected) in cases {
        fs::write(&header_path, &bytes).unwrap();
        match Store::open(&path, passphrase("pw")).unwrap_err() {
            StoreError::KeyHeader(reason) | StoreError::InvalidKdfParams(reason) => {
                assert_eq!(reason, expected)
            }
            other => panic!("{expected}: {other:?}"),
        }
    }
    fs::write(&header_path, &good).unwrap();
    open(&path, passphrase("pw"));
}

#[test]
fn tampered_first_page_is_reported_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    write_sample(&open(&path, passphrase("pw")));
    let mut bytes = fs::read(&path).unwrap();
    bytes[200] ^= 0x01;
    fs::write(&path, &bytes).unwrap();
    let err = Store::open(&path, passphrase("pw")).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
}

#[test]
fn tampered_data_page_fails_its_hmac() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let id = write_sample(&open(&path, KeySource::raw([5; 32])));
    let mut bytes = fs::read(&path).unwrap();
    let page_size = 4096;
    assert!(bytes.len() > 3 * page_size, "database has data pages");
    // Flip one byte in every page after the first: whichever page holds the
    // message, reading it must fail authentication.
    for page in bytes.chunks_mut(page_size).skip(1) {
        page[100] ^= 0x80;
    }
    fs::write(&path, &bytes).unwrap();
    let outcome = Store::open(&path, KeySource::raw([5; 32])).and_then(|store| {
        read_body(&store, id)?;
        store.verify_integrity()
    });
    assert!(
        matches!(outcome, Err(StoreError::Corrupt(_))),
        "{outcome:?}"
    );
}

#[test]
fn files_contain_neither_plaintext_nor_key_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let raw_key = [0xA7; 32];
    let store = open(&path, KeySource::raw(raw_key));
    write_sample(&store);
    let hex_key = hex::encode(raw_key);
    let needles: [&[u8]; 5] = [
        SECRET_BODY.as_bytes(),
        b"lighthouse",
        SECRET_NAME.as_bytes(),
        &raw_key,
        hex_key.as_bytes(),
    ];
    let check = |when: &str| {
        for file in store_files(&path) {
            for needle in needles {
                assert!(!contains(&file, needle), "{when}: found {needle:?}");
            }
        }
    };
    check("while open (WAL present)");
    drop(store);
    check("after close");
}

#[test]
fn passphrase_and_derived_key_never_reach_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let pass = "open sesame 1234";
    write_sample(&open(&path, passphrase(pass)));
    let header = fs::read(header_path(&path)).unwrap();
    let derived = key::derive_key(pass, &header[22..54], support::fast_params()).unwrap();
    let hex_key = hex::encode(*derived);
    for file in store_files(&path) {
        for needle in [
            pass.as_bytes(),
            &derived[..],
            hex_key.as_bytes(),
            SECRET_BODY.as_bytes(),
        ] {
            assert!(!contains(&file, needle));
        }
    }
}

#[test]
fn empty_file_becomes_a_fresh_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    fs::write(&path, b"").unwrap();
    let store = open(&path, passphrase("pw"));
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    assert!(store.transaction(|tx| tx.chats()).unwrap().is_empty());
}

#[test]
fn kdf_params_are_bounded() {
    assert!(KdfParams::new(7, 1, 1).is_err());
    assert!(KdfParams::new(64, 0, 1).is_err());
    assert!(KdfParams::new(64, 1, 0).is_err());
    assert!(KdfParams::new(key::MAX_M_COST_KIB + 1, 1, 1).is_err());
    assert!(KdfParams::new(64, key::MAX_T_COST + 1, 1).is_err());
    assert!(KdfParams::new(1024, 1, key::MAX_P_COST + 1).is_err());
    let default = KdfParams::default();
    assert_eq!(
        KdfParams::new(default.m_cost_kib(), default.t_cost(), default.p_cost()).unwrap(),
        default
    );
}

#[test]
fn key_source_debug_hides_secrets() {
    let rendered = format!(
        "{:?} {:?}",
        KeySource::raw([0xEE; 32]),
        passphrase("hunter2")
    );
    assert!(
        !rendered.contains("hunter2") && !rendered.contains("238"),
        "{rendered}"
    );
}
