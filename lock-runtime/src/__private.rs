//! What `#[distributed_lock]` expands to. Not a public API: names here may change in any
//! release, but the expansion of an older `lock-macros` keeps compiling: options are set
//! through [`Spec`]'s builder methods, so adding one adds a method and breaks no caller.

use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
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

/// The return types an `on_busy = "skip"` fn may have: what it returns when the body is
/// skipped must say so without inventing a value.
#[diagnostic::on_unimplemented(
    message = "`on_busy = \"skip\"` needs the function to return `Result<Option<T>, E>` or `Result<(), E>`, not `{Self}`",
    label = "a skipped call returns `Ok(None)` or `Ok(())`, which this type cannot express",
    note = "return `Result<Option<T>, E>` (skipped: `Ok(None)`) or `Result<(), E>` (skipped: `Ok(())`), or drop `on_busy = \"skip\"` to get `Err(LockError::Busy)`"
)]
pub trait SkipResult: LockResult {
    /// What a call returns when the lock is busy and the body does not run.
    fn skipped() -> Self;
}

impl<T, E: From<LockError>> SkipResult for Result<Option<T>, E> {
    fn skipped() -> Self {
        Ok(None)
    }
}

impl<E: From<LockError>> SkipResult for Result<(), E> {
    fn skipped() -> Self {
        Ok(())
    }
}

/// Lets the expansion check the return type with a span on the user's code.
pub const fn assert_lock_result<R: LockResult>() {}

/// Lets the expansion check an `on_busy = "skip"` return type with a span on the user's code.
pub const fn assert_skip_result<R: SkipResult>() {}

/// What `client = expr` may be: a [`LockClient`], or anything that leads to one through
/// references and smart pointers. The expansion borrows the expression, so an owned
/// `LockClient` parameter stays usable in the body.
#[diagnostic::on_unimplemented(
    message = "`client = …` must be a `LockClient` or a reference to one, not `{Self}`",
    label = "expected a `LockClient`, a `&LockClient` or an `Arc<LockClient>` here",
    note = "build the client at startup with `LockClient::connect(url).await?` and pass it here, or leave `client` out to use the one installed with `LockClient::install_global()`"
)]
pub trait ClientRef {
    /// The client.
    fn lock_client(&self) -> &LockClient;
}

impl ClientRef for LockClient {
    fn lock_client(&self) -> &LockClient {
        self
    }
}

impl<T: ClientRef + ?Sized> ClientRef for &T {
    fn lock_client(&self) -> &LockClient {
        (**self).lock_client()
    }
}

impl<T: ClientRef + ?Sized> ClientRef for &mut T {
    fn lock_client(&self) -> &LockClient {
        (**self).lock_client()
    }
}

impl<T: ClientRef + ?Sized> ClientRef for Box<T> {
    fn lock_client(&self) -> &LockClient {
        (**self).lock_client()
    }
}

impl<T: ClientRef + ?Sized> ClientRef for Arc<T> {
    fn lock_client(&self) -> &LockClient {
        (**self).lock_client()
    }
}

impl<T: ClientRef + ?Sized> ClientRef for Rc<T> {
    fn lock_client(&self) -> &LockClient {
        (**self).lock_client()
    }
}

/// The client of `client = expr`, which the expansion passes borrowed.
pub fn client<C: ClientRef + ?Sized>(client: &C) -> Option<LockClient> {
    Some(client.lock_client().clone())
}

/// The client installed with [`LockClient::install_global`], if any.
pub fn global_client() -> Option<LockClient> {
    LockClient::global()
}

/// What an attribute asks for, built with one method per option so that an option added
/// later breaks no expansion made before it. Unset options are the runtime's defaults.
#[derive(Debug)]
#[must_use]
pub struct Spec {
    key: String,
    ttl: Option<Duration>,
    wait: Option<Duration>,
    fencing: bool,
    watchdog: bool,
    min_hold: Option<Duration>,
    max_hold: Option<Duration>,
}

impl Spec {
    /// A lock on `key`, with the runtime's defaults.
    pub fn new(key: impl Into<String>) -> Spec {
        Spec {
            key: key.into(),
            ttl: None,
            wait: None,
            fencing: false,
            watchdog: true,
            min_hold: None,
            max_hold: None,
        }
    }

