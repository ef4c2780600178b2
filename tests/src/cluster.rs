//! A Redis Cluster for tests: three primaries and three replicas on free loopback ports
//! (cluster bus ports too), created with `redis-cli --cluster create`, no persistence.

use std::process::Command;
use std::time::Duration;

use crate::sentinel::{info_field, wait_until};
use crate::server::free_port;
use crate::{HarnessError, RedisServer};

const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Six `redis-server` processes in cluster mode: nodes 0–2 start as primaries, 3–5 as
/// their replicas (as `redis-cli` assigns them). Killed and cleaned up on drop.
///
/// `cluster-node-timeout` is 1 s, so a killed primary's replica takes over within a few
/// seconds.
#[derive(Debug)]
pub struct RedisCluster {
    /// Every node; see [`primaries`](Self::primaries) for who is primary now.
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts six nodes, creates the cluster, and waits until every node reports
    /// `cluster_state:ok` with every slot served.
    ///
    /// # Errors
    ///
    /// As for [`RedisServer::start`]; [`HarnessError::Tool`] when `redis-cli` is missing or
    /// fails; [`HarnessError::NotReady`] when the cluster does not come up within 20 s.
    pub fn start() -> Result<RedisCluster, HarnessError> {
        RedisCluster::start_with_args(&[])
    }

    /// As [`start`](Self::start), with extra `redis-server` arguments for every node (for
    /// example an ACL `--user`).
    ///
    /// # Errors
    ///
    /// As for [`start`](Self::start).
    pub fn start_with_args(args: &[&str]) -> Result<RedisCluster, HarnessError> {
        let nodes = (0..6)
            .map(|_| {
                RedisServer::builder()
                    .args(args)
                    .args(["--cluster-enabled", "yes"])
                    .args(["--cluster-config-file", "nodes.conf"])
                    .args(["--cluster-node-timeout", "1000"])
                    // Replicas sync at once (the default waits 5 s for more replicas); a
                    // replica that never synced refuses to take over.
                    .args(["--repl-diskless-sync-delay", "0"])
                    .arg("--cluster-port")
                    .arg(free_port()?.to_string())
                    .start()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for node in &nodes {
            create.arg(format!("127.0.0.1:{}", node.port()));
        }
        create.args(["--cluster-replicas", "1", "--cluster-yes"]);
        let tool = |detail: String| HarnessError::Tool {
            program: "redis-cli",
            package: "redis-tools",
            detail,
        };
        let out = create.output().map_err(|e| tool(e.to_string()))?;
        if !out.status.success() {
            return Err(tool(format!(
                "{}: {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let cluster = RedisCluster { nodes };
        cluster.wait_until_ok(READY_TIMEOUT)?;
        wait_until("the cluster's replicas to sync", READY_TIMEOUT, || {
            for node in &cluster.nodes {
                if info_field(node, "replication", "role")? == "slave" {
                    let link = info_field(node, "replication", "master_link_status")?;
                    if link != "up" {
                        return Err(format!("replica {} link {link}", node.port()));
                    }
                }
            }
            Ok(())
        })?;
        Ok(cluster)
    }

    /// Waits until every running node reports `cluster_state:ok`.
    ///
    /// # Errors
    ///
    /// [`HarnessError::NotReady`] when that does not happen within `timeout`.
    pub fn wait_until_ok(&self, timeout: Duration) -> Result<(), HarnessError> {
        wait_until("the cluster to be ok", timeout, || {
            for node in &self.nodes {
                let Ok(mut con) = node.connection() else {
                    continue; // killed or paused on purpose
                };
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query(&mut con)
                    .map_err(|e| e.to_string())?;
                if !info.contains("cluster_state:ok") || !info.contains("cluster_slots_ok:16384") {
                    return Err(format!(
                        "node {}: {}",
                        node.port(),
                        info.lines().next().unwrap_or("")
                    ));
                }
            }
            Ok(())
        })
    }

    /// Waits until node `i` is a primary (after its primary failed) and the cluster is ok.
    ///
    /// # Errors
    ///
    /// [`HarnessError::NotReady`] when that does not happen within `timeout`.
    pub fn wait_until_primary(&self, i: usize, timeout: Duration) -> Result<(), HarnessError> {
        wait_until("a replica's promotion", timeout, || {
            match info_field(&self.nodes[i], "replication", "role")? {
                role if role == "master" => Ok(()),
                role => Err(format!("node {i} is still {role}")),
            }
        })?;
        self.wait_until_ok(timeout)
    }

    /// `redis://127.0.0.1:PORT/` for every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The indices of the nodes that are primaries now (as each reports itself).
    pub fn primaries(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| {
                info_field(&self.nodes[i], "replication", "role").as_deref() == Ok("master")
            })
            .collect()
    }

    /// The index of the primary that serves `key` now.
    ///
    /// # Errors
    ///
    /// [`HarnessError::Redis`] when no node answers.
    pub fn primary_for(&self, key: &str) -> Result<usize, HarnessError> {
        let mut con = self
            .nodes
            .iter()
            .find_map(|n| n.connection().ok())
            .ok_or(HarnessError::NotRunning)?;
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut con)?;
        let ranges: Vec<redis::Value> = redis::cmd("CLUSTER").arg("SLOTS").query(&mut con)?;
        for range in ranges {
            let redis::Value::Array(parts) = range else {
                continue;
            };
            let (
                Some(redis::Value::Int(lo)),
                Some(redis::Value::Int(hi)),
                Some(redis::Value::Array(master)),
            ) = (parts.first(), parts.get(1), parts.get(2))
            else {
                continue;
            };
            if (*lo as u16..=*hi as u16).contains(&slot)
                && let Some(redis::Value::Int(port)) = master.get(1)
                && let Some(i) = self.nodes.iter().position(|n| i64::from(n.port()) == *port)
            {
                return Ok(i);
            }
        }
        Err(HarnessError::NotReady {
            what: "finding the primary of a key",
            timeout: Duration::ZERO,
            detail: format!("no node serves slot {slot}"),
        })
    }

    /// The index of a replica of primary `primary`.
    ///
    /// # Errors
    ///
    /// [`HarnessError::NotReady`] when it has none that is up.
    pub fn replica_of(&self, primary: usize) -> Result<usize, HarnessError> {
        let port = self.nodes[primary].port().to_string();
        (0..self.nodes.len())
            .find(|&i| {
                i != primary
                    && info_field(&self.nodes[i], "replication", "master_port").as_deref()
                        == Ok(port.as_str())
            })
            .ok_or_else(|| HarnessError::NotReady {
                what: "finding a replica",
                timeout: Duration::ZERO,
                detail: format!("node {primary} has no replica"),
            })
    }

    /// A cluster-aware synchronous connection, for raw access from tests.
    ///
    /// # Errors
    ///
    /// [`HarnessError::Redis`] when no node accepts it.
    pub fn connection(&self) -> Result<redis::cluster::ClusterConnection, HarnessError> {
        let client = redis::cluster::ClusterClientBuilder::new(self.urls())
            .connection_timeout(Duration::from_secs(2))
            .response_timeout(Duration::from_secs(5))
            .build()?;
        Ok(client.get_connection()?)
    }
}
