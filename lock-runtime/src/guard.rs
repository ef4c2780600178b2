//! `LockGuard`: proof of holding a lock, with its watchdog; released on drop.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backend::bounded;
use crate::context::{self, CurrentLock};
use crate::keys::check_ttl;
use crate::lease::Lease;
use crate::renewer::LeaseId;
use crate::store::Store;
use crate::{LockError, LostReason};

/// A held lock.
///
/// While the guard lives, a watchdog renews the lock every `ttl/3` (unless the request
/// turned it off). If a renewal finds the lock taken, or the lease runs out with no renewal
/// getting through, the lock is *lost*: [`lost`](LockGuard::lost) resolves,
/// [`lost_token`](LockGuard::lost_token) is cancelled, and work run through
/// [`LockRequest::run`](crate::LockRequest::run) is cancelled.
///
/// Give the lock back with [`release`](LockGuard::release). A guard dropped without it
/// (early return, `?`, panic, a cancelled future) releases in a background task on the
/// current tokio runtime, bounded by the client's timeout; drop itself never blocks. With no
/// runtime, the key is left to expire with its TTL, and
/// [`LockClient::close`](crate::LockClient::close) still releases it.
#[must_use = "dropping the guard releases the lock at once"]
pub struct LockGuard {
    store: Arc<Store>,
    lease: Arc<Lease>,
    fence: Option<u64>,
    /// Registration with the client's renewal scheduler and registry of held locks.
    id: LeaseId,
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
        store: &Arc<Store>,
        lease: Lease,
        fence: Option<u64>,
        renew: bool,
    ) -> LockGuard {
        let lease = Arc::new(lease);
        let id = store.hold(Arc::clone(&lease), renew);
        LockGuard {
            store: Arc::clone(store),
            lease,
            fence,
            id,
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

    /// An owned loss signal for a spawned task to hold: cancelled when the lock is lost, and
    /// when it is released or this guard is dropped. Clone it freely.
    ///
    /// ```
    /// # async fn demo() -> Result<(), lock_runtime::LockError> {
    /// let client = lock_runtime::LockClient::in_memory();
    /// let guard = client.lock("export").acquire().await?;
    /// let stop = guard.lost_token();
    /// let worker = tokio::spawn(async move {
    ///     tokio::select! {
    ///         () = stop.cancelled() => "stopped",
    ///         () = std::future::pending::<()>() => "done",
    ///     }
    /// });
    /// guard.release().await?;
    /// assert_eq!(worker.await.unwrap(), "stopped");
    /// # Ok(()) }
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
    /// ```
    ///
    /// The token is cancelled by the renewal scheduler; [`lost`](LockGuard::lost) (and
    /// [`LockRequest::run`](crate::LockRequest::run)) also watch the lease deadline on their
    /// own clock, which is the stricter signal where both are at hand.
    pub fn lost_token(&self) -> CancellationToken {
        self.lease.cancel_token()
    }

    /// The server's remaining TTL for this lock, if this guard still holds it;
    /// `Err(NotHeld)` if the key expired or holds another token.
    pub async fn remaining_ttl(&self) -> Result<Duration, LockError> {
        let backend = &*self.lease.backend;
        let call = backend.ttl_if_held(self.key(), self.token());
        match bounded(backend, self.key(), "remaining_ttl", call).await? {
            Some(ttl) => Ok(ttl),
            None => Err(LockError::NotHeld {
                key: self.key().to_owned(),
            }),
        }
    }

    /// Sets the lock's remaining TTL to `ttl`, if this guard still holds it; the watchdog
    /// then renews at the new TTL. `Err(NotHeld)` if the lock expired, was taken, or was
    /// already declared lost (then nothing is sent).
    ///
    /// The extend goes through the same queue as the watchdog's renewals, after any renewal
    /// already in flight, so a renewal sent at the old TTL can never land after it. A lock
    /// with a `max_hold` is never extended past it.
    pub async fn extend(&self, ttl: Duration) -> Result<(), LockError> {
        let key = self.key();
        if self.lease.lost_reason().is_some() {
            return Err(LockError::NotHeld {
                key: key.to_owned(),
            });
        }
        check_ttl(key, ttl)?;
        let Some(reply) = self.store.renewer.extend(self.id, ttl) else {
            return Err(LockError::NotHeld {
                key: key.to_owned(),
            });
        };
        // The scheduler bounds the attempt itself; this only guards against its runtime
        // having gone away meanwhile.
        let after = 2 * self.lease.backend.op_timeout();
        match tokio::time::timeout(after, reply).await {
            Ok(Ok(result)) => result?,
            Ok(Err(_)) => {
                return Err(LockError::NotHeld {
                    key: key.to_owned(),
                });
            }
            Err(_) => {
                return Err(LockError::Timeout {
                    key: key.to_owned(),
                    operation: "extend",
                    after,
                });
            }
        }
        tracing::debug!(key, ttl_ms = ttl.as_millis() as u64, "lock extended");
        Ok(())
    }

    /// Gives the lock back, if this guard still holds it. `Err(NotHeld)` if it had expired
    /// or been taken: whatever it protected may have overlapped with another holder.
    ///
    /// With a `min_hold` that has not yet passed, the key is kept (owner-checked) until it
    /// has, and then frees itself.
    pub async fn release(mut self) -> Result<(), LockError> {
        self.stop_watchdog();
        let lease = Arc::clone(&self.lease);
        let backend = &*lease.backend;
        let call = Box::pin(lease.give_back());
        let released = bounded(backend, &lease.key, "release", call).await;
        // Only now: if this future is dropped mid-flight, Drop still sends a release.
        self.armed = false;
        self.store.forget(self.id);
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
    ///
    /// Loss is watched on this task's own clock too (see [`Lease::wait_lost`]), so the work
    /// is dropped before the lease deadline even if no renewal scheduler is running.
    pub(crate) async fn protect<F: Future>(&self, work: F) -> Result<F::Output, LostReason> {
        let held = CurrentLock::new(
            context::store_id(&self.lease.backend),
            self.lease.key.clone(),
            self.lease.token.clone(),
            self.fence,
        );
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
        self.store.renewer.unregister(self.id);
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        crate::metrics::released(&self.lease.held);
        self.stop_watchdog();
        if !self.armed {
            return;
        }
        self.store
            .release_in_background(Some(self.id), Arc::clone(&self.lease));
    }
}
