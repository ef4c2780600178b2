//! The one error type of the crate.

use std::sync::Arc;
use std::time::Duration;

/// Everything that can go wrong when taking, keeping or giving back a lock.
///
/// Each message says what happened, to which key, and what to do about it.
/// Messages name keys but never tokens or passwords.
///
/// `LockError` is `Clone` (backend errors are shared behind an [`Arc`]) so it can be
/// stored, broadcast or returned from several places at once.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// Someone else holds the lock and the wait (if any) ran out.
    #[error(
        "lock `{key}` is held by another owner{}; retry later, or give the request a longer `.wait(..)`",
        match holder_ttl { Some(t) => format!(" for about {} ms more", t.as_millis()), None => String::new() }
    )]
    Busy {
        /// The full key, namespace included.
        key: String,
        /// The holder's remaining time to live, as the server reported it (`None` if the key
        /// has no expiry).
        holder_ttl: Option<Duration>,
    },

    /// The lock was lost while the protected work ran: it expired before a renewal got
    /// through, or another owner deleted or overwrote it. The work was cancelled.
    #[error(
        "lock `{key}` was lost while the work ran ({reason}); the work was cancelled and may have \
         been partly done: make it idempotent, or check fencing tokens where it writes"
    )]
    Lost {
        /// The full key, namespace included.
        key: String,
        /// Why the watchdog declared the lock lost.
        reason: LostReason,
    },

    /// A release or extend found that this owner no longer holds the lock.
    #[error(
        "lock `{key}` is not held by this owner any more (it expired or another owner took it); \
         use a longer TTL or keep the watchdog on"
    )]
    NotHeld {
        /// The full key, namespace included.
        key: String,
    },

    /// No client was given and none was installed.
    #[error(
        "no lock client for key `{key}`: call `LockClient::install_global()` at startup, or pass \
         `client = ...` to `#[distributed_lock]`"
    )]
    NoClient {
        /// The key that was to be locked.
        key: String,
    },

    /// The lock was requested outside a tokio runtime.
    #[error(
        "lock `{key}` was requested outside a tokio runtime: locks need one for their \
         watchdog; call this from within `#[tokio::main]` or a `tokio::runtime::Runtime`"
    )]
    NoRuntime {
        /// The key that was to be locked.
        key: String,
    },

    /// The key cannot be used as a lock key.
    #[error("invalid lock key `{key}`: {reason}")]
    InvalidKey {
        /// The key as given (namespace included when there is one).
        key: String,
        /// What is wrong with it and how to fix it.
        reason: String,
    },

    /// The time to live (or an extension) cannot be used.
    #[error("invalid TTL {ttl:?} for lock `{key}`: {reason}")]
    InvalidTtl {
        /// The key the TTL was for.
        key: String,
        /// The TTL as given.
        ttl: Duration,
        /// What is wrong with it and how to fix it.
        reason: String,
    },

    /// The connection URL could not be used. The URL in this error has its password masked.
    #[error("invalid Redis URL `{url}`: {reason}")]
    InvalidUrl {
        /// The URL, password masked.
        url: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The lock key exists but holds a value that is not a lock (for example a hash).
    #[error(
        "key `{key}` holds a {found}, not a lock: another part of the system uses this key; \
         choose another key or a namespace (`LockClient::with_namespace`)"
    )]
    WrongType {
        /// The full key.
        key: String,
        /// The Redis type found at the key.
        found: String,
    },

    /// The server did not answer in time.
    #[error(
        "lock server did not answer `{operation}` on `{key}` within {} ms; check that it is \
         reachable, or raise the client's timeouts",
        after.as_millis()
    )]
    Timeout {
        /// The full key.
        key: String,
        /// What was being done: `acquire`, `release`, `extend`, `is_held` or `connect`.
        operation: &'static str,
        /// How long we waited.
        after: Duration,
    },

    /// The client was shut down with [`LockClient::close`](crate::LockClient::close).
    #[error(
        "lock `{key}` was requested on a client that has been closed; make a new client with \
         `LockClient::connect`, or call `close()` only at shutdown"
    )]
    Closed {
        /// The key that was to be locked.
        key: String,
    },

    /// An option of the request cannot be used (for example `min_hold` longer than
    /// `max_hold`).
    #[error("invalid `{option}` for lock `{key}`: {reason}")]
    InvalidOption {
        /// The key the request was for.
        key: String,
        /// The option: `min_hold`, `max_hold`, ...
        option: &'static str,
        /// What is wrong with it and how to fix it.
        reason: String,
    },

    /// A nested request on a lock this task already holds asked for something the outer
    /// lock cannot give.
    #[error(
        "lock `{key}` is already held by this task and cannot be re-entered as asked: {reason}"
    )]
    Reentry {
        /// The full key.
        key: String,
        /// What the nested request asked for, and how to fix it.
        reason: String,
    },

    /// A quorum backend (independent masters) could not get enough of its nodes to agree:
    /// too few answered in time, or their answers were split.
    #[error(
        "no quorum for `{operation}` on lock `{key}`: {answered} node(s) answered, {needed} \
         needed to agree; check that a majority of the lock servers is reachable"
    )]
    NoQuorum {
        /// The full key.
        key: String,
        /// What was being done: `acquire`, `renew`, `release`, ...
        operation: &'static str,
        /// How many nodes gave a usable answer in time.
        answered: usize,
        /// How many had to agree: a majority of the nodes.
        needed: usize,
    },

    /// The backend failed: connection refused, connection lost, or a server error.
    #[error(
        "lock server error during `{operation}` on `{key}`: {source}; check the server and the connection"
    )]
    Backend {
        /// The full key (the URL, password masked, when connecting).
        key: String,
        /// What was being done.
        operation: &'static str,
        /// The underlying error.
        #[source]
        source: Arc<redis::RedisError>,
    },
}

