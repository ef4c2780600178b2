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

#![warn(missing_docs)]

mod async_trait;
mod attr;
mod duration;
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
/// | `wait = "2s"` | no wait | how long to wait for a busy lock before failing with `LockError::Busy` |
/// | `client = expr` | the global client | the `LockClient` (or `&LockClient`) to lock with |
/// | `fencing` or `fencing = bool` | `false` | take a fencing token, readable with `lock_runtime::current()` |
/// | `crate = "path"` | `::lock_runtime` | where the runtime is, for crates that re-export it |
///
/// Durations are parsed at compile time: `"500ms"`, `"10s"`, `"1m 30s"`.
/// A zero `ttl` or a `wait` longer than an hour is a compile error.
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
/// how long others wait if this process dies holding the lock.
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
/// Without `wait`, a busy lock fails at once with `LockError::Busy`. With
/// it, the call retries until the lock is free or the time is up.
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
/// ## `client`
///
/// Without `client`, the function uses the client installed with
/// `LockClient::install_global()`, and fails with `LockError::NoClient` if
/// there is none. The expression may use the parameters, `self` included.
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
#[proc_macro_attribute]
pub fn distributed_lock(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::distributed_lock(args.into(), item.into()).into()
}
