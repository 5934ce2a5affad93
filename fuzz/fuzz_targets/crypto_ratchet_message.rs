//! Double Ratchet messages from the network: decode, and re-encode what decodes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_crypto::ratchet::RatchetMessage;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = RatchetMessage::decode(data) {
        assert_eq!(message.encode(), data);
    }
});
