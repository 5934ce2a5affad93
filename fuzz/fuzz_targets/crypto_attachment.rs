//! Attachment ciphertext as downloaded from the relay's blob store: the
//! length check and chunk-by-chunk opening under a fixed key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_crypto::attachment::{ChunkCipher, SEALED_CHUNK_LEN, chunk_count, plain_len};

fuzz_target!(|data: &[u8]| {
    let Ok(len) = plain_len(data.len() as u64) else {
        return;
    };
    let count = chunk_count(len);
    let cipher = ChunkCipher::new(&[3; 32]);
    for (i, chunk) in data.chunks(SEALED_CHUNK_LEN).enumerate() {
        let i = i as u64;
        if cipher.open(i, i + 1 == count, chunk).is_err() {
            break;
        }
    }
});
