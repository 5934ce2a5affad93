//! The domain rules of the chat log, as pure functions of what a backend
//! reads inside its append transaction. A backend loads the state, asks
//! the rule, and stores the outcome: every backend enforces the same rules
//! by calling the same code, and the rules are tested without a database.

use std::collections::BTreeSet;

use tern_protocol::UserId;
use tern_protocol::limits::MAX_CHAT_MEMBERS;
use tern_protocol::wire::{ChatKind, DeviceAddress, DeviceCiphertext, MismatchedDevices};

use super::{DeviceAddr, MembershipAppend, MessageAppend};
use crate::error::{RelayError, StoreError};

/// The send rule: per-device ciphertexts must address exactly every member
/// device except the sender's own. `member_devices` are all devices of all
/// members.
pub fn check_recipients(
    member_devices: impl IntoIterator<Item = DeviceAddr>,
    sender: DeviceAddr,
    ciphertexts: &[DeviceCiphertext],
) -> Result<(), RelayError> {
    let mut expected: BTreeSet<DeviceAddr> = member_devices.into_iter().collect();
    expected.remove(&sender);
    let mut addressed = BTreeSet::new();
    for dc in ciphertexts {
        let device = DeviceAddr {
            user: UserId::from_slice("DeviceCiphertext.user_id", &dc.user_id)?,
            device: dc.device_id,
        };
        if !addressed.insert(device) {
            return Err(RelayError::BadRequest("a device is addressed twice"));
        }
    }
    if expected == addressed {
        return Ok(());
    }
    let address = |d: &DeviceAddr| DeviceAddress {
        user_id: d.user.to_wire(),
        device_id: d.device,
    };
    Err(RelayError::MismatchedDevices(MismatchedDevices {
        missing: expected.difference(&addressed).map(address).collect(),
        extra: addressed.difference(&expected).map(address).collect(),
    }))
}

/// Bytes a message adds to `device`'s queue: the ciphertext addressed to it
/// and the common one; nothing for the sending device itself.
pub fn queued_bytes(
    sender: DeviceAddr,
    ciphertexts: &[DeviceCiphertext],
    common_len: usize,
    device: DeviceAddr,
) -> u64 {
    if device == sender {
        return 0;
    }
    let own = ciphertexts
        .iter()
        .find(|dc| dc.device_id == device.device && dc.user_id[..] == device.user.0[..])
        .map_or(0, |dc| dc.ciphertext.len());
    (own + common_len) as u64
}

/// The rules a message must pass in a chat with `members` (account ids)
/// and their `devices`: its sender is a member; its per-device ciphertexts,
/// if any, address exactly the member devices but the sender's
/// ([`check_recipients`]); and every recipient device has room for what it
/// adds (`fits(device, bytes)`, the backend's queue quota). Returns what
/// the message adds to each recipient's queue.
pub fn check_message(
    members: &[UserId],
    devices: &[DeviceAddr],
    m: &MessageAppend,
    fits: &mut dyn FnMut(DeviceAddr, u64) -> Result<bool, StoreError>,
) -> Result<Vec<(DeviceAddr, u64)>, StoreError> {
    if !members.contains(&m.sender.user) {
        return Err(RelayError::Forbidden("not a member of this chat").into());
    }
    if !m.device_ciphertexts.is_empty() {
        check_recipients(devices.iter().copied(), m.sender, &m.device_ciphertexts)?;
    }
    let common = m.common_ciphertext.len();
    let sizes: Vec<(DeviceAddr, u64)> = devices
        .iter()
        .filter(|d| **d != m.sender)
        .map(|d| {
            (
                *d,
                queued_bytes(m.sender, &m.device_ciphertexts, common, *d),
            )
        })
        .collect();
    for (device, size) in &sizes {
        if !fits(*device, *size)? {
            return Err(RelayError::QuotaExceeded(
                "a recipient device has too many undelivered bytes queued",
            )
            .into());
        }
    }
    Ok(sizes)
}

/// The refusal of a `Sync` or `AckDelivered` whose cursors name a chat the
/// device's account is not a member of (or that does not exist).
pub fn cursor_outside_membership() -> RelayError {
    RelayError::Forbidden("a cursor names a chat you are not a member of")
}

/// A member of a chat as the membership rules see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    /// The account.
    pub user: UserId,
    /// Seq of the entry that added it.
    pub joined_seq: u64,
    /// Whether it is an admin of the group.
    pub admin: bool,
}

/// What a membership entry does to a chat's member table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MembershipEffect {
    /// Accounts that become members (joining at the entry's seq).
    pub joined: Vec<UserId>,
    /// Accounts that stop being members.
    pub left: Vec<UserId>,
    /// Members that become admins, in the order decided.
    pub promoted: Vec<UserId>,
}

/// The creation of a chat by `creator` with `members` (the creator
/// included): a group's creator is its first admin.
pub fn create_chat(kind: ChatKind, creator: UserId, members: &[UserId]) -> MembershipEffect {
    MembershipEffect {
        joined: members.to_vec(),
        left: Vec::new(),
        promoted: if kind == ChatKind::Group {
            vec![creator]
        } else {
            Vec::new()
        },
    }
}

