//! Shared code for the runnable examples of `lock-runtime` (see `src/bin/`).
//!
//! Every example finds its lock server the same way, with [`LockServer::discover`]:
//!
//! 0. `REDIS_CLUSTER` (node URLs, comma-separated) or `REDIS_SENTINEL`
//!    (`service@url,url,...`), if set: locks go to that deployment; example state goes to
//!    `REDIS_URL` if that is set too, else stays in this process;
//! 1. `REDIS_URL`, if it is set;
//! 2. otherwise a private `redis-server`, started on a free port for this run and stopped
//!    when the example exits, if one is installed (the `lock_tests` harness);
//! 3. otherwise the in-memory backend, with a notice that says so and how to point the
//!    example at Redis.
//!
//! Examples whose "replicas" share data (orders, job runs) keep it in a [`SharedState`]:
//! Redis hashes and lists on the same server when there is Redis, an in-process map when
//! there is not.

#![warn(missing_docs)]

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lock_runtime::{LockClient, LockError};
use lock_tests::{HarnessError, REDIS_SERVER_ENV, RedisServer};
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use tokio::time::Instant;

/// The environment variable that points every example at a Redis server.
pub const REDIS_URL_ENV: &str = "REDIS_URL";

/// Points the examples' locks at a Redis Cluster: node URLs, comma-separated.
pub const REDIS_CLUSTER_ENV: &str = "REDIS_CLUSTER";

/// Points the examples' locks at a Sentinel-managed primary: `service@url,url,...`, the URLs
/// being the sentinels'.
pub const REDIS_SENTINEL_ENV: &str = "REDIS_SENTINEL";

/// A deployment named by `REDIS_CLUSTER` or `REDIS_SENTINEL`.
#[derive(Debug, Clone)]
enum Topology {
    Cluster(Vec<String>),
    Sentinel { service: String, urls: Vec<String> },
}

impl Topology {
    fn from_env() -> Option<Result<Topology, String>> {
        let list = |v: &str| -> Vec<String> {
            v.split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(str::to_owned)
                .collect()
        };
        if let Some(v) = std::env::var(REDIS_CLUSTER_ENV)
            .ok()
            .filter(|v| !v.trim().is_empty())
        {
            return Some(Ok(Topology::Cluster(list(&v))));
        }
        let v = std::env::var(REDIS_SENTINEL_ENV)
            .ok()
            .filter(|v| !v.trim().is_empty())?;
        Some(match v.split_once('@') {
            Some((service, urls)) if !service.contains("://") => Ok(Topology::Sentinel {
                service: service.to_owned(),
                urls: list(urls),
            }),
            _ => Err(format!(
                "{REDIS_SENTINEL_ENV} must look like mymaster@redis://10.0.0.1:26379/,redis://10.0.0.2:26379/"
            )),
        })
    }
}

/// Which of the three lock servers an example runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    /// The server named by `REDIS_URL`.
    RedisUrl,
    /// A `redis-server` started for this run on a free loopback port.
    PrivateRedis,
    /// The in-process backend: locks only exclude tasks of this process.
    InMemory,
    /// A Redis Cluster or Sentinel group named by `REDIS_CLUSTER` or `REDIS_SENTINEL`.
    Topology,
}

/// The lock server an example runs against, found with [`LockServer::discover`].
///
/// Owns the private `redis-server`, if it started one: dropping the `LockServer` stops that
/// server. Keep it alive until the end of `main` (and return an `ExitCode` rather than
/// calling `std::process::exit`, so that it is dropped).
pub struct LockServer {
    kind: ServerKind,
    /// The Redis URL (password included) for the Redis kinds.
    url: Option<String>,
    /// The private server, stopped on drop.
    private: Option<RedisServer>,
    /// The one in-memory lock client and state, shared by all "replicas" in this process.
    memory: Option<(LockClient, SharedState)>,
    /// Locks on a cluster or Sentinel group.
    topology: Option<Topology>,
}

impl fmt::Debug for LockServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockServer")
            .field("kind", &self.kind)
            .field("url", &self.url.as_deref().map(redact_url))
            .finish_non_exhaustive()
    }
}

