//! Distributed locks on Redis for async Rust.
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
pub use request::{DEFAULT_TTL, LockRequest};
