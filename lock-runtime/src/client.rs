//! `LockClient`: a handle on a lock store, cheap to clone.

use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::LockError;
use crate::backend::Backend;
#[cfg(feature = "cluster")]
use crate::backend::cluster::ClusterBackend;
use crate::backend::memory::MemoryBackend;
use crate::backend::quorum::{DEFAULT_NODE_TIMEOUT, QuorumBackend};
use crate::backend::redis::{RedisBackend, Replicas};
#[cfg(feature = "sentinel")]
use crate::backend::sentinel::SentinelBackend;
use crate::error::connect_error;
use crate::redact::{redact_url, scrub};
use crate::request::LockRequest;
use crate::store::Store;

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
    /// The backend, its renewal schedulers and its held locks; shared by clones and
    /// namespaces.
    pub(crate) store: Arc<Store>,
    namespace: Option<Arc<str>>,
    /// The holder label put into this client's tokens (checked), if any.
    holder: Option<Arc<str>>,
}

impl fmt::Debug for LockClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockClient")
            .field("store", &self.store)
            .field("namespace", &self.namespace)
            .field("holder", &self.holder)
            .finish()
    }
}

static GLOBAL: RwLock<Option<LockClient>> = RwLock::new(None);

impl LockClient {
    fn over(backend: Arc<dyn Backend>) -> LockClient {
        LockClient {
            store: Arc::new(Store::new(backend)),
            namespace: None,
            holder: None,
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
        ClientBuilder::new(Target::Single(url.into()))
    }

    /// A builder for a client over a quorum of independent Redis masters (Redlock): a lock
    /// is held when a majority of them granted it, so it survives the loss of any minority.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), lock_runtime::LockError> {
    /// let client = lock_runtime::LockClient::quorum([
    ///     "redis://10.0.0.1:6379/", "redis://10.0.0.2:6379/", "redis://10.0.0.3:6379/",
    ///     "redis://10.0.0.4:6379/", "redis://10.0.0.5:6379/",
    /// ])
    /// .connect()
    /// .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// Every operation goes to all nodes at once, each bounded by the
    /// [node timeout](ClientBuilder::node_timeout). With too few answers, requests fail with
    /// [`LockError::NoQuorum`]. Renewal needs a majority too and never deletes the lock when
    /// it fails; fencing tokens strictly increase across holders even when they reach
    /// different majorities, at the cost of one more round trip when fencing is on.
    ///
    /// A node that restarts empty forgets its locks, which can let a second holder in: delay
    /// its restart beyond the longest TTL, or run it with `appendfsync always`. As for any
    /// lock, fencing is what makes an overlap harmless.
    pub fn quorum<I, S>(urls: I) -> ClientBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ClientBuilder::new(Target::Quorum(urls.into_iter().map(Into::into).collect()))
    }

