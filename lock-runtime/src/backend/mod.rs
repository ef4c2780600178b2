//! The small interface every lock store implements: one Redis, an in-memory map, and later
//! a quorum of Redis masters.
//!
//! It speaks in full keys and tokens only. Waiting, leases, the watchdog and re-entry live
//! above it, so a new backend gets them for free.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::LockError;
use crate::error::BackendError;

#[cfg(feature = "cluster")]
pub(crate) mod cluster;
pub(crate) mod memory;
pub(crate) mod quorum;
pub(crate) mod redis;
#[cfg(feature = "sentinel")]
pub(crate) mod sentinel;
pub(crate) mod wakeup;

use wakeup::ReleaseWatch;

pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
pub(crate) type BackendResult<T> = Result<T, BackendError>;

/// One acquire attempt.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AcquireArgs<'a> {
    pub key: &'a str,
    pub token: &'a str,
    pub ttl: Duration,
    /// The side key whose counter is incremented on success, when fencing is on.
    pub fence_key: Option<&'a str>,
    /// With `fence_key`: report the counter as it is instead of incrementing it (a quorum
    /// backend raises it in a second round).
    pub read_fence: bool,
    /// Whether and how a busy answer reports the holder's remaining TTL.
    pub holder_ttl: HolderTtl,
}

/// How an acquire attempt that finds the lock busy learns the holder's remaining TTL. A
/// backend may always report it (the in-memory one does); these say what the caller needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HolderTtl {
    /// Not needed: the caller subscribes to releases and tries again at once, and that
    /// attempt asks. The first attempt of a waiting caller: one plain `SET` when free.
    Skip,
    /// Only once busy, in a second round trip: the caller will not wait and reports it
    /// in [`LockError::Busy`](crate::LockError::Busy).
    After,
    /// In the same round trip: a waiter's retries, which are often busy.
    Within,
}

/// What one acquire attempt found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Acquired {
    /// The lock is ours; `fence` is the new fencing token when fencing is on.
    Yes { fence: Option<u64> },
    /// Someone holds it; `holder_ttl` is their remaining TTL (`None`: the key has no expiry,
    /// or the attempt did not ask, [`HolderTtl::Skip`]).
    Busy { holder_ttl: Option<Duration> },
}

/// What one renewal found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Renewed {
    /// The key held our token; its TTL is set.
    Yes,
    /// The key is gone or holds another token: the lock is lost.
    No,
    /// Not known: a quorum backend heard a decisive answer from too few nodes. Retry, as
    /// after an error.
    Unknown {
        /// Nodes that answered at all.
        answered: usize,
        /// Nodes that had to agree.
        needed: usize,
    },
}

impl From<bool> for Renewed {
    fn from(renewed: bool) -> Self {
        if renewed { Renewed::Yes } else { Renewed::No }
    }
}

/// One owner-checked renewal: set `key`'s TTL to `ttl` if it still holds `token`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Renewal<'a> {
    pub key: &'a str,
    pub token: &'a str,
    pub ttl: Duration,
}

/// What a lock key holds right now: for operators ([`LockClient::inspect`](crate::LockClient::inspect)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Stored {
    /// The value at the key (decoded lossily), `None` when there is no key.
    pub value: Option<String>,
    /// Its remaining TTL; `None` when the key has no expiry, or there is no key.
    pub ttl: Option<Duration>,
    /// The fencing counter at the side key, if there is one.
    pub fence: Option<u64>,
}

/// Where a listing goes on: a node of the backend (a cluster's master, a quorum's node;
/// always 0 for one server) and a `SCAN` cursor on it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ScanFrom {
    pub node: usize,
    pub cursor: u64,
}

/// One step of a listing: keys found (possibly none, and possibly repeated later), and where
/// to go on, `None` at the end.
#[derive(Debug, Default)]
pub(crate) struct ScanPage {
    pub keys: Vec<String>,
    pub next: Option<ScanFrom>,
}

