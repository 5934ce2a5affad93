//! An open client for one command: the store unlocked, the relay configured,
//! and names resolved to contacts and chats.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rustls::RootCertStore;
use tern_core::RelayAddress;
use tern_core::{ChatId, ChatInfo, ChatKind, ContactInfo, KeySource, Message, SyncSummary, UserId};
use tern_core::{Client, ClientConfig, ClientError};
use tern_transport::{CertFingerprint, TrustPolicy};

use crate::failure::Failure;
use crate::home::{self, Config, Home};

/// The relay address described by a config: one `HOST:PORT`, or the
/// comma-separated nodes of a cluster.
pub fn relay_address(config: &Config) -> anyhow::Result<RelayAddress> {
    let nodes = tern_core::net::resolve_nodes(&config.relay).map_err(Failure::Usage)?;
    let trust = match &config.fingerprint {
        Some(fingerprint) => {
            let pin: CertFingerprint = fingerprint
                .parse()
                .map_err(|e| Failure::Usage(format!("{e}")))?;
            TrustPolicy::Pinned(pin)
        }
        None => TrustPolicy::Roots(Arc::new(system_roots()?)),
    };
    Ok(RelayAddress {
        addr: nodes[0],
        fallbacks: nodes[1..].to_vec(),
        server_name: config.server_name.clone(),
        trust,
    })
}

/// The certificate authorities the operating system trusts.
fn system_roots() -> anyhow::Result<RootCertStore> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(Failure::Usage(
            "no trusted certificate authorities found on this system; pass the relay's --fingerprint"
                .into(),
        )
        .into());
    }
    Ok(roots)
}