    /// A builder for a client of the primary that Redis Sentinel manages under `service`,
    /// found through any of the `sentinels` and followed across failovers.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), lock_runtime::LockError> {
    /// use std::time::Duration;
    /// let client = lock_runtime::LockClient::sentinel(
    ///     "mymaster",
    ///     ["redis://10.0.0.1:26379/", "redis://10.0.0.2:26379/", "redis://10.0.0.3:26379/"],
    /// )
    /// .wait_for_replicas(1, Duration::from_millis(100))
    /// .connect()
    /// .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// The user name, password and scheme (`rediss://` for TLS) of the first sentinel URL
    /// are used for the sentinels and for the data servers alike, and so are the builder's
    /// TLS certificates.
    ///
    /// When an operation fails in a way that hints at a failover (refused, dropped or timed
    /// out connections, `READONLY` from a demoted primary), the client asks the sentinels
    /// again and moves to the new primary; the watchdog's next renewal goes there. Redis
    /// replicates asynchronously, so a failover can lose a lock that was just taken: the
    /// holder then finds its key gone at its next renewal and its work is cancelled with
    /// [`LockError::Lost`]. [`wait_for_replicas`](ClientBuilder::wait_for_replicas) narrows
    /// that window, and fencing tokens make what is left harmless.
    ///
    /// Needs the `sentinel` feature.
    #[cfg(feature = "sentinel")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sentinel")))]
    pub fn sentinel<I, S>(service: impl Into<String>, sentinels: I) -> ClientBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ClientBuilder::new(Target::Sentinel {
            service: service.into(),
            urls: sentinels.into_iter().map(Into::into).collect(),
        })
    }

    /// A builder for a client of a Redis Cluster, reached through any of the given nodes
    /// (the others are discovered).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), lock_runtime::LockError> {
    /// let client = lock_runtime::LockClient::cluster(["redis://10.0.0.1:7000/", "redis://10.0.0.2:7000/"])
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// Commands follow `MOVED` and `ASK` redirects, so failovers and resharding are
    /// followed. A lock key and its fencing side key share a slot, wake-ups travel on sharded
    /// pub/sub in the key's slot (Redis 7.0 or later), and renewals of many locks are
    /// grouped per node, one script call per slot. A master failover can lose a lock that
    /// its replica had not received yet; its holder then finds it gone at the next renewal
    /// and its work is cancelled with [`LockError::Lost`].
    ///
    /// The user name, password and TLS settings apply to every node.
    /// [`wait_for_replicas`](ClientBuilder::wait_for_replicas) is not supported on a
    /// cluster yet: `connect` refuses it. Needs the `cluster` feature.
    #[cfg(feature = "cluster")]
    #[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
    pub fn cluster<I, S>(nodes: I) -> ClientBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ClientBuilder::new(Target::Cluster(nodes.into_iter().map(Into::into).collect()))
    }

    /// A client over a connection the service already holds: a redis-rs
    /// [`ConnectionManager`] for commands, and the [`redis::Client`] it came from, which
    /// opens the one extra connection that waiters subscribe on.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let redis = redis::Client::open("redis://127.0.0.1:6390/")?;
    /// let conn = redis::aio::ConnectionManager::new(redis.clone()).await?;
    /// let locks = lock_runtime::LockClient::from_connection_manager(conn, redis);
    /// # Ok(()) }
    /// ```
    ///
    /// The connection's own timeouts apply; each operation is also bounded by
    /// `op_timeout` (3 s, as the default builder's connect plus response timeouts).
    pub fn from_connection_manager(conn: ConnectionManager, client: redis::Client) -> LockClient {
        let redacted = redact_url(&client.get_connection_info().addr().to_string());
        LockClient::over(Arc::new(RedisBackend::new(
            conn,
            client,
            redacted,
            Duration::from_secs(3),
            true,
        )))
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
            store: Arc::clone(&self.store),
            namespace,
            holder: self.holder.clone(),
        }
    }

    /// A client on the same connection whose locks carry a holder label, as
    /// [`ClientBuilder::holder`] sets it: for clients made without a builder
    /// ([`in_memory`](LockClient::in_memory), [`from_connection_manager`](LockClient::from_connection_manager)).
    ///
    /// ```
    /// # async fn demo() -> Result<(), lock_runtime::LockError> {
    /// let client = lock_runtime::LockClient::in_memory().with_holder("billing@host-3")?;
    /// let _guard = client.lock("invoice:42").acquire().await?;
    /// let info = client.inspect("invoice:42").await?;
    /// assert_eq!(info.holder.as_deref(), Some("billing@host-3"));
    /// # Ok(()) }
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
    /// ```
    pub fn with_holder(&self, label: impl AsRef<str>) -> Result<LockClient, LockError> {
        Ok(LockClient {
            store: Arc::clone(&self.store),
            namespace: self.namespace.clone(),
            holder: Some(checked_holder(label.as_ref())?),
        })
    }

    /// The holder label this client's locks carry, if one was set.
    pub fn holder(&self) -> Option<&str> {
        self.holder.as_deref()
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
        Arc::ptr_eq(&self.store, &other.store)
    }

    /// Shuts the client down gracefully: call it before the runtime ends.
    ///
    /// It stops the watchdogs, cancels work still running under this client's locks (its
    /// `run` returns [`LockError::Lost`] with [`LostReason::Closed`](crate::LostReason::Closed)),
    /// releases every lock the client (its clones and namespaces included) still holds,
    /// whether its guard is alive or was dropped, and waits for background releases already
    /// under way; all of it bounded by the client's operation timeout. Locks with a
    /// `min_hold` that has not passed are kept until it has, as on any release.
    ///
    /// Without it, a runtime that shuts down drops the background releases of guards dropped
    /// at the last moment, and other instances wait out the whole TTL. After `close`, every
    /// request on this client fails with [`LockError::Closed`].
    ///
    /// `Err` carries the first release that failed (the others are logged); those locks
    /// expire with their TTL.
    ///
    /// ```
    /// # async fn demo() -> Result<(), lock_runtime::LockError> {
    /// let client = lock_runtime::LockClient::in_memory();
    /// let guard = client.lock("order:42").acquire().await?;
    /// client.close().await?; // on SIGTERM, before returning from main
    /// assert!(guard.is_lost());
    /// assert!(client.lock("order:42").acquire().await.unwrap_err().to_string().contains("closed"));
    /// # Ok(()) }
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
    /// ```
    pub async fn close(&self) -> Result<(), LockError> {
        self.store.close().await
    }
}

