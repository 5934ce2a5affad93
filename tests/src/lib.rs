//! Shared helpers for Tern's workspace-level integration tests: a real relay
//! on 127.0.0.1 and client devices speaking to it through `tern-core`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use ed25519_dalek::{Signer, SigningKey};
use prost::Message;
use tern_core::net::{DeviceSigner, Greeting, RelayAddress, RelayConnection};
use tern_protocol::UserId;
use tern_protocol::wire::{DeviceEntry, DeviceList, RegisterAccount, SignedDeviceList, request};
use tern_relay::{Config, Server};
use tern_transport::TrustPolicy;

/// Fails a test that hangs instead of letting it run forever.
pub async fn guard<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("test step timed out")
}

/// Random bytes for ids and keys.
pub fn random<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).unwrap();
    out
}

/// A relay served in-process on an ephemeral port with its own data dir.
pub struct TestRelay {
    pub address: RelayAddress,
    pub dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestRelay {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().to_owned(),
            ..Config::default()
        };
        let server = Server::start(config).unwrap();
        let addr: SocketAddr = server.local_addr().unwrap();
        let pin = server.fingerprint().parse().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        Self {
            address: RelayAddress {
                addr,
                server_name: "tern-relay".into(),
                trust: TrustPolicy::Pinned(pin),
            },
            dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops the relay and starts it again on the same address and data
    /// directory (same certificate), as after a relay restart.
    pub async fn restart(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            guard(task).await.unwrap();
        }
        let config = Config {
            listen: self.address.addr,
            data_dir: self.dir.path().to_owned(),
            ..Config::default()
        };
        let server = Server::start(config).unwrap();
        let pin: tern_transport::CertFingerprint = server.fingerprint().parse().unwrap();
        assert!(matches!(&self.address.trust, TrustPolicy::Pinned(p) if *p == pin));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        self.task = Some(tokio::spawn(server.run(async {
            let _ = stopped.await;
        })));
        self.stop = Some(stop);
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            guard(task).await.unwrap();
        }
    }
}

/// An Ed25519 device key acting as the device signer.
pub struct TestKey(pub SigningKey);

impl DeviceSigner for TestKey {
    fn sign(&self, payload: &[u8]) -> [u8; 64] {
        let message = [tern_protocol::limits::AUTH_SIGNATURE_CONTEXT, payload].concat();
        self.0.sign(&message).to_bytes()
    }
}

/// A single-device account.
pub struct TestUser {
    pub name: String,
    pub user_id: UserId,
    pub account_key: SigningKey,
    pub device_key: TestKey,
}

impl TestUser {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            user_id: UserId(random()),
            account_key: SigningKey::from_bytes(&random()),
            device_key: TestKey(SigningKey::from_bytes(&random())),
        }
    }

    pub fn signed_device_list(&self) -> SignedDeviceList {
        let list = DeviceList {
            user_id: self.user_id.to_wire(),
            version: 1,
            devices: vec![DeviceEntry {
                device_id: 1,
                identity_key: Bytes::copy_from_slice(self.device_key.0.verifying_key().as_bytes()),
            }],
        }
        .encode_to_vec();
        let signature = self
            .account_key
            .sign(&tern_protocol::device_list_message(&list));
        SignedDeviceList {
            device_list: list.into(),
            signature: Bytes::copy_from_slice(&signature.to_bytes()),
        }
    }

    /// Registers the account and its device 1; returns the authenticated connection.
    pub async fn register(&self, relay: &RelayAddress) -> RelayConnection {
        let greeting = guard(Greeting::connect(relay)).await.unwrap();
        let request = RegisterAccount {
            user_name: self.name.clone(),
            account_key: Bytes::copy_from_slice(self.account_key.verifying_key().as_bytes()),
            device_list: Some(self.signed_device_list()),
            device_id: 1,
            invite_token: String::new(),
            device_signature: greeting.sign(&self.device_key),
        };
        let (_, conn) = guard(greeting.register(request::Kind::RegisterAccount(request)))
            .await
            .unwrap();
        conn
    }

    /// Authenticates device 1 on a new connection.
    pub async fn login(&self, relay: &RelayAddress) -> RelayConnection {
        let greeting = guard(Greeting::connect(relay)).await.unwrap();
        guard(greeting.authenticate(self.user_id, 1, &self.device_key))
            .await
            .unwrap()
    }
}

/// Cheap Argon2id parameters: the default 64 MiB × 3 is far too slow in
/// debug-built tests.
pub fn test_key(passphrase: &str) -> tern_core::client::KeySource {
    let params = tern_core::client::KdfParams::new(1024, 1, 1).unwrap();
    tern_core::client::KeySource::passphrase_with_params(passphrase, params)
}

/// A client device with its own store directory.
pub struct TestClient {
    pub client: tern_core::Client,
    pub events: tern_core::client::EventSubscription,
    pub config: tern_core::ClientConfig,
    pub dir: tempfile::TempDir,
}

impl TestClient {
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
        let dir = tempfile::tempdir().unwrap();
        let mut config =
            tern_core::ClientConfig::new(dir.path().join("store.db"), relay.address.clone());
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
        let config =
            tern_core::ClientConfig::new(dir.path().join("store.db"), relay.address.clone());
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
        id: tern_core::client::MessageId,
        status: tern_core::client::DeliveryStatus,
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
    pub async fn next_message(&mut self) -> tern_core::client::Message {
        self.expect(|event| match event {
            tern_core::ClientEvent::MessageReceived(m) => Some(m),
            _ => None,
        })
        .await
    }
}
