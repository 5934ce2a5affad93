//! Where the client runs: one tokio runtime for the process, and the one
//! wrapper every exported async call goes through.
//!
//! The foreign side (Kotlin coroutines, Swift tasks, Python asyncio) polls
//! the futures UniFFI hands it; the work itself runs as a task on this
//! runtime, so it needs no tokio context from the caller's thread. The
//! wrapper also gives the two guarantees the bindings promise:
//! - cancelling the foreign call (dropping its future) aborts the task;
//! - a panic inside a call becomes [`TernError::Internal`], never an abort of
//!   the host process.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;

use tokio::runtime::{Builder, Runtime};
use tokio::task::JoinHandle;

use crate::error::TernError;

/// Worker threads: the client is I/O-bound; two keep a slow listener or a
/// long store transaction from stalling the connection.
const WORKER_THREADS: usize = 2;

/// The process-wide runtime, built on first use.
pub(crate) fn runtime() -> Result<&'static Runtime, TernError> {
    static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            Builder::new_multi_thread()
                .worker_threads(WORKER_THREADS)
                .thread_name("tern-ffi")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| TernError::Internal {
            detail: format!("cannot start the runtime: {e}"),
        })
}

/// Aborts the task when dropped: a cancelled foreign call stops its work.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs `work` on the runtime and returns its result; cancelled with the
/// returned future, a panic reported as [`TernError::Internal`].
pub(crate) async fn spawn<T, F>(work: F) -> Result<T, TernError>
where
    T: Send + 'static,
    F: Future<Output = Result<T, TernError>> + Send + 'static,
{
    let mut task = AbortOnDrop(runtime()?.spawn(work));
    match (&mut task.0).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => Err(TernError::Internal {
            detail: format!("the call panicked: {}", panic_text(e.into_panic())),
        }),
        Err(_) => Err(TernError::Cancelled),
    }
}

/// Runs a synchronous call, a panic reported as [`TernError::Internal`].
pub(crate) fn guard<T>(call: impl FnOnce() -> Result<T, TernError>) -> Result<T, TernError> {
    catch_unwind(AssertUnwindSafe(call)).unwrap_or_else(|payload| {
        Err(TernError::Internal {
            detail: format!("the call panicked: {}", panic_text(payload)),
        })
    })
}

/// Runs a future to completion from a synchronous exported call (the few
/// quick calls that touch the connection, such as typing indicators).
pub(crate) fn block_on<T, F>(work: F) -> Result<T, TernError>
where
    T: Send + 'static,
    F: Future<Output = Result<T, TernError>> + Send + 'static,
{
    guard(|| runtime()?.block_on(spawn(work)))
}

fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::panic)]
    #[test]
    fn a_panic_in_an_async_call_becomes_an_internal_error() {
        let result: Result<(), TernError> =
            block_on(async { spawn(async { panic!("boom") }).await });
        match result {
            Err(TernError::Internal { detail }) => assert!(detail.contains("boom"), "{detail}"),
            other => panic!("expected Internal, got {other:?}"),
        }
    }

    #[allow(clippy::panic)]
    #[test]
    fn a_panic_in_a_sync_call_becomes_an_internal_error() {
        let result: Result<(), TernError> = guard(|| panic!("sync boom"));
        assert!(
            matches!(result, Err(TernError::Internal { detail }) if detail.contains("sync boom"))
        );
    }

    #[test]
    fn cancelling_the_call_aborts_its_task() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let outcome = block_on(async move {
            let call = spawn(async move {
                tokio::time::sleep(std::time::Duration::from_secs(30)).await;
                let _ = tx.send(());
                Ok(())
            });
            // The caller gives up after 50 ms: the call's future is dropped.
            let timed_out = tokio::time::timeout(std::time::Duration::from_millis(50), call)
                .await
                .is_err();
            // An aborted task drops its sender at once; a running one would
            // hold it for 30 s.
            let released = tokio::task::spawn_blocking(move || {
                rx.recv_timeout(std::time::Duration::from_secs(5))
                    == Err(std::sync::mpsc::RecvTimeoutError::Disconnected)
            })
            .await
            .unwrap_or(false);
            Ok((timed_out, released))
        });
        assert!(matches!(outcome, Ok((true, true))), "{outcome:?}");
    }
}