/// Builds a Redis [`LockClient`]: one server ([`LockClient::builder`]) or a quorum of
/// independent masters ([`LockClient::quorum`]), with chosen timeouts.
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
    target: Target,
    connect_timeout: Duration,
    response_timeout: Duration,
    node_timeout: Duration,
    /// The holder label, checked at `connect`.
    holder: Option<String>,
    /// `WAIT` for this many replicas, this long, after each acquire.
    replicas: Option<(usize, Duration)>,
    #[cfg(feature = "tls")]
    tls: TlsFiles,
    /// A cluster connection the service already holds, to carry the lock commands.
    #[cfg(feature = "cluster")]
    cluster_connection: Option<redis::cluster_async::ClusterConnection>,
}

/// PEM material for TLS beyond the system roots.
#[cfg(feature = "tls")]
#[derive(Clone, Default)]
struct TlsFiles {
    root_ca: Option<Vec<u8>>,
    /// Certificate chain and private key, for mutual TLS.
    client: Option<(Vec<u8>, Vec<u8>)>,
}

#[cfg(feature = "tls")]
impl TlsFiles {
    /// The certificates for redis-rs, if any were given beyond the system roots.
    fn certificates(&self) -> Option<redis::TlsCertificates> {
        if self.root_ca.is_none() && self.client.is_none() {
            return None;
        }
        Some(redis::TlsCertificates {
            client_tls: self
                .client
                .as_ref()
                .map(|(cert, key)| redis::ClientTlsConfig {
                    client_cert: cert.clone(),
                    client_key: key.clone(),
                }),
            root_cert: self.root_ca.clone(),
        })
    }
}

/// What a builder connects to.
#[derive(Clone)]
enum Target {
    Single(String),
    Quorum(Vec<String>),
    /// A primary found through these sentinels, monitored under `service`.
    #[cfg(feature = "sentinel")]
    Sentinel {
        service: String,
        urls: Vec<String>,
    },
    /// A Redis Cluster, reached through any of these nodes.
    #[cfg(feature = "cluster")]
    Cluster(Vec<String>),
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ClientBuilder");
        match &self.target {
            Target::Single(url) => d.field("url", &redact_url(url)),
            Target::Quorum(urls) => d
                .field(
                    "quorum",
                    &urls.iter().map(|u| redact_url(u)).collect::<Vec<_>>(),
                )
                .field("node_timeout", &self.node_timeout),
            #[cfg(feature = "sentinel")]
            Target::Sentinel { service, urls } => d.field("service", service).field(
                "sentinels",
                &urls.iter().map(|u| redact_url(u)).collect::<Vec<_>>(),
            ),
            #[cfg(feature = "cluster")]
            Target::Cluster(urls) => d.field(
                "cluster",
                &urls.iter().map(|u| redact_url(u)).collect::<Vec<_>>(),
            ),
        };
        d.field("replicas", &self.replicas)
            .field("holder", &self.holder);
        d.field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .finish()
    }
}

impl ClientBuilder {
    fn new(target: Target) -> Self {
        ClientBuilder {
            target,
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(1),
            node_timeout: DEFAULT_NODE_TIMEOUT,
            holder: None,
            replicas: None,
            #[cfg(feature = "tls")]
            tls: TlsFiles::default(),
            #[cfg(feature = "cluster")]
            cluster_connection: None,
        }
    }

