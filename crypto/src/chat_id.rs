//! Chat ids that both sides derive without talking: the direct chat of two
//! users and a user's note-to-self chat (`docs/crypto.md` §14).
//!
//! ```text
//! direct chat = SHA-256(DIRECT_CHAT_LABEL ‖ lower user id ‖ higher user id)[..16]
//! self chat   = SHA-256(SELF_CHAT_LABEL ‖ user id)[..16]
//! ```
//!
//! User ids compare as byte strings.

use sha2::{Digest, Sha256};

use crate::consts::{DIRECT_CHAT_LABEL, SELF_CHAT_LABEL};

/// Length of user and chat ids.
pub const ID_LEN: usize = 16;

/// The direct chat of users `a` and `b` (the same whichever comes first).
pub fn direct_chat_id(a: &[u8; ID_LEN], b: &[u8; ID_LEN]) -> [u8; ID_LEN] {
    let (low, high) = if a <= b { (a, b) } else { (b, a) };
    truncated(
        Sha256::new()
            .chain_update(DIRECT_CHAT_LABEL)
            .chain_update(low)
            .chain_update(high),
    )
}

/// The note-to-self chat of `user`, where a user's devices sync their own
/// state.
pub fn self_chat_id(user: &[u8; ID_LEN]) -> [u8; ID_LEN] {
    truncated(
        Sha256::new()
            .chain_update(SELF_CHAT_LABEL)
            .chain_update(user),
    )
}

fn truncated(hash: Sha256) -> [u8; ID_LEN] {
    let mut id = [0u8; ID_LEN];
    id.copy_from_slice(&hash.finalize()[..ID_LEN]);
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_chat_ids_are_symmetric_and_distinct_from_self_chats() {
        let (a, b) = ([1u8; 16], [2u8; 16]);
        assert_eq!(direct_chat_id(&a, &b), direct_chat_id(&b, &a));
        assert_ne!(direct_chat_id(&a, &b), direct_chat_id(&a, &a));
        assert_ne!(self_chat_id(&a), self_chat_id(&b));
        assert_ne!(self_chat_id(&a), direct_chat_id(&a, &a));
    }
}
