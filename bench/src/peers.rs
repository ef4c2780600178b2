//! The peer crates, as the workloads use them, with their default retry settings and one
//! server (a "quorum" of one).
//!
//! - **rslock 0.10** (async, redis 1.8 multiplexed connection): `LockManager::new([url])`,
//!   3 attempts with a random 0-200 ms pause between them. `lock` is one such round of
//!   attempts; waiting uses `acquire_no_guard`, which repeats `lock` until it succeeds.
//!   Release is `Lock::release`.
//! - **redlock 2.0** (blocking, redis 0.23): `RedLock::new([url])`, 3 attempts with a
//!   random 0-200 ms sleep after each failed one. It opens a new TCP connection for every
//!   command. `lock` is one round of attempts, waiting uses `acquire` (repeats `lock` until
//!   it succeeds, releases on drop), release is `unlock`. It runs on dedicated OS threads.

use std::time::Duration;

use crate::Res;
use crate::workload::{AsyncLocker, SyncLocker, TTL};

/// Which lock implementation a row is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lib {
    /// lock-runtime, with its defaults.
    Ours,
    /// rslock 0.10.
    Rslock,
    /// redlock 2.0.
    Redlock,
}

impl Lib {
    /// The name used in tables and plots.
    pub fn name(self) -> &'static str {
        match self {
            Lib::Ours => "lock-runtime",
            Lib::Rslock => "rslock 0.10",
            Lib::Redlock => "redlock 2.0",
        }
    }

    /// The short id used in results.tsv.
    pub fn id(self) -> &'static str {
        match self {
            Lib::Ours => "ours",
            Lib::Rslock => "rslock",
            Lib::Redlock => "redlock",
        }
    }
}

/// rslock as an [`AsyncLocker`].
#[derive(Clone, Debug)]
pub struct Rslock {
    manager: rslock::LockManager,
}

impl Rslock {
    /// A lock manager over the single server at `url`; it connects on first use.
    pub fn new(url: &str) -> Rslock {
        Rslock::multi(&[url.to_owned()])
    }

    /// A lock manager over several independent servers (its Redlock mode).
    pub fn multi(urls: &[String]) -> Rslock {
        Rslock {
            manager: rslock::LockManager::new(urls.to_vec()),
        }
    }
}

impl AsyncLocker for Rslock {
    type Guard = rslock::Lock;

    async fn acquire(&self, key: String) -> Res<rslock::Lock> {
        Ok(self.manager.lock(key.as_str(), TTL).await?)
    }

    async fn acquire_waiting(&self, key: String) -> Res<rslock::Lock> {
        Ok(self.manager.acquire_no_guard(key.as_str(), TTL).await?)
    }

    async fn release(&self, guard: rslock::Lock) -> Res<()> {
        // rslock reports no release errors.
        guard.release().await;
        Ok(())
    }
}

/// redlock as a [`SyncLocker`].
#[derive(Debug)]
pub struct Redlock {
    redlock: redlock::RedLock,
}

/// A redlock lock: from `lock` (released with `unlock`) or from `acquire` (released on drop).
pub enum RedlockHeld<'a> {
    /// From `RedLock::lock`.
    Lock(redlock::Lock<'a>),
    /// From `RedLock::acquire`.
    Guard(redlock::RedLockGuard<'a>),
}

impl Redlock {
    /// A lock manager over the single server at `url`.
    pub fn new(url: &str) -> Redlock {
        Redlock::multi(&[url.to_owned()])
    }

    /// A lock manager over several independent servers (its Redlock mode).
    pub fn multi(urls: &[String]) -> Redlock {
        Redlock {
            redlock: redlock::RedLock::new(urls.to_vec()),
        }
    }

    /// One `lock` call (its own 3 attempts); `None` if it did not get the lock or failed.
    pub fn lock_once(&self, key: &str) -> Option<redlock::Lock<'_>> {
        self.redlock
            .lock(key.as_bytes(), ttl_ms(TTL))
            .ok()
            .flatten()
    }

    /// Releases a lock from [`lock_once`](Self::lock_once).
    pub fn unlock(&self, lock: &redlock::Lock<'_>) {
        self.redlock.unlock(lock);
    }
}

fn ttl_ms(ttl: Duration) -> usize {
    ttl.as_millis() as usize
}

impl SyncLocker for Redlock {
    type Guard<'a> = RedlockHeld<'a>;

    fn acquire(&self, key: &str) -> Res<RedlockHeld<'_>> {
        match self.redlock.lock(key.as_bytes(), ttl_ms(TTL))? {
            Some(lock) => Ok(RedlockHeld::Lock(lock)),
            None => Err(format!("redlock: {key} not acquired after its retries").into()),
        }
    }

    fn acquire_waiting(&self, key: &str) -> Res<RedlockHeld<'_>> {
        Ok(RedlockHeld::Guard(
            self.redlock.acquire(key.as_bytes(), ttl_ms(TTL))?,
        ))
    }

    fn release(&self, held: RedlockHeld<'_>) -> Res<()> {
        // redlock reports no release errors.
        match held {
            RedlockHeld::Lock(lock) => self.redlock.unlock(&lock),
            RedlockHeld::Guard(guard) => drop(guard),
        }
        Ok(())
    }
}
