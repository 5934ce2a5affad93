//! End-to-end cryptography for Tern devices (sans-IO).
//!
//! The construction follows Signal's published specifications: PQXDH (X3DH
//! hybridised with ML-KEM-1024), the Double Ratchet with AES-256-GCM, Sesame-style
//! per-device session management and sender keys for groups. Every byte layout,
//! KDF label and limit is documented in `docs/crypto.md` and in [`consts`].
//!
//! Every function that needs randomness takes an explicit `rand_core` 0.10
//! [`CryptoRng`](rand_core::CryptoRng), so tests can replay fixed randomness.

mod chain;
mod codec;
pub mod consts;
mod error;
pub mod fingerprint;
pub mod identity;
pub mod kem;
pub mod pqxdh;
pub mod prekeys;
mod primitives;
pub mod ratchet;
pub mod replay;
pub mod rotation;
pub mod sender_key;
pub mod session;

pub use codec::DecodeError;
pub use error::CryptoError;
pub use primitives::X25519_KEY_LEN;
