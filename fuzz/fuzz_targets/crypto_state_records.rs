//! Crypto state records read back from the encrypted store (disk input):
//! prekey records with their replay caches and prekey rotation schedules.
//! A decoded record must re-encode to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_crypto::prekeys::{KemPreKey, OneTimePreKey, SignedPreKey};
use tern_crypto::rotation::RotationSchedule;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = SignedPreKey::from_bytes(data) {
        let _ = record.to_bytes();
    }
    if let Ok(record) = OneTimePreKey::from_bytes(data) {
        assert_eq!(&record.to_bytes()[..], data);
    }
    if let Ok(record) = KemPreKey::from_bytes(data) {
        assert_eq!(&record.to_bytes()[..], data);
    }
    if let Ok(schedule) = RotationSchedule::from_bytes(data) {
        assert_eq!(schedule.to_bytes(), data);
    }
});