/// Why a lock was declared lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LostReason {
    /// A renewal found another token (or no key) at the lock key.
    Taken,
    /// The lease deadline passed with no successful renewal (server unreachable, or the
    /// watchdog was off).
    Expired,
    /// The lock reached its `max_hold` and was not renewed past it.
    MaxHold,
    /// The client was closed with [`LockClient::close`](crate::LockClient::close).
    Closed,
}

impl std::fmt::Display for LostReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LostReason::Taken => "another owner deleted or took it",
            LostReason::Expired => "its lease ran out before a renewal succeeded",
            LostReason::MaxHold => "it reached its max_hold, past which it is never renewed",
            LostReason::Closed => "the client was closed",
        })
    }
}

impl LockError {
    /// `true` for [`LockError::Busy`]: the lock is held by someone else.
    pub fn is_busy(&self) -> bool {
        matches!(self, LockError::Busy { .. })
    }

    /// `true` for [`LockError::Lost`]: the protected work was cancelled.
    pub fn is_lost(&self) -> bool {
        matches!(self, LockError::Lost { .. })
    }

    /// `true` for errors that may well not happen again on a retry: a timeout, or a
    /// connection that failed, dropped or was refused. A waiter retries these within its
    /// wait.
    pub fn is_transient(&self) -> bool {
        match self {
            LockError::Timeout { .. } | LockError::NoQuorum { .. } => true,
            LockError::Backend { source, .. } => {
                source.is_timeout()
                    || source.is_io_error()
                    || source.is_connection_dropped()
                    || source.is_connection_refusal()
            }
            _ => false,
        }
    }

    /// The key this error is about, where there is one.
    pub fn key(&self) -> Option<&str> {
        match self {
            LockError::Busy { key, .. }
            | LockError::Lost { key, .. }
            | LockError::NotHeld { key }
            | LockError::NoClient { key }
            | LockError::NoRuntime { key }
            | LockError::InvalidKey { key, .. }
            | LockError::InvalidTtl { key, .. }
            | LockError::WrongType { key, .. }
            | LockError::Timeout { key, .. }
            | LockError::Closed { key }
            | LockError::InvalidOption { key, .. }
            | LockError::Reentry { key, .. }
            | LockError::NoQuorum { key, .. }
            | LockError::Backend { key, .. } => Some(key),
            LockError::InvalidUrl { .. } => None,
        }
    }
}

/// Lets `std::io::Result` functions use `?` on lock operations, and `#[distributed_lock]`
/// annotate them. The error kind says what kind of failure it was.
impl From<LockError> for std::io::Error {
    fn from(err: LockError) -> Self {
        use std::io::ErrorKind;
        let kind = match &err {
            LockError::Busy { .. } => ErrorKind::WouldBlock,
            LockError::Timeout { .. } => ErrorKind::TimedOut,
            LockError::InvalidKey { .. }
            | LockError::InvalidTtl { .. }
            | LockError::InvalidOption { .. }
            | LockError::InvalidUrl { .. } => ErrorKind::InvalidInput,
            LockError::Backend { source, .. } if source.is_connection_refusal() => {
                ErrorKind::ConnectionRefused
            }
            _ => ErrorKind::Other,
        };
        std::io::Error::new(kind, err)
    }
}

/// What a backend reports; the caller adds the key and operation to make a [`LockError`].
#[derive(Debug)]
pub(crate) enum BackendError {
    Redis(redis::RedisError),
    WrongType(String),
    /// A quorum backend heard a decisive answer from fewer nodes than it needs.
    NoQuorum {
        answered: usize,
        needed: usize,
    },
}

impl From<redis::RedisError> for BackendError {
    fn from(e: redis::RedisError) -> Self {
        if e.code() == Some("WRONGTYPE") {
            BackendError::WrongType("value of another type".into())
        } else {
            BackendError::Redis(e)
        }
    }
}

impl BackendError {
    pub(crate) fn into_lock_error(self, key: &str, operation: &'static str) -> LockError {
        match self {
            BackendError::Redis(e) => LockError::Backend {
                key: key.to_owned(),
                operation,
                source: Arc::new(e),
            },
            BackendError::WrongType(found) => LockError::WrongType {
                key: key.to_owned(),
                found,
            },
            BackendError::NoQuorum { answered, needed } => LockError::NoQuorum {
                key: key.to_owned(),
                operation,
                answered,
                needed,
            },
        }
    }
}
