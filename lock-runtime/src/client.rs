//! `LockClient`: a handle on a lock store, cheap to clone.

use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::LockError;
use crate::backend::Backend;
use crate::backend::memory::MemoryBackend;
use crate::backend::redis::RedisBackend;
use crate::redact::{redact_url, scrub};
use crate::renewer::Renewer;
use crate::request::LockRequest;

/// A handle on a lock store: one Redis server, or an in-memory store for tests.
///
/// Clones share one connection (and one in-memory store), so clone freely: into tasks, into
/// handlers, into [`install_global`](LockClient::install_global).
///
/// ```
/// # async fn demo() -> Result<(), lock_runtime::LockError> {
/// use lock_runtime::LockClient;
/// use std::time::Duration;
///
/// let client = LockClient::in_memory().with_namespace("billing");
/// let guard = client.lock("order:42").ttl(Duration::from_secs(10)).acquire().await?;
/// assert_eq!(guard.key(), "billing:order:42");
/// guard.release().await?;
/// # Ok(()) }
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
/// ```
#[derive(Clone)]
pub struct LockClient {
    pub(crate) backend: Arc<dyn Backend>,
    /// Keeps every lease of this store alive; shared by clones and namespaces.
    pub(crate) renewer: Arc<Renewer>,
    namespace: Option<Arc<str>>,
}

impl fmt::Debug for LockClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockClient")
            .field("backend", &self.backend)
            .field("namespace", &self.namespace)
            .finish()
    }
}

static GLOBAL: RwLock<Option<LockClient>> = RwLock::new(None);

impl LockClient {
    fn over(backend: Arc<dyn Backend>) -> LockClient {
        LockClient {
            renewer: Arc::new(Renewer::new(Arc::clone(&backend))),
            backend,
            namespace: None,
        }
    }

    /// Connects to one Redis server with the default timeouts (connect 2 s, response 1 s).
    ///
    /// The URL has the form `redis://[[user]:password@]host[:port][/db]` (`rediss://` needs
    /// redis-rs's TLS features). The connection is made now, so a wrong address fails here
    /// rather than at the first lock; it reconnects in the background if it drops later.
    pub async fn connect(url: &str) -> Result<LockClient, LockError> {
        LockClient::builder(url).connect().await
    }

    /// A builder for a Redis client with non-default timeouts.
    pub fn builder(url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            url: url.into(),
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(1),
        }
    }

    /// A client over a fresh in-process store, with the same semantics as Redis: tokens,
    /// expiry, fencing counters, busy and wait. Meant for unit tests of code that takes
    /// locks; it does not lock anything across processes.
    ///
    /// Its clock is tokio's, so a test with a paused clock sees leases expire as it
    /// advances time.
    pub fn in_memory() -> LockClient {
        LockClient::over(Arc::new(MemoryBackend::default()))
    }

    /// A client on the same connection whose keys are all prefixed: `"<namespace>:<key>"`.
    ///
    /// Namespaces nest: `with_namespace("a").with_namespace("b")` prefixes `"a:b:"`. An
    /// empty namespace changes nothing.
    pub fn with_namespace(&self, namespace: impl AsRef<str>) -> LockClient {
        let namespace = namespace.as_ref();
        let namespace = match (&self.namespace, namespace.is_empty()) {
            (_, true) => self.namespace.clone(),
            (Some(outer), false) => Some(format!("{outer}:{namespace}").into()),
            (None, false) => Some(namespace.into()),
        };
        LockClient {
            backend: Arc::clone(&self.backend),
            renewer: Arc::clone(&self.renewer),
            namespace,
        }
    }

    /// The namespace keys are prefixed with, if any.
    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// Starts a request for the lock named `key` (the namespace is added in front).
    ///
    /// Nothing is sent until [`acquire`](LockRequest::acquire) or [`run`](LockRequest::run).
    pub fn lock(&self, key: impl Into<String>) -> LockRequest {
        LockRequest::new(self.clone(), key.into())
    }

    /// Makes this client the process-wide default, which `#[distributed_lock]` uses when it
    /// is given no `client = ...`. Returns the client it replaces, if any.
    pub fn install_global(self) -> Option<LockClient> {
        let mut slot = GLOBAL.write().unwrap_or_else(|p| p.into_inner());
        slot.replace(self)
    }

    /// The process-wide default client, if one was installed.
    pub fn global() -> Option<LockClient> {
        GLOBAL.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether two clients share one store (one connection or one in-memory map).
    pub fn same_store(&self, other: &LockClient) -> bool {
        Arc::ptr_eq(&self.backend, &other.backend)
    }
}

/// Builds a Redis [`LockClient`] with chosen timeouts.
///
/// ```no_run
/// # async fn demo() -> Result<(), lock_runtime::LockError> {
/// use std::time::Duration;
/// let client = lock_runtime::LockClient::builder("redis://127.0.0.1:6390/")
///     .connect_timeout(Duration::from_millis(500))
///     .response_timeout(Duration::from_millis(250))
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
#[must_use = "a builder does nothing until `.connect().await`"]
pub struct ClientBuilder {
    url: String,
    connect_timeout: Duration,
    response_timeout: Duration,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("url", &redact_url(&self.url))
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .finish()
    }
}

impl ClientBuilder {
    /// How long one connection attempt may take (default 2 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long the server may take to answer one command (default 1 s). A partitioned
    /// server then gives an error instead of hanging the task.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Connects now. Errors carry the URL with its password masked.
    pub async fn connect(self) -> Result<LockClient, LockError> {
        let redacted = redact_url(&self.url);
        let invalid = |reason: String| LockError::InvalidUrl {
            url: redacted.clone(),
            reason,
        };
        if self.connect_timeout.is_zero() || self.response_timeout.is_zero() {
            return Err(invalid("timeouts must be greater than zero".into()));
        }
        let client = redis::Client::open(self.url.as_str())
            .map_err(|e| invalid(scrub(&e.to_string(), &self.url)))?;
        let subscriber_client = client.clone();
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.response_timeout))
            // Reconnects happen in the background; a request never waits through a long
            // backoff ladder, it fails and the watchdog or caller retries.
            .set_number_of_retries(1)
            .set_max_delay(self.connect_timeout);
        let op_timeout = self.connect_timeout + self.response_timeout;
        let conn = match tokio::time::timeout(
            op_timeout,
            ConnectionManager::new_with_config(client, config),
        )
        .await
        {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                return Err(LockError::Backend {
                    key: redacted.clone(),
                    operation: "connect",
                    source: Arc::new(e),
                });
            }
            Err(_) => {
                return Err(LockError::Timeout {
                    key: redacted.clone(),
                    operation: "connect",
                    after: op_timeout,
                });
            }
        };
        tracing::debug!(url = %redacted, "connected to lock server");
        Ok(LockClient::over(Arc::new(RedisBackend::new(
            conn,
            subscriber_client,
            redacted,
            op_timeout,
        ))))
    }
}
