//! tern-core [`Client`](tern_core::Client)s for tests: each device with
//! its store in a temporary directory, talking to a [`TestRelay`].
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use crate::guard;
use crate::relay::TestRelay;
use tern_core::net::RelayAddress;

/// Cheap Argon2id parameters: the default 64 MiB × 3 is far too slow in
/// debug-built tests.
pub fn test_key(passphrase: &str) -> tern_core::KeySource {
    let params = tern_core::KdfParams::new(1024, 1, 1).unwrap();
    tern_core::KeySource::passphrase_with_params(passphrase, params)
}

/// A client device with its own store directory.
pub struct TestClient {
    /// The client.
    pub client: tern_core::Client,
    /// Its events, subscribed since it was opened.
    pub events: tern_core::EventSubscription,
    /// The configuration it was opened with.
    pub config: tern_core::ClientConfig,
    /// The directory of its store.
    pub dir: tempfile::TempDir,
}

impl TestClient {
    /// The chat `chat_id` as this device knows it, if it does.
    pub fn find_chat(&self, chat_id: [u8; 16]) -> Option<tern_core::ChatInfo> {
        let chats = self.client.chats().unwrap();
        chats.into_iter().find(|c| c.chat_id == chat_id)
    }

    /// The chat `chat_id` as this device knows it.
    ///
    /// # Panics
    /// When the device does not know it.
    pub fn chat_info(&self, chat_id: [u8; 16]) -> tern_core::ChatInfo {
        self.find_chat(chat_id).expect("chat known")
    }

    /// Creates an account `name` on `relay` and waits until it is online.
    pub async fn create(relay: &TestRelay, name: &str) -> Self {
        Self::create_configured(relay, name, |_| {}).await
    }

    /// Like [`Self::create`], with `configure` applied to the configuration
    /// (test hooks).
    pub async fn create_configured(
        relay: &TestRelay,
        name: &str,
        configure: impl FnOnce(&mut tern_core::ClientConfig),
    ) -> Self {
        Self::create_at(relay.address(), name, configure).await
    }

    /// Creates an account `name` through the relay at `address` (any relay,
    /// e.g. a [`crate::RelayProcess`] node) and waits until it is online.
    pub async fn create_at(
        address: RelayAddress,
        name: &str,
        configure: impl FnOnce(&mut tern_core::ClientConfig),
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = tern_core::ClientConfig::new(dir.path().join("store.db"), address);
        configure(&mut config);
        let client = guard(tern_core::Client::create(
            config.clone(),
            test_key("passphrase"),
            name.into(),
            None,
        ))
        .await
        .unwrap();
        Self::online(client, config, dir).await
    }

    /// Wraps a started client and waits until it is online.
    async fn online(
        client: tern_core::Client,
        config: tern_core::ClientConfig,
        dir: tempfile::TempDir,
    ) -> Self {
        let events = client.subscribe();
        guard(client.wait_online(Duration::from_secs(20)))
            .await
            .unwrap();
        Self {
            client,
            events,
            config,
            dir,
        }
    }

    /// Adds the user called `name` as a contact; returns their user id.
    pub async fn contact(&self, name: &str) -> [u8; 16] {
        guard(self.client.add_contact(name.into()))
            .await
            .unwrap()
            .user_id
    }

    /// Two users `a` and `b` (`a` has `b` as a contact) and their direct chat.
    pub async fn direct_pair(relay: &TestRelay, a: &str, b: &str) -> (Self, Self, [u8; 16]) {
        let first = Self::create(relay, a).await;
        let second = Self::create(relay, b).await;
        let contact = first.contact(b).await;
        let chat = first.client.direct_chat(contact).unwrap();
        (first, second, chat)
    }

    /// Shuts the client down, opens it again from its store with `config`
    /// and waits until it is online.
    pub async fn reopen_online(self, config: tern_core::ClientConfig) -> Self {
        let reopened = self.reopen(config).await;
        Self::online(reopened.client, reopened.config, reopened.dir).await
    }

    /// Shuts the client down and opens it again from its store.
    pub async fn reopen(self, config: tern_core::ClientConfig) -> Self {
        self.client.shutdown().await;
        drop(self.client);
        let client = guard(tern_core::Client::open(
            config.clone(),
            test_key("passphrase"),
        ))
        .await
        .unwrap();
        let events = client.subscribe();
        Self {
            client,
            events,
            config,
            dir: self.dir,
        }
    }

    /// Links a second device of this account (a store of its own) and waits
    /// until it is online.
    pub async fn link_device(&self, relay: &TestRelay) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = tern_core::ClientConfig::new(dir.path().join("store.db"), relay.address());
        let offer = guard(self.client.offer_link()).await.unwrap();
        let accepting = tokio::spawn(tern_core::Client::accept_link(
            config.clone(),
            test_key("passphrase"),
            offer.link_code(),
            Duration::from_secs(20),
        ));
        let approval = guard(offer.wait_request(Duration::from_secs(20)))
            .await
            .unwrap();
        guard(self.client.approve_link(approval)).await.unwrap();
        let client = guard(accepting).await.unwrap().unwrap();
        Self::online(client, config, dir).await
    }

    /// Waits for the first event that `pick` maps to `Some`.
    pub async fn expect<T>(
        &mut self,
        mut pick: impl FnMut(tern_core::ClientEvent) -> Option<T>,
    ) -> T {
        guard(async {
            loop {
                let event = self.events.next().await.expect("client gone");
                if let Some(found) = pick(event) {
                    return found;
                }
            }
        })
        .await
    }

    /// Waits until the local message `id` reaches `status` (for any recipient).
    pub async fn wait_status(
        &mut self,
        id: tern_core::MessageId,
        status: tern_core::DeliveryStatus,
    ) {
        self.expect(|event| match event {
            tern_core::ClientEvent::MessageStatus {
                message_id,
                status: reached,
                ..
            } if message_id == id && reached == status => Some(()),
            _ => None,
        })
        .await;
    }

    /// Sends `text` to `chat` and checks that `to` receives it next.
    pub async fn send_to(&self, to: &mut TestClient, chat: [u8; 16], text: &str) {
        self.client.send_text(chat, text.into()).unwrap();
        assert_eq!(to.next_message().await.text, text);
    }

    /// Waits for the next received message.
    pub async fn next_message(&mut self) -> tern_core::Message {
        self.expect(|event| match event {
            tern_core::ClientEvent::MessageReceived(m) => Some(m),
            _ => None,
        })
        .await
    }
}
