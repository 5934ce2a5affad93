//! The mobile lifecycle: an app goes to the background ([`TernClient::pause`]),
//! comes back ([`TernClient::resume`]), and is woken by a content-free push
//! for a few seconds ([`TernClient::handle_push_wakeup`]).
//!
//! Nothing here is needed for durability: every message is committed to
//! the store before it is shown or acknowledged, so a process killed at any
//! point reopens with everything it reported.

use std::time::{Duration, Instant};

use tern_core::{Client, ClientEvent, EventSubscription, Message};

use crate::client::TernClient;
use crate::error::TernError;
use crate::runtime::{guard, spawn};
use crate::types::ChatMessage;

/// Part of a wake-up's time kept back to return (and for the app to finish
/// its own work) before the deadline.
const RETURN_MARGIN: Duration = Duration::from_millis(250);

/// What a push wake-up did.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct WakeupReport {
    /// Messages that arrived during the wake-up, in arrival order (already
    /// stored; listeners saw them too).
    pub messages: Vec<ChatMessage>,
    /// Whether everything queued at the relay was fetched and the outbox
    /// was emptied before the deadline. When false, the rest comes with the
    /// next wake-up or `resume`.
    pub complete: bool,
}

#[uniffi::export]
impl TernClient {
    /// Closes the relay connection and stays offline until `resume`: call it
    /// when the app goes to the background. Local calls keep working; sends
    /// wait in the outbox.
    pub fn pause(&self) -> Result<(), TernError> {
        guard(|| {
            self.inner()?.pause();
            Ok(())
        })
    }

    /// Reconnects, resyncs every chat and sends the outbox: call it when the
    /// app comes to the foreground.
    pub fn resume(&self) -> Result<(), TernError> {
        guard(|| {
            self.inner()?.resume();
            Ok(())
        })
    }

    /// Whether the client is paused.
    pub fn is_paused(&self) -> Result<bool, TernError> {
        guard(|| Ok(self.inner()?.is_paused()))
    }

    /// For a push that woke the app in the background: connects, fetches
    /// what is queued at the relay, sends the outbox, stores everything and
    /// returns what arrived, all within `deadline_ms` (from now; keep it
    /// under what the platform grants, e.g. 25 s of iOS's 30). A paused
    /// client is paused again before this returns.
    pub async fn handle_push_wakeup(&self, deadline_ms: u64) -> Result<WakeupReport, TernError> {
        let client = self.inner()?;
        spawn(async move { Ok(wake(&client, Duration::from_millis(deadline_ms)).await) }).await
    }
}

/// Runs one wake-up: resume, sync, flush, collect, restore the pause.
async fn wake(client: &Client, budget: Duration) -> WakeupReport {
    let deadline = Instant::now() + budget.saturating_sub(RETURN_MARGIN);
    let was_paused = client.is_paused();
    let mut events = client.subscribe();
    client.resume();
    let mut arrived = Vec::new();
    let work = async {
        let left = || deadline.saturating_duration_since(Instant::now());
        client.wait_online(left()).await.is_ok()
            && client.sync_now(left()).await.is_ok()
            && client.flush_outbox(left()).await.is_ok()
    };
    let complete = tokio::select! {
        complete = work => complete,
        () = collect(&mut events, &mut arrived) => false,
    };
    drain(&mut events, &mut arrived);
    if was_paused {
        client.pause();
    }
    WakeupReport {
        messages: arrived.into_iter().map(Into::into).collect(),
        complete,
    }
}

/// Collects received messages until the subscription ends.
async fn collect(events: &mut EventSubscription, into: &mut Vec<Message>) {
    while let Some(event) = events.next().await {
        if let ClientEvent::MessageReceived(message) = event {
            into.push(message);
        }
    }
}

/// Collects the received messages already queued, without waiting.
fn drain(events: &mut EventSubscription, into: &mut Vec<Message>) {
    while let Some(event) = events.try_next() {
        if let ClientEvent::MessageReceived(message) = event {
            into.push(message);
        }
    }
}
