//! Harness for integration tests and examples: starts real `redis-server` processes.
//!
//! Each [`RedisServer`] runs on its own free loopback port (never 6379) in its own temporary
//! directory, with persistence off, and is killed, reaped and cleaned up when dropped. The API
//! is synchronous (`std::process`), so it works the same from plain tests and from tokio tests.
//!
//! ```
//! use lock_tests::RedisServer;
//!
//! let mut server = RedisServer::start()?;
//! let mut con = server.connection()?;
//! redis::cmd("SET").arg("k").arg("v").exec(&mut con)?;
//!
//! server.restart()?; // same port, empty data
//! let mut con = server.connection()?;
//! let v: Option<String> = redis::cmd("GET").arg("k").query(&mut con)?;
//! assert_eq!(v, None);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The binary is `redis-server` from `PATH`, or the one named by the `REDIS_SERVER`
//! environment variable. When there is none, [`RedisServer::start`] returns
//! [`HarnessError::NotInstalled`], whose message says how to install it.
//!
//! Unix only: it relies on signals (SIGSTOP/SIGCONT/SIGTERM) to control the server.
//!
//! The fault-injection rig behind `scripts/chaos` and `RELIABILITY.md` lives here too: a
//! [`proxy::FaultProxy`] to put between clients and a server, and the [`history`] recorder
//! and checker of critical sections.

mod binary;
mod cluster;
mod error;
pub mod history;
pub mod proxy;
mod sentinel;
mod server;
mod tls;

pub use binary::{REDIS_SERVER_ENV, redis_server_available, redis_server_binary};
pub use cluster::RedisCluster;
pub use error::HarnessError;
pub use sentinel::{SENTINEL_SERVICE, SentinelGroup};
pub use server::{
    DEFAULT_STARTUP_TIMEOUT, FORBIDDEN_PORT, RedisServer, RedisServerBuilder, free_port,
};
pub use tls::{TestCerts, TlsServer};
