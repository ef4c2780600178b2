//! `LockGuard`: proof of holding a lock, with its watchdog; released on drop.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::backend::{Renewal, bounded};
use crate::context::{self, CurrentLock};
use crate::keys::check_ttl;
use crate::lease::Lease;
use crate::renewer::{LeaseId, Renewer};
use crate::{LockError, LostReason};

/// A held lock.
///
/// While the guard lives, a watchdog renews the lock every `ttl/3` (unless the request
/// turned it off). If a renewal finds the lock taken, or the lease runs out with no renewal
/// getting through, the lock is *lost*: [`lost`](LockGuard::lost) resolves, and work run
/// through [`LockRequest::run`](crate::LockRequest::run) is cancelled.
///
/// Give the lock back with [`release`](LockGuard::release). A guard dropped without it
/// (early return, `?`, panic, a cancelled future) releases in a background task on the
/// current tokio runtime, bounded by the client's timeout; drop itself never blocks. With no
/// runtime, the key is left to expire with its TTL.
#[must_use = "dropping the guard releases the lock at once"]
pub struct LockGuard {
    lease: Arc<Lease>,
    fence: Option<u64>,
    renewer: Arc<Renewer>,
    /// Registration with the client's renewal scheduler; `None` once stopped.
    watchdog: Option<LeaseId>,
    /// False once released: nothing left to do on drop.
    armed: bool,
}

impl fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The token is a capability (it can release the lock): keep it out of logs.
        f.debug_struct("LockGuard")
            .field("key", &self.lease.key)
            .field("fencing_token", &self.fence)
            .field("ttl", &self.lease.ttl())
            .field("lost", &self.lease.lost_reason())
            .finish_non_exhaustive()
    }
}

impl LockGuard {
    /// Hands a lock just acquired to the client's renewal scheduler.
    pub(crate) fn start(
        renewer: &Arc<Renewer>,
        lease: Lease,
        fence: Option<u64>,
        renew: bool,
    ) -> LockGuard {
        let lease = Arc::new(lease);
        let id = renewer.register(Arc::clone(&lease), renew);
        LockGuard {
            lease,
            fence,
            renewer: Arc::clone(renewer),
            watchdog: Some(id),
            armed: true,
        }
    }

    /// The key as stored in Redis, namespace included.
    pub fn key(&self) -> &str {
        &self.lease.key
    }

    /// This acquisition's random token: the value stored at the key.
    ///
    /// Treat it like a password; anyone who has it can release the lock.
    pub fn token(&self) -> &str {
        &self.lease.token
    }

    /// The fencing token, if the request asked for one with
    /// [`fencing(true)`](crate::LockRequest::fencing).
    ///
    /// Fencing tokens of one key strictly increase across every acquisition by any client.
    /// Pass it to the storage the lock protects and have it refuse writes carrying a token
    /// lower than the highest it has seen: that, not the lock alone, is what keeps a paused
    /// or partitioned former holder from doing damage.
    pub fn fencing_token(&self) -> Option<u64> {
        self.fence
    }

    /// The local lease deadline: the latest instant at which this holder may assume it still
    /// holds the lock. It moves forward with each renewal.
    pub fn deadline(&self) -> Instant {
        self.lease.deadline()
    }

    /// Whether the watchdog has declared the lock lost (without asking the server).
    pub fn is_lost(&self) -> bool {
        self.lease.lost_reason().is_some()
    }

    /// Asks the server whether the key still holds this guard's token.
    pub async fn is_held(&self) -> Result<bool, LockError> {
        let backend = &*self.lease.backend;
        let call = backend.is_held(self.key(), self.token());
        bounded(backend, self.key(), "is_held", call).await
    }

    /// Resolves when the watchdog declares the lock lost, with the reason. Never resolves
    /// while the lock is held.
    ///
    /// ```
    /// # async fn demo(guard: lock_runtime::LockGuard) {
    /// tokio::select! {
    ///     reason = guard.lost() => eprintln!("lock lost: {reason}"),
    ///     () = do_work() => {}
    /// }
    /// # }
    /// # async fn do_work() {}
    /// ```
    pub async fn lost(&self) -> LostReason {
        self.lease.wait_lost().await
    }