/// A change of an existing chat's members, checked against its `kind` and
/// current `members`:
/// - only members change a chat, and only a group's;
/// - admins add, remove anyone and promote; a member may remove itself;
/// - at most `MAX_CHAT_MEMBERS` members; only members may be promoted;
/// - a group left without an admin gets the longest-standing member
///   (lowest join seq, then lowest account id) as admin.
pub fn change_members(
    kind: ChatKind,
    members: &[Member],
    change: &MembershipAppend,
) -> Result<MembershipEffect, RelayError> {
    let actor = change.actor.user;
    let Some(me) = members.iter().find(|m| m.user == actor) else {
        return Err(RelayError::Forbidden("not a member of this chat"));
    };
    if kind == ChatKind::Direct {
        return Err(RelayError::Forbidden("direct chat members cannot change"));
    }
    let leaving = change.added.is_empty() && change.promote.is_empty() && change.removed == [actor];
    if !leaving && !me.admin {
        return Err(RelayError::Forbidden(
            "only group admins add or remove others or promote",
        ));
    }
    let is_member = |u: &UserId| members.iter().any(|m| m.user == *u);
    let joined: Vec<UserId> = change
        .added
        .iter()
        .filter(|u| !is_member(u))
        .copied()
        .collect();
    if members.len() + joined.len() > MAX_CHAT_MEMBERS {
        return Err(RelayError::QuotaExceeded("too many chat members"));
    }
    let left: Vec<UserId> = change
        .removed
        .iter()
        .filter(|u| is_member(u))
        .copied()
        .collect();
    // Who remains, oldest first; those joining now come last.
    let mut remaining: Vec<Member> = members
        .iter()
        .copied()
        .chain(joined.iter().map(|user| Member {
            user: *user,
            joined_seq: u64::MAX,
            admin: false,
        }))
        .filter(|m| !change.removed.contains(&m.user))
        .collect();
    remaining.sort_by_key(|m| (m.joined_seq, m.user));
    let mut promoted = Vec::new();
    for user in &change.promote {
        let Some(member) = remaining.iter_mut().find(|m| m.user == *user) else {
            return Err(RelayError::BadRequest("only members can be promoted"));
        };
        if !member.admin {
            member.admin = true;
            promoted.push(*user);
        }
    }
    if !remaining.iter().any(|m| m.admin)
        && let Some(eldest) = remaining.first()
    {
        promoted.push(eldest.user);
    }
    Ok(MembershipEffect {
        joined,
        left,
        promoted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ct(d: DeviceAddr) -> DeviceCiphertext {
        DeviceCiphertext {
            user_id: d.user.to_wire(),
            device_id: d.device,
            ciphertext: bytes::Bytes::from_static(b"c"),
        }
    }

    #[test]
    fn recipients_must_be_every_member_device_but_the_sender() {
        let members = [
            DeviceAddr::test(1, 1),
            DeviceAddr::test(1, 2),
            DeviceAddr::test(2, 1),
        ];
        let sender = DeviceAddr::test(1, 1);
        check_recipients(
            members,
            sender,
            &[ct(DeviceAddr::test(1, 2)), ct(DeviceAddr::test(2, 1))],
        )
        .unwrap();

        let Err(RelayError::MismatchedDevices(m)) = check_recipients(
            members,
            sender,
            &[ct(DeviceAddr::test(2, 1)), ct(DeviceAddr::test(3, 1))],
        ) else {
            panic!("expected a mismatch")
        };
        assert_eq!(m.missing.len(), 1);
        assert_eq!(m.missing[0].device_id, 2);
        assert_eq!(m.extra.len(), 1);
        assert_eq!(&m.extra[0].user_id[..], &[3; 16]);

        let twice = check_recipients(
            members,
            sender,
            &[ct(DeviceAddr::test(1, 2)), ct(DeviceAddr::test(1, 2))],
        );
        assert!(matches!(twice, Err(RelayError::BadRequest(_))));
    }

    fn user(u: u8) -> UserId {
        UserId([u; 16])
    }

    fn member(u: u8, joined_seq: u64, admin: bool) -> Member {
        Member {
            user: user(u),
            joined_seq,
            admin,
        }
    }

    fn change(actor: u8, add: &[u8], remove: &[u8], promote: &[u8]) -> MembershipAppend {
        let ids = |us: &[u8]| us.iter().map(|u| user(*u)).collect();
        MembershipAppend {
            chat_id: tern_protocol::ChatId([7; 16]),
            actor: DeviceAddr::test(actor, 1),
            create: None,
            added: ids(add),
            removed: ids(remove),
            promote: ids(promote),
        }
    }

    /// Alice (admin) created the group with Bob; Carol joined later.
    fn group() -> Vec<Member> {
        vec![member(1, 1, true), member(2, 1, false), member(3, 5, false)]
    }

    fn refused(result: Result<MembershipEffect, RelayError>) -> &'static str {
        match result {
            Err(RelayError::Forbidden(why) | RelayError::BadRequest(why)) => why,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_message_is_sized_per_recipient_and_held_to_the_quota() {
        let devices = [
            DeviceAddr::test(1, 1),
            DeviceAddr::test(1, 2),
            DeviceAddr::test(2, 1),
        ];
        let members = [user(1), user(2)];
        let mut m = MessageAppend {
            chat_id: tern_protocol::ChatId([7; 16]),
            sender: DeviceAddr::test(1, 1),
            client_message_id: tern_protocol::ClientMessageId([1; 16]),
            device_ciphertexts: vec![ct(DeviceAddr::test(1, 2)), ct(DeviceAddr::test(2, 1))],
            common_ciphertext: bytes::Bytes::from_static(b"common"),
        };
        let sizes = check_message(&members, &devices, &m, &mut |_, _| Ok(true)).unwrap();
        assert_eq!(
            sizes,
            [(devices[1], 7), (devices[2], 7)],
            "own 1 byte + common 6"
        );
        let full = check_message(&members, &devices, &m, &mut |d, _| Ok(d != devices[2]));
        assert!(matches!(
            full,
            Err(StoreError::Rejected(e)) if matches!(*e, RelayError::QuotaExceeded(_))
        ));
        m.sender = DeviceAddr::test(3, 1);
        let outsider = check_message(&members, &devices, &m, &mut |_, _| Ok(true));
        assert!(matches!(
            outsider,
            Err(StoreError::Rejected(e)) if matches!(*e, RelayError::Forbidden(_))
        ));
    }

    #[test]
    fn a_group_creator_is_its_first_admin() {
        let created = create_chat(ChatKind::Group, user(1), &[user(1), user(2)]);
        assert_eq!(created.promoted, [user(1)]);
        let direct = create_chat(ChatKind::Direct, user(1), &[user(1), user(2)]);
        assert!(direct.promoted.is_empty());
    }

    #[test]
    fn members_who_are_not_admins_may_only_leave() {
        let g = group();
        for attempt in [
            change(2, &[4], &[], &[]),
            change(2, &[], &[3], &[]),
            change(2, &[], &[2, 3], &[]),
            change(2, &[], &[], &[2]),
        ] {
            assert!(refused(change_members(ChatKind::Group, &g, &attempt)).contains("admins"));
        }
        let left = change_members(ChatKind::Group, &g, &change(2, &[], &[2], &[])).unwrap();
        assert_eq!(left.left, [user(2)]);
        assert!(left.promoted.is_empty());
    }

    #[test]
    fn outsiders_and_direct_chats_are_refused() {
        let g = group();
        assert!(
            refused(change_members(
                ChatKind::Group,
                &g,
                &change(9, &[], &[9], &[])
            ))
            .contains("member")
        );
        assert!(
            refused(change_members(
                ChatKind::Direct,
                &g,
                &change(1, &[4], &[], &[])
            ))
            .contains("direct")
        );
    }

    #[test]
    fn admins_add_remove_and_promote_members_only() {
        let g = group();
        let effect =
            change_members(ChatKind::Group, &g, &change(1, &[4, 2], &[3], &[4, 1])).unwrap();
        assert_eq!(effect.joined, [user(4)], "a member added again is no news");
        assert_eq!(effect.left, [user(3)]);
        assert_eq!(
            effect.promoted,
            [user(4)],
            "an admin promoted again is no news"
        );
        let outsider = change_members(ChatKind::Group, &g, &change(1, &[], &[], &[9]));
        assert!(refused(outsider).contains("only members"));
        let removed_then_promoted =
            change_members(ChatKind::Group, &g, &change(1, &[], &[3], &[3]));
        assert!(refused(removed_then_promoted).contains("only members"));
    }

    #[test]
    fn the_longest_standing_member_inherits_a_group_without_admins() {
        let g = vec![member(1, 1, true), member(3, 1, false), member(2, 4, false)];
        let effect = change_members(ChatKind::Group, &g, &change(1, &[], &[1], &[])).unwrap();
        assert_eq!(effect.promoted, [user(3)], "joined first");
        let tie = vec![member(1, 1, true), member(3, 2, false), member(2, 2, false)];
        let effect = change_members(ChatKind::Group, &tie, &change(1, &[], &[1], &[])).unwrap();
        assert_eq!(effect.promoted, [user(2)], "the lower id among equals");
        let alone = vec![member(1, 1, true)];
        let effect = change_members(ChatKind::Group, &alone, &change(1, &[], &[1], &[])).unwrap();
        assert!(effect.promoted.is_empty(), "nobody is left to inherit");
    }

    #[test]
    fn groups_are_bounded() {
        let full: Vec<Member> = (0..MAX_CHAT_MEMBERS)
            .map(|i| Member {
                user: UserId([
                    (i % 256) as u8,
                    (i / 256) as u8,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    1,
                ]),
                joined_seq: 1,
                admin: i == 0,
            })
            .collect();
        let mut add = change(0, &[], &[], &[]);
        add.actor.user = full[0].user;
        add.added = vec![user(0xee)];
        assert!(matches!(
            change_members(ChatKind::Group, &full, &add),
            Err(RelayError::QuotaExceeded(_))
        ));
    }
}
