//! Protocol constants and hard limits.
//!
//! Every limit here is enforced by the decoders in this crate: a frame or
//! message that exceeds one is rejected with a typed error before it reaches
//! relay or client logic. `docs/protocol.md` lists each one with its rationale.

/// Wire protocol version spoken by this crate.
pub const PROTOCOL_VERSION: u32 = 1;

/// ALPN identifier negotiated in the QUIC/TLS handshake.
pub const ALPN: &[u8] = b"tern/1";

/// Length of the big-endian frame length prefix.
pub const FRAME_HEADER_LEN: usize = 4;

/// Largest frame body accepted on a stream (2 MiB). It bounds every buffer a
/// decoder allocates and is large enough for the largest valid request: a
/// send to [`MAX_RECIPIENT_DEVICES`] devices of typical message size, or a
/// full prekey upload.
pub const MAX_FRAME_LEN: usize = 2 * 1024 * 1024;

/// Largest frame body a relay reads before the connection has
/// authenticated (32 KiB): hello, authentication, registration and
/// provisioning frames all fit, and an unauthenticated peer cannot make the
/// relay buffer large frames.
pub const MAX_PRE_AUTH_FRAME_LEN: usize = 32 * 1024;

/// Largest ephemeral event carried in one QUIC datagram. Kept below the
/// minimum QUIC datagram payload so that it never fragments.
pub const MAX_DATAGRAM_LEN: usize = 1024;

/// Length of a relay authentication challenge.
pub const CHALLENGE_LEN: usize = 32;

/// Length of an account id.
pub const USER_ID_LEN: usize = 16;

/// Length of a chat id.
pub const CHAT_ID_LEN: usize = 16;

/// Length of a client-generated message id.
pub const CLIENT_MESSAGE_ID_LEN: usize = 16;

/// Length of a blob id (SHA-256 of the ciphertext).
pub const BLOB_ID_LEN: usize = 32;

/// Length of a provisioning mailbox address.
pub const PROVISIONING_ADDRESS_LEN: usize = 16;

/// Length of an Ed25519 or X25519 public key.
pub const KEY_LEN: usize = 32;

/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

/// Length of an ML-KEM-1024 encapsulation key.
pub const KEM_PUBLIC_KEY_LEN: usize = 1568;

/// Largest end-to-end ciphertext per message and device (64 KiB). Text,
/// receipts and attachment pointers fit easily; attachments travel as blobs.
pub const MAX_CIPHERTEXT_LEN: usize = 64 * 1024;

/// Most per-device ciphertexts in one send. Groups beyond this size use a
/// common (sender-key) ciphertext.
pub const MAX_RECIPIENT_DEVICES: usize = 1000;

/// Most members of one chat.
pub const MAX_CHAT_MEMBERS: usize = 1000;

/// Most devices one account may have.
pub const MAX_DEVICES_PER_USER: usize = 16;

/// Largest encoded device list.
pub const MAX_DEVICE_LIST_LEN: usize = 2048;

/// Most one-time prekeys (classical or KEM) in one upload.
pub const MAX_PREKEYS_PER_UPLOAD: usize = 100;

/// Longest user name in bytes.
pub const MAX_USER_NAME_LEN: usize = 32;

/// Longest invite token in bytes.
pub const MAX_TOKEN_LEN: usize = 128;

/// Longest client agent string in bytes.
pub const MAX_AGENT_LEN: usize = 128;

/// Longest human-readable error text in bytes.
pub const MAX_ERROR_MESSAGE_LEN: usize = 512;

/// Most cursors in one ack or sync request.
pub const MAX_CURSORS: usize = 1000;

/// Most entries in one sync page.
pub const MAX_SYNC_ENTRIES: usize = 500;

/// Most chats returned by one chat listing.
pub const MAX_CHATS_PER_LIST: usize = 10_000;

/// Most users in one presence subscription.
pub const MAX_PRESENCE_SUBSCRIPTIONS: usize = 1000;

/// Largest blob chunk in one frame (256 KiB).
pub const MAX_BLOB_CHUNK_LEN: usize = 256 * 1024;

/// Largest blob the protocol can describe (2 GiB); relays set lower limits.
pub const MAX_BLOB_LEN: u64 = 2 * 1024 * 1024 * 1024;

/// Longest push endpoint URL.
pub const MAX_PUSH_URL_LEN: usize = 2048;

/// Largest provisioning message.
pub const MAX_PROVISIONING_LEN: usize = 16 * 1024;

/// Domain separation for the connection authentication signature:
/// the device signs `AUTH_SIGNATURE_CONTEXT || challenge || exporter`.
pub const AUTH_SIGNATURE_CONTEXT: &[u8] = b"tern/v1/connection-auth\0";

/// TLS exporter label used to bind the authentication signature to the
/// QUIC connection (RFC 5705 / RFC 8446 section 7.5).
pub const AUTH_EXPORTER_LABEL: &[u8] = b"EXPORTER-tern-auth-v1";

/// Length of the TLS exporter value mixed into the authentication signature.
pub const AUTH_EXPORTER_LEN: usize = 32;

/// Domain separation for device-list signatures: the account key signs
/// `DEVICE_LIST_SIGNATURE_CONTEXT || encoded DeviceList`.
pub const DEVICE_LIST_SIGNATURE_CONTEXT: &[u8] = b"tern/v1/device-list\0";
