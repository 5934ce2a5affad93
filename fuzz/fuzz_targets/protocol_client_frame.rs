//! Client frames as the relay decodes them: the first frame (hello) and any
//! later one, with its request id kept for the answer.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let body = Bytes::copy_from_slice(data);
    let _ = tern_protocol::expect_hello(body.clone());
    // The relay's request decoder agrees with the plain one on every input.
    let (_, request) = tern_protocol::decode_client_request(body.clone());
    assert_eq!(request.ok(), tern_protocol::decode_client_frame(body.clone()).ok());
    if let Ok(frame) = tern_protocol::decode_client_frame(body) {
        // Whatever decodes must re-encode and decode to the same message.
        let again = tern_protocol::decode_client_frame(frame.encode_to_vec().into());
        assert_eq!(again.as_ref(), Ok(&frame));
    }
});
