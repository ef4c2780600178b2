//! Shared fixtures for the integration tests: one suite, two backends.
#![allow(dead_code)] // each test binary uses its own part of this module

use std::future::Future;
use std::time::Duration;

use lock_runtime::{LockClient, LockError};
use lock_tests::RedisServer;
use tokio::time::Instant;

/// How soon a released or dropped lock must be gone from the store.
pub const PROMPT: Duration = Duration::from_millis(100);

/// A lock store for one test: a private `redis-server`, a quorum of five, or the in-memory
/// backend.
pub struct Fixture {
    pub server: Option<RedisServer>,
    /// The other nodes of a quorum (the first is `server`).
    pub others: Vec<RedisServer>,
    memory: Option<LockClient>,
    /// For a Sentinel group: the sentinels' URLs (`server` is the primary).
    sentinels: Vec<String>,
    /// Processes that must live as long as the fixture but hold no lock data of their own
    /// (a replica, sentinels).
    keep: Vec<RedisServer>,
    /// A Redis Cluster (then `server` is `None`).
    cluster: Option<lock_tests::RedisCluster>,
}

/// A raw connection: to one server, or cluster-aware (routing each command by its key).
pub enum Raw {
    Single(redis::Connection),
    Cluster(Box<redis::cluster::ClusterConnection>),
}

impl redis::ConnectionLike for Raw {
    fn req_packed_command(&mut self, cmd: &[u8]) -> redis::RedisResult<redis::Value> {
        match self {
            Raw::Single(c) => c.req_packed_command(cmd),
            Raw::Cluster(c) => c.req_packed_command(cmd),
        }
    }
    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> redis::RedisResult<Vec<redis::Value>> {
        match self {
            Raw::Single(c) => c.req_packed_commands(cmd, offset, count),
            Raw::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }
    fn req_command(&mut self, cmd: &redis::Cmd) -> redis::RedisResult<redis::Value> {
        match self {
            Raw::Single(c) => c.req_command(cmd),
            Raw::Cluster(c) => c.req_command(cmd),
        }
    }
    fn get_db(&self) -> i64 {
        match self {
            Raw::Single(c) => c.get_db(),
            Raw::Cluster(c) => c.get_db(),
        }
    }
    fn check_connection(&mut self) -> bool {
        match self {
            Raw::Single(c) => c.check_connection(),
            Raw::Cluster(c) => c.check_connection(),
        }
    }
    fn is_open(&self) -> bool {
        match self {
            Raw::Single(c) => c.is_open(),
            Raw::Cluster(c) => c.is_open(),
        }
    }
}

impl Fixture {
    pub fn redis() -> Fixture {
        let server = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
        Fixture {
            server: Some(server),
            others: Vec::new(),
            memory: None,
            sentinels: Vec::new(),
            keep: Vec::new(),
            cluster: None,
        }
    }

    /// Five independent `redis-server` processes behind one quorum client.
    pub fn quorum() -> Fixture {
        let mut servers: Vec<RedisServer> = (0..5)
            .map(|_| RedisServer::start().unwrap_or_else(|e| panic!("{e}")))
            .collect();
        let first = servers.remove(0);
        Fixture {
            server: Some(first),
            others: servers,
            memory: None,
            sentinels: Vec::new(),
            keep: Vec::new(),
            cluster: None,
        }
    }

    pub fn memory() -> Fixture {
        Fixture {
            server: None,
            others: Vec::new(),
            memory: Some(LockClient::in_memory()),
            sentinels: Vec::new(),
            keep: Vec::new(),
            cluster: None,
        }
    }

    /// A primary, a replica and three sentinels; clients find the primary through the
    /// sentinels. Raw access and lock checks go to the primary.
    pub fn sentinel() -> Fixture {
        let group =
            lock_tests::SentinelGroup::start_for_discovery().unwrap_or_else(|e| panic!("{e}"));
        let sentinels = group.sentinel_urls();
        let mut keep = group.sentinels;
        keep.push(group.replica);
        Fixture {
            server: Some(group.primary),
            others: Vec::new(),
            memory: None,
            sentinels,
            keep,
            cluster: None,
        }
    }

    /// A cluster of three primaries and three replicas; raw access is cluster-aware.
    pub fn cluster() -> Fixture {
        Fixture {
            server: None,
            others: Vec::new(),
            memory: None,
            sentinels: Vec::new(),
            keep: Vec::new(),
            cluster: Some(lock_tests::RedisCluster::start().unwrap_or_else(|e| panic!("{e}"))),
        }
    }

    /// Every Redis node of the fixture.
    pub fn nodes(&self) -> impl Iterator<Item = &RedisServer> {
        self.server.iter().chain(&self.others)
    }

    pub fn is_redis(&self) -> bool {
        self.server.is_some() || self.cluster.is_some()
    }

