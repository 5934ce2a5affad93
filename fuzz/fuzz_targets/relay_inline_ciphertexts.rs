//! Inline per-device ciphertext encodings read back from the relay's
//! database (`log.ciphertexts`): disk bytes are hostile.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_protocol::UserId;
use tern_relay::store::DeviceAddr;
use tern_relay::store::ciphertexts;

fuzz_target!(|data: &[u8]| {
    let decoded: Result<Vec<_>, _> = ciphertexts::entries(data).collect();
    match decoded {
        Ok(entries) => {
            assert_eq!(ciphertexts::encode(&entries).as_deref(), Some(data));
            for (device, _) in &entries {
                assert!(matches!(ciphertexts::find(data, *device), Ok(Some(_))));
            }
        }
        Err(e) => {
            let probe = DeviceAddr {
                user: UserId([0; 16]),
                device: 0,
            };
            assert_eq!(ciphertexts::find(data, probe), Err(e));
        }
    }
});
