//! One suite of store tests that every backend must pass. A backend's own
//! tests implement [`Backend`] and invoke [`conformance_suite!`]; each test
//! here then runs against it. Tests of one backend's internals (its schema,
//! migrations, on-disk layout) stay with that backend.

use bytes::Bytes;
use tern_protocol::wire::{ChatKind, DeviceCiphertext, SignedDeviceList};
use tern_protocol::{ChatId, ClientMessageId, UserId};

use crate::error::{RelayError, StoreError};
use tern_protocol::wire::{KemPrekey, OneTimePrekey, SignedPrekey};

use crate::store::{
    Appended, DeviceAddr, DeviceListUpdate, LogAppend, MembershipAppend, MessageAppend, NewAccount,
    PrekeyCounts, PrekeyUpload, Store,
};

/// A store under test.
pub(crate) trait Backend: Sized {
    /// A new, empty store in which each device may have `queue_quota`
    /// bytes queued.
    fn fresh(queue_quota: u64) -> Self;
    /// The store.
    fn store(&self) -> &dyn Store;
    /// Closes the store and opens it again on the same data.
    fn reopen(&mut self);
}

/// Runs every test of the suite against `$backend`.
macro_rules! conformance_suite {
    ($backend:ty) => {
        mod conformance {
            use crate::store::conformance as suite;
            $crate::store::conformance::conformance_suite!(@tests $backend;
                a_resend_in_the_same_batch_gets_the_original_and_leaves_no_gap,
                seqs_continue_after_reopening,
                a_resend_after_the_sender_left_still_gets_its_original,
                the_queue_quota_is_recomputed_after_acknowledgements,
                seqs_keep_increasing_after_retention_emptied_a_chat,
                a_device_added_to_the_list_starts_at_the_link_point,
                only_admins_change_a_group_and_the_eldest_member_inherits,
                cursors_name_only_member_chats_and_stop_at_the_end,
                names_ids_invites_and_list_versions_are_unique,
                a_one_time_prekey_is_handed_out_once,
                a_refused_creation_leaves_no_chat_behind,
            );
        }
    };
    (@tests $backend:ty; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                suite::$name::<$backend>();
            }
        )*
    };
}
pub(crate) use conformance_suite;

/// The group chat of the suite.
pub(crate) const CHAT: ChatId = ChatId([7; 16]);

/// Default queue quota: large enough never to matter.
const NO_QUOTA: u64 = u64::MAX;

/// Creates account `u`, named `user{u}`, with one device (device 1).
pub(crate) fn account(store: &dyn Store, u: u8) {
    store
        .create_account(&new_account(&format!("user{u}"), u, None))
        .unwrap();
}

/// Account `u` named `name` with one device (device 1), registering with
/// `invite`.
fn new_account(name: &str, u: u8, invite: Option<[u8; 32]>) -> NewAccount {
    NewAccount {
        user_name: name.into(),
        account_key: [u; 32],
        list: DeviceListUpdate {
            user_id: UserId([u; 16]),
            signed: SignedDeviceList::default(),
            version: 1,
            devices: vec![(1, [u; 32])],
        },
        device_id: 1,
        invite_hash: invite,
    }
}

/// A store with accounts 1, 2, 3 (one device each) in a group chat that
/// account 1 created.
fn group<B: Backend>(queue_quota: u64) -> B {
    let backend = B::fresh(queue_quota);
    populate_group(backend.store());
    backend
}

/// Accounts 1, 2, 3 (one device each) in the group chat [`CHAT`] that
/// account 1 creates.
pub(crate) fn populate_group(store: &dyn Store) {
    for u in 1..=3 {
        account(store, u);
    }
    let create = membership(1, Some(ChatKind::Group), &[1, 2, 3], &[], &[]);
    append(store, vec![create]).remove(0).unwrap();
}

