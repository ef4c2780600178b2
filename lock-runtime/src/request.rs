//! `LockRequest`: what to lock and how, then `acquire` or `run`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::backend::wakeup::ReleaseWatch;
use crate::backend::{AcquireArgs, Acquired, bounded};
use crate::guard::{LockGuard, release_in_background};
use crate::keys::{check_ttl, fence_key, full_key};
use crate::lease::Lease;
use crate::{Backoff, LockClient, LockError, context};

/// A fresh token for one acquisition: a version-4 UUID (122 random bits) from the thread's
/// CSPRNG, which `rand` seeds from the OS and reseeds; this avoids a `getrandom` system call
/// per acquire.
fn new_token() -> String {
    uuid::Builder::from_random_bytes(rand::random())
        .into_uuid()
        .hyphenated()
        .to_string()
}

/// The default lock TTL: 30 seconds.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);

/// A request for one lock, built by [`LockClient::lock`]. Nothing is sent until
/// [`acquire`](LockRequest::acquire) or [`run`](LockRequest::run).
///
/// ```
/// # async fn demo() -> Result<(), lock_runtime::LockError> {
/// use std::time::Duration;
/// let client = lock_runtime::LockClient::in_memory();
/// let guard = client
///     .lock("order:42")
///     .ttl(Duration::from_secs(10))   // default 30 s
///     .wait(Duration::from_secs(2))   // default: none, a held lock is `Busy` at once
///     .fencing(true)                  // default off
///     .acquire()
///     .await?;
/// assert_eq!(guard.fencing_token(), Some(1));
/// guard.release().await?;
/// # Ok(()) }
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
/// ```
#[derive(Debug, Clone)]
#[must_use = "a lock request does nothing until `.acquire().await` or `.run(..).await`"]
pub struct LockRequest {
    client: LockClient,
    key: String,
    ttl: Duration,
    wait: Duration,
    fencing: bool,
    renew: bool,
    backoff: Backoff,
}

impl LockRequest {
    pub(crate) fn new(client: LockClient, key: String) -> Self {
        LockRequest {
            client,
            key,
            ttl: DEFAULT_TTL,
            wait: Duration::ZERO,
            fencing: false,
            renew: true,
            backoff: Backoff::default(),
        }
    }

    /// How long the lock lives on the server without renewal (default 30 s; from
    /// [`MIN_TTL`](crate::MIN_TTL), 100 ms, to [`MAX_TTL`](crate::MAX_TTL), 365 days). The watchdog renews it every `ttl/3`, so the TTL bounds how long a crashed
    /// holder blocks others, not how long the work may take.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How long to keep trying while someone else holds the lock, before giving up with
    /// [`LockError::Busy`]. The default is no wait at all.
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// Whether to hand out a fencing token (default off). Turning it on keeps one counter
    /// key per lock name forever, beside the lock key and in the same cluster slot.
    pub fn fencing(mut self, on: bool) -> Self {
        self.fencing = on;
        self
    }

    /// Whether the watchdog renews the lock (default on). With it off the lock lasts one
    /// TTL; the guard still reports it lost when that runs out.
    pub fn watchdog(mut self, on: bool) -> Self {
        self.renew = on;
        self
    }

    /// The pause between attempts while waiting (default: exponential, 5 ms to 200 ms,
    /// jittered).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The full key, namespace included, checked.
    fn full_key(&self) -> Result<String, LockError> {
        full_key(self.client.namespace(), &self.key)
    }