    /// For [`LockClient::cluster`]: send the lock commands over a cluster connection the
    /// service already holds, instead of opening one. Its routing (MOVED and ASK) and
    /// timeouts are the connection's own. The sharded subscriptions that wake waiters still
    /// go over a connection of the lock client's, made from the node URLs on the first wait.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let nodes = ["redis://10.0.0.1:7000/", "redis://10.0.0.2:7000/"];
    /// let app = redis::cluster::ClusterClient::new(nodes)?.get_async_connection().await?;
    /// let locks = lock_runtime::LockClient::cluster(nodes)
    ///     .cluster_connection(app.clone())
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "cluster")]
    #[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
    pub fn cluster_connection(mut self, conn: redis::cluster_async::ClusterConnection) -> Self {
        self.cluster_connection = Some(conn);
        self
    }

    /// Trusts this CA (PEM, one or more certificates) for `rediss://` servers, instead of the
    /// system's roots: for a private CA. Certificates are always verified, host name
    /// included.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = std::fs::read("/etc/redis/ca.pem")?;
    /// let client = lock_runtime::LockClient::builder("rediss://cache.internal:6380/")
    ///     .tls_root_ca_pem(ca)
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls_root_ca_pem(mut self, ca_pem: impl Into<Vec<u8>>) -> Self {
        self.tls.root_ca = Some(ca_pem.into());
        self
    }

    /// Presents this client certificate chain and private key (PEM) to `rediss://` servers
    /// that require mutual TLS (`tls-auth-clients yes`).
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls_client_cert_pem(
        mut self,
        cert_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        self.tls.client = Some((cert_pem.into(), key_pem.into()));
        self
    }

    /// After each successful acquire, waits (Redis `WAIT`) until `replicas` replicas have the
    /// write, for at most `timeout`. If fewer confirm in time, the lock is released again and
    /// the acquire fails with [`LockError::NotReplicated`]: Redisson's
    /// `checkLockSyncedSlaves`.
    ///
    /// Replication is asynchronous, so a failover can promote a replica that never saw a
    /// lock, and let a second holder in. This narrows that window to writes lost within the
    /// acknowledgement itself; it does not close it (a replica acknowledges receipt, not a
    /// durable write). Fencing tokens are what make an overlap harmless.
    ///
    /// The `SET` and its `WAIT` go over a second connection, so that a slow `WAIT` never
    /// holds back renewals. Each acquire takes one more round trip.
    pub fn wait_for_replicas(mut self, replicas: usize, timeout: Duration) -> Self {
        self.replicas = Some((replicas, timeout));
        self
    }

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

    /// For a quorum: how long each node may take to answer one request before it counts as
    /// not answering (default 50 ms, and never more than a tenth of the lock's TTL). Keep it
    /// short against the TTL: the lease is only valid for `ttl - elapsed - drift`.
    pub fn node_timeout(mut self, timeout: Duration) -> Self {
        self.node_timeout = timeout;
        self
    }

    /// Labels every lock this client takes, so that an operator can see who holds a key
    /// ([`LockClient::inspect`], [`LockClient::list`], and `lockctl`): for example
    /// `"order-service@host-3"`. Off by default.
    ///
    /// The label goes into the stored token (`<label>;<unix ms>;<uuid>`), which stays one
    /// string compared as a whole: no extra key, no extra command. At most
    /// [`MAX_HOLDER_LEN`](crate::MAX_HOLDER_LEN) characters from `A-Z a-z 0-9 . _ - @ : / + =`;
    /// anything else makes [`connect`](ClientBuilder::connect) fail with
    /// [`LockError::InvalidConfig`].
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), lock_runtime::LockError> {
    /// let host = "host-3"; // e.g. from the HOSTNAME environment variable
    /// let client = lock_runtime::LockClient::builder("redis://127.0.0.1:6390/")
    ///     .holder(format!("order-service@{host}"))
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn holder(mut self, label: impl Into<String>) -> Self {
        self.holder = Some(label.into());
        self
    }

    /// Connects now. Errors carry URLs with their passwords masked.
    ///
    /// A quorum connects to every node at once; it starts if a majority is reachable, and
    /// reaches the others when they come up.
    pub async fn connect(self) -> Result<LockClient, LockError> {
        let holder = self.holder.as_deref().map(checked_holder).transpose()?;
        let mut client = self.connect_target().await?;
        client.holder = holder;
        Ok(client)
    }

    async fn connect_target(self) -> Result<LockClient, LockError> {
        let check = |url: &str| {
            if self.connect_timeout.is_zero()
                || self.response_timeout.is_zero()
                || self.node_timeout.is_zero()
            {
                return Err(LockError::InvalidUrl {
                    url: redact_url(url),
                    reason: "timeouts must be greater than zero".into(),
                });
            }
            Ok(())
        };
        match &self.target {
            Target::Single(url) => {
                check(url)?;
                let node = self.connect_node(url, false).await?;
                Ok(LockClient::over(Arc::new(node)))
            }
            Target::Quorum(urls) => {
                let listed = urls
                    .iter()
                    .map(|u| redact_url(u))
                    .collect::<Vec<_>>()
                    .join(", ");
                check(&listed)?;
                if urls.len() < 3 {
                    return Err(LockError::InvalidUrl {
                        url: listed,
                        reason: format!(
                            "a quorum needs at least 3 independent masters (5 is usual), got {}",
                            urls.len()
                        ),
                    });
                }
                let connects = urls.iter().map(|url| self.connect_node(url, true));
                let results = futures_util::future::join_all(connects).await;
                let mut nodes = Vec::with_capacity(results.len());
                for result in results {
                    nodes.push(result?);
                }
                let backend = QuorumBackend::new(nodes, self.node_timeout);
                let reachable = backend.reachable();
                let needed = backend.quorum();
                if reachable < needed {
                    return Err(LockError::NoQuorum {
                        key: listed,
                        operation: "connect",
                        answered: reachable,
                        needed,
                    });
                }
                tracing::debug!(
                    nodes = urls.len(),
                    reachable,
                    "connected to a quorum of lock servers"
                );
                Ok(LockClient::over(Arc::new(backend)))
            }
            #[cfg(feature = "cluster")]
            Target::Cluster(urls) => {
                let listed = urls
                    .iter()
                    .map(|u| redact_url(u))
                    .collect::<Vec<_>>()
                    .join(", ");
                check(&listed)?;
                self.connect_cluster(urls, listed).await
            }
            #[cfg(feature = "sentinel")]
            Target::Sentinel { service, urls } => {
                let listed = urls
                    .iter()
                    .map(|u| redact_url(u))
                    .collect::<Vec<_>>()
                    .join(", ");
                check(&listed)?;
                let mut sentinel = self.sentinel_client(service, urls, &listed)?;
                let op_timeout = self.connect_timeout + self.response_timeout;
                let client =
                    match tokio::time::timeout(op_timeout, sentinel.async_get_client()).await {
                        Ok(Ok(client)) => client,
                        Ok(Err(e)) => return Err(connect_error(&listed, e)),
                        Err(_) => {
                            return Err(LockError::Timeout {
                                key: listed,
                                operation: "connect",
                                after: op_timeout,
                            });
                        }
                    };
                let addr = crate::backend::sentinel::address(&client);
                let node = self.connect_client(client, addr.clone(), false).await?;
                tracing::debug!(service, primary = %addr, "connected to the Sentinel-managed primary");
                Ok(LockClient::over(Arc::new(SentinelBackend::new(
                    service.clone(),
                    sentinel,
                    node,
                    self.clone(),
                ))))
            }
        }
    }

    /// Opens a redis-rs client for `url`, with the builder's TLS settings.
    fn open(&self, url: &str) -> Result<redis::Client, LockError> {
        let redacted = redact_url(url);
        let invalid = |reason: String| LockError::InvalidUrl {
            url: redacted.clone(),
            reason,
        };
        let tls_url = url.starts_with("rediss://");
        #[cfg(not(feature = "tls"))]
        if tls_url {
            return Err(invalid(
                "`rediss://` needs TLS: enable lock-runtime's `tls` feature (on by default)".into(),
            ));
        }
        #[cfg(feature = "tls")]
        {
            if tls_url {
                ensure_crypto_provider();
            }
            if let Some(certificates) = self.tls.certificates() {
                if !tls_url {
                    return Err(invalid(
                        "TLS certificates were given, but the URL is not `rediss://`".into(),
                    ));
                }
                return redis::Client::build_with_tls(url, certificates)
                    .map_err(|e| invalid(scrub(&e.to_string(), url)));
            }
        }
        let _ = tls_url;
        redis::Client::open(url).map_err(|e| invalid(scrub(&e.to_string(), url)))
    }

    /// The redis-rs Sentinel client for `urls`, with the credentials and TLS of the first.
    #[cfg(feature = "sentinel")]
    fn sentinel_client(
        &self,
        service: &str,
        urls: &[String],
        listed: &str,
    ) -> Result<redis::sentinel::SentinelClient, LockError> {
        use redis::IntoConnectionInfo;
        use redis::sentinel::{SentinelClientBuilder, SentinelServerType};
        let invalid = |reason: String| LockError::InvalidUrl {
            url: listed.to_owned(),
            reason,
        };
        if urls.is_empty() {
            return Err(invalid(
                "give at least one sentinel (three is usual)".into(),
            ));
        }
        let infos = urls
            .iter()
            .map(|url| {
                url.as_str()
                    .into_connection_info()
                    .map_err(|e| invalid(scrub(&e.to_string(), url)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let first = infos[0].redis_settings().clone();
        let tls = matches!(infos[0].addr(), redis::ConnectionAddr::TcpTls { .. });
        let addrs = infos.iter().map(|i| i.addr().clone()).collect::<Vec<_>>();
        let mut builder = SentinelClientBuilder::new(addrs, service, SentinelServerType::Master)
            .map_err(|e| invalid(e.to_string()))?;
        if let Some(user) = first.username() {
            builder = builder
                .set_client_to_sentinel_username(user)
                .set_client_to_redis_username(user);
        }
        if let Some(password) = first.password() {
            builder = builder
                .set_client_to_sentinel_password(password)
                .set_client_to_redis_password(password);
        }
        if tls {
            builder = builder
                .set_client_to_sentinel_tls_mode(redis::TlsMode::Secure)
                .set_client_to_redis_tls_mode(redis::TlsMode::Secure);
            #[cfg(feature = "tls")]
            {
                ensure_crypto_provider();
                if let Some(certificates) = self.tls.certificates() {
                    builder = builder
                        .set_client_to_sentinel_certificates(certificates.clone())
                        .set_client_to_redis_certificates(certificates);
                }
            }
        }
        builder.build().map_err(|e| invalid(e.to_string()))
    }

    /// Connects to a cluster: one connection for commands, and a RESP3 one, made on the
    /// first wait, for sharded subscriptions.
    #[cfg(feature = "cluster")]
    async fn connect_cluster(
        &self,
        urls: &[String],
        listed: String,
    ) -> Result<LockClient, LockError> {
        use redis::cluster::ClusterClientBuilder;
        if urls.is_empty() {
            return Err(LockError::InvalidUrl {
                url: listed,
                reason: "give at least one cluster node".into(),
            });
        }
        if self.replicas.is_some() {
            // WAIT must follow the SET on the same node connection, which also carries that
            // node's renewals; not done yet, so refuse rather than silently skip it.
            return Err(LockError::InvalidUrl {
                url: listed,
                reason: "`wait_for_replicas` is not supported on a cluster yet".into(),
            });
        }
        #[cfg(feature = "tls")]
        if urls.iter().any(|u| u.starts_with("rediss://")) {
            ensure_crypto_provider();
        }
        let builder = || {
            let builder = ClusterClientBuilder::new(urls.iter().map(String::as_str))
                .connection_timeout(self.connect_timeout)
                .response_timeout(self.response_timeout);
            #[cfg(feature = "tls")]
            if let Some(certificates) = self.tls.certificates() {
                return builder.certs(certificates);
            }
            builder
        };
        let invalid = |e: redis::RedisError| LockError::InvalidUrl {
            url: listed.clone(),
            reason: scrub(&e.to_string(), &urls[0]),
        };
        let client = builder().build().map_err(invalid)?;
        let (pushes_tx, pushes) = tokio::sync::mpsc::unbounded_channel();
        let subscriber_client = builder()
            .use_protocol(redis::ProtocolVersion::RESP3)
            .push_sender(pushes_tx)
            .build()
            .map_err(invalid)?;
        let op_timeout = self.connect_timeout + self.response_timeout;
        let connecting = async {
            match self.cluster_connection.clone() {
                Some(conn) => Ok(conn),
                None => client.get_async_connection().await,
            }
        };
        let conn = match tokio::time::timeout(op_timeout, connecting).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(connect_error(&listed, e)),
            Err(_) => {
                return Err(LockError::Timeout {
                    key: listed,
                    operation: "connect",
                    after: op_timeout,
                });
            }
        };
        tracing::debug!(nodes = %listed, "connected to the lock cluster");
        Ok(LockClient::over(Arc::new(ClusterBackend::new(
            conn,
            subscriber_client,
            pushes,
            listed,
            op_timeout,
        ))))
    }

    /// Connects to one server. With `lazy`, an unreachable server is not an error: the
    /// node connects on first use (a quorum tolerates a minority down at start-up).
    async fn connect_node(&self, url: &str, lazy: bool) -> Result<RedisBackend, LockError> {
        let client = self.open(url)?;
        self.connect_client(client, redact_url(url), lazy).await
    }

    /// One connection manager to `client`; `extra` lengthens its response timeout (for
    /// `WAIT`). Returns it and whether the first attempt reached the server.
    async fn manager(
        &self,
        client: &redis::Client,
        redacted: &str,
        extra: Duration,
        lazy: bool,
    ) -> Result<(ConnectionManager, bool), LockError> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.response_timeout + extra))
            // Reconnects happen in the background; a request never waits through a long
            // backoff ladder, it fails and the watchdog or caller retries.
            .set_number_of_retries(1)
            .set_max_delay(self.connect_timeout);
        let op_timeout = self.connect_timeout + self.response_timeout + extra;
        let eager = tokio::time::timeout(
            op_timeout,
            ConnectionManager::new_with_config(client.clone(), config.clone()),
        )
        .await;
        match eager {
            Ok(Ok(conn)) => Ok((conn, true)),
            failed if lazy => {
                tracing::warn!(url = %redacted, "lock server unreachable at start-up; will retry on use");
                drop(failed);
                let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)
                    .map_err(|e| connect_error(redacted, e))?;
                Ok((conn, false))
            }
            Ok(Err(e)) => Err(connect_error(redacted, e)),
            Err(_) => Err(LockError::Timeout {
                key: redacted.to_owned(),
                operation: "connect",
                after: op_timeout,
            }),
        }
    }

    /// Connects to the server behind `client` (see [`connect_node`](Self::connect_node)).
    pub(crate) async fn connect_client(
        &self,
        client: redis::Client,
        redacted: String,
        lazy: bool,
    ) -> Result<RedisBackend, LockError> {
        let (conn, reachable) = self
            .manager(&client, &redacted, Duration::ZERO, lazy)
            .await?;
        let op_timeout = self.connect_timeout + self.response_timeout;
        tracing::debug!(url = %redacted, reachable, "lock server connection set up");
        let mut backend = RedisBackend::new(
            conn,
            client.clone(),
            redacted.clone(),
            op_timeout,
            reachable,
        );
        if reachable {
            // Bounded: a server that stalls now is found out by the first request anyway.
            let _ = tokio::time::timeout(op_timeout, backend.preload_scripts()).await;
        }
        if let Some((wanted, timeout)) = self.replicas {
            let (conn, _) = self.manager(&client, &redacted, timeout, lazy).await?;
            backend = backend.with_replicas(Replicas {
                conn,
                wanted,
                timeout,
            });
        }
        Ok(backend)
    }
}

/// rustls needs a process-wide crypto provider when more than one is compiled in (another
/// crate may enable aws-lc-rs); install ring's unless one is installed already.
#[cfg(feature = "tls")]
fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another installer is fine: some provider is then installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

fn checked_holder(label: &str) -> Result<Arc<str>, LockError> {
    crate::holder::check_label(label).map_err(|reason| LockError::InvalidConfig {
        option: "holder",
        reason,
    })?;
    Ok(label.into())
}
