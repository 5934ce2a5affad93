//! Decrypted message content from a (possibly hostile) peer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_core::content::Payload;

fuzz_target!(|data: &[u8]| {
    let _ = Payload::decode(data);
});
