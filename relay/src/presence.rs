//! Ephemeral events: presence subscriptions and typing indicators. Both
//! travel as QUIC datagrams, only to online devices, and are never stored.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use tern_protocol::UserId;
use tern_protocol::wire::{
    Empty, EphemeralEvent, Presence, SubscribePresence, Typing, ephemeral_event, response,
};

use crate::cluster::{Cluster, Outgoing};
use crate::error::RelayError;
use crate::router::{Mailbox, Outbound, Router};
use crate::service::{Relay, Session, now_ms};

#[derive(Default)]
struct Book {
    /// Subscribers per watched account, by mailbox id.
    watchers: HashMap<UserId, HashMap<u64, Weak<Mailbox>>>,
    /// What each mailbox watches (to replace or drop its subscription).
    watching: HashMap<u64, Vec<UserId>>,
    /// When each account was last seen going offline.
    last_seen: HashMap<UserId, u64>,
}

/// Who watches whose presence. In memory only: subscriptions belong to
/// connections and are renewed when a device reconnects.
#[derive(Default)]
pub(crate) struct PresenceBook(Mutex<Book>);

fn presence_event(user: UserId, online: bool, last_seen_ms: u64) -> Outbound {
    Outbound::Ephemeral(EphemeralEvent {
        kind: Some(ephemeral_event::Kind::Presence(Presence {
            user_id: user.to_wire(),
            online,
            last_seen_ms,
        })),
    })
}

impl PresenceBook {
    fn lock(&self) -> std::sync::MutexGuard<'_, Book> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Drops a connection's subscription.
    pub(crate) fn forget(&self, mailbox: &Mailbox) {
        let mut book = self.lock();
        for user in book.watching.remove(&mailbox.id()).unwrap_or_default() {
            if let Some(w) = book.watchers.get_mut(&user) {
                w.remove(&mailbox.id());
                if w.is_empty() {
                    book.watchers.remove(&user);
                }
            }
        }
    }

    /// Replaces a connection's subscription.
    pub(crate) fn subscribe(&self, mailbox: &Arc<Mailbox>, users: Vec<UserId>) {
        self.forget(mailbox);
        let mut book = self.lock();
        for user in &users {
            book.watchers
                .entry(*user)
                .or_default()
                .insert(mailbox.id(), Arc::downgrade(mailbox));
        }
        book.watching.insert(mailbox.id(), users);
    }

    /// When `user` was last seen online (0 if never since start).
    pub(crate) fn last_seen(&self, user: &UserId) -> u64 {
        self.lock().last_seen.get(user).copied().unwrap_or(0)
    }

    /// Tells every watcher of `user` that it came online or went offline.
    pub(crate) fn publish(&self, user: UserId, online: bool) {
        let now = now_ms();
        let watchers: Vec<Arc<Mailbox>> = {
            let mut book = self.lock();
            if !online {
                book.last_seen.insert(user, now);
            }
            book.watchers
                .get(&user)
                .into_iter()
                .flat_map(HashMap::values)
                .filter_map(Weak::upgrade)
                .collect()
        };
        for mailbox in watchers {
            mailbox.push(presence_event(user, online, now));
        }
    }
}

/// Whether any device of `user` is connected to this node (`router`) or,
/// in cluster mode, to another node.
pub(crate) fn online_anywhere(router: &Router, cluster: Option<&Cluster>, user: &UserId) -> bool {
    router.is_online(user) || cluster.is_some_and(|c| c.online_elsewhere(user))
}

impl Relay {
    /// Whether any device of `user` is connected, to this node or (in
    /// cluster mode) another.
    pub(crate) fn is_online(&self, user: &UserId) -> bool {
        online_anywhere(&self.router, self.cluster.as_deref(), user)
    }

    /// `user`'s first device on this node connected (`online`) or its last
    /// one here left: other nodes are told, and watchers here learn it
    /// unless the account's state is unchanged cluster-wide.
    pub(crate) fn presence_changed(&self, user: UserId, online: bool) {
        if let Some(cluster) = &self.cluster {
            cluster.link.send(Outgoing::Presence { user, online });
            if cluster.online_elsewhere(&user) {
                return;
            }
        }
        self.presence.publish(user, online);
    }

    /// Tells watchers here the cluster-wide state of accounts whose state
    /// on another node changed (came, left, or that node died), unless a
    /// device here keeps them online.
    pub(crate) fn remote_presence_changed(&self, users: &[UserId]) {
        for user in users.iter().filter(|u| !self.router.is_online(u)) {
            self.presence.publish(*user, self.is_online(user));
        }
    }

    /// Subscribes the connection to the presence of accounts it shares a
    /// chat with (others are ignored) and sends their current state.
    pub(crate) async fn subscribe_presence(
        &self,
        session: &Session,
        r: SubscribePresence,
    ) -> Result<response::Kind, RelayError> {
        let me = session.device.user;
        let contacts = self.blocking(move |s| s.contacts_of(&me)).await?;
        let mut users = Vec::with_capacity(r.user_ids.len());
        for id in &r.user_ids {
            let user = UserId::from_slice("SubscribePresence.user_ids", id)?;
            if contacts.contains(&user) && !users.contains(&user) {
                users.push(user);
            }
        }
        self.presence.subscribe(&session.mailbox, users.clone());
        for user in users {
            let online = self.is_online(&user);
            let last_seen = if online {
                now_ms()
            } else {
                self.presence.last_seen(&user)
            };
            session
                .mailbox
                .push(presence_event(user, online, last_seen));
        }
        Ok(response::Kind::Ok(Empty {}))
    }

    /// Forwards a typing indicator to the chat's other online devices.
    pub(crate) async fn typing(&self, session: &Session, t: Typing) -> Result<(), RelayError> {
        let chat_id = tern_protocol::ChatId::from_slice("Typing.chat_id", &t.chat_id)?;
        let chat = self.member_chat(session.device, chat_id).await?;
        let event = EphemeralEvent {
            kind: Some(ephemeral_event::Kind::Typing(Typing {
                chat_id: t.chat_id,
                active: t.active,
                user_id: session.device.user.to_wire(),
                device_id: session.device.device,
            })),
        };
        for user in &chat.members {
            self.router
                .push_ephemeral(user, Some(session.device), &event);
        }
        Ok(())
    }
}
