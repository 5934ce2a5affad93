//! Protocol constants: encoding versions, domain-separation labels and limits.
//!
//! Each limit states why it has the value it has. Signature labels end with a NUL
//! byte so that no label is a prefix of another: a signature made under one label can
//! never be mistaken for one made under another. The two identity-signature labels are
//! shared with `tern-protocol`, which defines what the relay verifies.

/// Version byte that starts every encoding defined by this crate (messages and state).
pub const ENCODING_VERSION: u8 = 1;

/// Domain-separation label prefixed to every message signed with an account identity
/// key. The account key signs only device lists, so this is `tern-protocol`'s
/// `DEVICE_LIST_SIGNATURE_CONTEXT` (a test checks they are equal).
pub const ACCOUNT_SIGNATURE_LABEL: &[u8] = b"tern/v1/device-list\0";
/// Domain-separation label prefixed to every arbitrary message signed with a device
/// identity key: the relay's connection challenge (`challenge ‖ TLS exporter`), so this
/// is `tern-protocol`'s `AUTH_SIGNATURE_CONTEXT` (a test checks they are equal).
pub const DEVICE_SIGNATURE_LABEL: &[u8] = b"tern/v1/connection-auth\0";
/// Label of the signature over a signed (X25519) prekey.
pub const SIGNED_PREKEY_LABEL: &[u8] = b"tern/v1/signed-prekey\0";
/// Label of the signature over an ML-KEM-1024 prekey.
pub const KEM_PREKEY_LABEL: &[u8] = b"tern/v1/kem-prekey\0";
/// Label of the signature over a sender-key message.
pub const SENDER_KEY_SIGNATURE_LABEL: &[u8] = b"tern/v1/sender-key-message\0";

/// HKDF `info` of the PQXDH shared secret when a KEM prekey was used.
pub const PQXDH_INFO: &[u8] = b"tern/v1/pqxdh/x25519-sha256-mlkem1024";
/// HKDF `info` of the classical X3DH shared secret (bundle without a KEM prekey).
pub const X3DH_INFO: &[u8] = b"tern/v1/x3dh/x25519-sha256";
/// HKDF `info` of the Double Ratchet root-key step.
pub const ROOT_KDF_INFO: &[u8] = b"tern/v1/ratchet/root";
/// HKDF `info` that expands a ratchet message-key seed into an AES key and nonce.
pub const MESSAGE_KEY_INFO: &[u8] = b"tern/v1/ratchet/message-keys";
/// HKDF `info` that expands a sender-key message-key seed into an AES key and nonce.
pub const SENDER_MESSAGE_KEY_INFO: &[u8] = b"tern/v1/sender-key/message-keys";

/// HMAC input that derives a message-key seed from a chain key (as in Signal).
pub const MESSAGE_KEY_SEED: u8 = 0x01;
/// HMAC input that derives the next chain key from a chain key (as in Signal).
pub const CHAIN_KEY_SEED: u8 = 0x02;

/// Largest forward jump within one receiving chain (libsignal's value). A larger
/// jump is rejected: deriving 25,000 keys costs a few milliseconds, more would let
/// a peer burn CPU.
pub const MAX_FORWARD_JUMP: u32 = 25_000;
/// Skipped message keys kept per receiving chain (libsignal's value, 50× vodozemac's
/// 40). The oldest is evicted first; the memory bound is 36 bytes per key.
pub const MAX_SKIPPED_KEYS_PER_CHAIN: usize = 2_000;
/// Receiving chains kept per session (libsignal's value): late messages from the
/// previous few ratchet steps still decrypt.
pub const MAX_RECEIVER_CHAINS: usize = 5;
/// Older sessions kept per remote device. An incoming message may be tried against
/// each of them, so the bound also caps trial-decryption work per message.
pub const MAX_ARCHIVED_SESSIONS: usize = 10;
/// Sender-key chains kept per (group, sender device): a rotation does not make
/// in-flight messages under the previous chains undecryptable.
pub const MAX_SENDER_KEY_STATES: usize = 5;
/// Largest plaintext accepted for encryption (1 MiB). Media travel as separately
/// encrypted blobs; messages only carry text and blob references.
pub const MAX_PLAINTEXT_LEN: usize = 1 << 20;
/// Largest encoded message accepted by any decoder: the plaintext bound plus every
/// header, the KEM ciphertext, the AEAD tag and a signature, rounded up.
pub const MAX_MESSAGE_LEN: usize = MAX_PLAINTEXT_LEN + 4096;
/// Largest encoded session record accepted by the decoder: every session at its
/// limits (receiver chains full of skipped keys) fits, garbage cannot allocate more.
pub const MAX_SESSION_RECORD_LEN: usize = 8 << 20;

