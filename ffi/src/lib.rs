//! Tern for mobile apps and scripts: UniFFI bindings over `tern-core`.
//!
//! One [`TernClient`] per device, created, opened or linked with a
//! passphrase or a raw key kept in the platform keystore. Long calls are
//! `async` in every binding (Kotlin coroutines, Swift async/await, Python
//! asyncio) and cancellable; events reach a [`TernListener`] the app
//! implements; every failure is a [`TernError`] variant. `docs/ffi.md`
//! describes the threading model, the lifecycle and how to build for
//! Android and iOS.
//!
//! Layout: `client` (the object: contacts, chats, messages, devices),
//! `attachments`, `linking`, `lifecycle` (pause, resume, push wake-ups),
//! `events` (listeners), `types` (records), `error`, and `runtime` (the
//! tokio runtime and the wrapper that makes every call cancellable and
//! panic-safe).

#![deny(unreachable_pub)]

mod attachments;
mod client;
mod error;
mod events;
mod lifecycle;
mod linking;
mod runtime;
mod types;

pub use attachments::ProgressListener;
pub use client::{ClientOptions, StoreKey, TernClient};
pub use error::TernError;
pub use events::{LinkStep, ListenerError, ListenerHandle, TernEvent, TernListener};
pub use lifecycle::WakeupReport;
pub use linking::{LinkOffer, LinkRequest};
pub use types::{
    Account, Attachment, Chat, ChatKind, ChatMessage, Contact, DeliveryState, Device,
    RecipientState, SafetyNumber, SearchOptions, SearchResult, SyncReport, TransferState, Trust,
};

uniffi::setup_scaffolding!("tern");
