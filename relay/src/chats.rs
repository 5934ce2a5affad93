//! Chats and their membership. Every membership change (creation
//! included) is an entry of the chat's log, ordered with its messages.

use tern_protocol::wire::{
    ChangeMembers, ChatInfo, ChatKind, ChatList, CreateChat, GetChat, response,
};
use tern_protocol::{ChatId, UserId};

use crate::error::RelayError;
use crate::service::Relay;
use crate::store::{ChatRecord, DeviceAddr, LogAppend, MembershipAppend};

fn user_ids(field: &'static str, ids: &[bytes::Bytes]) -> Result<Vec<UserId>, RelayError> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let id = UserId::from_slice(field, id)?;
        if !out.contains(&id) {
            out.push(id);
        }
    }
    Ok(out)
}

pub(crate) fn chat_info(c: ChatRecord) -> ChatInfo {
    ChatInfo {
        chat_id: c.chat_id.to_wire(),
        kind: c.kind as i32,
        members: c.members.iter().map(UserId::to_wire).collect(),
        last_seq: c.last_seq,
        admins: c.admins.iter().map(UserId::to_wire).collect(),
    }
}

impl Relay {
    /// A chat the device's account belongs to.
    pub(crate) async fn member_chat(
        &self,
        device: DeviceAddr,
        chat: ChatId,
    ) -> Result<ChatRecord, RelayError> {
        let record = self
            .blocking(move |s| s.chat(&chat))
            .await?
            .ok_or(RelayError::NotFound("chat"))?;
        if !record.members.contains(&device.user) {
            return Err(RelayError::Forbidden("not a member of this chat"));
        }
        Ok(record)
    }

    /// Creates a chat whose first log entry adds every member.
    pub(crate) async fn create_chat(
        &self,
        device: DeviceAddr,
        r: CreateChat,
    ) -> Result<response::Kind, RelayError> {
        let chat_id = ChatId::from_slice("CreateChat.chat_id", &r.chat_id)?;
        let kind = ChatKind::try_from(r.kind).map_err(|_| RelayError::BadRequest("chat kind"))?;
        let mut members = vec![device.user];
        for m in user_ids("CreateChat.members", &r.members)? {
            if !members.contains(&m) {
                members.push(m);
            }
        }
        if kind == ChatKind::Direct && members.len() != 2 {
            return Err(RelayError::BadRequest("a direct chat is between two users"));
        }
        if members.len() > tern_protocol::limits::MAX_CHAT_MEMBERS {
            return Err(RelayError::QuotaExceeded("too many chat members"));
        }
        let append = LogAppend::Membership(MembershipAppend {
            chat_id,
            actor: device,
            create: Some(kind),
            added: members,
            removed: Vec::new(),
            promote: Vec::new(),
        });
        self.log.append(append).await?;
        let chat = self.member_chat(device, chat_id).await?;
        Ok(response::Kind::ChatInfo(chat_info(chat)))
    }

    /// Adds or removes members of a group chat, or promotes members to
    /// admins (the store enforces who may).
    pub(crate) async fn change_members(
        &self,
        device: DeviceAddr,
        r: ChangeMembers,
    ) -> Result<response::Kind, RelayError> {
        let chat_id = ChatId::from_slice("ChangeMembers.chat_id", &r.chat_id)?;
        let append = LogAppend::Membership(MembershipAppend {
            chat_id,
            actor: device,
            create: None,
            added: user_ids("ChangeMembers.add", &r.add)?,
            removed: user_ids("ChangeMembers.remove", &r.remove)?,
            promote: user_ids("ChangeMembers.promote", &r.promote)?,
        });
        self.log.append(append).await?;
        let chat = self
            .blocking(move |s| s.chat(&chat_id))
            .await?
            .ok_or(RelayError::NotFound("chat"))?;
        Ok(response::Kind::ChatInfo(chat_info(chat)))
    }

    /// Reads a chat the device's account belongs to.
    pub(crate) async fn get_chat(
        &self,
        device: DeviceAddr,
        r: GetChat,
    ) -> Result<response::Kind, RelayError> {
        let chat_id = ChatId::from_slice("GetChat.chat_id", &r.chat_id)?;
        let chat = self.member_chat(device, chat_id).await?;
        Ok(response::Kind::ChatInfo(chat_info(chat)))
    }

    /// Lists the chats of the device's account.
    pub(crate) async fn list_chats(
        &self,
        device: DeviceAddr,
    ) -> Result<response::Kind, RelayError> {
        let chats = self.blocking(move |s| s.chats_of(&device.user)).await?;
        Ok(response::Kind::ChatList(ChatList {
            chats: chats
                .into_iter()
                .take(tern_protocol::limits::MAX_CHATS_PER_LIST)
                .map(chat_info)
                .collect(),
        }))
    }
}
