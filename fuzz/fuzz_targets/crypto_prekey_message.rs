//! PQXDH initial (prekey) messages from the network.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_crypto::pqxdh::PreKeyMessage;

fuzz_target!(|data: &[u8]| {
    let _ = PreKeyMessage::decode(data);
});
