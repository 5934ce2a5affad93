//! The connection loop: connect, authenticate, resync from the stored
//! cursors, then receive deliveries, ephemeral events and send the outbox
//! until the connection drops; reconnect with backoff and jitter.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use rand_core::Rng;
use tern_protocol::wire::{
    AckDelivered, Cursor, Delivery, SubscribePresence, Sync, UploadPrekeys, ephemeral_event, event,
    request, response,
};
use tokio::sync::watch;

use super::receive::process;
use super::rotation::{ROTATION_CHECK, maintain};
use super::send::pump;
use super::{Core, now_ms};
use crate::client::{
    ChatId, ClientError, ClientEvent, DeviceAuth, PrekeyRotations, SyncSummary, UserId,
    generate_prekeys, rng,
};
use crate::net::{Backoff, Greeting, RelayConnection};

/// Entries asked for per sync page (the relay caps it at 500).
const SYNC_PAGE: u32 = 500;
/// Stock of one-time prekeys under which a new batch is uploaded on connect.
const LOW_PREKEYS: u32 = 20;
/// How often the outbox is checked for due retries without a wake-up.
const OUTBOX_TICK: Duration = Duration::from_millis(250);

/// Runs until `shutdown` turns true.
pub(crate) async fn run(core: Arc<Core>, mut shutdown: watch::Receiver<bool>) {
    let mut backoff = Backoff::default();
    while !*shutdown.borrow() {
        let attempt = tokio::select! {
            result = connect(&core) => result,
            _ = shutdown.changed() => break,
        };
        match attempt {
            Ok(conn) => {
                backoff.reset();
                let conn = Arc::new(conn);
                core.conn.send_replace(Some(conn.clone()));
                let reason = tokio::select! {
                    reason = serve(&core, &conn) => reason,
                    _ = shutdown.changed() => "shut down".to_owned(),
                };
                core.conn.send_replace(None);
                conn.close();
                core.emit(ClientEvent::Disconnected { reason });
            }
            Err(e) => tracing::debug!(error = %e, "cannot reach the relay"),
        }
        let delay = backoff.next_delay(rng().next_u64());
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => break,
        }
    }
}

async fn connect(core: &Core) -> Result<RelayConnection, ClientError> {
    let greeting = Greeting::connect(&core.relay).await?;
    let signer = DeviceAuth(core.sessions.identity());
    Ok(greeting
        .authenticate(
            tern_protocol::UserId(core.account.user_id),
            core.account.device_id,
            &signer,
        )
        .await?)
}

/// Serves one connection; returns why it ended.
async fn serve(core: &Core, conn: &RelayConnection) -> String {
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
    conn: &RelayConnection,
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

/// Processes entries in order, then acknowledges the highest seq per chat.
/// Batches never overlap (an entry must not be decrypted twice): the engine's
/// deliveries and [`resync`] pages from [`crate::client::Client::sync_now`]
/// take turns.
async fn receive_batch(
    core: &Core,
    conn: &RelayConnection,
    entries: &[Delivery],
) -> Result<(), ClientError> {
    let _turn = core.receiving.lock().await;
    let mut acks: Vec<(ChatId, u64)> = Vec::new();
    for entry in entries {
        let processed = match process(core, conn, entry).await {
            Ok(processed) => processed,
            Err(e @ (ClientError::Offline(_) | ClientError::Store(_) | ClientError::Closed)) => {
                return Err(e);
            }
            Err(e) => skip_entry(core, entry, e.to_string())?,
        };
        if let Some((chat, seq)) = processed {
            match acks.iter_mut().find(|(c, _)| *c == chat) {
                Some(ack) => ack.1 = ack.1.max(seq),
                None => acks.push((chat, seq)),
            }
        }
    }
    if acks.is_empty() {
        return Ok(());
    }
    let cursors = acks
        .into_iter()
        .map(|(chat, seq)| Cursor {
            chat_id: Bytes::copy_from_slice(&chat),
            seq,
        })
        .collect();
    conn.request(request::Kind::AckDelivered(AckDelivered { cursors }))
        .await?;
    Ok(())
}

/// An entry that cannot be processed for a reason retrying cannot fix (its
/// sender's device list does not verify, the sender is unknown): report it
/// and move on, so that one bad entry does not block the chat.
fn skip_entry(
    core: &Core,
    entry: &Delivery,
    reason: String,
) -> Result<Option<(ChatId, u64)>, ClientError> {
    let (Ok(chat_id), Ok(sender)) = (
        ChatId::try_from(entry.chat_id.as_ref()),
        UserId::try_from(entry.sender_user_id.as_ref()),
    ) else {
        return Ok(None);
    };
    tracing::warn!(%reason, seq = entry.seq, "skipping an entry");
    core.store
        .transaction(|tx| tx.advance_delivered(&chat_id, entry.seq))?;
    core.emit(ClientEvent::DecryptionFailed {
        chat_id,
        sender,
        sender_device: entry.sender_device_id,
        seq: entry.seq,
        reason,
    });
    Ok(Some((chat_id, entry.seq)))
}

/// Pulls and processes every entry after the stored cursors, page by page,
/// until the relay has nothing more; returns what it did.
pub(crate) async fn resync(
    core: &Core,
    conn: &RelayConnection,
) -> Result<SyncSummary, ClientError> {
    let mut summary = SyncSummary::default();
    loop {
        let cursors = core.store.transaction(|tx| tx.cursors())?;
        let after = cursors
            .iter()
            .map(|c| Cursor {
                chat_id: Bytes::copy_from_slice(&c.chat_id),
                seq: c.delivered_seq,
            })
            .collect();
        let answer = conn
            .request(request::Kind::Sync(Sync {
                after,
                limit: SYNC_PAGE,
            }))
            .await?;
        let response::Kind::SyncBatch(batch) = answer else {
            return Err(ClientError::Refused("unexpected answer to Sync".into()));
        };
        receive_batch(core, conn, &batch.entries).await?;
        summary.pages += 1;
        summary.entries += batch.entries.len() as u64;
        if !batch.more || batch.entries.is_empty() {
            return Ok(summary);
        }
    }
}

async fn resubscribe_presence(core: &Core, conn: &RelayConnection) -> Result<(), ClientError> {
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
async fn check_prekey_stock(core: &Core, conn: &RelayConnection) -> Result<(), ClientError> {
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
async fn replenish_prekeys(core: &Core, conn: &RelayConnection) -> Result<(), ClientError> {
    let upload: UploadPrekeys = core
        .store
        .transaction(|tx| generate_prekeys(tx, core.sessions.identity(), None))?;
    conn.request(request::Kind::UploadPrekeys(upload)).await?;
    tracing::debug!(at = now_ms(), "uploaded one-time prekeys");
    Ok(())
}

/// One prekey maintenance pass (see [`maintain`]), forcing the signed
/// prekey's rotation if a decrypt reported its replay cache full.
pub(crate) async fn run_maintenance(
    core: &Core,
    conn: &RelayConnection,
) -> Result<PrekeyRotations, ClientError> {
    let full = core.replay_cache_full.swap(false, Ordering::Relaxed);
    let result = maintain(core, conn, full).await;
    if result.is_err() && full {
        core.replay_cache_full.store(true, Ordering::Relaxed);
    }
    result
}
