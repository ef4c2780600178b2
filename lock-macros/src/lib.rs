//! Procedural macros for `lock-runtime`. Depend on `lock-runtime`, which
//! re-exports them; this crate is an implementation detail.
//!
//! The macro works on `proc_macro2` types throughout, so everything past the
//! entry point is unit-tested. The steps, as in thiserror and serde:
//!
//! - parse: `attr` (the arguments, with `template` for the key template
//!   language and `duration`) and `item` (the annotated function);
//! - model: `attr::Config`, `item::Shape`, and `async_trait` for functions
//!   `#[async_trait]` rewrote first; `output` for the return type;
//! - validate: `resolve` checks placeholders against the parameters;
//! - expand: `expand` generates the code, and nothing else.
//!
//! `entry` runs the steps in that order.
//!
//! `properties` runs 1,000,000 generated inputs through the template and
//! duration parsers on every `cargo test -p lock-macros` (no input may
//! panic). The long run, 10 million each (about 20 s):
//!
//! ```text
//! LOCK_MACROS_PROPERTY_CASES=10000000 cargo test -p lock-macros --release properties
//! ```

#![warn(missing_docs)]

mod async_trait;
mod attr;
mod duration;
mod entry;
mod errors;
mod expand;
mod item;
mod output;
#[cfg(test)]
mod properties;
mod resolve;
mod template;

use proc_macro::TokenStream;

