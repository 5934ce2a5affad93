//! Device lists embedded in SignedDeviceList (registration, directory lookups).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use tern_protocol::wire::SignedDeviceList;

fuzz_target!(|data: &[u8]| {
    let signed = SignedDeviceList {
        device_list: Bytes::copy_from_slice(data),
        signature: Bytes::new(),
    };
    let _ = tern_protocol::decode_device_list(&signed);
});
