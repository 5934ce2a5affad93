//! The local store's key header, read from disk beside the database: decode,
//! then check a raw key against it (a hostile header must neither panic nor
//! make the check allocate or compute without bound).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_crypto::store_key::{KeyHeader, KeySource};

fuzz_target!(|data: &[u8]| {
    if let Ok(header) = KeyHeader::decode(data) {
        assert_eq!(header.encode()[54..], data[54..]);
        let _ = header.check(&KeySource::raw([7; 32]));
    }
});
