//! Events to the app: a [`TernListener`] the app implements receives every
//! [`TernEvent`] on a thread of its own, in order, until its
//! [`ListenerHandle`] is cancelled or the client shuts down.
//!
//! Each listener has its own thread and a bounded queue: a slow listener
//! delays only itself (and, when its queue is full, learns how many events it
//! missed through [`TernEvent::Lagged`]); a listener that throws is logged and
//! keeps receiving.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tern_core::{ClientEvent, EventSubscription};
use tokio::sync::{broadcast, mpsc};
use tokio::task::AbortHandle;

use crate::runtime::runtime;
use crate::types::{ChatMessage, DeliveryState};

/// Events queued for one listener before the oldest are dropped.
const LISTENER_QUEUE: usize = 1024;

/// Something that happened, for the app to show.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum TernEvent {
    /// The relay connection is up (after a resync).
    Connected,
    /// The relay connection is down; the client reconnects unless paused.
    Disconnected {
        /// Why.
        reason: String,
    },
    /// A message arrived (already stored).
    MessageReceived {
        /// The message.
        message: ChatMessage,
    },
    /// An outgoing message's state changed for a recipient (✓, ✓✓, read).
    StatusChanged {
        /// Local message id.
        message_id: i64,
        /// Chat id (hex).
        chat_id: String,
        /// The recipient (hex), absent when the state is for all.
        recipient: Option<String>,
        /// The new state.
        state: DeliveryState,
    },
    /// A message cannot be sent (too large, refused for good).
    SendFailed {
        /// Local message id, when the message is in the history.
        message_id: Option<i64>,
        /// Chat id (hex).
        chat_id: String,
        /// Why.
        reason: String,
    },
    /// An incoming message could not be decrypted.
    DecryptionFailed {
        /// Chat id (hex).
        chat_id: String,
        /// Sender (hex).
        sender: String,
        /// Sender's device.
        sender_device: u32,
        /// Why.
        reason: String,
    },
    /// The encrypted session with a contact's device was re-established.
    SessionReset {
        /// Chat id (hex).
        chat_id: String,
        /// User (hex).
        user_id: String,
        /// Device.
        device_id: u32,
    },
    /// A contact's identity key changed.
    IdentityChanged {
        /// User (hex).
        user_id: String,
        /// Whether they were verified (sending is now held).
        was_verified: bool,
    },
    /// A contact's (or this account's) device list changed.
    DevicesChanged {
        /// User (hex).
        user_id: String,
    },
    /// A contact was marked verified or not (here or on another own device).
    VerificationChanged {
        /// User (hex).
        user_id: String,
        /// Now verified.
        verified: bool,
    },
    /// A chat was read up to `read_seq` (here or on another own device).
    ChatRead {
        /// Chat id (hex).
        chat_id: String,
        /// Read up to this seq.
        read_seq: u64,
    },
    /// A group was renamed (by any member: show who when it was not this
    /// account).
    ChatRenamed {
        /// Chat id (hex).
        chat_id: String,
        /// New title.
        title: String,
        /// The member who renamed it (hex).
        by: String,
    },
    /// Group members were added, removed or made admins.
    MembersChanged {
        /// Chat id (hex).
        chat_id: String,
        /// Added users (hex).
        added: Vec<String>,
        /// Removed users (hex).
        removed: Vec<String>,
        /// Users made admins of the group (hex).
        promoted: Vec<String>,
    },
    /// Someone started or stopped typing.
    Typing {
        /// Chat id (hex).
        chat_id: String,
        /// User (hex).
        user_id: String,
        /// Typing now.
        active: bool,
    },
    /// A watched user went online or offline.
    Presence {
        /// User (hex).
        user_id: String,
        /// Online now.
        online: bool,
        /// Last seen, ms since the epoch.
        last_seen_ms: u64,
    },
    /// A device-link step happened on this device.
    LinkProgress {
        /// Which step.
        step: LinkStep,
    },
    /// The listener fell behind and missed this many events; refresh views
    /// from the store (`chats`, `messages`).
    Lagged {
        /// Events missed.
        missed: u64,
    },
}

/// The steps of linking a new device, seen from the existing device.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum LinkStep {
    /// A link code is shown and waits for the new device.
    CodeShown,
    /// The new device answered; its identity key awaits approval.
    RequestReceived {
        /// The new device's identity key.
        device_identity: Vec<u8>,
    },
    /// The new device was added to the account under this id.
    Approved {
        /// The new device's id.
        device_id: u32,
    },
    /// The request was refused.
    Rejected,
}

