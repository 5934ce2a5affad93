//! The connection loop: connect, authenticate, resync from the stored
//! cursors, then receive deliveries, ephemeral events and send the outbox
//! until the connection drops; reconnect with backoff and jitter.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use rand_core::Rng;
use tern_protocol::wire::{
    SubscribePresence, UploadPrekeys, ephemeral_event, event, request, response,
};
use tokio::sync::watch;

use super::account::{DeviceAuth, generate_prekeys};
use super::receive::{receive_batch, resync};
use super::rotation::{ROTATION_CHECK, maintain};
use super::send::pump;
use super::{Core, Relay, RelayLink, layered};
use crate::model::{ChatId, ClientError, ClientEvent, PrekeyRotations, UserId};
use crate::net::{Backoff, Greeting};
use crate::random::rng;
/// Stock of one-time prekeys under which a new batch is uploaded on connect.
const LOW_PREKEYS: u32 = 20;
/// How often the outbox is checked for due retries without a wake-up.
const OUTBOX_TICK: Duration = Duration::from_millis(250);

/// What the host wants the connection loop to do ([`Client::pause`] and
/// [`Client::resume`] switch between the first two).
///
/// [`Client::pause`]: crate::Client::pause
/// [`Client::resume`]: crate::Client::resume
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RunMode {
    /// Keep a relay connection, reconnecting with backoff.
    Online,
    /// Close the connection and stay offline (an app in the background);
    /// the outbox keeps what is queued.
    Paused,
    /// End the loop.
    Stopped,
}

/// Runs until the mode turns [`RunMode::Stopped`].
pub(crate) async fn run(core: Arc<Core>, mut mode: watch::Receiver<RunMode>) {
    let mut backoff = Backoff::default();
    loop {
        let wanted = *mode.borrow_and_update();
        // A dropped sender (the client is gone) stops the loop too.
        if mode.has_changed().is_err() {
            break;
        }
        match wanted {
            RunMode::Stopped => break,
            RunMode::Paused => {
                if mode.changed().await.is_err() {
                    break;
                }
                backoff.reset();
                continue;
            }
            RunMode::Online => {}
        }
        let attempt = tokio::select! {
            result = connect(&core) => result,
            _ = mode.changed() => continue,
        };
        match attempt {
            Ok(conn) => {
                backoff.reset();
                core.conn.send_replace(Some(conn.clone()));
                let reason = tokio::select! {
                    reason = serve(&core, conn.as_ref()) => reason,
                    _ = mode.wait_for(|m| *m != RunMode::Online) => "paused by the host".to_owned(),
                };
                core.conn.send_replace(None);
                conn.close();
                core.emit(ClientEvent::Disconnected { reason });
                if *mode.borrow() != RunMode::Online {
                    continue;
                }
            }
            Err(e) => tracing::debug!(error = %e, "cannot reach the relay"),
        }
        let delay = backoff.next_delay(rng().next_u64());
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = mode.changed() => {}
        }
    }
}

/// Connects and authenticates, starting with the node that served last
/// (moving on to the next ones of a cluster when it does not answer); the
/// connection passes through the host's [`RelayLayer`](super::RelayLayer),
/// if any.
async fn connect(core: &Core) -> Result<Arc<dyn RelayLink>, ClientError> {
    let first = core.node.load(Ordering::Relaxed);
    let (greeting, node) = Greeting::connect_from(core.endpoint()?, &core.relay, first).await?;
    // A connection that breaks later is retried on the next node first:
    // its node may be the one that went away.
    core.node.store(node + 1, Ordering::Relaxed);
    let signer = DeviceAuth(core.sessions.identity());
    let conn = greeting
        .authenticate(
            tern_protocol::UserId(core.account.user_id),
            core.account.device_id,
            &signer,
        )
        .await?;
    Ok(layered(core.layer.as_ref(), conn))
}

/// Serves one connection; returns why it ended.
async fn serve(core: &Core, conn: &dyn RelayLink) -> String {
    let receiving = async {
        let mut events = conn.events();
        // Before the backlog: messages to a replaced prekey decrypt in its grace period.
        run_maintenance(core, conn).await?;
        resync(core, conn).await?;
        resubscribe_presence(core, conn).await?;
        check_prekey_stock(core, conn).await?;
        core.emit(ClientEvent::Connected);
        core.outbox_wake.notify_one();
        loop {
            match events.next().await? {
                Some(kind) => handle_event(core, conn, kind).await?,
                None => return Err(ClientError::Offline("delivery stream ended".into())),
            }
        }
    };
    let ephemeral = async {
        loop {
            let event = conn.next_ephemeral().await?;
            handle_ephemeral(core, event.kind);
        }
    };
    let sending = async {
        loop {
            pump(core, conn).await?;
            let _ = tokio::time::timeout(OUTBOX_TICK, core.outbox_wake.notified()).await;
        }
    };
    let maintaining = async {
        loop {
            let _ = tokio::time::timeout(ROTATION_CHECK, core.maintenance.notified()).await;
            run_maintenance(core, conn).await?;
        }
    };
    let result: Result<(), ClientError> = tokio::select! {
        r = receiving => r,
        r = ephemeral => r,
        r = sending => r,
        r = maintaining => r,
    };
    match result {
        Ok(()) => "closed".into(),
        Err(e) => e.to_string(),
    }
}