/// A membership change by device 1 of user `actor`.
fn membership(
    actor: u8,
    create: Option<ChatKind>,
    add: &[u8],
    remove: &[u8],
    promote: &[u8],
) -> LogAppend {
    let ids = |us: &[u8]| us.iter().map(|u| UserId([*u; 16])).collect();
    LogAppend::Membership(MembershipAppend {
        chat_id: CHAT,
        actor: DeviceAddr::test(actor, 1),
        create,
        added: ids(add),
        removed: ids(remove),
        promote: ids(promote),
    })
}

/// Message `id` in [`CHAT`] from device 1 of user `from` to device 1 of
/// each of `to`.
pub(crate) fn message(from: u8, id: u8, to: &[u8], len: usize) -> LogAppend {
    message_in(
        CHAT,
        DeviceAddr::test(from, 1),
        ClientMessageId([id; 16]),
        to,
        len,
    )
}

/// A message in `chat_id` to device 1 of each of `to`; its ciphertexts are
/// [`ciphertext`]s of the id's last byte.
pub(crate) fn message_in(
    chat_id: ChatId,
    sender: DeviceAddr,
    client_message_id: ClientMessageId,
    to: &[u8],
    len: usize,
) -> LogAppend {
    let id = client_message_id.0[15];
    LogAppend::Message(MessageAppend {
        chat_id,
        sender,
        client_message_id,
        device_ciphertexts: to
            .iter()
            .map(|u| DeviceCiphertext {
                user_id: Bytes::copy_from_slice(&[*u; 16]),
                device_id: 1,
                ciphertext: Bytes::from(ciphertext(id, *u, len)),
            })
            .collect(),
        common_ciphertext: Bytes::new(),
    })
}

/// Message `id`'s ciphertext for user `to`: distinct per recipient.
pub(crate) fn ciphertext(id: u8, to: u8, len: usize) -> Vec<u8> {
    let mut c = vec![to; len];
    if let Some(first) = c.first_mut() {
        *first = id;
    }
    c
}

pub(crate) fn append(
    store: &dyn Store,
    items: Vec<LogAppend>,
) -> Vec<Result<Appended, StoreError>> {
    store.append_batch(&items, 1_000).unwrap()
}

/// Appends one message from device 1 of user `from`.
pub(crate) fn send(
    store: &dyn Store,
    from: u8,
    id: u8,
    to: &[u8],
    len: usize,
) -> Result<Appended, StoreError> {
    append(store, vec![message(from, id, to, len)]).remove(0)
}

/// The domain rule that refused an append, if one did.
pub(crate) fn refusal<T>(result: &Result<T, StoreError>) -> Option<&RelayError> {
    match result {
        Err(StoreError::Rejected(e)) => Some(e),
        _ => None,
    }
}

/// The seq of an append and whether it was a duplicate.
pub(crate) fn seq(result: &Result<Appended, StoreError>) -> (u64, bool) {
    let a = result.as_ref().unwrap();
    (a.seq, a.duplicate)
}

/// The seqs device `d` has not acknowledged.
fn pending(store: &dyn Store, d: DeviceAddr) -> Vec<u64> {
    let (entries, _) = store.read_log(d, &[], 100, 1 << 20).unwrap();
    entries.iter().map(|e| e.seq).collect()
}

/// Prekeys of a device: a signed and a last-resort KEM prekey (id 1),
/// one-time X25519 prekeys with the ids `one_time`, and one one-time KEM
/// prekey (id 20).
pub(crate) fn prekey_upload(one_time: std::ops::Range<u32>) -> PrekeyUpload {
    PrekeyUpload {
        signed_prekey: Some(SignedPrekey {
            id: 1,
            public_key: Bytes::from_static(&[1; 32]),
            signature: Bytes::from_static(&[2; 64]),
        }),
        one_time: one_time
            .map(|id| OneTimePrekey {
                id,
                public_key: Bytes::from(vec![id as u8; 32]),
            })
            .collect(),
        last_resort_kem: Some(KemPrekey {
            id: 1,
            public_key: Bytes::from_static(&[3; 8]),
            signature: Bytes::from_static(&[4; 64]),
        }),
        one_time_kem: vec![KemPrekey {
            id: 20,
            public_key: Bytes::from_static(&[5; 8]),
            signature: Bytes::from_static(&[6; 64]),
        }],
    }
}