impl TernEvent {
    /// The app-facing form of a client event; `None` for events that only
    /// concern the engine.
    fn from_client(event: ClientEvent) -> Option<Self> {
        Some(match event {
            ClientEvent::Connected => Self::Connected,
            ClientEvent::Disconnected { reason } => Self::Disconnected { reason },
            ClientEvent::MessageReceived(message) => Self::MessageReceived {
                message: message.into(),
            },
            ClientEvent::MessageStatus {
                message_id,
                chat_id,
                recipient,
                status,
            } => Self::StatusChanged {
                message_id: message_id.0,
                chat_id: hex::encode(chat_id),
                recipient: recipient.map(hex::encode),
                state: status.into(),
            },
            ClientEvent::SendFailed {
                message_id,
                chat_id,
                reason,
            } => Self::SendFailed {
                message_id: message_id.map(|m| m.0),
                chat_id: hex::encode(chat_id),
                reason,
            },
            ClientEvent::DecryptionFailed {
                chat_id,
                sender,
                sender_device,
                reason,
                ..
            } => Self::DecryptionFailed {
                chat_id: hex::encode(chat_id),
                sender: hex::encode(sender),
                sender_device,
                reason,
            },
            ClientEvent::SessionReset {
                chat_id,
                user_id,
                device_id,
            } => Self::SessionReset {
                chat_id: hex::encode(chat_id),
                user_id: hex::encode(user_id),
                device_id,
            },
            ClientEvent::IdentityChanged {
                user_id,
                was_verified,
            } => Self::IdentityChanged {
                user_id: hex::encode(user_id),
                was_verified,
            },
            ClientEvent::DeviceListChanged { user_id }
            | ClientEvent::DeviceListRollback { user_id, .. } => Self::DevicesChanged {
                user_id: hex::encode(user_id),
            },
            ClientEvent::VerificationChanged { user_id, verified } => Self::VerificationChanged {
                user_id: hex::encode(user_id),
                verified,
            },
            ClientEvent::ChatRead { chat_id, read_seq } => Self::ChatRead {
                chat_id: hex::encode(chat_id),
                read_seq,
            },
            ClientEvent::ChatTitleChanged { chat_id, title, by } => Self::ChatRenamed {
                chat_id: hex::encode(chat_id),
                title,
                by: hex::encode(by),
            },
            ClientEvent::MembersChanged {
                chat_id,
                added,
                removed,
                promoted,
            } => Self::MembersChanged {
                chat_id: hex::encode(chat_id),
                added: added.iter().map(hex::encode).collect(),
                removed: removed.iter().map(hex::encode).collect(),
                promoted: promoted.iter().map(hex::encode).collect(),
            },
            ClientEvent::Typing {
                chat_id,
                user_id,
                active,
            } => Self::Typing {
                chat_id: hex::encode(chat_id),
                user_id: hex::encode(user_id),
                active,
            },
            ClientEvent::Presence {
                user_id,
                online,
                last_seen_ms,
            } => Self::Presence {
                user_id: hex::encode(user_id),
                online,
                last_seen_ms,
            },
            ClientEvent::Lagged { missed } => Self::Lagged { missed },
            ClientEvent::AttachmentUploaded { .. } => return None,
        })
    }
}

/// What a listener's callback may fail with; logged and otherwise ignored.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum ListenerError {
    /// The app's callback threw.
    #[error("the listener failed: {detail}")]
    Failed {
        /// What it threw.
        detail: String,
    },
}

impl From<uniffi::UnexpectedUniFFICallbackError> for ListenerError {
    fn from(e: uniffi::UnexpectedUniFFICallbackError) -> Self {
        Self::Failed { detail: e.reason }
    }
}

/// Implemented by the app to receive events. Called on a background thread
/// that belongs to this listener (post to the UI thread from there).
#[uniffi::export(with_foreign)]
pub trait TernListener: Send + Sync {
    /// One event. Throwing is allowed: the error is logged and the next
    /// event still comes.
    fn on_event(&self, event: TernEvent) -> Result<(), ListenerError>;
}

/// A registered listener; [`ListenerHandle::cancel`] stops its events.
#[derive(uniffi::Object)]
pub struct ListenerHandle {
    forward: Mutex<Option<AbortHandle>>,
    cancelled: Arc<AtomicBool>,
}

#[uniffi::export]
impl ListenerHandle {
    /// Stops the events: none is delivered after this returns, except one
    /// already being delivered on the listener's thread.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        if let Some(task) = self
            .forward
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            task.abort();
        }
    }
}

impl ListenerHandle {
    /// Starts delivering the client's events and the bindings' own
    /// (`extra`) to `listener`.
    pub(crate) fn start(
        listener: Arc<dyn TernListener>,
        mut client_events: EventSubscription,
        mut extra: broadcast::Receiver<TernEvent>,
    ) -> Result<Arc<Self>, crate::error::TernError> {
        let (queue, mut queued) = mpsc::channel::<TernEvent>(LISTENER_QUEUE);
        let forward = runtime()?.spawn(async move {
            loop {
                let event = tokio::select! {
                    event = client_events.next() => match event {
                        Some(event) => TernEvent::from_client(event),
                        None => break,
                    },
                    event = extra.recv() => match event {
                        Ok(event) => Some(event),
                        Err(broadcast::error::RecvError::Lagged(missed)) => {
                            Some(TernEvent::Lagged { missed })
                        }
                        Err(broadcast::error::RecvError::Closed) => break,
                    },
                };
                if let Some(event) = event
                    && queue.send(event).await.is_err()
                {
                    break;
                }
            }
        });
        let cancelled = Arc::new(AtomicBool::new(false));
        let handle = Arc::new(Self {
            forward: Mutex::new(Some(forward.abort_handle())),
            cancelled: cancelled.clone(),
        });
        std::thread::Builder::new()
            .name("tern-listener".into())
            .spawn(move || {
                while let Some(event) = queued.blocking_recv() {
                    if cancelled.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Err(e) = listener.on_event(event) {
                        tracing::warn!(error = %e, "an event listener failed");
                    }
                }
            })
            .map_err(crate::error::TernError::from)?;
        Ok(handle)
    }
}
