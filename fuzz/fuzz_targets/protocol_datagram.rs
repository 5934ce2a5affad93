//! Ephemeral events received as QUIC datagrams.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tern_protocol::decode_datagram(Bytes::copy_from_slice(data));
});
