//! Link codes typed or scanned by the user (shown by another device).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_core::client::LinkCode;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = LinkCode::parse(text);
    }
});
