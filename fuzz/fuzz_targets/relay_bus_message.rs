//! Messages of the cluster bus (NATS) as every relay node decodes them:
//! another node's bytes are hostile. The first byte picks the subject.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use tern_relay::cluster::codec::{self, BusMessage, SUBJECTS};

fuzz_target!(|data: &[u8]| {
    let Some((pick, payload)) = data.split_first() else {
        return;
    };
    let subject = SUBJECTS[usize::from(*pick) % SUBJECTS.len()];
    if let Ok(BusMessage::Entries(entries)) =
        codec::decode(subject, Bytes::copy_from_slice(payload), "fuzz")
    {
        assert!(entries.len() <= payload.len(), "an entry takes bytes");
    }
});