/// The host part of `HOST:PORT` (`[v6]:PORT` too); of the first node when
/// there are several (they share one certificate, so one name).
pub fn host_of(relay: &str) -> &str {
    let first = relay.split(',').next().unwrap_or(relay).trim();
    let host = first.rsplit_once(':').map_or(first, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// A client opened from a home, with the names it knows.
pub struct Session {
    /// The client.
    pub client: Client,
    /// The home's config.
    pub config: Config,
    /// The home.
    pub home: Home,
}

impl Session {
    /// Unlocks the store in `home` and starts the client (it connects in the
    /// background).
    pub async fn open(home: Home) -> anyhow::Result<Self> {
        let config = home.load_config()?;
        let relay = relay_address(&config)?;
        let passphrase = home::passphrase(false)?;
        let client = Client::open(
            ClientConfig::new(home.store_path(), relay),
            KeySource::passphrase(passphrase.as_str()),
        )
        .await
        .context("cannot open the local store")?;
        Ok(Self {
            client,
            config,
            home,
        })
    }

    /// Waits for the relay connection (after its resync), at most `timeout`.
    pub async fn online(&self, timeout: Duration) -> anyhow::Result<()> {
        let online = self.client.wait_online(timeout).await;
        online.map_err(|e| self.unreachable(e, timeout))
    }

    /// Connects and pulls everything pending from the relay (every Sync page
    /// processed), at most `timeout`.
    pub async fn synced(&self, timeout: Duration) -> anyhow::Result<SyncSummary> {
        let synced = self.client.sync_now(timeout).await;
        synced.map_err(|e| self.unreachable(e, timeout))
    }

    /// Waits until the relay has everything queued to send, at most
    /// `timeout` (what is left stays queued for the next command).
    pub async fn flushed(&self, timeout: Duration) -> anyhow::Result<()> {
        let flushed = self.client.flush_outbox(timeout).await;
        flushed.map_err(|e| self.unreachable(e, timeout))
    }

    /// A person's error for a relay that did not answer in time.
    fn unreachable(&self, error: ClientError, timeout: Duration) -> anyhow::Error {
        match error {
            ClientError::Offline(_) => Failure::RelayUnreachable(format!(
                "no answer from {} within {} s",
                self.config.relay,
                timeout.as_secs()
            ))
            .into(),
            other => anyhow::Error::new(other),
        }
    }

    /// The contact called `name`.
    pub fn contact(&self, name: &str) -> anyhow::Result<ContactInfo> {
        self.find_contact(name)?
            .ok_or_else(|| Failure::UnknownContact(name.into()).into())
    }

    /// The contact called `name`; a registered user who is not a contact
    /// yet is looked up on the relay (waiting for it at most `timeout`) and
    /// added as one.
    pub async fn contact_or_add(
        &self,
        name: &str,
        timeout: Duration,
    ) -> anyhow::Result<ContactInfo> {
        if let Some(contact) = self.find_contact(name)? {
            return Ok(contact);
        }
        self.online(timeout).await?;
        Ok(self.client.add_contact(name.to_owned()).await?)
    }

    fn find_contact(&self, name: &str) -> anyhow::Result<Option<ContactInfo>> {
        let contacts = self.client.contacts()?;
        Ok(contacts.into_iter().find(|c| c.user_name == name))
    }

    /// The group called `name`, or whose hex chat id starts with `name`
    /// (at least 8 digits; groups created by others arrive without a title).
    pub fn group(&self, name: &str) -> anyhow::Result<ChatInfo> {
        let name = name.strip_prefix('#').unwrap_or(name);
        let by_id = |id: &ChatId| name.len() >= 8 && hex::encode(id).starts_with(name);
        let mut matches: Vec<ChatInfo> = self
            .client
            .chats()?
            .into_iter()
            .filter(|c| c.kind == ChatKind::Group && (c.title == name || by_id(&c.chat_id)))
            .collect();
        if matches.len() > 1 {
            let names = self.names()?;
            let candidates = matches
                .iter()
                .map(|c| {
                    let members: Vec<String> = c.members.iter().map(|m| names.user(m)).collect();
                    format!("#{} ({})", short_hex(&c.chat_id), members.join(", "))
                })
                .collect();
            return Err(Failure::AmbiguousGroup {
                name: name.into(),
                candidates,
            }
            .into());
        }
        matches
            .pop()
            .ok_or_else(|| Failure::UnknownGroup(name.into()).into())
    }

    /// The direct chat with contact `name`, or the group `group`.
    pub fn chat(&self, name: Option<&str>, group: Option<&str>) -> anyhow::Result<ChatId> {
        match (name, group) {
            (_, Some(group)) => Ok(self.group(group)?.chat_id),
            (Some(name), None) => {
                let contact = self.contact(name)?;
                Ok(self.client.direct_chat(contact.user_id)?)
            }
            (None, None) => Err(Failure::Usage("name a contact or a --group".into()).into()),
        }
    }

    /// A chat named `name`: a contact's direct chat, else a group.
    pub fn chat_by_name(&self, name: &str) -> anyhow::Result<ChatId> {
        match self.contact(name) {
            Ok(contact) => Ok(self.client.direct_chat(contact.user_id)?),
            Err(_) => self
                .group(name)
                .map(|g| g.chat_id)
                .map_err(|_| Failure::Usage(format!("no contact or group called {name:?}")).into()),
        }
    }

    /// Names for ids: contacts, this account and chat titles.
    pub fn names(&self) -> anyhow::Result<Names> {
        let account = self.client.account();
        let mut users: Vec<(UserId, String)> = self
            .client
            .contacts()?
            .into_iter()
            .map(|c| (c.user_id, c.user_name))
            .collect();
        users.push((account.user_id, account.user_name));
        let chats = self
            .client
            .chats()?
            .into_iter()
            .map(|c| (c.chat_id, c.kind, c.title))
            .collect();
        Ok(Names { users, chats })
    }

    /// Stops the client (the outbox keeps what was not acknowledged).
    pub async fn close(self) {
        self.client.shutdown().await;
    }
}

/// Display names of users and chats.
#[derive(Clone, Debug, Default)]
pub struct Names {
    users: Vec<(UserId, String)>,
    chats: Vec<(ChatId, ChatKind, String)>,
}

impl Names {
    /// Whether a chat is a group.
    pub fn is_group(&self, id: &ChatId) -> bool {
        self.chats
            .iter()
            .any(|(c, kind, _)| c == id && *kind == ChatKind::Group)
    }

    /// A user's name, or a short hex id.
    pub fn user(&self, id: &UserId) -> String {
        self.users
            .iter()
            .find(|(u, _)| u == id)
            .map_or_else(|| short_hex(id), |(_, name)| name.clone())
    }

    /// How a chat is named on the command line: a contact name, or `#group`.
    pub fn chat(&self, id: &ChatId) -> String {
        match self.chats.iter().find(|(c, _, _)| c == id) {
            Some((_, ChatKind::Group, title)) if title.is_empty() => format!("#{}", short_hex(id)),
            Some((_, ChatKind::Group, title)) => format!("#{title}"),
            Some((_, _, title)) => title.clone(),
            None => short_hex(id),
        }
    }

    /// The sender's name of a message.
    pub fn sender(&self, message: &Message) -> String {
        self.user(&message.sender)
    }
}

/// The first 8 hex digits of an id.
pub fn short_hex(bytes: &[u8]) -> String {
    hex::encode(&bytes[..bytes.len().min(4)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relays_are_pinned_or_checked_against_system_authorities() {
        let pinned = Config {
            relay: "127.0.0.1:4433".into(),
            fingerprint: Some("ab".repeat(32)),
            server_name: "tern-relay".into(),
            ..Config::default()
        };
        let address = relay_address(&pinned).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(address.trust, TrustPolicy::Pinned(_)));
        let bad = Config {
            fingerprint: Some("xyz".into()),
            ..pinned.clone()
        };
        assert!(relay_address(&bad).is_err());
        assert_eq!(host_of("relay.example.org:4433"), "relay.example.org");
        assert_eq!(host_of("[::1]:4433"), "::1");
        assert_eq!(
            host_of("a.example.org:4433, b.example.org:4433"),
            "a.example.org"
        );
    }
}
