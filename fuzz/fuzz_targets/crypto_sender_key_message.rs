//! Group (sender-key) messages from the network, decoded and fed to a receiver.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_crypto::sender_key::{SenderKeyMessage, SenderKeyRecord};

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = SenderKeyMessage::decode(data) {
        let _ = SenderKeyRecord::new().decrypt(&message);
    }
});
