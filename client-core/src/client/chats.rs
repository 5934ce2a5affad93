//! Chats: direct chats with derived ids, groups and their membership.

use bytes::Bytes;
use tern_protocol::wire::{ChangeMembers, ChatKind as WireChatKind, CreateChat, request};

use super::Client;
use crate::model::ClientError;
use crate::model::ClientEvent;
use crate::model::{ChatId, ChatInfo, ChatKind, UserId};
use crate::random::random_bytes;
use crate::store::{Chat, StoreError};
use crate::sync::content::{MAX_TITLE_LEN, Payload};
use crate::sync::{MembershipChange, apply_membership, queue_payload};

impl Client {
    /// The direct chat with a contact (its id is derived from both user ids,
    /// so both sides agree without talking). Created locally if needed; the
    /// relay learns of it with the first message.
    pub fn direct_chat(&self, user_id: UserId) -> Result<ChatId, ClientError> {
        let me = self.core.account.user_id;
        if user_id == me {
            return Err(ClientError::InvalidArgument(
                "a direct chat needs another user",
            ));
        }
        let contact = self.contact(user_id)?;
        let chat_id = direct_chat_id(&me, &user_id);
        let now = self.core.clock.now_ms();
        self.core.store.transaction(|tx| {
            if tx.chat(&chat_id)?.is_none() {
                tx.upsert_chat(&Chat {
                    chat_id,
                    kind: ChatKind::Direct,
                    title: contact.user_name.clone(),
                    created_at_ms: now,
                })?;
                tx.set_chat_members(&chat_id, &[me, user_id])?;
            }
            Ok::<_, StoreError>(())
        })?;
        Ok(chat_id)
    }

    /// Creates a group chat with `members` (contacts) on the relay and sends
    /// the title to every member (an encrypted `GroupTitle` in the chat).
    /// Needs the relay.
    pub async fn create_group(
        &self,
        title: String,
        members: Vec<UserId>,
    ) -> Result<ChatId, ClientError> {
        check_title(&title)?;
        let conn = self.core.connection()?;
        let me = self.core.account.user_id;
        for member in &members {
            self.contact(*member)?;
        }
        let chat_id: ChatId = random_bytes();
        conn.request(request::Kind::CreateChat(CreateChat {
            chat_id: Bytes::copy_from_slice(&chat_id),
            kind: WireChatKind::Group as i32,
            members: members.iter().map(|m| Bytes::copy_from_slice(m)).collect(),
        }))
        .await?;
        let mut all = vec![me];
        all.extend(members.into_iter().filter(|m| *m != me));
        let now = self.core.clock.now_ms();
        self.core.store.transaction(|tx| {
            tx.upsert_chat(&Chat {
                chat_id,
                kind: ChatKind::Group,
                title: title.clone(),
                created_at_ms: now,
            })?;
            tx.set_chat_members(&chat_id, &all)?;
            tx.set_chat_admins(&chat_id, &[me])?;
            queue_payload(
                tx,
                &chat_id,
                &random_bytes(),
                &Payload::GroupTitle(title),
                None,
                now,
            )
        })?;
        self.core.outbox_wake.notify_one();
        Ok(chat_id)
    }

    /// Renames a group chat: stores the title and sends it to every member
    /// (an encrypted `GroupTitle` in the chat; they apply it in log order).
    /// Works offline.
    pub fn rename_group(&self, chat_id: ChatId, title: String) -> Result<(), ClientError> {
        check_title(&title)?;
        let now = self.core.clock.now_ms();
        self.core.store.transaction(|tx| {
            let mut chat = tx.chat(&chat_id)?.ok_or(ClientError::UnknownChat)?;
            if chat.kind != ChatKind::Group {
                return Err(ClientError::InvalidArgument("not a group chat"));
            }
            chat.title.clone_from(&title);
            tx.upsert_chat(&chat)?;
            let payload = Payload::GroupTitle(title.clone());
            Ok(queue_payload(
                tx,
                &chat_id,
                &random_bytes(),
                &payload,
                None,
                now,
            )?)
        })?;
        self.core.outbox_wake.notify_one();
        self.core.emit(ClientEvent::ChatTitleChanged {
            chat_id,
            title,
            by: self.core.account.user_id,
        });
        Ok(())
    }

