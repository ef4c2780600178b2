//! A Sentinel group for tests: a primary, one replica and three sentinels, each a process of
//! its own on a free loopback port, with no persistence.

use std::thread;
use std::time::{Duration, Instant};

use crate::{HarnessError, RedisServer};

/// The service name the sentinels monitor.
pub const SENTINEL_SERVICE: &str = "mymaster";

/// How long the group gets to settle: replica in sync, sentinels aware of each other.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(50);

/// A primary, a replica and three sentinels (quorum 2, down after 1 s). Every process is
/// killed and its directory removed on drop.
///
/// The two data servers are [`RedisServer`]s, so a test can [`pause`](RedisServer::pause)
/// (SIGSTOP), [`resume`](RedisServer::resume) or [`kill`](RedisServer::kill) them.
#[derive(Debug)]
pub struct SentinelGroup {
    /// The server that starts as primary.
    pub primary: RedisServer,
    /// The server that starts as its replica.
    pub replica: RedisServer,
    /// Three sentinels.
    pub sentinels: Vec<RedisServer>,
}

impl SentinelGroup {
    /// Starts the group and waits until the replica is in sync and every sentinel knows the
    /// replica and the two other sentinels, so that a failover can happen at once.
    ///
    /// # Errors
    ///
    /// As for [`RedisServer::start`], and [`HarnessError::NotReady`] when the group does not
    /// settle within 15 s.
    pub fn start() -> Result<SentinelGroup, HarnessError> {
        SentinelGroup::start_with(true)
    }

    /// Starts the group and waits only until the replica is in sync and every sentinel
    /// names the primary: enough for clients to discover it, not yet for a failover (the
    /// sentinels find each other within a few seconds). For tests that never fail over.
    ///
    /// # Errors
    ///
    /// As for [`start`](Self::start).
    pub fn start_for_discovery() -> Result<SentinelGroup, HarnessError> {
        SentinelGroup::start_with(false)
    }