/// A lock store.
///
/// `renew` takes a batch so that a per-client scheduler can renew many locks in one round
/// trip; callers today send batches of one.
pub(crate) trait Backend: Send + Sync + fmt::Debug + 'static {
    /// Try once to take `args.key` for `args.token`.
    fn acquire<'a>(&'a self, args: AcquireArgs<'a>) -> BoxFuture<'a, BackendResult<Acquired>>;

    /// Delete `key` if it holds `token`. `Ok(false)`: it did not.
    fn release<'a>(&'a self, key: &'a str, token: &'a str) -> BoxFuture<'a, BackendResult<bool>>;

    /// Renew each lock that still holds its token. The answer has one entry per renewal, in
    /// order.
    fn renew<'a>(&'a self, batch: &'a [Renewal<'a>]) -> BoxFuture<'a, BackendResult<Vec<Renewed>>>;

    /// The remaining TTL of `key` if it holds `token` (`Duration::MAX` for no expiry);
    /// `None` if it does not.
    fn ttl_if_held<'a>(
        &'a self,
        key: &'a str,
        token: &'a str,
    ) -> BoxFuture<'a, BackendResult<Option<Duration>>>;

    /// Whether `key` holds `token` right now.
    fn is_held<'a>(&'a self, key: &'a str, token: &'a str) -> BoxFuture<'a, BackendResult<bool>>;

    /// Starts watching for releases of `key`. Once this returns, any release of `key` wakes
    /// the watch, so an acquire attempt made after it cannot miss one.
    fn watch_releases<'a>(&'a self, key: &'a str) -> BoxFuture<'a, BackendResult<ReleaseWatch>>;

    /// A watch on `key`, without I/O, if waiters of this client already wait for `key` with
    /// their notifications confirmed: a new waiter then queues behind them instead of making
    /// an attempt (FIFO within the client, no barging). `None` otherwise.
    fn watch_if_queued(&self, _key: &str) -> Option<ReleaseWatch> {
        None
    }

    /// What `key` holds, its TTL, and the counter at `fence_key` (when given). A key of
    /// another type than a string is [`BackendError::WrongType`].
    fn inspect<'a>(
        &'a self,
        key: &'a str,
        fence_key: Option<&'a str>,
    ) -> BoxFuture<'a, BackendResult<Stored>>;

    /// Deletes `key` whatever token it holds and announces the release to waiters, in one
    /// atomic step; returns what it held (`value: None`: nothing was there). Refuses, with
    /// [`BackendError::WrongType`], a key that is not a string or has no expiry: no lock
    /// looks like that, so it is someone else's data.
    fn force_release<'a>(&'a self, key: &'a str) -> BoxFuture<'a, BackendResult<Stored>>;

    /// One `SCAN` step for string keys matching the glob `pattern`, from `from`.
    fn scan<'a>(
        &'a self,
        from: ScanFrom,
        pattern: &'a str,
        count: usize,
    ) -> BoxFuture<'a, BackendResult<ScanPage>>;

    /// How long one operation may take before we give up on it (connect plus response).
    fn op_timeout(&self) -> Duration;

    /// Resolves once work this backend left running after answering is done: a quorum's
    /// releases still reaching their last nodes. `close` waits for it.
    fn settle(&self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }
}

/// Runs one backend call bounded by the backend's timeout, so a dead or partitioned server
/// gives an error instead of hanging; errors name `key` and `operation`.
pub(crate) async fn bounded<T>(
    backend: &dyn Backend,
    key: &str,
    operation: &'static str,
    call: BoxFuture<'_, BackendResult<T>>,
) -> Result<T, LockError> {
    let after = backend.op_timeout();
    match tokio::time::timeout(after, call).await {
        Ok(result) => result.map_err(|e| e.into_lock_error(key, operation)),
        Err(_) => Err(LockError::Timeout {
            key: key.to_owned(),
            operation,
            after,
        }),
    }
}
