//! Prekey bundles fetched from the relay: decode, re-encode, verify.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_crypto::prekeys::PreKeyBundle;

fuzz_target!(|data: &[u8]| {
    if let Ok(bundle) = PreKeyBundle::decode(data) {
        assert_eq!(bundle.encode(), data);
        let _ = bundle.verify();
    }
});