pub(crate) fn a_resend_in_the_same_batch_gets_the_original_and_leaves_no_gap<B: Backend>() {
    let b = group::<B>(NO_QUOTA);
    let got = append(
        b.store(),
        vec![
            message(1, 1, &[2, 3], 10),
            message(1, 1, &[2, 3], 10),
            message(1, 2, &[2, 3], 10),
        ],
    );
    assert_eq!(seq(&got[0]), (2, false));
    assert_eq!(seq(&got[1]), (2, true));
    assert_eq!(seq(&got[2]), (3, false));
}

pub(crate) fn seqs_continue_after_reopening<B: Backend>() {
    let mut b = group::<B>(NO_QUOTA);
    send(b.store(), 1, 1, &[2, 3], 10).unwrap();
    b.reopen();
    let got = send(b.store(), 2, 9, &[1, 3], 10);
    assert_eq!(seq(&got), (3, false));
    assert_eq!(b.store().chat(&CHAT).unwrap().unwrap().last_seq, 3);
}

pub(crate) fn a_resend_after_the_sender_left_still_gets_its_original<B: Backend>() {
    let b = group::<B>(NO_QUOTA);
    let first = send(b.store(), 1, 1, &[2, 3], 10);
    append(b.store(), vec![membership(1, None, &[], &[1], &[])])
        .remove(0)
        .unwrap();
    let again = send(b.store(), 1, 1, &[2, 3], 10);
    assert_eq!(seq(&again), (seq(&first).0, true));
    let fresh = send(b.store(), 1, 2, &[2, 3], 10);
    assert!(matches!(refusal(&fresh), Some(RelayError::Forbidden(_))));
}

pub(crate) fn the_queue_quota_is_recomputed_after_acknowledgements<B: Backend>() {
    let b = group::<B>(100);
    let full = send(b.store(), 1, 1, &[2, 3], 60);
    assert_eq!(seq(&full), (2, false));
    let refused = send(b.store(), 1, 2, &[2, 3], 60);
    assert!(matches!(
        refusal(&refused),
        Some(RelayError::QuotaExceeded(_))
    ));
    for u in [2, 3] {
        b.store()
            .ack_cursors(DeviceAddr::test(u, 1), &[(CHAT, 2)])
            .unwrap();
    }
    let fits = send(b.store(), 1, 3, &[2, 3], 60);
    assert_eq!(seq(&fits), (3, false));
}

pub(crate) fn seqs_keep_increasing_after_retention_emptied_a_chat<B: Backend>() {
    let mut b = group::<B>(NO_QUOTA);
    send(b.store(), 1, 1, &[2, 3], 10).unwrap();
    for u in 1..=3 {
        b.store()
            .ack_cursors(DeviceAddr::test(u, 1), &[(CHAT, 2)])
            .unwrap();
    }
    assert_eq!(b.store().collect_garbage(0).unwrap(), 2);
    b.reopen();
    assert_eq!(b.store().chat(&CHAT).unwrap().unwrap().last_seq, 2);
    let got = send(b.store(), 2, 2, &[1, 3], 10);
    assert_eq!(seq(&got), (3, false));
}