    /// A new client: its own connection for Redis; for memory, a handle on the one store
    /// (the memory store is per process, as a Redis server is per deployment).
    pub async fn client(&self) -> LockClient {
        if let Some(cluster) = &self.cluster {
            return LockClient::cluster(cluster.urls())
                .connect()
                .await
                .expect("connect to the test cluster");
        }
        match (&self.server, &self.memory) {
            (Some(_), _) if !self.sentinels.is_empty() => {
                LockClient::sentinel(lock_tests::SENTINEL_SERVICE, self.sentinels.clone())
                    .connect()
                    .await
                    .expect("connect through the test sentinels")
            }
            (Some(_), _) if !self.others.is_empty() => {
                LockClient::quorum(self.nodes().map(RedisServer::url))
                    .connect()
                    .await
                    .expect("connect to the test quorum")
            }
            (Some(server), _) => LockClient::connect(&server.url())
                .await
                .expect("connect to the test server"),
            (None, Some(memory)) => memory.clone(),
            (None, None) => unreachable!(),
        }
    }

    /// A raw connection for poking at the data behind the library's back (Redis only; the
    /// first node of a quorum).
    pub fn raw(&self) -> Raw {
        if let Some(cluster) = &self.cluster {
            return Raw::Cluster(Box::new(
                cluster.connection().expect("raw cluster connection"),
            ));
        }
        Raw::Single(
            self.server
                .as_ref()
                .expect("raw access needs Redis")
                .connection()
                .expect("raw connection"),
        )
    }

    /// Whether anyone holds `key` (a full key), without side effects on Redis. On memory it
    /// probes with a throwaway acquire, which leaves nothing behind.
    pub async fn is_locked(&self, key: &str) -> bool {
        if self.cluster.is_some() {
            return redis::cmd("EXISTS")
                .arg(key)
                .query::<bool>(&mut self.raw())
                .unwrap();
        }
        if self.is_redis() {
            // On a quorum: locked on any node (a release must clear them all).
            return self.nodes().any(|node| {
                redis::cmd("EXISTS")
                    .arg(key)
                    .query::<bool>(&mut node.connection().unwrap())
                    .unwrap()
            });
        }
        match self.client().await.lock(key).acquire().await {
            Ok(probe) => {
                probe.release().await.unwrap();
                false
            }
            Err(LockError::Busy { .. }) => true,
            Err(e) => panic!("probe failed: {e}"),
        }
    }

    /// Waits up to [`PROMPT`] for `key` to be free; panics with `what` if it is not.
    pub async fn assert_freed_promptly(&self, key: &str, what: &str) {
        let started = Instant::now();
        while self.is_locked(key).await {
            if started.elapsed() > PROMPT {
                panic!("{what}: `{key}` still locked {PROMPT:?} after the exit");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// A `run` that works until it is cancelled, with the instant it returned.
pub async fn run_until_lost(
    client: LockClient,
    key: &'static str,
    ttl: Duration,
) -> (Result<(), LockError>, Instant) {
    let out = client
        .lock(key)
        .ttl(ttl)
        .run(std::future::pending::<()>())
        .await;
    (out, Instant::now())
}

/// Asserts that a `run` ended with `Lost` because its key was taken, and noticed it within
/// one renewal period (`ttl/3`) plus a margin for scheduling, counted from `taken_at`.
pub fn assert_lost_within_a_period(
    out: &Result<(), LockError>,
    taken_at: Instant,
    returned_at: Instant,
    ttl: Duration,
) {
    assert!(
        matches!(
            out,
            Err(LockError::Lost {
                reason: lock_runtime::LostReason::Taken,
                ..
            })
        ),
        "{out:?}"
    );
    let took = returned_at - taken_at;
    assert!(
        took <= ttl / 3 + Duration::from_millis(60),
        "noticed after {took:?}"
    );
}

/// Polls `cond` every few ms until it holds or `limit` passes; returns how long it took.
pub async fn eventually<F, Fut>(limit: Duration, mut cond: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if cond().await {
            return Some(started.elapsed());
        }
        if started.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Declares each listed `async fn name(fx: Fixture)` as one test per backend: one server,
/// in-memory, a quorum of five servers, and a Sentinel-managed primary. Led by
/// `with_cluster:`, also on a Redis Cluster (three primaries, three replicas).
#[macro_export]
macro_rules! on_both_backends {
    (with_cluster: $($name:ident),* $(,)?) => {
        $crate::on_both_backends!($($name),*);
        mod on_cluster {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Fixture::cluster()).await
                }
            )*
        }
    };
    ($($name:ident),* $(,)?) => {
        mod on_redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Fixture::redis()).await
                }
            )*
        }
        mod on_memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Fixture::memory()).await
                }
            )*
        }
        mod on_quorum {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Fixture::quorum()).await
                }
            )*
        }
        mod on_sentinel {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Fixture::sentinel()).await
                }
            )*
        }
    };
}

/// Captures this thread's tracing events at `level` and above, as text, until the guard
/// drops. For single-threaded tests: a thread-local subscriber sees only its own thread.
pub fn capture_logs(
    level: tracing::Level,
) -> (
    std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    tracing::subscriber::DefaultGuard,
) {
    let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(false)
        .with_writer(move || LogWriter(writer.clone()))
        .finish();
    (logs, tracing::subscriber::set_default(subscriber))
}

struct LogWriter(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
