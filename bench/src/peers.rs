//! The libraries, as the workloads use them: lock-runtime with its defaults, and the peer
//! crates with their default retry settings and one server (a "quorum" of one).
//!
//! - **lock-runtime**: `client.lock(key).ttl(10 s)` (watchdog on, no fencing, default
//!   backoff), and `.wait(60 s)` for waiting.
//! - **rslock 0.10** (async, redis 1.8 multiplexed connection): `LockManager::new([url])`,
//!   3 attempts with a random 0-200 ms pause between them. `lock` is one such round of
//!   attempts; waiting uses `acquire_no_guard`, which repeats `lock` until it succeeds.
//!   Release is `Lock::release`.
//! - **redlock 2.0** (blocking, redis 0.23): `RedLock::new([url])`, 3 attempts with a
//!   random 0-200 ms sleep after each failed one. It opens a new TCP connection for every
//!   command. `lock` is one round of attempts, waiting uses `acquire` (repeats `lock` until
//!   it succeeds, releases on drop), release is `unlock`. It runs on dedicated OS threads.

use std::time::Duration;

use lock_runtime::{LockClient, LockGuard};

use crate::Res;
use crate::figures::p2::TASKS as P2_TASKS;
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

/// How long a P3 waiter may wait before giving up: far longer than any hand-off.
const WAIT: Duration = Duration::from_secs(60);

/// The entry of `lib` in figures kept per library.
pub fn of<T>(rows: &[(Lib, T)], lib: Lib) -> &T {
    &rows
        .iter()
        .find(|(l, _)| *l == lib)
        .expect("every library is measured")
        .1
}

/// lock-runtime as an [`AsyncLocker`]: `lock(key).ttl(10s)` with its defaults (watchdog
/// on, no fencing, default backoff), and `.wait(60s)` for waiting.
#[derive(Clone, Debug)]
pub struct Ours {
    client: LockClient,
}

impl Ours {
    /// A fresh client (its own connection) to `url`.
    pub async fn connect(url: &str) -> Res<Ours> {
        Ok(Ours {
            client: LockClient::connect(url).await?,
        })
    }

    /// Wraps a client already connected (e.g. to a quorum).
    pub fn from_client(client: LockClient) -> Ours {
        Ours { client }
    }
}

impl AsyncLocker for Ours {
    type Guard = LockGuard;

    async fn acquire(&self, key: String) -> Res<LockGuard> {
        Ok(self.client.lock(key).ttl(TTL).acquire().await?)
    }

    async fn acquire_waiting(&self, key: String) -> Res<LockGuard> {
        Ok(self.client.lock(key).ttl(TTL).wait(WAIT).acquire().await?)
    }

    async fn release(&self, guard: LockGuard) -> Res<()> {
        Ok(guard.release().await?)
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

/// The peers' bullet of BENCHMARKS.md's Method section.
pub fn method() -> String {
    format!(
        "- **Peers.** Default retry settings, one server (a quorum of one), the same keys, TTL and workloads.\n  \
         - *rslock 0.10* (async; redis 1.8 multiplexed connection, opened on first use): \
         `LockManager::new(vec![url])`, 3 attempts per `lock` with a random 0-200 ms pause between them. P1/P2 \
         use `lock` + `Lock::release`; the P3 waiter uses `acquire_no_guard`, which repeats `lock` until it \
         succeeds (after each failed attempt it also sends the unlock script).\n  \
         - *redlock 2.0* (blocking; redis 0.23): `RedLock::new(vec![url])`, 3 attempts per `lock` with a random \
         0-200 ms sleep after each failed one. It opens a new TCP connection for every command (see the \
         connections-per-cycle column), and redis 0.23 sends a `CLIENT SETINFO` pipeline on each new \
         connection: Redis 7.0 rejects it (the subcommand is 7.2's), so it is not among the commands, but \
         it is a round trip. P1 runs on the main thread, P2 on {P2_TASKS} dedicated OS threads, P3 on \
         two threads; P1/P2 use `lock` + `unlock`, the P3 waiter uses `acquire` (repeats `lock` until it succeeds; \
         released on drop).\n"
    )
}