pub(crate) fn a_device_added_to_the_list_starts_at_the_link_point<B: Backend>() {
    let b = group::<B>(NO_QUOTA);
    let store = b.store();
    send(store, 1, 1, &[2, 3], 10).unwrap();
    send(store, 1, 2, &[2, 3], 10).unwrap();
    let list = |version: u64| DeviceListUpdate {
        user_id: UserId([2; 16]),
        signed: SignedDeviceList::default(),
        version,
        devices: vec![(1, [2; 32]), (2, [9; 32])],
    };
    store.replace_device_list(&list(2)).unwrap();
    let linked = DeviceAddr::test(2, 2);
    assert!(
        pending(store, linked).is_empty(),
        "nothing from before the link"
    );

    let to_all = LogAppend::Message(MessageAppend {
        chat_id: CHAT,
        sender: DeviceAddr::test(1, 1),
        client_message_id: ClientMessageId([3; 16]),
        device_ciphertexts: [(2, 1), (2, 2), (3, 1)]
            .iter()
            .map(|(u, d)| DeviceCiphertext {
                user_id: Bytes::copy_from_slice(&[*u; 16]),
                device_id: *d,
                ciphertext: Bytes::from(vec![*u + *d as u8; 10]),
            })
            .collect(),
        common_ciphertext: Bytes::new(),
    });
    let after_link = seq(&append(store, vec![to_all]).remove(0)).0;
    // A later list that keeps the device does not move its cursor again.
    store.replace_device_list(&list(3)).unwrap();
    assert_eq!(pending(store, linked), [after_link]);
    let (entries, _) = store.read_log(linked, &[], 100, 1 << 20).unwrap();
    assert_eq!(entries[0].ciphertext.as_ref(), &[4u8; 10][..]);
    // The account's first device still has everything it did not acknowledge.
    assert_eq!(
        pending(store, DeviceAddr::test(2, 1)),
        [1, 2, 3, after_link]
    );
}

pub(crate) fn only_admins_change_a_group_and_the_eldest_member_inherits<B: Backend>() {
    let b = group::<B>(NO_QUOTA);
    let store = b.store();
    account(store, 4);
    let user = |u: u8| UserId([u; 16]);
    assert_eq!(store.chat(&CHAT).unwrap().unwrap().admins, [user(1)]);
    for forbidden in [
        membership(2, None, &[], &[3], &[]),
        membership(2, None, &[4], &[], &[]),
        membership(2, None, &[], &[], &[2]),
    ] {
        let got = append(store, vec![forbidden]).remove(0);
        assert!(matches!(refusal(&got), Some(RelayError::Forbidden(_))));
    }
    let not_member = append(store, vec![membership(1, None, &[], &[], &[4])]).remove(0);
    assert!(matches!(
        refusal(&not_member),
        Some(RelayError::BadRequest(_))
    ));
    // Adding and promoting in one change; then the admins leave.
    let promoted = append(store, vec![membership(1, None, &[4], &[], &[4])]).remove(0);
    assert_eq!(promoted.unwrap().promoted, [user(4)]);
    append(store, vec![membership(3, None, &[], &[3], &[])])
        .remove(0)
        .unwrap();
    append(store, vec![membership(4, None, &[], &[1], &[])])
        .remove(0)
        .unwrap();
    let heir = append(store, vec![membership(4, None, &[], &[4], &[])]).remove(0);
    assert_eq!(heir.unwrap().promoted, [user(2)], "the last one standing");
    let chat = store.chat(&CHAT).unwrap().unwrap();
    assert_eq!((chat.members, chat.admins), (vec![user(2)], vec![user(2)]));
}

pub(crate) fn cursors_name_only_member_chats_and_stop_at_the_end<B: Backend>() {
    let b = group::<B>(NO_QUOTA);
    let store = b.store();
    account(store, 4);
    send(store, 1, 1, &[2, 3], 10).unwrap();
    let outsider = DeviceAddr::test(4, 1);
    let ack = store.ack_cursors(outsider, &[(CHAT, 1)]);
    assert!(matches!(refusal(&ack), Some(RelayError::Forbidden(_))));
    let sync = store.read_log(outsider, &[(CHAT, 0)], 100, 1 << 20);
    assert!(matches!(refusal(&sync), Some(RelayError::Forbidden(_))));
    // All or nothing: the member's valid cursor did not move either.
    let member = DeviceAddr::test(2, 1);
    let mixed = store.ack_cursors(member, &[(CHAT, 2), (ChatId([9; 16]), 1)]);
    assert!(matches!(refusal(&mixed), Some(RelayError::Forbidden(_))));
    assert_eq!(pending(store, member), [1, 2]);
    // Far beyond the end is held at the end: the next entry still arrives.
    store.ack_cursors(member, &[(CHAT, u64::MAX)]).unwrap();
    assert!(pending(store, member).is_empty());
    let next = seq(&send(store, 1, 2, &[2, 3], 10)).0;
    assert_eq!(pending(store, member), [next]);
}

