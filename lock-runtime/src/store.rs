//! What every clone and namespace of one [`LockClient`](crate::LockClient) shares: the
//! backend, the renewal schedulers, the locks still held, and the background releases still
//! running. `close` works from here.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::backend::Backend;
use crate::lease::Lease;
use crate::renewer::{LeaseId, Renewer};
use crate::{LockError, LostReason};

pub(crate) struct Store {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) renewer: Renewer,
    closed: AtomicBool,
    /// Every lease not yet given back, by id: guards alive, and guards dropped whose
    /// background release has not finished (or never ran, its runtime gone).
    held: Mutex<HashMap<LeaseId, Arc<Lease>>>,
    /// Background releases spawned and not yet finished or dropped, plus acquire attempts
    /// in flight: `close` waits for both.
    background: AtomicUsize,
    background_done: Notify,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .field("held", &self.held().len())
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

/// Counts one background release (or one acquire attempt in flight) until its future
/// finishes or is dropped unpolled.
pub(crate) struct BackgroundRelease(Arc<Store>);

impl Drop for BackgroundRelease {
    fn drop(&mut self) {
        if self.0.background.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.background_done.notify_waiters();
        }
    }
}

/// Gives `lease` back, retrying transient failures until the server would have expired the
/// key anyway: a release that times out during a stall must not leave the key locked for
/// the rest of its TTL.
async fn give_back_until_expired(store: &Store, lease: &Lease) {
    let timeout = store.backend.op_timeout();
    let times = lease.times();
    let expires = times.renewed_at + times.ttl;
    let key = &lease.key;
    let mut pause = Duration::from_millis(5);
    loop {
        let error = match tokio::time::timeout(timeout, lease.give_back()).await {
            Ok(Ok(true)) => return tracing::debug!(key, "lock released in the background"),
            Ok(Ok(false)) => return tracing::debug!(key, "lock was not held at release"),
            Ok(Err(e)) => e.into_lock_error(key, "release"),
            Err(_) => LockError::Timeout {
                key: key.clone(),
                operation: "release",
                after: timeout,
            },
        };
        if !error.is_transient() || Instant::now() + pause >= expires {
            return tracing::warn!(key, %error, "background release failed; the lock will expire with its TTL");
        }
        tracing::debug!(key, %error, "background release failed; retrying");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

impl Store {
    pub(crate) fn new(backend: Arc<dyn Backend>) -> Self {
        Store {
            renewer: Renewer::new(Arc::clone(&backend)),
            backend,
            closed: AtomicBool::new(false),
            held: Mutex::new(HashMap::new()),
            background: AtomicUsize::new(0),
            background_done: Notify::new(),
        }
    }

    fn held(&self) -> MutexGuard<'_, HashMap<LeaseId, Arc<Lease>>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts an acquire attempt in flight until the returned value is dropped: `close`
    /// waits for it, so a `SET` that lands after `close` released everything is given back
    /// (the attempt sees the client closed and releases) before `close` returns.
    pub(crate) fn attempt(self: &Arc<Self>) -> BackgroundRelease {
        self.background.fetch_add(1, Ordering::AcqRel);
        BackgroundRelease(Arc::clone(self))
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Hands a lease just acquired to the renewal scheduler and the registry of held locks.
    pub(crate) fn hold(&self, lease: Arc<Lease>, renew: bool) -> LeaseId {
        let id = self.renewer.register(Arc::clone(&lease), renew);
        self.held().insert(id, lease);
        id
    }

    /// The lease was given back (or found not ours): forget it.
    pub(crate) fn forget(&self, id: LeaseId) {
        self.held().remove(&id);
    }

    /// Gives a lease back in a background task on the current tokio runtime, bounded by the
    /// backend's timeout. Without a runtime there is nothing to run it on: the key expires
    /// with its TTL, and `close` (from a runtime) still releases it.
    pub(crate) fn release_in_background(self: &Arc<Self>, id: Option<LeaseId>, lease: Arc<Lease>) {
        let id = id.unwrap_or_else(|| {
            // An acquire undone on cancel: track it like a held lock until it is released.
            let id = self.renewer.next_id();
            self.held().insert(id, Arc::clone(&lease));
            id
        });
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::debug!(key = %lease.key, "no tokio runtime at drop; the lock will expire with its TTL");
            return;
        };
        self.background.fetch_add(1, Ordering::AcqRel);
        let counted = BackgroundRelease(Arc::clone(self));
        runtime.spawn(async move {
            let store = &counted.0;
            give_back_until_expired(store, &lease).await;
            store.forget(id);
        });
    }

    /// See [`LockClient::close`](crate::LockClient::close).
    pub(crate) async fn close(&self) -> Result<(), LockError> {
        self.closed.store(true, Ordering::Release);
        // Stop the watchdogs first, and cancel any work still protected by these locks
        // before the keys can go to anyone else.
        for id in self.renewer.ids() {
            if let Some(lease) = self.renewer.unregister(id) {
                lease.declare_lost(LostReason::Closed);
            }
        }
        let leases: Vec<Arc<Lease>> = self.held().drain().map(|(_, lease)| lease).collect();
        let op_timeout = self.backend.op_timeout();
        let releases = leases.iter().map(|lease| async move {
            lease.declare_lost(LostReason::Closed);
            match tokio::time::timeout(op_timeout, lease.give_back()).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(e.into_lock_error(&lease.key, "close")),
                Err(_) => Err(LockError::Timeout {
                    key: lease.key.clone(),
                    operation: "close",
                    after: op_timeout,
                }),
            }
        });
        let outcomes = futures_util::future::join_all(releases).await;
        let released = outcomes.iter().filter(|o| o.is_ok()).count();
        // Background releases spawned before (by dropped guards) finish too, and so do
        // acquire attempts in flight (they see the client closed and give back what they got).
        let until = Instant::now() + op_timeout;
        loop {
            let done = self.background_done.notified();
            if self.background.load(Ordering::Acquire) == 0 {
                break;
            }
            if tokio::time::timeout_at(until, done).await.is_err() {
                tracing::warn!("close: background releases still running after the timeout");
                break;
            }
        }
        // And the backend's own: a quorum's releases still reaching their last nodes.
        if tokio::time::timeout_at(until, self.backend.settle())
            .await
            .is_err()
        {
            tracing::warn!("close: releases still reaching their last nodes after the timeout");
        }
        tracing::debug!(released, "lock client closed");
        let mut errors = outcomes.into_iter().filter_map(Result::err);
        match errors.next() {
            None => Ok(()),
            Some(first) => {
                for other in errors {
                    tracing::warn!(error = %other, "close: a release failed; that lock will expire with its TTL");
                }
                Err(first)
            }
        }
    }
}
