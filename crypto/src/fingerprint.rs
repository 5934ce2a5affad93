//! Safety numbers: a human-comparable number and a QR payload per pair of users,
//! derived from their account identity keys (Signal's numeric fingerprint scheme).
//!
//! ```text
//! F(user, key) = H^5200 where H^0 = SHA-512(version (u16 BE) ‖ key ‖ user id ‖ key)
//!                and H^i = SHA-512(H^(i-1) ‖ key); keep the first 32 bytes
//! digits(F)    = for each of the first six 5-byte groups g of F: (g as u40 BE) mod 100000, 5 digits
//! number       = the two 30-digit strings in ascending order, concatenated (60 digits)
//! QR payload   = 0x01 ‖ the two 32-byte fingerprints in ascending byte order
//! ```
//! Both users compute the same number and payload, whoever is "local".

use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;

use super::consts::{FINGERPRINT_ITERATIONS, FINGERPRINT_VERSION};
use super::identity::IdentityKey;

/// Number of digits in a safety number.
pub const SAFETY_NUMBER_DIGITS: usize = 60;
/// Length of the QR payload.
pub const QR_PAYLOAD_LEN: usize = 65;
const QR_VERSION: u8 = 1;

/// The safety number of two users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafetyNumber {
    digits: String,
    qr: [u8; QR_PAYLOAD_LEN],
}

fn fingerprint(user_id: &[u8], key: &IdentityKey) -> [u8; 32] {
    let key = key.to_bytes();
    let mut hash = Sha512::new()
        .chain_update(FINGERPRINT_VERSION.to_be_bytes())
        .chain_update(key)
        .chain_update(user_id)
        .chain_update(key)
        .finalize();
    for _ in 1..FINGERPRINT_ITERATIONS {
        hash = Sha512::new()
            .chain_update(hash)
            .chain_update(key)
            .finalize();
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(&hash[..32]);
    out
}

fn digits(fingerprint: &[u8; 32]) -> String {
    fingerprint[..30]
        .chunks_exact(5)
        .map(|chunk| {
            let value = chunk
                .iter()
                .fold(0u64, |acc, byte| (acc << 8) | u64::from(*byte));
            format!("{:05}", value % 100_000)
        })
        .collect()
}

impl SafetyNumber {
    /// Computes the safety number of two users from their ids and account identity keys.
    pub fn new(user_a: &[u8], key_a: &IdentityKey, user_b: &[u8], key_b: &IdentityKey) -> Self {
        let mut prints = [fingerprint(user_a, key_a), fingerprint(user_b, key_b)];
        prints.sort_unstable();
        let mut numbers = [digits(&prints[0]), digits(&prints[1])];
        numbers.sort_unstable();
        let mut qr = [0u8; QR_PAYLOAD_LEN];
        qr[0] = QR_VERSION;
        qr[1..33].copy_from_slice(&prints[0]);
        qr[33..].copy_from_slice(&prints[1]);
        Self {
            digits: numbers.concat(),
            qr,
        }
    }

    /// The 60 digits.
    pub fn digits(&self) -> &str {
        &self.digits
    }

    /// The digits in 12 groups of five, as shown to users.
    pub fn display(&self) -> String {
        let groups: Vec<&str> = (0..SAFETY_NUMBER_DIGITS / 5)
            .filter_map(|i| self.digits.get(i * 5..i * 5 + 5))
            .collect();
        groups.join(" ")
    }

    /// The payload to show as a QR code.
    pub fn qr_payload(&self) -> &[u8; QR_PAYLOAD_LEN] {
        &self.qr
    }

    /// Whether a scanned payload matches (constant time; wrong lengths never match).
    pub fn matches_scanned(&self, scanned: &[u8]) -> bool {
        scanned.len() == QR_PAYLOAD_LEN && bool::from(self.qr.ct_eq(scanned))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::AccountIdentity;
    use rand::SeedableRng;

    #[test]
    fn order_independent_and_sensitive_to_keys_and_ids() {
        let mut rng = rand::rngs::ChaCha20Rng::from_seed([5; 32]);
        let alice = AccountIdentity::generate(&mut rng).public_key();
        let bob = AccountIdentity::generate(&mut rng).public_key();
        let eve = AccountIdentity::generate(&mut rng).public_key();
        let ab = SafetyNumber::new(b"alice", &alice, b"bob", &bob);
        let ba = SafetyNumber::new(b"bob", &bob, b"alice", &alice);
        assert_eq!(ab, ba);
        assert_eq!(ab.digits().len(), SAFETY_NUMBER_DIGITS);
        assert!(ab.digits().bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(ab.display().len(), 71);
        assert!(ab.matches_scanned(ba.qr_payload()));
        let ae = SafetyNumber::new(b"alice", &alice, b"bob", &eve);
        assert_ne!(ab.digits(), ae.digits());
        assert!(!ab.matches_scanned(ae.qr_payload()));
        assert!(!ab.matches_scanned(&ab.qr_payload()[..64]));
        let renamed = SafetyNumber::new(b"alice2", &alice, b"bob", &bob);
        assert_ne!(ab.digits(), renamed.digits());
    }
}