/// Initial messages remembered per signed prekey for replay protection (see
/// [`ReplayCache`](super::replay::ReplayCache)). Only handshakes that consumed no
/// one-time prekey (X25519 or KEM) are remembered: the others cannot be replayed
/// because their one-time key is deleted. An entry is 37 bytes, so a full cache adds
/// 151,552 bytes to the signed prekey's record, below the store's 256 KiB limit per
/// state. There is no eviction: entries are deleted together with their signed
/// prekey when rotation retires it ([`SIGNED_PREKEY_GRACE_SECS`] after its
/// replacement). A full cache refuses further such handshakes under that signed
/// prekey (failing closed, never forgetting an accepted base key) until the prekey
/// is rotated; rotation falls due early once the cache reaches
/// [`REPLAY_CACHE_ROTATION_MARK`].
pub const MAX_REPLAY_ENTRIES: usize = 4_096;
/// Fill level of a signed prekey's replay cache at which the prekey is due for
/// rotation regardless of its age (half of [`MAX_REPLAY_ENTRIES`]): the new prekey
/// takes over long before the old one's cache is full.
pub const REPLAY_CACHE_ROTATION_MARK: usize = MAX_REPLAY_ENTRIES / 2;
/// Age at which the signed prekey is replaced (two days, Signal's interval): a
/// compromised signed prekey secret exposes only handshakes of a short window.
pub const SIGNED_PREKEY_ROTATION_SECS: u64 = 2 * DAY_SECS;
/// Age at which the last-resort KEM prekey is replaced (same interval as the signed
/// prekey, as in Signal, so the pair ages together).
pub const LAST_RESORT_KEM_ROTATION_SECS: u64 = 2 * DAY_SECS;
/// How long a replaced signed prekey is kept (30 days): an initial message can wait
/// in the relay's queue for as long as the relay retains undelivered entries
/// (30 days by default), and it must still decrypt when the device comes back.
pub const SIGNED_PREKEY_GRACE_SECS: u64 = 30 * DAY_SECS;
/// How long a replaced last-resort KEM prekey is kept (30 days, same reason).
pub const LAST_RESORT_KEM_GRACE_SECS: u64 = 30 * DAY_SECS;
/// Replaced prekeys kept per kind while in their grace period: 30 days of two-day
/// rotations is 15, plus one for an early rotation. Beyond that the oldest is
/// released before its grace period ends (the schedule reports it for deletion).
pub const MAX_RETIRED_PREKEYS: usize = 16;
/// Seconds in a day.
const DAY_SECS: u64 = 24 * 60 * 60;

/// Label of the link code's typo check: `SHA-256(label ‖ body)[..4]`
/// (`link`).
pub const LINK_CODE_CHECK_LABEL: &[u8] = b"tern/v1/link/code-check\0";
/// HKDF `info` prefix (followed by the transcript) of the link channel's
/// request key.
pub const LINK_REQUEST_INFO: &[u8] = b"tern/v1/link/request\0";
/// HKDF `info` prefix (followed by the transcript) of the link channel's reply
/// key.
pub const LINK_REPLY_INFO: &[u8] = b"tern/v1/link/reply\0";
/// Label of the new device's signature over the link transcript and its reply
/// address.
pub const LINK_REQUEST_SIGNATURE_LABEL: &[u8] = b"tern/v1/link/request-signature\0";

/// HMAC-SHA256 message of the local store's key check value (`store_key`).
pub const STORE_KEY_CHECK_LABEL: &[u8] = b"tern-store key check v1";
/// Magic bytes that start the local store's key header (`store_key`).
pub const STORE_KEY_HEADER_MAGIC: &[u8; 8] = b"TERNKEY\0";

/// Label of the direct-chat id derivation (`chat_id`).
pub const DIRECT_CHAT_LABEL: &[u8] = b"tern/v1/direct-chat\0";
/// Label of the note-to-self chat id derivation (`chat_id`).
pub const SELF_CHAT_LABEL: &[u8] = b"tern/v1/self-chat\0";

/// Version of the safety-number fingerprint derivation.
pub const FINGERPRINT_VERSION: u16 = 0;
/// SHA-512 iterations of the safety-number fingerprint (Signal's value).
pub const FINGERPRINT_ITERATIONS: usize = 5_200;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_labels_are_the_ones_the_relay_verifies() {
        assert_eq!(
            ACCOUNT_SIGNATURE_LABEL,
            tern_protocol::limits::DEVICE_LIST_SIGNATURE_CONTEXT
        );
        assert_eq!(
            DEVICE_SIGNATURE_LABEL,
            tern_protocol::limits::AUTH_SIGNATURE_CONTEXT
        );
    }

    #[test]
    fn kdf_and_check_labels_are_prefix_free() {
        let labels = [
            PQXDH_INFO,
            X3DH_INFO,
            ROOT_KDF_INFO,
            MESSAGE_KEY_INFO,
            SENDER_MESSAGE_KEY_INFO,
            LINK_CODE_CHECK_LABEL,
            LINK_REQUEST_INFO,
            LINK_REPLY_INFO,
            STORE_KEY_CHECK_LABEL,
            DIRECT_CHAT_LABEL,
            SELF_CHAT_LABEL,
        ];
        for (i, a) in labels.iter().enumerate() {
            for (j, b) in labels.iter().enumerate() {
                assert!(i == j || !b.starts_with(a), "{i} is a prefix of {j}");
            }
        }
    }

    #[test]
    fn signature_labels_are_prefix_free() {
        let labels = [
            ACCOUNT_SIGNATURE_LABEL,
            DEVICE_SIGNATURE_LABEL,
            SIGNED_PREKEY_LABEL,
            KEM_PREKEY_LABEL,
            SENDER_KEY_SIGNATURE_LABEL,
            LINK_REQUEST_SIGNATURE_LABEL,
        ];
        for (i, a) in labels.iter().enumerate() {
            for (j, b) in labels.iter().enumerate() {
                assert!(i == j || !b.starts_with(a), "{i} is a prefix of {j}");
            }
        }
    }
}