impl LockServer {
    /// Finds the lock server (`REDIS_URL`, else a private `redis-server`, else in-memory) and
    /// prints one line saying which, plus a notice when it falls back to in-memory.
    ///
    /// `example` is the binary's name, used in the notice's `cargo run` hint.
    ///
    /// `REDIS_SERVER` (read by the harness) chooses the `redis-server` binary. When it names
    /// nothing executable, the harness reports an error rather than "not installed"; this
    /// treats that like a missing binary, falls back to in-memory and says why in the notice.
    /// So `REDIS_SERVER=/nonexistent` is a way to force the in-memory backend. A
    /// `redis-server` that is installed but fails to start also falls back, with its error
    /// in the notice.
    pub fn discover(example: &str) -> LockServer {
        let (server, notice) = Self::find(example);
        println!("{}", server.describe());
        if let Some(notice) = notice {
            println!("{notice}");
        }
        server
    }

    /// The server, and the notice to print when it is the in-memory fallback.
    fn find(example: &str) -> (LockServer, Option<String>) {
        match Topology::from_env() {
            Some(Ok(topology)) => {
                let url = std::env::var(REDIS_URL_ENV)
                    .ok()
                    .filter(|u| !u.trim().is_empty());
                let memory = match url {
                    Some(_) => None,
                    None => Some((LockClient::in_memory(), SharedState::in_memory())),
                };
                let server = LockServer {
                    kind: ServerKind::Topology,
                    url,
                    private: None,
                    memory,
                    topology: Some(topology),
                };
                return (server, None);
            }
            Some(Err(why)) => eprintln!("ignoring a malformed setting: {why}"),
            None => {}
        }
        if let Some(url) = std::env::var(REDIS_URL_ENV)
            .ok()
            .filter(|u| !u.trim().is_empty())
        {
            let server = LockServer {
                kind: ServerKind::RedisUrl,
                url: Some(url),
                private: None,
                memory: None,
                topology: None,
            };
            return (server, None);
        }
        let why = match RedisServer::start() {
            Ok(private) => {
                let server = LockServer {
                    kind: ServerKind::PrivateRedis,
                    url: Some(private.url()),
                    private: Some(private),
                    memory: None,
                    topology: None,
                };
                return (server, None);
            }
            Err(HarnessError::NotInstalled) => "no redis-server on PATH".to_owned(),
            Err(HarnessError::InvalidBinary { path }) => format!(
                "{REDIS_SERVER_ENV}={} is not an executable redis-server",
                path.display()
            ),
            Err(e) => {
                let e = e.to_string();
                format!(
                    "redis-server did not start ({})",
                    e.lines().next().unwrap_or_default()
                )
            }
        };
        let notice = format!(
            "notice: {why}, so this run uses the in-memory lock backend (locks and state live in \
             this one process). To use Redis: {REDIS_URL_ENV}=redis://127.0.0.1:6379/ cargo run \
             -p lock-examples --bin {example}"
        );
        let server = LockServer {
            kind: ServerKind::InMemory,
            url: None,
            private: None,
            memory: Some((LockClient::in_memory(), SharedState::in_memory())),
            topology: None,
        };
        (server, Some(notice))
    }

    /// Which of the three servers this is.
    pub fn kind(&self) -> ServerKind {
        self.kind
    }

    /// Whether locks and state are in Redis (from `REDIS_URL` or private).
    pub fn is_redis(&self) -> bool {
        self.kind != ServerKind::InMemory
    }