    /// Takes the lock, waiting up to the request's `wait` while someone else holds it.
    ///
    /// Errors: [`Busy`](LockError::Busy) when the wait runs out, [`InvalidKey`] and
    /// [`InvalidTtl`] for bad input, [`WrongType`](LockError::WrongType) when the key holds
    /// something that is not a lock, and [`Timeout`](LockError::Timeout) or
    /// [`Backend`](LockError::Backend) when the server cannot be reached. A waiter does not
    /// retry through server errors: they are returned at once.
    ///
    /// [`InvalidKey`]: LockError::InvalidKey
    /// [`InvalidTtl`]: LockError::InvalidTtl
    pub async fn acquire(self) -> Result<LockGuard, LockError> {
        let key = self.full_key()?;
        check_ttl(&key, self.ttl)?;
        let fence_key = match self.fencing {
            true => Some(fence_key(&key)?),
            false => None,
        };
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(LockError::NoRuntime { key });
        }
        let backend = Arc::clone(&self.client.backend);
        let op_timeout = backend.op_timeout();
        let started = Instant::now();
        let give_up_at = started.checked_add(self.wait);
        let mut attempt: u32 = 0;
        // Set up on the first busy answer; `None` after that means polling only.
        let mut releases: Option<ReleaseWatch> = None;
        let mut watching = false;
        loop {
            let token = new_token();
            let args = AcquireArgs {
                key: &key,
                token: &token,
                ttl: self.ttl,
                fence_key: fence_key.as_deref(),
            };
            let sent_at = Instant::now();
            let outcome = bounded(&*backend, &key, "acquire", backend.acquire(args)).await;
            let lease = || {
                Lease::new(
                    Arc::clone(&backend),
                    key.clone(),
                    token.clone(),
                    self.ttl,
                    sent_at,
                )
            };
            let holder_ttl = match outcome {
                Ok(Acquired::Yes { fence }) => {
                    tracing::debug!(
                        key,
                        attempts = attempt + 1,
                        fencing_token = fence,
                        "lock acquired"
                    );
                    return Ok(LockGuard::start(
                        &self.client.renewer,
                        lease(),
                        fence,
                        self.renew,
                    ));
                }
                Ok(Acquired::Busy { holder_ttl }) => holder_ttl,
                Err(e) => {
                    // The SET may have landed before the error or timeout: undo it, by token.
                    release_in_background(Arc::new(lease()));
                    return Err(e);
                }
            };
            let now = Instant::now();
            let remaining =
                give_up_at.map_or(Duration::MAX, |at| at.saturating_duration_since(now));
            if remaining.is_zero() {
                tracing::debug!(key, attempts = attempt + 1, "lock busy");
                return Err(LockError::Busy { key, holder_ttl });
            }
            attempt = attempt.saturating_add(1);
            if !watching {
                watching = true;
                // Subscribe, then try again at once: a release between the attempt above
                // and the subscription is caught by that retry, one after it by the watch.
                match tokio::time::timeout(remaining.min(op_timeout), backend.watch_releases(&key))
                    .await
                {
                    Ok(Ok(watch)) => {
                        releases = Some(watch);
                        continue;
                    }
                    Ok(Err(e)) => {
                        let e = e.into_lock_error(&key, "subscribe");
                        tracing::debug!(key, error = %e, "no release notifications; polling");
                    }
                    Err(_) => tracing::debug!(key, "release subscription timed out; polling"),
                }
            }
            // Polling stays as the fallback: a holder using another library, or a lock that
            // expires, announces nothing. Never sleep past the holder's expiry.
            let mut delay = self.backoff.delay(attempt - 1).min(remaining);
            if let Some(holder_ttl) = holder_ttl {
                delay = delay.min(holder_ttl);
            }
            match releases.as_mut() {
                Some(watch) => {
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = watch.released() => {}
                    }
                }
                None => tokio::time::sleep(delay).await,
            }
        }
    }

    /// Takes the lock, runs `work` under the watchdog, and releases the lock on every exit:
    /// return, panic, or this future being dropped.
    ///
    /// If the lock is lost while `work` runs, `work` is dropped (cancelled at its current
    /// `.await`) and the result is [`LockError::Lost`], always before the local lease
    /// deadline: no one else can have the lock while `work` still runs, as far as this
    /// process's clock can tell. Make `work` cancel-safe, or use fencing tokens where it
    /// writes.
    ///
    /// **Re-entry:** inside `run` (or a `#[distributed_lock]` fn), a nested `run` on the
    /// same key and the same client store runs `work` straight away under the outer lock
    /// instead of deadlocking. This holds within one task only.
    ///
    /// ```
    /// # async fn demo() -> Result<(), lock_runtime::LockError> {
    /// let client = lock_runtime::LockClient::in_memory();
    /// let total = client.lock("ledger").run(async { 2 + 2 }).await?;
    /// assert_eq!(total, 4);
    /// # Ok(()) }
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
    /// ```
    pub async fn run<F: Future>(self, work: F) -> Result<F::Output, LockError> {
        let key = self.full_key()?;
        if context::holds(context::store_id(&self.client.backend), &key) {
            tracing::trace!(key, "re-entering a lock this task holds");
            return Ok(work.await);
        }
        let guard = self.acquire().await?;
        match guard.protect(work).await {
            Ok(out) => {
                if let Err(e) = guard.release().await {
                    // The work is done; reporting an error now would invite a second run.
                    tracing::warn!(key, error = %e, "work finished but the release failed");
                }
                Ok(out)
            }
            Err(reason) => {
                drop(guard);
                Err(LockError::Lost { key, reason })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::new_token;

    #[test]
    fn tokens_are_fresh_v4_uuids() {
        let a = uuid::Uuid::parse_str(&new_token()).unwrap();
        let b = uuid::Uuid::parse_str(&new_token()).unwrap();
        assert_eq!(a.get_version_num(), 4);
        assert_eq!(a.get_variant(), uuid::Variant::RFC4122);
        assert_ne!(a, b);
    }
}
