//! Which locks the current task holds: for `current()` and for re-entry.

use std::future::Future;
use std::sync::Arc;

use crate::backend::Backend;

tokio::task_local! {
    static HELD: Arc<Vec<CurrentLock>>;
}

/// One lock held by the running task, as [`current`](crate::current) reports it.
#[derive(Clone, PartialEq, Eq)]
pub struct CurrentLock {
    /// Identifies the store (connection or in-memory map), so the same key in two stores is
    /// two locks.
    pub(crate) store: usize,
    pub(crate) key: String,
    pub(crate) token: String,
    pub(crate) fencing_token: Option<u64>,
}

impl CurrentLock {
    /// The key as stored, namespace included.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The acquisition's random token. Treat it like a password.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The fencing token, if the lock was taken with fencing on.
    pub fn fencing_token(&self) -> Option<u64> {
        self.fencing_token
    }
}

impl std::fmt::Debug for CurrentLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CurrentLock")
            .field("key", &self.key)
            .field("fencing_token", &self.fencing_token)
            .finish_non_exhaustive()
    }
}

pub(crate) fn store_id(backend: &Arc<dyn Backend>) -> usize {
    Arc::as_ptr(backend).cast::<()>() as usize
}

/// Runs `fut` with `lock` pushed on the task's stack of held locks.
pub(crate) async fn scope<F: Future>(lock: CurrentLock, fut: F) -> F::Output {
    let mut stack = HELD.try_with(|s| Vec::clone(s)).unwrap_or_default();
    stack.push(lock);
    HELD.scope(Arc::new(stack), fut).await
}

/// Whether the running task already holds `key` in `store` (through `run` or the attribute).
pub(crate) fn holds(store: usize, key: &str) -> bool {
    HELD.try_with(|s| s.iter().any(|h| h.store == store && h.key == key))
        .unwrap_or(false)
}

/// The innermost lock the running task holds through [`LockRequest::run`](crate::LockRequest::run)
/// or `#[distributed_lock]`; `None` outside of one.
///
/// Only the task that runs the protected work sees it: a task spawned from inside is a
/// different task.
///
/// ```
/// # async fn demo() -> Result<(), lock_runtime::LockError> {
/// let client = lock_runtime::LockClient::in_memory();
/// let fence = client
///     .lock("report")
///     .fencing(true)
///     .run(async { lock_runtime::current().and_then(|l| l.fencing_token()) })
///     .await?;
/// assert_eq!(fence, Some(1));
/// assert!(lock_runtime::current().is_none());
/// # Ok(()) }
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
/// ```
pub fn current() -> Option<CurrentLock> {
    HELD.try_with(|s| s.last().cloned()).ok().flatten()
}
