//! Server frames as a client decodes them.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = tern_protocol::decode_server_frame(Bytes::copy_from_slice(data)) {
        let again = tern_protocol::decode_server_frame(frame.encode_to_vec().into());
        assert_eq!(again.as_ref(), Ok(&frame));
    }
});
