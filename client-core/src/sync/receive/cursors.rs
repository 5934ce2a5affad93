//! Cursors this device names to the relay (`Sync`, `AckDelivered`).
//!
//! The relay refuses (`FORBIDDEN`) a request whose cursors name a chat the
//! account is not a member of, so only chats this device knows the account
//! belongs to are named. When the relay still refuses, this device missed
//! that the account left a chat (removed while it was offline, or by
//! another device): the local member lists are reconciled with the relay's
//! chat list and the request is made once more.

use bytes::Bytes;
use tern_protocol::wire::{Cursor, ErrorCode, ListChats, request, response};

use super::{MembershipChange, apply_membership};
use crate::model::{ChatId, ClientError, ClientEvent};
use crate::net::NetError;
use crate::store::StoreError;
use crate::sync::{Core, Relay};

/// Sends the request `build` makes of `cursors` (those of chats the account
/// belongs to), reconciling membership and retrying once on `FORBIDDEN`.
pub(super) async fn request<R: Relay + ?Sized>(
    core: &Core,
    conn: &R,
    cursors: &[(ChatId, u64)],
    build: impl Fn(Vec<Cursor>) -> request::Kind,
) -> Result<response::Kind, ClientError> {
    match conn.request(build(member_cursors(core, cursors)?)).await {
        Err(NetError::Relay {
            code: ErrorCode::Forbidden,
            ..
        }) => {
            reconcile_membership(core, conn).await?;
            Ok(conn.request(build(member_cursors(core, cursors)?)).await?)
        }
        answer => Ok(answer?),
    }
}

/// The cursors of chats whose local member list names this account.
fn member_cursors(core: &Core, cursors: &[(ChatId, u64)]) -> Result<Vec<Cursor>, ClientError> {
    let own = core.account.user_id;
    let kept = core.store.transaction(|tx| {
        let mut kept = Vec::with_capacity(cursors.len());
        for (chat, seq) in cursors {
            if tx.chat_members(chat)?.contains(&own) {
                kept.push(Cursor {
                    chat_id: Bytes::copy_from_slice(chat),
                    seq: *seq,
                });
            }
        }
        Ok::<_, StoreError>(kept)
    })?;
    Ok(kept)
}

/// Takes this account out of the local member list of every chat the relay
/// does not list for it.
async fn reconcile_membership<R: Relay + ?Sized>(core: &Core, conn: &R) -> Result<(), ClientError> {
    let response::Kind::ChatList(list) =
        conn.request(request::Kind::ListChats(ListChats {})).await?
    else {
        return Err(ClientError::Refused(
            "unexpected answer to ListChats".into(),
        ));
    };
    let own = core.account.user_id;
    let left = core.store.transaction(|tx| {
        let mut left = Vec::new();
        for chat in tx.chats()? {
            let listed = list.chats.iter().any(|c| c.chat_id[..] == chat.chat_id[..]);
            if !listed && tx.chat_members(&chat.chat_id)?.contains(&own) {
                left.push(chat.chat_id);
            }
        }
        Ok::<_, StoreError>(left)
    })?;
    for chat_id in left {
        tracing::info!("no longer a member of a chat: leaving it locally");
        let change = MembershipChange {
            removed: vec![own],
            ..MembershipChange::default()
        };
        apply_membership(core, &chat_id, &change)?;
        core.emit(ClientEvent::MembersChanged {
            chat_id,
            added: change.added,
            removed: change.removed,
            promoted: change.promoted,
        });
    }
    Ok(())
}