    /// One line for the output: `lock server: ...`.
    pub fn describe(&self) -> String {
        let state = match &self.url {
            Some(url) => format!("example state in {REDIS_URL_ENV}={}", redact_url(url)),
            None => "example state in this process".to_owned(),
        };
        match &self.topology {
            Some(Topology::Cluster(urls)) => {
                return format!(
                    "lock server: {REDIS_CLUSTER_ENV}={} ({state})",
                    urls.iter()
                        .map(|u| redact_url(u))
                        .collect::<Vec<_>>()
                        .join(",")
                );
            }
            Some(Topology::Sentinel { service, urls }) => {
                return format!(
                    "lock server: {REDIS_SENTINEL_ENV}={service}@{} ({state})",
                    urls.iter()
                        .map(|u| redact_url(u))
                        .collect::<Vec<_>>()
                        .join(",")
                );
            }
            None => {}
        }
        match (self.kind, &self.private) {
            (ServerKind::RedisUrl, _) => format!(
                "lock server: {REDIS_URL_ENV}={}",
                redact_url(self.url.as_deref().unwrap_or_default())
            ),
            (ServerKind::PrivateRedis, Some(server)) => format!(
                "lock server: private redis-server on {} (started for this run, stopped on exit)",
                server.addr()
            ),
            _ => "lock server: in-memory (this process only)".to_owned(),
        }
    }

    /// A lock client on this server.
    ///
    /// For Redis, each call opens a new connection, the way separate replicas would. In
    /// memory, every call returns a handle on the same store.
    pub async fn client(&self) -> Result<LockClient, LockError> {
        match &self.topology {
            Some(Topology::Cluster(urls)) => {
                return LockClient::cluster(urls.clone()).connect().await;
            }
            Some(Topology::Sentinel { service, urls }) => {
                return LockClient::sentinel(service.clone(), urls.clone())
                    .connect()
                    .await;
            }
            None => {}
        }
        match (&self.url, &self.memory) {
            (Some(url), _) => LockClient::connect(url).await,
            (None, Some((client, _))) => Ok(client.clone()),
            (None, None) => unreachable!("a LockServer is either Redis or in-memory"),
        }
    }

    /// The state shared by replicas: a new connection to the same Redis server, or the one
    /// in-process store in in-memory mode.
    pub async fn state(&self) -> redis::RedisResult<SharedState> {
        match (&self.url, &self.memory) {
            (Some(url), _) => SharedState::connect(url).await,
            (None, Some((_, state))) => Ok(state.clone()),
            (None, None) => unreachable!("a LockServer is either Redis or in-memory"),
        }
    }
}

pub use lock_runtime::redact_url;

/// Data the replicas of an example share: a few Redis hash and list commands, or the same
/// commands on an in-process map when there is no Redis.
///
/// Clones share one connection (or one map).
#[derive(Clone)]
pub struct SharedState {
    inner: StateInner,
}

#[derive(Clone)]
enum StateInner {
    Redis(ConnectionManager),
    Memory(Arc<Mutex<MemoryState>>),
}

#[derive(Default)]
struct MemoryState {
    hashes: HashMap<String, BTreeMap<String, String>>,
    lists: HashMap<String, Vec<String>>,
}

impl fmt::Debug for SharedState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.inner {
            StateInner::Redis(_) => "SharedState(Redis)",
            StateInner::Memory(_) => "SharedState(in-memory)",
        })
    }
}

/// How long example state stays in a Redis that outlives the run (`REDIS_URL`).
const STATE_TTL_SECS: i64 = 3600;

impl SharedState {
    /// Connects to Redis (a connection of its own, separate from any lock client).
    pub async fn connect(url: &str) -> redis::RedisResult<SharedState> {
        let client = redis::Client::open(url)?;
        let conn = ConnectionManager::new(client).await?;
        Ok(SharedState {
            inner: StateInner::Redis(conn),
        })
    }

    /// A fresh in-process store.
    pub fn in_memory() -> SharedState {
        SharedState {
            inner: StateInner::Memory(Arc::default()),
        }
    }

    /// Whether the data lives in Redis.
    pub fn is_redis(&self) -> bool {
        matches!(self.inner, StateInner::Redis(_))
    }