async fn handle_event(
    core: &Core,
    conn: &dyn RelayLink,
    kind: event::Kind,
) -> Result<(), ClientError> {
    match kind {
        event::Kind::Delivery(delivery) => receive_batch(core, conn, &[delivery]).await,
        event::Kind::SyncNeeded(_) => resync(core, conn).await.map(drop),
        event::Kind::DeviceListChanged(changed) => {
            if let Ok(user) = UserId::try_from(changed.user_id.as_ref()) {
                core.directory.invalidate(&user);
                core.emit(ClientEvent::DeviceListChanged { user_id: user });
            }
            Ok(())
        }
        // The notice's counts may be stale (several fetches each send one):
        // ask for the stock, so one batch answers a burst of notices.
        event::Kind::PrekeysLow(_) => check_prekey_stock(core, conn).await,
        event::Kind::ProvisioningMessage(_) => Ok(()),
    }
}

fn handle_ephemeral(core: &Core, kind: Option<ephemeral_event::Kind>) {
    match kind {
        Some(ephemeral_event::Kind::Typing(typing)) => {
            let (Ok(chat_id), Ok(user_id)) = (
                ChatId::try_from(typing.chat_id.as_ref()),
                UserId::try_from(typing.user_id.as_ref()),
            ) else {
                return;
            };
            if user_id != core.account.user_id {
                core.emit(ClientEvent::Typing {
                    chat_id,
                    user_id,
                    active: typing.active,
                });
            }
        }
        Some(ephemeral_event::Kind::Presence(presence)) => {
            if let Ok(user_id) = UserId::try_from(presence.user_id.as_ref()) {
                core.emit(ClientEvent::Presence {
                    user_id,
                    online: presence.online,
                    last_seen_ms: presence.last_seen_ms,
                });
            }
        }
        None => {}
    }
}

async fn resubscribe_presence<R: Relay + ?Sized>(core: &Core, conn: &R) -> Result<(), ClientError> {
    let users = core.presence_subscriptions();
    if users.is_empty() {
        return Ok(());
    }
    let user_ids = users.iter().map(|u| Bytes::copy_from_slice(u)).collect();
    conn.request(request::Kind::SubscribePresence(SubscribePresence {
        user_ids,
    }))
    .await?;
    Ok(())
}

/// Asks for the prekey stock (an upload with nothing in it) and refills it
/// when it runs low: a `PrekeysLow` notice may have been missed while offline.
async fn check_prekey_stock<R: Relay + ?Sized>(core: &Core, conn: &R) -> Result<(), ClientError> {
    let answer = conn
        .request(request::Kind::UploadPrekeys(UploadPrekeys::default()))
        .await?;
    if let response::Kind::PrekeyStock(stock) = answer {
        if stock.one_time_prekeys < LOW_PREKEYS || stock.one_time_kem_prekeys < LOW_PREKEYS {
            replenish_prekeys(core, conn).await?;
        }
    }
    Ok(())
}

/// Uploads a new batch of one-time prekeys (their secrets stored first).
async fn replenish_prekeys<R: Relay + ?Sized>(core: &Core, conn: &R) -> Result<(), ClientError> {
    let upload: UploadPrekeys = core
        .store
        .transaction(|tx| generate_prekeys(tx, core.sessions.identity(), None))?;
    conn.request(request::Kind::UploadPrekeys(upload)).await?;
    tracing::debug!(at = core.clock.now_ms(), "uploaded one-time prekeys");
    Ok(())
}

/// One prekey maintenance pass (see [`maintain`]), forcing the signed
/// prekey's rotation if a decrypt reported its replay cache full.
pub(crate) async fn run_maintenance<R: Relay + ?Sized>(
    core: &Core,
    conn: &R,
) -> Result<PrekeyRotations, ClientError> {
    let full = core.replay_cache_full.swap(false, Ordering::Relaxed);
    let result = maintain(core, conn, full).await;
    if result.is_err() && full {
        core.replay_cache_full.store(true, Ordering::Relaxed);
    }
    result
}
