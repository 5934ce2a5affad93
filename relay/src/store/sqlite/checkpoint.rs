//! WAL checkpoints that do not hold up the log writer.
//!
//! A checkpoint copies committed WAL frames back into the database file.
//! Run by the writer between batches, it delays every send that arrives
//! meanwhile: that was most of the relay's latency tail. Run only on another
//! connection, concurrently with commits, it never catches up with the end
//! of the WAL, and SQLite restarts the WAL from its start only when a write
//! transaction begins with every frame copied back, so the WAL file would
//! grow without bound.
//!
//! So the two share the work. Once [`CHECKPOINT_EVERY_APPENDS`] entries
//! were appended, a background thread with its own connection copies the
//! WAL while the writer keeps committing. When it is done, the writer runs
//! a catch-up checkpoint between two batches, which copies only the frames
//! committed meanwhile; the writer's next commit then restarts the WAL.

use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::thread::JoinHandle;

use rusqlite::Connection;

use crate::error::StoreError;

/// Appends after which a checkpoint starts, keeping the WAL near SQLite's
/// own default threshold.
pub(super) const CHECKPOINT_EVERY_APPENDS: usize = 1_000;

/// The checkpoint schedule and its background thread.
pub(super) struct Checkpointer {
    /// Entries appended since the last checkpoint started.
    appended: usize,
    /// Wakes the background thread; dropped to stop it.
    start: Option<SyncSender<()>>,
    done: Receiver<Result<(), StoreError>>,
    running: bool,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts the background thread on `conn`, a connection of its own.
    pub(super) fn spawn(conn: Connection) -> Result<Self, StoreError> {
        let (start, requests) = sync_channel::<()>(1);
        let (finished, done) = sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("tern-checkpoint".into())
            .spawn(move || {
                while requests.recv().is_ok() {
                    if finished.send(passive(&conn)).is_err() {
                        break;
                    }
                }
            })
            .map_err(|_| StoreError::Corrupt("cannot start the checkpoint thread"))?;
        Ok(Self {
            appended: 0,
            start: Some(start),
            done,
            running: false,
            thread: Some(thread),
        })
    }

    /// Counts committed appends.
    pub(super) fn appended(&mut self, count: usize) {
        self.appended += count;
    }

    /// Called by the writer between batches, with its own connection.
    pub(super) fn after_batch(&mut self, writer: &Connection) -> Result<(), StoreError> {
        if self.running {
            return match self.done.try_recv() {
                Ok(copied) => {
                    self.running = false;
                    copied?;
                    passive(writer)
                }
                Err(TryRecvError::Empty) => Ok(()),
                Err(TryRecvError::Disconnected) => {
                    Err(StoreError::Corrupt("the checkpoint thread stopped"))
                }
            };
        }
        if self.appended >= CHECKPOINT_EVERY_APPENDS
            && let Some(start) = &self.start
        {
            self.appended = 0;
            start
                .send(())
                .map_err(|_| StoreError::Corrupt("the checkpoint thread stopped"))?;
            self.running = true;
        }
        Ok(())
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.start.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Copies as much of the WAL as no reader still needs; never waits.
fn passive(conn: &Connection) -> Result<(), StoreError> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
    Ok(())
}