    /// Adds and removes members of a group chat on the relay (recorded as a
    /// membership entry every member device sees in order). Only admins may
    /// add or remove others; any member may remove itself (leave). Removing
    /// members replaces this device's sender key at once; the other members
    /// replace theirs when they process the entry. Needs the relay.
    pub async fn change_members(
        &self,
        chat_id: ChatId,
        add: Vec<UserId>,
        remove: Vec<UserId>,
    ) -> Result<(), ClientError> {
        self.group_chat(&chat_id)?;
        for user in &add {
            self.contact(*user)?;
        }
        self.change_group(
            chat_id,
            MembershipChange {
                added: add,
                removed: remove,
                promoted: Vec::new(),
            },
        )
        .await
    }

    /// Makes `members` admins of a group chat (recorded as a membership
    /// entry). Only admins may; the relay refuses others. Needs the relay.
    pub async fn promote(&self, chat_id: ChatId, members: Vec<UserId>) -> Result<(), ClientError> {
        self.group_chat(&chat_id)?;
        self.change_group(
            chat_id,
            MembershipChange {
                promoted: members,
                ..MembershipChange::default()
            },
        )
        .await
    }

    /// The stored group chat `chat_id`.
    fn group_chat(&self, chat_id: &ChatId) -> Result<Chat, ClientError> {
        let chat = self
            .core
            .store
            .transaction(|tx| tx.chat(chat_id))?
            .ok_or(ClientError::UnknownChat)?;
        if chat.kind != ChatKind::Group {
            return Err(ClientError::InvalidArgument("not a group chat"));
        }
        Ok(chat)
    }

    /// Asks the relay for a membership change of a group, then applies it
    /// locally (applying it again when its entry arrives changes nothing).
    async fn change_group(
        &self,
        chat_id: ChatId,
        change: MembershipChange,
    ) -> Result<(), ClientError> {
        let conn = self.core.connection()?;
        let bytes = |users: &[UserId]| users.iter().map(|u| Bytes::copy_from_slice(u)).collect();
        conn.request(request::Kind::ChangeMembers(ChangeMembers {
            chat_id: Bytes::copy_from_slice(&chat_id),
            add: bytes(&change.added),
            remove: bytes(&change.removed),
            promote: bytes(&change.promoted),
        }))
        .await?;
        apply_membership(&self.core, &chat_id, &change)?;
        Ok(())
    }

    /// Chats known on this device, each with its unread count.
    pub fn chats(&self) -> Result<Vec<ChatInfo>, ClientError> {
        let me = self.core.account.user_id;
        let chats = self.core.store.read(|tx| {
            tx.chats()?
                .into_iter()
                .map(|chat| {
                    let members = tx.chat_members(&chat.chat_id)?;
                    let admins = tx.chat_admins(&chat.chat_id)?;
                    let read = tx.cursor(&chat.chat_id)?.map_or(0, |c| c.read_seq);
                    Ok(ChatInfo {
                        unread: tx.count_unread(&chat.chat_id, &me, read)?,
                        chat_id: chat.chat_id,
                        kind: chat.kind,
                        title: chat.title,
                        members,
                        admins,
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()
        })?;
        Ok(chats)
    }
}

/// Refuses a group title the members would refuse.
fn check_title(title: &str) -> Result<(), ClientError> {
    if title.len() > MAX_TITLE_LEN {
        return Err(ClientError::InvalidArgument("group title too long"));
    }
    Ok(())
}

/// The id of the direct chat between two users, derived from both ids.
pub use tern_crypto::chat_id::direct_chat_id;
