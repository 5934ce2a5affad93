//! Tern's end-to-end cryptography (sans-IO).
//!
//! Every cryptographic construction Tern uses lives here, so that auditing this
//! crate covers all of them:
//!
//! - device and account identities ([`identity`]), prekeys ([`prekeys`]), the
//!   PQXDH handshake (X3DH hybridised with ML-KEM-1024, [`pqxdh`]), the Double
//!   Ratchet with AES-256-GCM ([`ratchet`]), Sesame-style per-device sessions
//!   ([`session`]), sender keys for groups ([`sender_key`]) and safety numbers
//!   ([`fingerprint`]), following Signal's published specifications;
//! - the device-link channel ([`link`]), the chunked attachment AEAD
//!   ([`attachment`]), the derivation and check of the local store's key
//!   ([`store_key`]) and the chat ids both sides derive ([`chat_id`]).
//!
//! Every byte layout, KDF label and limit is documented in `docs/crypto.md` and
//! in [`consts`]. The crate performs no I/O and persists nothing: state leaves it
//! only as versioned byte strings. Every function that needs randomness takes an
//! explicit `rand_core` 0.10 [`CryptoRng`](rand_core::CryptoRng), and time comes
//! in as an argument, so tests can replay fixed inputs.

pub mod attachment;
mod chain;
pub mod chat_id;
mod codec;
pub mod consts;
mod error;
pub mod fingerprint;
pub mod identity;
pub mod kem;
pub mod link;
pub mod pqxdh;
pub mod prekeys;
mod primitives;
pub mod ratchet;
pub mod replay;
pub mod rotation;
pub mod sender_key;
pub mod session;
pub mod store_key;

pub use codec::DecodeError;
pub use error::CryptoError;
pub use primitives::X25519_KEY_LEN;
