//! What `#[distributed_lock]` expands to. Not a public API: names here may change in any
//! release.

use std::borrow::Borrow;
use std::future::Future;
use std::time::Duration;

pub use ::core;
pub use ::std::format;

pub use crate::{LockClient, LockError};

/// The return types a `#[distributed_lock]` fn may have: `Result<T, E>` where the error type
/// can be made from a [`LockError`], written directly or through an alias.
#[diagnostic::on_unimplemented(
    message = "`#[distributed_lock]` functions must return `Result<T, E>` where `E: From<LockError>`, not `{Self}`",
    label = "this must be a `Result` whose error type implements `From<lock_runtime::LockError>`",
    note = "the lock can fail (busy, lost, no server), and the function reports that through its error type",
    note = "return `Result<T, LockError>`, or add `impl From<LockError> for YourError`; `anyhow::Result<T>` and `std::io::Result<T>` work as they are"
)]
pub trait LockResult: Sized {
    /// Wraps a lock failure in the function's own error type.
    fn from_lock_error(err: LockError) -> Self;
}

impl<T, E: From<LockError>> LockResult for Result<T, E> {
    fn from_lock_error(err: LockError) -> Self {
        Err(E::from(err))
    }
}

/// Lets the expansion check the return type with a span on the user's code.
pub const fn assert_lock_result<R: LockResult>() {}

/// Turns `client = expr` (a `LockClient`, a `&LockClient`, anything that borrows as one)
/// into the client.
pub fn client<C: Borrow<LockClient>>(client: C) -> Option<LockClient> {
    Some(client.borrow().clone())
}

/// The client installed with [`LockClient::install_global`], if any.
pub fn global_client() -> Option<LockClient> {
    LockClient::global()
}

/// What an attribute asks for.
#[derive(Debug)]
pub struct Spec {
    /// The key, built from the fn's arguments.
    pub key: String,
    /// The lock TTL.
    pub ttl: Duration,
    /// How long to wait for a held lock.
    pub wait: Option<Duration>,
    /// Whether to take a fencing token.
    pub fencing: bool,
}

/// Takes the lock (re-entering it if this task holds it already), runs `body` under the
/// watchdog, cancels it with `Lost` if the lock is lost, and releases on every exit.
pub async fn run_locked<R, F>(client: Option<LockClient>, spec: Spec, body: F) -> R
where
    R: LockResult,
    F: Future<Output = R>,
{
    let Some(client) = client else {
        return R::from_lock_error(LockError::NoClient { key: spec.key });
    };
    let mut request = client.lock(spec.key).ttl(spec.ttl).fencing(spec.fencing);
    if let Some(wait) = spec.wait {
        request = request.wait(wait);
    }
    match request.run(body).await {
        Ok(out) => out,
        Err(e) => R::from_lock_error(e),
    }
}

/// What is wrong with a TTL, if anything: the runtime's own check, usable in `const`
/// context so the attribute can refuse a literal TTL at compile time with the same limits.
pub const fn ttl_problem(ttl: Duration) -> Option<&'static str> {
    crate::keys::ttl_problem(ttl)
}