    /// Where the data lives, in a few words: `Redis` or `the in-process store`.
    pub fn location(&self) -> &'static str {
        match self.inner {
            StateInner::Redis(_) => "Redis",
            StateInner::Memory(_) => "the in-process store",
        }
    }

    /// Where the data lives, for the output: `shared state: ...`.
    pub fn describe(&self, keys: &str) -> String {
        match self.inner {
            StateInner::Redis(_) => {
                format!("shared state: Redis keys {keys}, on the lock server")
            }
            StateInner::Memory(_) => format!(
                "shared state: an in-process map standing in for Redis keys {keys} (in-memory \
                 mode: the replicas are tasks of this one process)"
            ),
        }
    }

    fn memory(state: &Mutex<MemoryState>) -> std::sync::MutexGuard<'_, MemoryState> {
        state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `HGET key field`.
    pub async fn hget(&self, key: &str, field: &str) -> redis::RedisResult<Option<String>> {
        match &self.inner {
            StateInner::Redis(conn) => conn.clone().hget(key, field).await,
            StateInner::Memory(state) => Ok(Self::memory(state)
                .hashes
                .get(key)
                .and_then(|h| h.get(field).cloned())),
        }
    }

    /// `HSET key field value` (and an expiry of an hour on `key` in Redis).
    pub async fn hset(&self, key: &str, field: &str, value: &str) -> redis::RedisResult<()> {
        match &self.inner {
            StateInner::Redis(conn) => {
                redis::pipe()
                    .hset(key, field, value)
                    .ignore()
                    .expire(key, STATE_TTL_SECS)
                    .ignore()
                    .exec_async(&mut conn.clone())
                    .await
            }
            StateInner::Memory(state) => {
                Self::memory(state)
                    .hashes
                    .entry(key.to_owned())
                    .or_default()
                    .insert(field.to_owned(), value.to_owned());
                Ok(())
            }
        }
    }

    /// `HINCRBY key field 1` (and an expiry of an hour on `key` in Redis): the new count.
    pub async fn hincr(&self, key: &str, field: &str) -> redis::RedisResult<i64> {
        match &self.inner {
            StateInner::Redis(conn) => {
                let (count,): (i64,) = redis::pipe()
                    .hincr(key, field, 1)
                    .expire(key, STATE_TTL_SECS)
                    .ignore()
                    .query_async(&mut conn.clone())
                    .await?;
                Ok(count)
            }
            StateInner::Memory(state) => {
                let mut state = Self::memory(state);
                let value = state
                    .hashes
                    .entry(key.to_owned())
                    .or_default()
                    .entry(field.to_owned())
                    .or_insert_with(|| "0".to_owned());
                let count = value.parse::<i64>().unwrap_or(0) + 1;
                *value = count.to_string();
                Ok(count)
            }
        }
    }

    /// `HGETALL key`, sorted by field.
    pub async fn hgetall(&self, key: &str) -> redis::RedisResult<BTreeMap<String, String>> {
        match &self.inner {
            StateInner::Redis(conn) => conn.clone().hgetall(key).await,
            StateInner::Memory(state) => Ok(Self::memory(state)
                .hashes
                .get(key)
                .cloned()
                .unwrap_or_default()),
        }
    }

    /// `RPUSH key value` (and an expiry of an hour on `key` in Redis).
    pub async fn rpush(&self, key: &str, value: &str) -> redis::RedisResult<()> {
        match &self.inner {
            StateInner::Redis(conn) => {
                redis::pipe()
                    .rpush(key, value)
                    .ignore()
                    .expire(key, STATE_TTL_SECS)
                    .ignore()
                    .exec_async(&mut conn.clone())
                    .await
            }
            StateInner::Memory(state) => {
                Self::memory(state)
                    .lists
                    .entry(key.to_owned())
                    .or_default()
                    .push(value.to_owned());
                Ok(())
            }
        }
    }

    /// `LRANGE key 0 -1`.
    pub async fn lrange(&self, key: &str) -> redis::RedisResult<Vec<String>> {
        match &self.inner {
            StateInner::Redis(conn) => conn.clone().lrange(key, 0, -1).await,
            StateInner::Memory(state) => Ok(Self::memory(state)
                .lists
                .get(key)
                .cloned()
                .unwrap_or_default()),
        }
    }
}

/// A short random id for one run, so that runs against a long-lived Redis (`REDIS_URL`)
/// do not see each other's state.
pub fn run_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_owned()
}

