//! The incremental frame splitter fed a byte stream in arbitrary pieces.
//! The first byte chooses the piece size.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_protocol::FrameDecoder;
use tern_protocol::limits::MAX_FRAME_LEN;

fuzz_target!(|data: &[u8]| {
    let Some((&piece, stream)) = data.split_first() else {
        return;
    };
    let mut decoder = FrameDecoder::new();
    for chunk in stream.chunks(usize::from(piece).max(1)) {
        decoder.push(chunk);
        loop {
            match decoder.next_frame() {
                Ok(Some(body)) => {
                    assert!(body.len() <= MAX_FRAME_LEN);
                    let _ = tern_protocol::decode_client_frame(body);
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
    let _ = decoder.finish();
});
