//! The error type of the crypto module.

use thiserror::Error;

use super::codec::DecodeError;
use super::session::StoreError;

/// Everything that can go wrong in the crypto module. No variant carries key bytes.
#[derive(Debug, Error)]
pub enum CryptoError {
    /// An encoding was malformed.
    #[error("malformed encoding: {0}")]
    Decode(#[from] DecodeError),
    /// A signature did not verify.
    #[error("bad signature on {0}")]
    BadSignature(&'static str),
    /// A public key is malformed, weak or of low order.
    #[error("invalid public key: {0}")]
    InvalidKey(&'static str),
    /// A Diffie-Hellman output was all zeros (the peer sent a low-order point).
    #[error("non-contributory Diffie-Hellman output")]
    NonContributory,
    /// A prekey named by an incoming message is not (or no longer) held.
    #[error("unknown {kind} prekey {id}")]
    UnknownPreKey {
        /// "signed", "one-time" or "KEM".
        kind: &'static str,
        /// The prekey id.
        id: u32,
    },
    /// A retransmitted prekey message's handshake fields differ from those that
    /// created its session (tampering or a reflected message).
    #[error("handshake fields do not match the session")]
    HandshakeMismatch,
    /// An initial message that used no one-time prekey repeats a handshake this
    /// device already accepted (a replay).
    #[error("the initial message was already accepted (replay)")]
    ReplayedPreKeyMessage,
    /// The signed prekey's replay cache is full: initial messages without a one-time
    /// prekey are refused under it until it is rotated.
    #[error("replay cache of signed prekey {signed_prekey_id} is full; rotate it")]
    ReplayCacheFull {
        /// The signed prekey that must be rotated.
        signed_prekey_id: u32,
    },
    /// A new prekey was given an id that a held prekey of the same kind still uses.
    #[error("prekey id {0} is still in use")]
    PreKeyIdInUse(u32),
    /// A bundle has no KEM prekey while post-quantum security is required.
    #[error("the bundle has no KEM prekey")]
    MissingKemPreKey,
    /// The message's key was already used (a replay) or evicted from the skipped-key store.
    #[error("message key {index} is unavailable (duplicate or expired)")]
    MessageKeyUnavailable {
        /// The message number.
        index: u32,
    },
    /// The message is further ahead than [`MAX_FORWARD_JUMP`](super::consts::MAX_FORWARD_JUMP).
    #[error("message jumps {jump} keys ahead, the limit is {max}")]
    ForwardJumpTooLarge {
        /// The requested jump.
        jump: u32,
        /// The limit.
        max: u32,
    },
    /// AEAD authentication failed: the message was tampered with or is not for this state.
    #[error("authentication failed")]
    DecryptFailed,
    /// The plaintext exceeds [`MAX_PLAINTEXT_LEN`](super::consts::MAX_PLAINTEXT_LEN).
    #[error("plaintext of {0} bytes is too long")]
    PlaintextTooLong(usize),
    /// A chain reached 2^32 messages and must be replaced.
    #[error("chain counter exhausted")]
    ChainExhausted,
    /// There is no session with the remote device.
    #[error("no session with the remote device")]
    NoSession,
    /// No sender-key chain matches the message.
    #[error("no sender key for chain {0}")]
    UnknownSenderChain(u32),
    /// The session store failed.
    #[error("session store: {0}")]
    Store(#[from] StoreError),
}