pub(crate) fn names_ids_invites_and_list_versions_are_unique<B: Backend>() {
    let b = B::fresh(NO_QUOTA);
    let store = b.store();
    account(store, 1);
    for taken in [new_account("user1", 2, None), new_account("other", 1, None)] {
        let got = store.create_account(&taken);
        assert!(matches!(refusal(&got), Some(RelayError::Conflict(_))));
    }
    store.create_invite(&[5; 32], 0).unwrap();
    store
        .create_account(&new_account("invited", 3, Some([5; 32])))
        .unwrap();
    let again = store.create_account(&new_account("second", 4, Some([5; 32])));
    assert!(matches!(refusal(&again), Some(RelayError::InviteRequired)));
    assert_eq!(
        store.account_by_name("invited").unwrap().unwrap().user_id,
        UserId([3; 16])
    );
    let list = |version| DeviceListUpdate {
        user_id: UserId([1; 16]),
        signed: SignedDeviceList::default(),
        version,
        devices: vec![(2, [8; 32])],
    };
    store.replace_device_list(&list(2)).unwrap();
    let stale = store.replace_device_list(&list(2));
    assert!(matches!(refusal(&stale), Some(RelayError::Conflict(_))));
    let devices = store.devices(&UserId([1; 16])).unwrap();
    assert_eq!(
        devices.iter().map(|d| d.device_id).collect::<Vec<_>>(),
        [2],
        "device 1 dropped"
    );
    assert!(!devices[0].registered);
}

pub(crate) fn a_one_time_prekey_is_handed_out_once<B: Backend>() {
    let b = B::fresh(NO_QUOTA);
    let store = b.store();
    account(store, 1);
    let device = DeviceAddr::test(1, 1);
    let upload = prekey_upload(10..12);
    let stock = store.upload_prekeys(device, &upload, 100).unwrap();
    assert_eq!(
        stock,
        PrekeyCounts {
            one_time: 2,
            one_time_kem: 1
        }
    );
    let too_many = store.upload_prekeys(device, &upload, 1);
    assert!(matches!(
        refusal(&too_many),
        Some(RelayError::QuotaExceeded(_))
    ));
    assert_eq!(
        store.prekey_counts(device).unwrap(),
        stock,
        "a refused upload stores nothing"
    );

    let user = UserId([1; 16]);
    let first = store.claim_bundles(&user, &[], &mut |_| true).unwrap();
    let bundle = &first.bundles[0];
    assert_eq!(bundle.one_time_prekey.as_ref().map(|k| k.id), Some(10));
    assert!(!bundle.kem_prekey_is_last_resort);
    let second = store.claim_bundles(&user, &[1], &mut |_| true).unwrap();
    assert_eq!(
        second.bundles[0].one_time_prekey.as_ref().map(|k| k.id),
        Some(11)
    );
    assert!(
        second.bundles[0].kem_prekey_is_last_resort,
        "the one KEM prekey went first"
    );
    let withheld = store.claim_bundles(&user, &[], &mut |_| false).unwrap();
    assert!(withheld.bundles[0].one_time_prekey.is_none());
    assert_eq!(withheld.remaining, [(1, PrekeyCounts::default())]);
    let nobody = store.claim_bundles(&UserId([9; 16]), &[], &mut |_| true);
    assert!(matches!(refusal(&nobody), Some(RelayError::NotFound(_))));
}

pub(crate) fn a_refused_creation_leaves_no_chat_behind<B: Backend>() {
    let b = B::fresh(NO_QUOTA);
    let store = b.store();
    account(store, 1);
    account(store, 2);
    let with_stranger = membership(1, Some(ChatKind::Group), &[1, 2, 9], &[], &[]);
    let refused = append(store, vec![with_stranger]).remove(0);
    assert!(matches!(refusal(&refused), Some(RelayError::NotFound(_))));
    assert!(store.chat(&CHAT).unwrap().is_none());
    let retry = membership(1, Some(ChatKind::Group), &[1, 2], &[], &[]);
    let created = append(store, vec![retry]).remove(0);
    assert_eq!(seq(&created), (1, false));
}