/// Runs an `async fn` while holding a distributed lock.
///
/// ```rust
/// use lock_runtime::{LockClient, LockError, distributed_lock};
///
/// #[distributed_lock(key = "order:{id}", ttl = "10s")]
/// async fn settle(id: u64, amount: u64) -> Result<u64, LockError> {
///     // Only one process at a time runs this for a given `id`.
///     Ok(amount)
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// LockClient::in_memory().install_global();
/// assert_eq!(settle(42, 7).await.unwrap(), 7);
/// # }
/// ```
///
/// The lock is taken when the function's future first runs and released on
/// every exit: return, `?`, panic or cancellation. While the body runs, a
/// watchdog renews the lock; if the lock is lost anyway (an unreachable
/// server, a paused process), the body is cancelled and the function returns
/// `LockError::Lost` converted into its error type. A task that already holds
/// the key (a locked function calling another with the same key) re-enters it
/// instead of waiting for itself.
///
/// # Arguments
///
/// | argument | default | meaning |
/// |---|---|---|
/// | `key = "..."` or `key = expr` | required | the lock's name |
/// | `ttl = "10s"` | `"30s"` | how long the lock outlives a crashed holder |
/// | `wait = "2s"` | no wait | how long to wait for a busy lock before giving up |
/// | `on_busy = "skip"` | `"error"` | what a call does when the lock stays busy: `Err(Busy)`, or skip the body |
/// | `watchdog = false` | `true` | whether the lock is renewed while the body runs |
/// | `min_hold = "30s"` | none | keep the lock at least this long after acquisition (ShedLock's `lockAtLeastFor`) |
/// | `max_hold = "10m"` | none | never hold the lock longer than this (ShedLock's `lockAtMostFor`) |
/// | `client = expr` | the global client | the `LockClient` (or `&LockClient`, `Arc<LockClient>`) to lock with |
/// | `fencing` or `fencing = bool` | `false` | take a fencing token, readable with `lock_runtime::current()` |
/// | `crate = "path"` | `::lock_runtime` | where the runtime is, for crates that re-export it |
///
/// `ttl`, `wait`, `min_hold` and `max_hold` take a duration string, parsed
/// at compile time (`"500ms"`, `"10s"`, `"1m 30s"`), or any expression of
/// type `Duration` (a `const`, a config field), checked when the function
/// runs: a bad value is then a `LockError` such as `InvalidTtl`. A literal
/// `ttl` outside the runtime's limits (`MIN_TTL`, 100 ms, to `MAX_TTL`, 365
/// days), a literal `wait` longer than an hour, and literal `min_hold` longer
/// than a literal `max_hold` are compile errors.
///
/// ```rust
/// use std::time::Duration;
/// use lock_runtime::{LockClient, LockError, distributed_lock};
///
/// const JOB_TTL: Duration = Duration::from_secs(20);
///
/// struct Settings { wait: Duration }
///
/// #[distributed_lock(key = "job", ttl = JOB_TTL, wait = settings.wait)]
/// async fn job(settings: &Settings) -> Result<(), LockError> {
///     Ok(())
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # LockClient::in_memory().install_global();
/// job(&Settings { wait: Duration::from_secs(1) }).await.unwrap();
/// # }
/// ```
///
/// ## `key`
///
/// A string literal is a template. `{name}` and `<name>` are replaced with a
/// parameter's `Display` output; `{order.id}` and `<self.tenant>` reach into
/// fields. `{{`, `}}`, `<<` and `>>` stand for a literal `{`, `}`, `<` and
/// `>`. Every placeholder is checked against the parameters at compile time.
///
/// ```rust
/// use lock_runtime::{LockClient, LockError, distributed_lock};
///
/// struct Order { id: u64 }
/// struct Shipper { tenant: String }
///
/// impl Shipper {
///     // Locks "tenant:acme:order:7".
///     #[distributed_lock(key = "tenant:{self.tenant}:order:<order.id>")]
///     async fn ship(&self, order: &Order) -> Result<String, LockError> {
///         Ok(lock_runtime::current().unwrap().key().to_owned())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// LockClient::in_memory().install_global();
/// let shipper = Shipper { tenant: "acme".into() };
/// assert_eq!(shipper.ship(&Order { id: 7 }).await.unwrap(), "tenant:acme:order:7");
/// # }
/// ```
///
/// Any other expression is used as the key as it is (anything `Display`):
///
/// ```rust
/// use lock_runtime::{LockClient, LockError, distributed_lock};
///
/// #[distributed_lock(key = format!("batch:{}", ids.len()))]
/// async fn run_batch(ids: Vec<u64>) -> Result<usize, LockError> {
///     Ok(ids.len())
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # LockClient::in_memory().install_global();
/// assert_eq!(run_batch(vec![1, 2, 3]).await.unwrap(), 3);
/// # }
/// ```
///
/// ## `ttl`
///
/// The lock's time to live in Redis. The watchdog renews it every `ttl/3`
/// while the body runs, so the body may run longer than the TTL; the TTL is
/// how long others wait if this process dies holding the lock. A literal is
/// checked against the runtime's limits at compile time.
///
/// ```rust
/// # use lock_runtime::{LockClient, LockError, distributed_lock};
/// #[distributed_lock(key = "report", ttl = "1m 30s")]
/// async fn build_report() -> Result<(), LockError> {
///     Ok(())
/// }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # LockClient::in_memory().install_global();
/// build_report().await.unwrap();
/// # }
/// ```
///
/// ## `wait`
///
/// Without `wait`, a busy lock fails at once with `LockError::Busy` (or
/// skips, with `on_busy = "skip"`). With it, the call retries until the
/// lock is free or the time is up.
///
/// ```rust
/// use lock_runtime::{LockClient, LockError, distributed_lock};
///
/// #[distributed_lock(key = "job:{id}", wait = "2s")]
/// async fn job(id: u32) -> Result<u32, LockError> {
///     Ok(id)
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # LockClient::in_memory().install_global();
/// // Both calls get the lock: the second waits for the first to release it.
/// let (a, b) = tokio::join!(job(1), job(1));
/// assert_eq!((a.unwrap(), b.unwrap()), (1, 1));
/// # }
/// ```
///
/// ## `on_busy`
///
/// `on_busy = "skip"` is ShedLock's behaviour: when the lock is held
/// elsewhere (after the `wait`, if any), the body does not run and the call
/// succeeds with nothing: `Ok(None)` for a `Result<Option<T>, E>` function,
/// `Ok(())` for a `Result<(), E>` one. Any other return type is a compile
/// error. The default, `on_busy = "error"`, returns `LockError::Busy`.
///
/// ```rust
/// use lock_runtime::{LockClient, LockError, distributed_lock};
///
/// #[distributed_lock(key = "nightly-report", on_busy = "skip")]
/// async fn nightly_report() -> Result<Option<usize>, LockError> {
///     Ok(Some(42)) // rows written
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let locks = LockClient::in_memory();
/// locks.clone().install_global();
/// assert_eq!(nightly_report().await.unwrap(), Some(42));
///
/// // Another replica holds it: this one skips the run.
/// let other = locks.lock("nightly-report").acquire().await.unwrap();
/// assert_eq!(nightly_report().await.unwrap(), None);
/// # other.release().await.unwrap();
/// # }
/// ```
///
/// ## `watchdog`
///
/// `watchdog = false` turns renewal off: the lock lasts one `ttl`, and when
/// the lease ends the body is cancelled and the call returns
/// `LockError::Lost`.
///
/// ```rust
/// use lock_runtime::{LockClient, LockError, distributed_lock};
///
/// #[distributed_lock(key = "short", ttl = "200ms", watchdog = false)]
/// async fn short_job(sleep_ms: u64) -> Result<(), LockError> {
///     tokio::time::sleep(std::time::Duration::from_millis(sleep_ms)).await;
///     Ok(())
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # LockClient::in_memory().install_global();
/// short_job(10).await.unwrap();
/// assert!(matches!(short_job(5_000).await, Err(LockError::Lost { .. })));
/// # }
/// ```
///
/// ## `min_hold`
///
/// ShedLock's `lockAtLeastFor`: if the body ends sooner than `min_hold`
/// after the lock was taken, the lock is not deleted. It is kept
/// (owner-checked) until acquisition + `min_hold` and then frees itself, so
/// a replica whose timer fires a little late still finds the run taken.
///
/// ```rust
/// use lock_runtime::{LockClient, LockError, distributed_lock};
///
/// #[distributed_lock(key = "tick", on_busy = "skip", min_hold = "1s")]
/// async fn tick() -> Result<(), LockError> {
///     Ok(())
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # LockClient::in_memory().install_global();
/// tick().await.unwrap();
/// # }
/// ```
///
/// ## `max_hold`
///
/// ShedLock's `lockAtMostFor`: the watchdog never renews the lock past
/// acquisition + `max_hold`. A body still running then is cancelled, the
/// call returns `LockError::Lost` (with `LostReason::MaxHold`), and the lock
/// is released.
///
/// ```rust
/// use lock_runtime::{LockClient, LockError, distributed_lock};
///
/// #[distributed_lock(key = "import", max_hold = "10m")]
/// async fn import() -> Result<(), LockError> {
///     Ok(())
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # LockClient::in_memory().install_global();
/// import().await.unwrap();
/// # }
/// ```
///
/// ## `client`
///
/// Without `client`, the function uses the client installed with
/// `LockClient::install_global()`, and fails with `LockError::NoClient` if
/// there is none. The expression may use the parameters, `self` included.
/// It is borrowed, not moved: an owned `LockClient` parameter stays usable
/// in the body.
///
/// ```rust
/// use lock_runtime::{LockClient, LockError, distributed_lock};
///
/// struct Service { locks: LockClient }
///
/// impl Service {
///     #[distributed_lock(key = "config", client = &self.locks)]
///     async fn reload(&self) -> Result<(), LockError> {
///         Ok(())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let service = Service { locks: LockClient::in_memory() };
/// service.reload().await.unwrap();
/// # }
/// ```
///
/// ## `fencing`
///
/// Takes a fencing token with the lock: a number that goes up with every
/// acquisition, for storage that should reject writes from a holder whose
/// lock has since expired.
///
/// ```rust
/// use lock_runtime::{LockClient, LockError, distributed_lock};
///
/// #[distributed_lock(key = "ledger", fencing)]
/// async fn append() -> Result<u64, LockError> {
///     let token = lock_runtime::current().and_then(|lock| lock.fencing_token());
///     Ok(token.expect("taken with fencing"))
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # LockClient::in_memory().install_global();
/// let first = append().await.unwrap();
/// assert!(append().await.unwrap() > first);
/// # }
/// ```
///
/// ## `crate`
///
/// For a crate that re-exports `lock_runtime` and wants the attribute to
/// work for users who do not depend on `lock_runtime` themselves.
///
/// ```rust
/// mod my_platform {
///     pub use lock_runtime as locks;
/// }
///
/// use lock_runtime::{LockError, distributed_lock};
///
/// #[distributed_lock(key = "k", crate = "my_platform::locks")]
/// async fn work() -> Result<(), LockError> {
///     Ok(())
/// }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # lock_runtime::LockClient::in_memory().install_global();
/// work().await.unwrap();
/// # }
/// ```
///
/// # Return type
///
/// The function must return `Result<T, E>` where `E: From<LockError>`,
/// written directly or through an alias (`anyhow::Result<T>`,
/// `std::io::Result<T>`, your own), since taking the lock can fail. `?` and
/// `return` in the body work as they do without the attribute.
///
/// ```rust
/// use lock_runtime::{LockClient, LockError, distributed_lock};
///
/// #[derive(Debug)]
/// enum AppError { Lock(LockError), Invalid }
///
/// impl From<LockError> for AppError {
///     fn from(err: LockError) -> Self { AppError::Lock(err) }
/// }
///
/// #[distributed_lock(key = "order:<id>")]
/// async fn settle(id: u64) -> Result<u64, AppError> {
///     if id == 0 {
///         return Err(AppError::Invalid);
///     }
///     Ok(id)
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// // No global client installed: the lock cannot be taken.
/// assert!(matches!(settle(1).await, Err(AppError::Lock(LockError::NoClient { .. }))));
/// # }
/// ```
///
/// # Where it works
///
/// Free functions, inherent and trait-impl methods (`&self`, `&mut self`,
/// `self`, `self: Arc<Self>`), generic functions, `impl Trait` parameters,
/// `unsafe fn`, and methods of an `#[async_trait]` impl (the attribute then
/// locks the boxed future `#[async_trait]` produced). Placeholders must name
/// whole parameters, not names bound by a destructuring pattern.
///
/// A plain `fn` returning a future works too, when its last expression is
/// `async { .. }` or `Box::pin(async { .. })`. The key and the client are
/// evaluated first, then the statements before the async block run when the
/// function is called, outside the lock; the returned future takes the lock
/// and runs the async block, with its own captures, under it. This is the
/// form for a `'static` future that does not borrow `self`:
///
/// ```rust
/// use std::future::Future;
/// use lock_runtime::{LockClient, LockError, distributed_lock};
///
/// struct Service { locks: LockClient, tenant: String }
///
/// impl Service {
///     #[distributed_lock(key = "{self.tenant}:{id}", client = &self.locks)]
///     fn settle(&self, id: u64) -> impl Future<Output = Result<u64, LockError>> + 'static {
///         let tenant = self.tenant.clone(); // runs now, outside the lock
///         async move {
///             assert_eq!(tenant, "acme"); // runs under the lock
///             Ok(id)
///         }
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let service = Service { locks: LockClient::in_memory(), tenant: "acme".into() };
/// let future = service.settle(7);
/// drop(service);
/// assert_eq!(future.await.unwrap(), 7);
/// # }
/// ```
#[proc_macro_attribute]
pub fn distributed_lock(args: TokenStream, item: TokenStream) -> TokenStream {
    entry::distributed_lock(args.into(), item.into()).into()
}
