//! Verification marks shared between the account's own devices (the
//! `VerificationState` content, client.md §3).

use crate::model::{ClientError, ClientEvent, UserId};
use crate::store::{Tx, Verification};

/// The stored state for a verification mark: verified, or the default
/// (never verified).
pub(crate) fn mark(verified: bool) -> Verification {
    if verified {
        Verification::Verified
    } else {
        Verification::Default
    }
}

/// Another own device marked `user` verified or not: adopted only if this
/// device pinned the same account key (a decision about another key says
/// nothing about this one) and it changes something.
pub(crate) fn apply(
    tx: &Tx<'_>,
    user_id: UserId,
    identity_key: &[u8; 32],
    verified: bool,
) -> Result<Vec<ClientEvent>, ClientError> {
    let Some(contact) = tx.contact(&user_id)? else {
        return Ok(Vec::new());
    };
    let state = mark(verified);
    if contact.identity_key.as_deref() != Some(identity_key.as_slice())
        || contact.verification == state
    {
        return Ok(Vec::new());
    }
    tx.set_verification(&user_id, state)?;
    Ok(vec![ClientEvent::VerificationChanged { user_id, verified }])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::store::{Contact, KeySource, Store};

    const BOB: UserId = [2; 16];
    const KEY: [u8; 32] = [7; 32];

    fn store_with_bob(key: Option<[u8; 32]>) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("db"), KeySource::raw([4; 32])).unwrap();
        store
            .transaction(|tx| {
                tx.upsert_contact(&Contact {
                    user_id: BOB,
                    display_name: "bob".into(),
                    identity_key: key.map(|k| k.to_vec()),
                    verification: Verification::Default,
                })
            })
            .unwrap();
        (dir, store)
    }

    fn apply_to(store: &Store, user: UserId, key: &[u8; 32], verified: bool) -> usize {
        store
            .transaction(|tx| apply(tx, user, key, verified))
            .unwrap()
            .len()
    }

    fn bob_state(store: &Store) -> Verification {
        store
            .transaction(|tx| tx.contact(&BOB))
            .unwrap()
            .unwrap()
            .verification
    }

    #[test]
    fn a_mark_for_the_pinned_key_is_adopted_once() {
        let (_dir, store) = store_with_bob(Some(KEY));
        assert_eq!(apply_to(&store, BOB, &KEY, true), 1);
        assert_eq!(bob_state(&store), Verification::Verified);
        assert_eq!(apply_to(&store, BOB, &KEY, true), 0, "nothing changes");
        assert_eq!(apply_to(&store, BOB, &KEY, false), 1);
        assert_eq!(bob_state(&store), Verification::Default);
    }

    #[test]
    fn a_mark_for_another_key_or_an_unknown_contact_is_ignored() {
        let (_dir, store) = store_with_bob(Some(KEY));
        assert_eq!(apply_to(&store, BOB, &[8; 32], true), 0);
        assert_eq!(bob_state(&store), Verification::Default);
        assert_eq!(apply_to(&store, [3; 16], &KEY, true), 0);
        let (_dir, store) = store_with_bob(None);
        assert_eq!(apply_to(&store, BOB, &KEY, true), 0);
        assert_eq!(bob_state(&store), Verification::Default);
    }
}
