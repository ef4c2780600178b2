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

    /// A client setting cannot be used (for example a holder label with a `;`).
    #[error("invalid `{option}` in the lock client's settings: {reason}")]
    InvalidConfig {
        /// The setting: `holder`, ...
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

    /// The lock was acquired, but fewer replicas than asked with
    /// [`wait_for_replicas`](crate::ClientBuilder::wait_for_replicas) confirmed it in time.
    /// The lock was released again: nothing is held.
    #[error(
        "lock `{key}` was acquired but only {acknowledged} of {wanted} replica(s) confirmed it \
         in time, so it was released again (a failover could have lost it); check the \
         replicas' health and lag, raise the `wait_for_replicas` timeout, or retry"
    )]
    NotReplicated {
        /// The full key.
        key: String,
        /// How many replicas had to confirm the write.
        wanted: usize,
        /// How many did, within the timeout.
        acknowledged: usize,
    },

    /// The server refused the credentials: wrong user name or password, or a disabled user.
    /// The URL in this error has its password masked, and the password is never shown.
    #[error(
        "authentication to `{url}` failed: {detail}; check the user name and password in the \
         URL (`redis://user:password@host/`) and that the ACL user is enabled"
    )]
    Auth {
        /// The URL, password masked.
        url: String,
        /// What the server said.
        detail: String,
    },

    /// The ACL user may not run a command, or touch a key or channel, that the library needs.
    #[error(
        "the Redis user may not `{operation}` lock `{key}`: {detail}; grant the lock-only ACL \
         rule from the README (keys `~<namespace>:*` and `~{{<namespace>:*`, channels \
         `&lock-released:*`, and the commands listed there), or use a namespace the user owns"
    )]
    NoPermission {
        /// The full key.
        key: String,
        /// What was being done.
        operation: &'static str,
        /// The server's message, which names the command, key or channel refused.
        detail: String,
    },

    /// TLS failed: the server's certificate was not trusted (unknown CA, wrong host name,
    /// expired), or the server refused ours.
    #[error(
        "TLS with `{url}` failed: {detail}; check the server certificate against the CA given \
         with `tls_root_ca_pem` (or the system roots), its host name, and for mutual TLS the \
         client certificate given with `tls_client_cert_pem`"
    )]
    Tls {
        /// The URL, password masked.
        url: String,
        /// What failed, as rustls or the server reported it.
        detail: String,
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
            | LockError::NotReplicated { key, .. }
            | LockError::NoPermission { key, .. }
            | LockError::Backend { key, .. } => Some(key),
            LockError::InvalidUrl { .. }
            | LockError::InvalidConfig { .. }
            | LockError::Auth { .. }
            | LockError::Tls { .. } => None,
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
            | LockError::InvalidConfig { .. }
            | LockError::InvalidUrl { .. } => ErrorKind::InvalidInput,
            LockError::Backend { source, .. } if source.is_connection_refusal() => {
                ErrorKind::ConnectionRefused
            }
            LockError::Auth { .. } | LockError::NoPermission { .. } => ErrorKind::PermissionDenied,
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
    /// Fewer replicas than asked acknowledged an acquire; it was undone.
    NotReplicated {
        wanted: usize,
        acknowledged: usize,
    },
    /// The ACL user may not run a command or touch a key or channel (NOPERM).
    NoPermission(String),
}

impl From<redis::RedisError> for BackendError {
    fn from(e: redis::RedisError) -> Self {
        if e.code() == Some("WRONGTYPE") {
            BackendError::WrongType("value of another type".into())
        } else if let Some(detail) = no_permission(&e) {
            BackendError::NoPermission(detail)
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
            BackendError::NotReplicated {
                wanted,
                acknowledged,
            } => LockError::NotReplicated {
                key: key.to_owned(),
                wanted,
                acknowledged,
            },
            BackendError::NoPermission(detail) => LockError::NoPermission {
                key: key.to_owned(),
                operation,
                detail,
            },
        }
    }
}

/// The server's message if `e` is an ACL refusal: `NOPERM` directly, or from inside a
/// script (where Redis 7.0 reports the refused command in the script error's text).
fn no_permission(e: &redis::RedisError) -> Option<String> {
    let text = e.to_string();
    let refused = e.code() == Some("NOPERM")
        || text.contains("NOPERM")
        || text.contains("no permissions to")
        || text.contains("No permissions to");
    let in_script = text.contains("user executing the script can't run");
    if !refused && !in_script {
        return None;
    }
    let text = text.trim();
    // Redis 7.0 names only the script and line; name the command from our own source.
    let command = in_script
        .then(|| {
            let (_, after) = text.split_once("script: ")?;
            let (sha, rest) = after.split_once(',')?;
            let (_, line) = rest.split_once("@user_script:")?;
            let line: usize = line.trim_end_matches('.').trim().parse().ok()?;
            crate::backend::redis::script_command(sha.trim(), line)
        })
        .flatten();
    Some(match command {
        Some(command) => format!(
            "the user may not run `{command}` (inside the lock script); grant it with \
             `+{command}` ({text})"
        ),
        None => text.to_owned(),
    })
}

/// Turns a failed connection attempt into the error that says what to fix: credentials,
/// TLS, or a plain backend error. `url` is already redacted; nothing here prints a password,
/// since redis-rs never puts it into its errors.
pub(crate) fn connect_error(url: &str, e: redis::RedisError) -> LockError {
    let text = e.to_string();
    let lower = text.to_ascii_lowercase();
    if e.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(e.code(), Some("WRONGPASS" | "NOAUTH"))
        || lower.contains("wrongpass")
        || lower.contains("invalid username-password")
    {
        return LockError::Auth {
            url: url.to_owned(),
            detail: text,
        };
    }
    if ["certificate", "tls", "handshake", "alert", "unknownissuer"]
        .iter()
        .any(|w| lower.contains(w))
    {
        return LockError::Tls {
            url: url.to_owned(),
            detail: text,
        };
    }
    LockError::Backend {
        key: url.to_owned(),
        operation: "connect",
        source: Arc::new(e),
    }
}
