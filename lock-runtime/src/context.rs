//! Which locks the current task holds: for `current()` and for re-entry.

use std::future::Future;
use std::sync::Arc;

use crate::backend::Backend;

tokio::task_local! {
    static HELD: Arc<Vec<CurrentLock>>;
}

/// One lock held by the running task, as [`current`](crate::current) reports it.
#[derive(Clone)]
pub struct CurrentLock {
    /// Identifies the store (connection or in-memory map), so the same key in two stores is
    /// two locks.
    pub(crate) store: usize,
    pub(crate) key: String,
    pub(crate) token: String,
    pub(crate) fencing_token: Option<u64>,
    /// Taken by a section that re-enters this lock, so that two sub-futures of one body
    /// (`join!`, `select!`) never run re-entered sections at once.
    pub(crate) gate: Arc<tokio::sync::Mutex<()>>,
}

impl PartialEq for CurrentLock {
    fn eq(&self, other: &Self) -> bool {
        (self.store, &self.key, &self.token, self.fencing_token)
            == (other.store, &other.key, &other.token, other.fencing_token)
    }
}

impl Eq for CurrentLock {}

impl CurrentLock {
    pub(crate) fn new(
        store: usize,
        key: String,
        token: String,
        fencing_token: Option<u64>,
    ) -> Self {
        CurrentLock {
            store,
            key,
            token,
            fencing_token,
            gate: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// The same lock, as seen by a section that re-entered it: its own gate for sections
    /// nested inside it.
    pub(crate) fn reentered(&self) -> Self {
        CurrentLock::new(
            self.store,
            self.key.clone(),
            self.token.clone(),
            self.fencing_token,
        )
    }
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

/// The innermost scope of the running task that holds `key` in `store` (through `run` or
/// the attribute), if any.
pub(crate) fn held(store: usize, key: &str) -> Option<CurrentLock> {
    HELD.try_with(|s| {
        s.iter()
            .rev()
            .find(|h| h.store == store && h.key == key)
            .cloned()
    })
    .ok()
    .flatten()
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