    /// `ttl = ..`: see [`LockRequest::ttl`](crate::LockRequest::ttl).
    pub fn ttl(mut self, ttl: Duration) -> Spec {
        self.ttl = Some(ttl);
        self
    }

    /// `wait = ..`: see [`LockRequest::wait`](crate::LockRequest::wait).
    pub fn wait(mut self, wait: Duration) -> Spec {
        self.wait = Some(wait);
        self
    }

    /// `fencing`: see [`LockRequest::fencing`](crate::LockRequest::fencing).
    pub fn fencing(mut self, on: bool) -> Spec {
        self.fencing = on;
        self
    }

    /// `watchdog = ..`: see [`LockRequest::watchdog`](crate::LockRequest::watchdog).
    pub fn watchdog(mut self, on: bool) -> Spec {
        self.watchdog = on;
        self
    }

    /// `min_hold = ..`: the lock is kept at least this long after acquisition.
    pub fn min_hold(mut self, min_hold: Duration) -> Spec {
        self.min_hold = Some(min_hold);
        self
    }

    /// `max_hold = ..`: the lock is never renewed past this long after acquisition.
    pub fn max_hold(mut self, max_hold: Duration) -> Spec {
        self.max_hold = Some(max_hold);
        self
    }

    /// The runtime's request, with every option set.
    fn request(self, client: &LockClient) -> crate::LockRequest {
        let mut request = client
            .lock(self.key)
            .fencing(self.fencing)
            .watchdog(self.watchdog);
        if let Some(ttl) = self.ttl {
            request = request.ttl(ttl);
        }
        if let Some(wait) = self.wait {
            request = request.wait(wait);
        }
        if let Some(min_hold) = self.min_hold {
            request = request.min_hold(min_hold);
        }
        if let Some(max_hold) = self.max_hold {
            request = request.max_hold(max_hold);
        }
        request
    }

    fn key(&self) -> String {
        self.key.clone()
    }
}

/// Takes the lock (re-entering it if this task holds it already), runs `body` under the
/// watchdog, cancels it with `Lost` if the lock is lost, and releases on every exit.
pub async fn run_locked<R, F>(client: Option<LockClient>, spec: Spec, body: F) -> R
where
    R: LockResult,
    F: Future<Output = R>,
{
    let Some(client) = client else {
        return R::from_lock_error(LockError::NoClient { key: spec.key() });
    };
    match spec.request(&client).run(body).await {
        Ok(out) => out,
        Err(e) => R::from_lock_error(e),
    }
}

/// [`run_locked`] for `on_busy = "skip"`: when the lock is still held elsewhere after the
/// wait, `body` does not run and the call returns [`SkipResult::skipped`].
pub async fn run_or_skip<R, F>(client: Option<LockClient>, spec: Spec, body: F) -> R
where
    R: SkipResult,
    F: Future<Output = R>,
{
    let Some(client) = client else {
        return R::from_lock_error(LockError::NoClient { key: spec.key() });
    };
    match spec.request(&client).run_or_skip(body).await {
        Ok(Some(out)) => out,
        Ok(None) => R::skipped(),
        Err(e) => R::from_lock_error(e),
    }
}

/// What is wrong with a TTL, if anything: the runtime's own check, usable in `const`
/// context so the attribute can refuse a literal TTL at compile time with the same limits.
pub const fn ttl_problem(ttl: Duration) -> Option<&'static str> {
    crate::keys::ttl_problem(ttl)
}

/// Renewal round trips (pipelines) that cluster backends of this process have sent: for the
/// tests and benchmarks that check batching.
#[cfg(feature = "cluster")]
pub fn cluster_renewal_round_trips() -> u64 {
    crate::backend::cluster::RENEWAL_ROUND_TRIPS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Renewal flushes of cluster backends of this process: coalesced sets of renewals, about
/// one per renewal tick of a client.
#[cfg(feature = "cluster")]
pub fn cluster_renewal_flushes() -> u64 {
    crate::backend::cluster::RENEWAL_FLUSHES.load(std::sync::atomic::Ordering::Relaxed)
}