    /// Sets the lock's remaining TTL to `ttl`, if this guard still holds it; the watchdog
    /// then renews at the new TTL. `Err(NotHeld)` if the lock expired or another owner has
    /// it.
    pub async fn extend(&self, ttl: Duration) -> Result<(), LockError> {
        let key = self.key();
        check_ttl(key, ttl)?;
        let backend = &*self.lease.backend;
        let sent_at = Instant::now();
        let batch = [Renewal {
            key,
            token: self.token(),
            ttl,
        }];
        let renewed = bounded(backend, key, "extend", backend.renew(&batch)).await?;
        if renewed.first() != Some(&true) {
            self.lease.declare_lost(LostReason::Taken);
            return Err(LockError::NotHeld {
                key: key.to_owned(),
            });
        }
        self.lease.renewed(sent_at, ttl);
        if let Some(id) = self.watchdog {
            self.renewer.reschedule(id);
        }
        tracing::debug!(key, ttl_ms = ttl.as_millis() as u64, "lock extended");
        Ok(())
    }

    /// Gives the lock back, if this guard still holds it. `Err(NotHeld)` if it had expired
    /// or been taken: whatever it protected may have overlapped with another holder.
    pub async fn release(mut self) -> Result<(), LockError> {
        self.stop_watchdog();
        let lease = Arc::clone(&self.lease);
        let backend = &*lease.backend;
        let call = backend.release(&lease.key, &lease.token);
        let released = bounded(backend, &lease.key, "release", call).await;
        // Only now: if this future is dropped mid-flight, Drop still sends a release.
        self.armed = false;
        let key = &lease.key;
        match released? {
            true => {
                tracing::debug!(key, "lock released");
                Ok(())
            }
            false => {
                tracing::debug!(key, "lock was not held at release");
                Err(LockError::NotHeld { key: key.clone() })
            }
        }
    }

    /// Runs `work` while the lock is held; `Err(reason)` if the lock was lost first, in which
    /// case `work` has been dropped. Makes the lock visible to [`crate::current`] inside.
    pub(crate) async fn protect<F: Future>(&self, work: F) -> Result<F::Output, LostReason> {
        let held = CurrentLock {
            store: context::store_id(&self.lease.backend),
            key: self.lease.key.clone(),
            token: self.lease.token.clone(),
            fencing_token: self.fence,
        };
        context::scope(held, async {
            tokio::select! {
                biased;
                reason = self.lost() => Err(reason),
                out = work => Ok(out),
            }
        })
        .await
    }

    fn stop_watchdog(&mut self) {
        if let Some(id) = self.watchdog.take() {
            self.renewer.unregister(id);
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.stop_watchdog();
        if !self.armed {
            return;
        }
        release_in_background(Arc::clone(&self.lease));
    }
}

/// Hands a release to the current tokio runtime, bounded by the backend's timeout. Without a
/// runtime there is nothing to run it on, and the key expires with its TTL.
pub(crate) fn release_in_background(lease: Arc<Lease>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::debug!(key = %lease.key, "no tokio runtime at drop; the lock will expire with its TTL");
        return;
    };
    runtime.spawn(async move {
        let timeout = lease.backend.op_timeout();
        let release = lease.backend.release(&lease.key, &lease.token);
        match tokio::time::timeout(timeout, release).await {
            Ok(Ok(true)) => tracing::debug!(key = %lease.key, "lock released on drop"),
            Ok(Ok(false)) => tracing::debug!(key = %lease.key, "lock was not held at drop"),
            Ok(Err(e)) => {
                let e = e.into_lock_error(&lease.key, "release");
                tracing::warn!(key = %lease.key, error = %e, "release on drop failed; the lock will expire with its TTL");
            }
            Err(_) => tracing::warn!(key = %lease.key, "release on drop timed out; the lock will expire with its TTL"),
        }
    });
}