/// Time since the example started, for timelines.
#[derive(Debug, Clone, Copy)]
pub struct Stopwatch(Instant);

impl Stopwatch {
    /// Starts now.
    pub fn start() -> Stopwatch {
        Stopwatch(Instant::now())
    }

    /// The time elapsed since the start.
    pub fn elapsed(&self) -> Duration {
        self.0.elapsed()
    }

    /// The elapsed time as `t=1.234s`.
    pub fn stamp(&self) -> String {
        format!("t={:.3}s", self.elapsed().as_secs_f64())
    }
}

/// A tiny command-line parser: `--name value`, `--name=value` and `--flag`, rejecting
/// anything it was not asked about.
#[derive(Debug)]
pub struct Args {
    args: Vec<String>,
    usage: &'static str,
}

impl Args {
    /// The process's arguments. With `-h` or `--help`, prints `usage` and exits.
    pub fn from_env(usage: &'static str) -> Args {
        let args: Vec<String> = std::env::args().skip(1).collect();
        if args.iter().any(|a| a == "-h" || a == "--help") {
            println!("{usage}");
            std::process::exit(0);
        }
        Args { args, usage }
    }

    /// Removes `--name` and reports whether it was there.
    pub fn flag(&mut self, name: &str) -> bool {
        let before = self.args.len();
        self.args.retain(|a| a != name);
        self.args.len() != before
    }

    /// Removes `--name value` (or `--name=value`) and parses the value.
    pub fn value<T: FromStr>(&mut self, name: &str) -> Result<Option<T>, String>
    where
        T::Err: fmt::Display,
    {
        let prefix = format!("{name}=");
        let Some(at) = self
            .args
            .iter()
            .position(|a| a == name || a.starts_with(&prefix))
        else {
            return Ok(None);
        };
        let arg = self.args.remove(at);
        let raw = match arg.strip_prefix(&prefix) {
            Some(raw) => raw.to_owned(),
            None if at < self.args.len() => self.args.remove(at),
            None => return Err(format!("{name} needs a value\n\n{}", self.usage)),
        };
        raw.parse()
            .map(Some)
            .map_err(|e| format!("bad value {raw:?} for {name}: {e}\n\n{}", self.usage))
    }

    /// Fails if arguments are left that no `flag` or `value` call took.
    pub fn finish(self) -> Result<(), String> {
        match self.args.first() {
            None => Ok(()),
            Some(arg) => Err(format!("unexpected argument {arg:?}\n\n{}", self.usage)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_only() {
        let shown = redact_url("redis://:hunter2@10.0.0.1:6379/0");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("@10.0.0.1:6379/0"), "{shown}");
        assert_eq!(
            redact_url("redis://127.0.0.1:6379/"),
            "redis://127.0.0.1:6379/"
        );
    }

    #[test]
    fn args_take_both_forms_and_reject_leftovers() {
        let mut args = Args {
            args: ["--ticks", "3", "--port=8080", "--unlocked", "--oops"]
                .map(String::from)
                .to_vec(),
            usage: "usage",
        };
        assert_eq!(args.value::<u32>("--ticks").unwrap(), Some(3));
        assert_eq!(args.value::<u16>("--port").unwrap(), Some(8080));
        assert_eq!(args.value::<u16>("--missing").unwrap(), None);
        assert!(args.flag("--unlocked"));
        assert!(args.finish().unwrap_err().contains("--oops"));
    }

    #[tokio::test]
    async fn memory_state_counts_and_lists() {
        let state = SharedState::in_memory();
        assert_eq!(state.hincr("h", "a").await.unwrap(), 1);
        assert_eq!(state.hincr("h", "a").await.unwrap(), 2);
        state.hset("h", "b", "x").await.unwrap();
        assert_eq!(state.hget("h", "b").await.unwrap().as_deref(), Some("x"));
        assert_eq!(state.hgetall("h").await.unwrap().len(), 2);
        state.rpush("l", "1").await.unwrap();
        state.rpush("l", "2").await.unwrap();
        assert_eq!(state.lrange("l").await.unwrap(), ["1", "2"]);
    }
}
