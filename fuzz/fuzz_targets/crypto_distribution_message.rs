//! Sender-key distribution messages: decode, re-encode, and apply to a record.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_crypto::sender_key::{DistributionMessage, SenderKeyRecord};

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = DistributionMessage::decode(data) {
        assert_eq!(&message.encode()[..], data);
        SenderKeyRecord::new().process_distribution(&message);
    }
});