    fn start_with(failover_ready: bool) -> Result<SentinelGroup, HarnessError> {
        // Replicas sync at once (the default waits 5 s for more replicas).
        let primary = RedisServer::builder()
            .args(["--repl-diskless-sync-delay", "0"])
            .start()?;
        let replica = RedisServer::builder()
            .args(["--replicaof", "127.0.0.1"])
            .arg(primary.port().to_string())
            .start()?;
        let config = format!(
            "sentinel monitor {SENTINEL_SERVICE} 127.0.0.1 {} 2\n\
             sentinel down-after-milliseconds {SENTINEL_SERVICE} 1000\n\
             sentinel failover-timeout {SENTINEL_SERVICE} 5000\n\
             sentinel parallel-syncs {SENTINEL_SERVICE} 1\n",
            primary.port()
        );
        let sentinels = (0..3)
            .map(|_| {
                RedisServer::builder()
                    .sentinel_config(config.clone())
                    .start()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let group = SentinelGroup {
            primary,
            replica,
            sentinels,
        };
        wait_until("the Sentinel group to settle", SETTLE_TIMEOUT, || {
            let link = info_field(&group.replica, "replication", "master_link_status")?;
            if link != "up" {
                return Err(format!("replica link {link}"));
            }
            for sentinel in &group.sentinels {
                let master = sentinel_master(sentinel)?;
                let field = |name: &str| {
                    master
                        .windows(2)
                        .find(|w| w[0] == name)
                        .map(|w| w[1].clone())
                        .unwrap_or_default()
                };
                if failover_ready
                    && (field("num-slaves") != "1" || field("num-other-sentinels") != "2")
                {
                    return Err(format!(
                        "sentinel {} sees {} replica(s), {} other sentinel(s)",
                        sentinel.port(),
                        field("num-slaves"),
                        field("num-other-sentinels")
                    ));
                }
            }
            Ok(())
        })?;
        Ok(group)
    }

    /// `redis://127.0.0.1:PORT/` for each sentinel.
    pub fn sentinel_urls(&self) -> Vec<String> {
        self.sentinels.iter().map(RedisServer::url).collect()
    }

    /// The port of the primary as the first sentinel that answers reports it.
    ///
    /// # Errors
    ///
    /// [`HarnessError::Redis`] when no sentinel answers.
    pub fn primary_port(&self) -> Result<u16, HarnessError> {
        let mut last = None;
        for sentinel in &self.sentinels {
            let reply: redis::RedisResult<(String, u16)> = sentinel
                .connection()
                .and_then(|mut c| {
                    Ok(redis::cmd("SENTINEL")
                        .arg("get-master-addr-by-name")
                        .arg(SENTINEL_SERVICE)
                        .query(&mut c)?)
                })
                .map_err(|e| match e {
                    HarnessError::Redis(e) => e,
                    other => redis::RedisError::from(std::io::Error::other(other.to_string())),
                });
            match reply {
                Ok((_, port)) => return Ok(port),
                Err(e) => last = Some(e),
            }
        }
        Err(HarnessError::Redis(last.expect("three sentinels")))
    }

    /// Forces a failover (`SENTINEL FAILOVER`, no agreement needed) and waits until the
    /// replica is primary, as the sentinels report it and as it reports itself.
    ///
    /// # Errors
    ///
    /// [`HarnessError::NotReady`] when the promotion does not happen within 15 s.
    pub fn failover(&self) -> Result<(), HarnessError> {
        let mut con = self.sentinels[0].connection()?;
        redis::cmd("SENTINEL")
            .arg("FAILOVER")
            .arg(SENTINEL_SERVICE)
            .exec(&mut con)?;
        self.wait_for_promotion(SETTLE_TIMEOUT)
    }

    /// Waits until the sentinels report the replica as primary and it answers as one (after
    /// a forced failover, or after the primary was killed or paused).
    ///
    /// # Errors
    ///
    /// [`HarnessError::NotReady`] when that does not happen within `timeout`.
    pub fn wait_for_promotion(&self, timeout: Duration) -> Result<(), HarnessError> {
        let target = self.replica.port();
        wait_until("the replica's promotion", timeout, || {
            let port = self.primary_port().map_err(|e| e.to_string())?;
            if port != target {
                return Err(format!("sentinels still report port {port}"));
            }
            let role = info_field(&self.replica, "replication", "role")?;
            if role != "master" {
                return Err(format!("the replica's role is {role}"));
            }
            Ok(())
        })
    }
}

fn sentinel_master(sentinel: &RedisServer) -> Result<Vec<String>, String> {
    let mut con = sentinel.connection().map_err(|e| e.to_string())?;
    redis::cmd("SENTINEL")
        .arg("MASTER")
        .arg(SENTINEL_SERVICE)
        .query(&mut con)
        .map_err(|e| e.to_string())
}

/// One field of `INFO <section>`.
pub(crate) fn info_field(
    server: &RedisServer,
    section: &str,
    field: &str,
) -> Result<String, String> {
    let mut con = server.connection().map_err(|e| e.to_string())?;
    let info: String = redis::cmd("INFO")
        .arg(section)
        .query(&mut con)
        .map_err(|e| e.to_string())?;
    let prefix = format!("{field}:");
    Ok(info
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or("")
        .trim()
        .to_owned())
}

/// Polls `check` until it passes or `timeout` runs out.
pub(crate) fn wait_until(
    what: &'static str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<(), String>,
) -> Result<(), HarnessError> {
    let started = Instant::now();
    loop {
        match check() {
            Ok(()) => return Ok(()),
            Err(detail) if started.elapsed() >= timeout => {
                return Err(HarnessError::NotReady {
                    what,
                    timeout,
                    detail,
                });
            }
            Err(_) => thread::sleep(POLL),
        }
    }
}
