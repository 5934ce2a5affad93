//! The relay's frame reader fed a hostile byte stream in arbitrary pieces,
//! under a small frame limit and byte budget: it never panics, never yields
//! a body over the limit, agrees with the protocol's frame splitter on
//! every frame it yields, and hands every budget charge back once the
//! bodies are dropped. The first byte chooses the piece size, the second
//! the frame limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_protocol::FrameDecoder;
use tern_transport::{ByteBudget, FrameAssembler, FrameLimits};

fuzz_target!(|data: &[u8]| {
    let [piece, limit, stream @ ..] = data else {
        return;
    };
    let max_frame_len = usize::from(*limit) * 64;
    let budget = ByteBudget::new(16 * 1024);
    let limits = FrameLimits::new(max_frame_len, None, Some(budget.clone()));
    let mut assembler = FrameAssembler::new();
    let mut reference = FrameDecoder::new();
    let mut bodies = Vec::new();
    'stream: for chunk in stream.chunks(usize::from(*piece).max(1)) {
        reference.push(chunk);
        let mut rest = chunk;
        while !rest.is_empty() {
            match assembler.push(&mut rest, &limits) {
                Ok(Some(body)) => {
                    assert!(body.len() <= max_frame_len);
                    let expected = reference.next_frame().ok().flatten();
                    assert_eq!(expected.as_ref(), Some(&body));
                    bodies.push(body);
                }
                Ok(None) => {}
                Err(_) => break 'stream,
            }
        }
    }
    assert!(budget.used() <= 16 * 1024);
    drop(bodies);
    drop(assembler);
    assert_eq!(budget.used(), 0, "every charge is returned");
});
