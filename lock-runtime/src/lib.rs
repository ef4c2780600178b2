//! Distributed locks on Redis for async Rust (tokio): a lock whose holder knows when it has
//! lost it.
//!
//! # In two minutes
//!
//! 1. Add the dependency. This crate re-exports the attribute, so it is the only one you
//!    need (with tokio, which you already have):
//!
//!    ```toml
//!    [dependencies]
//!    lock-runtime = "0.1"
//!    tokio = { version = "1", features = ["macros", "rt-multi-thread"] }
//!    ```
//!
//! 2. Write the attribute on an `async fn`, and install a client once at start-up:
//!
//!    ```no_run
//!    use lock_runtime::{LockClient, LockError, distributed_lock};
//!
//!    // Only one process at a time runs this for a given `id`; the others get `Busy`.
//!    #[distributed_lock(key = "order:{id}", ttl = "10s")]
//!    async fn settle(id: u64) -> Result<(), LockError> {
//!        Ok(())
//!    }
//!
//!    #[tokio::main]
//!    async fn main() -> Result<(), LockError> {
//!        let client = LockClient::connect("redis://127.0.0.1:6379/").await?;
//!        client.clone().install_global();
//!        settle(42).await?;
//!        // On shutdown: release what is still held, instead of leaving it to the TTL.
//!        client.close().await
//!    }
//!    ```
//!
//! 3. Run the quickstart, which needs nothing but Rust: from a checkout of this crate's
//!    workspace, `cargo run -p lock-examples --bin quickstart`. Twenty tasks race to settle
//!    five orders through the attribute, and it prints who settled each one, exactly once.
//!    It uses `REDIS_URL` if set, else a private `redis-server` if one is installed, else
//!    the in-memory backend.
//!
//! # Guards and closures
//!
//! ```
//! # async fn demo() -> Result<(), lock_runtime::LockError> {
//! use lock_runtime::{LockClient, LockError};
//! use std::time::Duration;
//!
//! // LockClient::connect("redis://127.0.0.1:6390/").await? in production.
//! let client = LockClient::in_memory();
//!
//! // A guard: renewed by a watchdog while it lives, released on drop.
//! let guard = client.lock("order:42").ttl(Duration::from_secs(10)).acquire().await?;
//! assert!(matches!(client.lock("order:42").acquire().await, Err(LockError::Busy { .. })));
//! guard.release().await?;
//!
//! // The closure form: the work is cancelled if the lock is lost.
//! let settled = client.lock("order:42").run(async { "settled" }).await?;
//! assert_eq!(settled, "settled");
//! # Ok(()) }
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
//! ```
//!
//! # Cargo features
//!
// Plain names, not links, for the gated items: a link to an item that a feature left out
// breaks the docs built without that feature.
//! - `tls` (default): `rediss://` URLs through rustls, with a private CA or client
//!   certificates (`ClientBuilder::tls_root_ca_pem`, `ClientBuilder::tls_client_cert_pem`).
//! - `sentinel`: `LockClient::sentinel`, a primary found and followed through Sentinel.
//! - `cluster`: `LockClient::cluster`, locks on a Redis Cluster.
//!
//! [`LockClient::connect`], [`LockClient::quorum`] (Redlock over independent masters) and
//! [`LockClient::in_memory`] (for tests, no server) need no feature.
//!
//! # Safety model
//!
//! A lock on one Redis server gives mutual exclusion as long as that server keeps its data
//! and clocks behave: each holder has a random token, and release and renewal only act on
//! the holder's own token. A holder's watchdog renews every `ttl/3`; when a renewal finds
//! the lock gone, or no renewal gets through before the local lease deadline, the lock is
//! declared lost and work run through [`LockRequest::run`] is cancelled before that deadline.
//!
//! That still cannot stop a holder that is paused (a GC pause, a stopped VM) from waking
//! up after its lease and writing. When overlapping holders would do damage, turn on
//! [fencing tokens](LockRequest::fencing) and have the protected storage reject writes with
//! an older token.

#![warn(missing_docs)]
// On docs.rs (`--cfg docsrs`, nightly), each feature-gated item shows the feature it needs.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod backend;
mod backoff;
mod client;
mod context;
mod error;
mod guard;
mod holder;
mod inspect;
mod keys;
mod lease;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
#[cfg(not(feature = "metrics"))]
mod metrics;
mod redact;
mod renewer;
mod request;
mod store;

#[doc(hidden)]
pub mod __private;

#[doc(inline)]
pub use lock_macros::distributed_lock;

pub use backoff::Backoff;
pub use client::{ClientBuilder, LockClient};
pub use context::{CurrentLock, current};
pub use error::{LockError, LostReason};
pub use guard::LockGuard;
pub use holder::MAX_HOLDER_LEN;
pub use inspect::{Listing, LockInfo};
pub use keys::{MAX_TTL, MIN_TTL};
pub use redact::redact_url;
pub use request::{DEFAULT_TTL, LockRequest};

// The README's Rust blocks compile (`cargo test --doc`). `README.md` in this crate is a
// symlink to the workspace README; `cargo package` stores its contents, so the path also
// holds in the packaged crate.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
