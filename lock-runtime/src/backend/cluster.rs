//! Redis Cluster, through redis-rs's `cluster-async` connection, which routes each command
//! by its key's slot and follows `MOVED` and `ASK` redirects (failover, resharding).
//!
//! - **Slots.** Every script touches one slot: the lock key and its fencing side key share a
//!   hash tag (see `keys::fence_key`), and release announcements go to a sharded channel in
//!   the key's slot ([`sharded_release_channel`]).
//! - **Wake-ups** use sharded pub/sub (`SPUBLISH` in the release script, `SSUBSCRIBE` on a
//!   RESP3 cluster connection of their own). A classic `PUBLISH` is broadcast to every node
//!   of the cluster; a sharded one stays on the key's shard, and redis-rs re-subscribes after
//!   reconnects and slot moves.
//! - **Renewal.** The renewer hands over batches of up to 100 keys, several at once each
//!   tick. They are coalesced for a moment, split by slot (one `RENEW` script call per
//!   slot, never cross-slot), and grouped by the node that serves each slot: one pipeline
//!   per node and per 100 keys. A tick renewing `n` locks thus costs at most
//!   `n/100 + masters` round trips. A script answered with a redirect or a cluster error
//!   reports its keys as not known, the slot map is read again, and the watchdog retries.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{PushInfo, PushKind, Value};
use tokio::sync::{Mutex as AsyncMutex, mpsc, oneshot};
use tokio::task::AbortHandle;

use super::redis::{
    ACQUIRE_FENCED, RELEASE_SHARDED, RENEW, acquire_reply, busy, force_release_on, inspect_on, int,
    is_held_on, key_of_sharded_channel, millis, protocol_error, scan_cmd, scan_reply,
    sharded_release_channel, ttl_if_held_on,
};
use super::wakeup::{ReleaseHub, ReleaseWatch};
use super::{
    AcquireArgs, Acquired, Backend, BackendResult, BoxFuture, Renewal, Renewed, ScanFrom, ScanPage,
    Stored,
};
use crate::error::BackendError;
use crate::keys::slot;

/// Renewal round trips (pipelines) sent by every cluster backend of the process, for tests
/// and benchmarks.
pub(crate) static RENEWAL_ROUND_TRIPS: AtomicU64 = AtomicU64::new(0);

/// Renewal flushes (coalesced sets of renewals, about one per renewal tick) that sent at
/// least one pipeline, for the same tests.
pub(crate) static RENEWAL_FLUSHES: AtomicU64 = AtomicU64::new(0);

/// Keys per renewal pipeline, as the renewer's own batches.
const PIPELINE_KEYS: usize = crate::renewer::MAX_BATCH;

/// How long the first renewal of a tick waits for the others to join it. At 1 ms, a tick's
/// batches of 1,000 locks often arrived in two flushes on a loaded 2-core machine; 3 ms
/// costs little against the shortest renewal period (33 ms).
const COALESCE: Duration = Duration::from_millis(3);

pub(crate) struct ClusterBackend {
    conn: ClusterConnection,
    /// Makes the RESP3 connection that carries sharded subscriptions.
    subscriber_client: ClusterClient,
    pushes: Mutex<Option<mpsc::UnboundedReceiver<PushInfo>>>,
    subscriber: AsyncMutex<Option<Subscriber>>,
    /// Slot ranges and the master serving each, from `CLUSTER SLOTS`; `None` when it must
    /// be read again.
    slots: RwLock<Option<Vec<(u16, u16, String)>>>,
    /// Renewal work waiting for the next pipeline flush.
    pending: Mutex<Vec<Job>>,
    listed: String,
    op_timeout: Duration,
}

/// One caller's renewals of one slot, waiting to be flushed.
struct Job {
    slot: u16,
    renewals: Vec<(String, String, u64)>,
    reply: oneshot::Sender<Result<Vec<Renewed>, Arc<redis::RedisError>>>,
}

impl fmt::Debug for ClusterBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("nodes", &self.listed)
            .finish_non_exhaustive()
    }
}

impl ClusterBackend {
    pub(crate) fn new(
        conn: ClusterConnection,
        subscriber_client: ClusterClient,
        pushes: mpsc::UnboundedReceiver<PushInfo>,
        listed: String,
        op_timeout: Duration,
    ) -> Self {
        ClusterBackend {
            conn,
            subscriber_client,
            pushes: Mutex::new(Some(pushes)),
            subscriber: AsyncMutex::new(None),
            slots: RwLock::new(None),
            pending: Mutex::new(Vec::new()),
            listed,
            op_timeout,
        }
    }

    /// The master serving `slot`, from the cached slot map (read now if there is none).
    async fn node_of_slots(&self, slots: &[u16]) -> HashMap<u16, String> {
        if self
            .slots
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_none()
        {
            match self.read_slot_map().await {
                Ok(map) => *self.slots.write().unwrap_or_else(|p| p.into_inner()) = Some(map),
                Err(e) => tracing::debug!(error = %e, "reading the cluster slot map failed"),
            }
        }
        let map = self.slots.read().unwrap_or_else(|p| p.into_inner());
        slots
            .iter()
            .map(|&s| {
                let node = map
                    .as_ref()
                    .and_then(|m| m.iter().find(|(lo, hi, _)| (*lo..=*hi).contains(&s)))
                    .map(|(_, _, node)| node.clone())
                    // Unknown: a group of its own; redis-rs routes it by slot.
                    .unwrap_or_else(|| format!("slot {s}"));
                (s, node)
            })
            .collect()
    }

    async fn read_slot_map(&self) -> redis::RedisResult<Vec<(u16, u16, String)>> {
        let mut conn = self.conn.clone();
        let reply = conn
            .route_command(
                redis::cmd("CLUSTER").arg("SLOTS").clone(),
                RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
            )
            .await?;
        let mut map = Vec::new();
        if let Value::Array(ranges) = reply {
            for range in ranges {
                if let Value::Array(parts) = range
                    && let [Value::Int(lo), Value::Int(hi), Value::Array(master), ..] =
                        parts.as_slice()
                    && let [host, Value::Int(port), ..] = master.as_slice()
                {
                    let host = match host {
                        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                        Value::SimpleString(s) => s.clone(),
                        other => format!("{other:?}"),
                    };
                    map.push((*lo as u16, *hi as u16, format!("{host}:{port}")));
                }
            }
        }
        Ok(map)
    }

    /// Sends every pending job: grouped by node, in pipelines of up to [`PIPELINE_KEYS`]
    /// keys, one `RENEW` call per slot.
    async fn flush(&self) {
        let jobs = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        if jobs.is_empty() {
            return;
        }
        let slots: Vec<u16> = jobs.iter().map(|j| j.slot).collect();
        let nodes = self.node_of_slots(&slots).await;
        let mut by_node: BTreeMap<String, Vec<Job>> = BTreeMap::new();
        for job in jobs {
            by_node
                .entry(nodes[&job.slot].clone())
                .or_default()
                .push(job);
        }
        let mut pipelines = Vec::new();
        for (_, jobs) in by_node {
            let mut chunk: Vec<Job> = Vec::new();
            let mut keys = 0;
            for job in jobs {
                if keys > 0 && keys + job.renewals.len() > PIPELINE_KEYS {
                    pipelines.push(std::mem::take(&mut chunk));
                    keys = 0;
                }
                keys += job.renewals.len();
                chunk.push(job);
            }
            if !chunk.is_empty() {
                pipelines.push(chunk);
            }
        }
        RENEWAL_FLUSHES.fetch_add(1, Ordering::Relaxed);
        let sends = pipelines.into_iter().map(|jobs| self.send_pipeline(jobs));
        futures_util::future::join_all(sends).await;
    }

    async fn send_pipeline(&self, jobs: Vec<Job>) {
        RENEWAL_ROUND_TRIPS.fetch_add(1, Ordering::Relaxed);
        let build = |jobs: &[Job]| {
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            for job in jobs {
                let mut cmd = redis::cmd("EVALSHA");
                cmd.arg(RENEW.get_hash()).arg(job.renewals.len());
                for (key, _, _) in &job.renewals {
                    cmd.arg(key);
                }
                for (_, token, ttl) in &job.renewals {
                    cmd.arg(token).arg(*ttl);
                }
                pipe.add_command(cmd);
            }
            pipe
        };
        let route = SingleNodeRoutingInfo::SpecificNode(Route::new(jobs[0].slot, SlotAddr::Master));
        let mut conn = self.conn.clone();
        let mut replies = conn
            .route_pipeline(build(&jobs), 0, jobs.len(), route.clone())
            .await;
        let noscript = |v: &Value| matches!(v, Value::ServerError(e) if e.code() == "NOSCRIPT");
        if let Ok(values) = &replies
            && values.iter().any(noscript)
        {
            // That node has not seen the script yet: load it there, then send again.
            let load = redis::cmd("SCRIPT")
                .arg("LOAD")
                .arg(super::redis::RENEW_LUA)
                .clone();
            let routing = RoutingInfo::SingleNode(route.clone());
            if conn.route_command(load, routing).await.is_ok() {
                RENEWAL_ROUND_TRIPS.fetch_add(1, Ordering::Relaxed);
                replies = conn
                    .route_pipeline(build(&jobs), 0, jobs.len(), route)
                    .await;
            }
        }
        match replies {
            Ok(values) if values.len() == jobs.len() => {
                for (job, value) in jobs.into_iter().zip(values) {
                    let n = job.renewals.len();
                    let result = match value {
                        Value::Array(items) if items.len() == n => Ok(items
                            .iter()
                            .map(|v| Renewed::from(int(v) == Some(1)))
                            .collect()),
                        other => {
                            // A redirect, a cluster error, or a missing script: not known.
                            tracing::debug!(slot = job.slot, reply = ?other, "renewal not answered");
                            *self.slots.write().unwrap_or_else(|p| p.into_inner()) = None;
                            Ok(vec![
                                Renewed::Unknown {
                                    answered: 0,
                                    needed: 1,
                                };
                                n
                            ])
                        }
                    };
                    let _ = job.reply.send(result);
                }
            }
            Ok(_) => {
                let e = Arc::new(redis::RedisError::from((
                    redis::ErrorKind::Parse,
                    "renewal pipeline reply of the wrong length",
                )));
                for job in jobs {
                    let _ = job.reply.send(Err(Arc::clone(&e)));
                }
            }
            Err(e) => {
                *self.slots.write().unwrap_or_else(|p| p.into_inner()) = None;
                let e = Arc::new(e);
                for job in jobs {
                    let _ = job.reply.send(Err(Arc::clone(&e)));
                }
            }
        }
    }
}

fn shared_error(e: &redis::RedisError) -> BackendError {
    BackendError::Redis(redis::RedisError::from((
        e.kind(),
        "cluster renewal failed",
        e.to_string(),
    )))
}

impl Backend for ClusterBackend {
    fn acquire<'a>(&'a self, args: AcquireArgs<'a>) -> BoxFuture<'a, BackendResult<Acquired>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let ttl_ms = millis(args.ttl);
            let Some(fence_key) = args.fence_key else {
                // One key, so one slot: redis-rs sends the pipeline to its node.
                let (taken, pttl): (Option<String>, i64) = redis::pipe()
                    .cmd("SET")
                    .arg(args.key)
                    .arg(args.token)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl_ms)
                    .cmd("PTTL")
                    .arg(args.key)
                    .query_async(&mut conn)
                    .await?;
                if taken.is_some() {
                    return Ok(Acquired::Yes { fence: None });
                }
                if pttl == -1 {
                    let found: String = redis::cmd("TYPE")
                        .arg(args.key)
                        .query_async(&mut conn)
                        .await?;
                    if found != "string" {
                        return Err(BackendError::WrongType(found));
                    }
                }
                return Ok(busy(pttl));
            };
            let reply: Vec<Value> = ACQUIRE_FENCED
                .key(args.key)
                .key(fence_key)
                .arg(args.token)
                .arg(ttl_ms)
                .invoke_async(&mut conn)
                .await?;
            acquire_reply(&reply)
        })
    }

    fn release<'a>(&'a self, key: &'a str, token: &'a str) -> BoxFuture<'a, BackendResult<bool>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let deleted: i64 = RELEASE_SHARDED
                .key(key)
                .arg(token)
                .arg(sharded_release_channel(key))
                .invoke_async(&mut conn)
                .await?;
            Ok(deleted == 1)
        })
    }

    fn renew<'a>(&'a self, batch: &'a [Renewal<'a>]) -> BoxFuture<'a, BackendResult<Vec<Renewed>>> {
        Box::pin(async move {
            if batch.is_empty() {
                return Ok(Vec::new());
            }
            // Split by slot, remembering where each key's answer goes.
            let mut by_slot: BTreeMap<u16, Vec<usize>> = BTreeMap::new();
            for (i, r) in batch.iter().enumerate() {
                by_slot.entry(slot(r.key)).or_default().push(i);
            }
            let mut waits = Vec::new();
            {
                let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
                for (slot, indices) in by_slot {
                    let (reply, answer) = oneshot::channel();
                    pending.push(Job {
                        slot,
                        renewals: indices
                            .iter()
                            .map(|&i| {
                                let r = &batch[i];
                                (r.key.to_owned(), r.token.to_owned(), millis(r.ttl))
                            })
                            .collect(),
                        reply,
                    });
                    waits.push((indices, answer));
                }
            }
            // The renewer starts a tick's batches together: wait a moment so they share
            // pipelines. Every caller flushes; the first takes all pending work, the others
            // find it gone (or flush what a cancelled caller left behind).
            tokio::time::sleep(COALESCE).await;
            self.flush().await;
            let mut out = vec![Renewed::No; batch.len()];
            for (indices, answer) in waits {
                let answers = match answer.await {
                    Ok(Ok(answers)) => answers,
                    Ok(Err(e)) => return Err(shared_error(&e)),
                    // The flushing caller was cancelled with our job in its pipeline.
                    Err(_) => return Err(protocol_error("renewal flush was cancelled")),
                };
                for (i, a) in indices.into_iter().zip(answers) {
                    out[i] = a;
                }
            }
            Ok(out)
        })
    }

    fn ttl_if_held<'a>(
        &'a self,
        key: &'a str,
        token: &'a str,
    ) -> BoxFuture<'a, BackendResult<Option<Duration>>> {
        Box::pin(ttl_if_held_on(self.conn.clone(), key, token))
    }

    fn is_held<'a>(&'a self, key: &'a str, token: &'a str) -> BoxFuture<'a, BackendResult<bool>> {
        Box::pin(is_held_on(self.conn.clone(), key, token))
    }

    fn watch_releases<'a>(&'a self, key: &'a str) -> BoxFuture<'a, BackendResult<ReleaseWatch>> {
        Box::pin(async move {
            let (hub, control) = {
                let mut slot = self.subscriber.lock().await;
                if slot
                    .as_ref()
                    .is_none_or(|s| s.task.is_finished() || s.hub.is_closed())
                {
                    *slot = Some(self.connect_subscriber().await?);
                }
                let sub = slot.as_ref().expect("just set");
                (Arc::clone(&sub.hub), sub.control.clone())
            };
            let watch = hub.watch(key);
            let (done, confirmed) = oneshot::channel();
            control
                .send(Control::Subscribe(key.to_owned(), done))
                .map_err(|_| subscriber_gone())?;
            confirmed.await.map_err(|_| subscriber_gone())??;
            Ok(watch)
        })
    }

    fn inspect<'a>(
        &'a self,
        key: &'a str,
        fence_key: Option<&'a str>,
    ) -> BoxFuture<'a, BackendResult<Stored>> {
        // The side key shares the lock key's slot, so the script goes to one node.
        Box::pin(inspect_on(self.conn.clone(), key, fence_key))
    }

    fn force_release<'a>(&'a self, key: &'a str) -> BoxFuture<'a, BackendResult<Stored>> {
        Box::pin(force_release_on(self.conn.clone(), key, true))
    }

    fn scan<'a>(
        &'a self,
        from: ScanFrom,
        pattern: &'a str,
        count: usize,
    ) -> BoxFuture<'a, BackendResult<ScanPage>> {
        Box::pin(async move {
            // Every master, in the order of the first slot each serves; `SCAN` goes to one
            // master at a time, addressed by a slot it serves.
            let map = self.read_slot_map().await?;
            let mut masters: Vec<(u16, String)> = Vec::new();
            for (lo, _, node) in map {
                match masters.iter_mut().find(|(_, n)| *n == node) {
                    Some(first) => first.0 = first.0.min(lo),
                    None => masters.push((lo, node)),
                }
            }
            masters.sort_unstable();
            let Some((slot, _)) = masters.get(from.node) else {
                return Ok(ScanPage::default());
            };
            let mut conn = self.conn.clone();
            let reply = conn
                .route_command(
                    scan_cmd(from.cursor, pattern, count),
                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::new(
                        *slot,
                        SlotAddr::Master,
                    ))),
                )
                .await?;
            let (cursor, keys) = scan_reply(reply)?;
            let next = if cursor != 0 {
                Some(ScanFrom {
                    node: from.node,
                    cursor,
                })
            } else {
                (from.node + 1 < masters.len()).then_some(ScanFrom {
                    node: from.node + 1,
                    cursor: 0,
                })
            };
            Ok(ScanPage { keys, next })
        })
    }

    fn op_timeout(&self) -> Duration {
        self.op_timeout
    }
}

impl ClusterBackend {
    /// The sharded-subscription connection and its task. Its pushes arrive on the channel
    /// given to the client at build time; only one subscriber can own it, so a subscriber
    /// that failed is not replaced (waiters then poll, bounded by the holder's TTL).
    async fn connect_subscriber(&self) -> BackendResult<Subscriber> {
        let pushes = self
            .pushes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .ok_or_else(subscriber_gone)?;
        let conn = tokio::time::timeout(
            self.op_timeout,
            self.subscriber_client.get_async_connection(),
        )
        .await
        .map_err(|_| subscriber_gone())??;
        let (control, requests) = mpsc::unbounded_channel();
        let unsubscribe = control.clone();
        let hub = Arc::new(ReleaseHub::with_on_idle(Box::new(move |key: &str| {
            let _ = unsubscribe.send(Control::Unsubscribe(key.to_owned()));
        })));
        let task = tokio::spawn(Subscriber::run(
            Arc::clone(&hub),
            conn,
            pushes,
            requests,
            self.op_timeout,
        ));
        Ok(Subscriber {
            hub,
            control,
            task: task.abort_handle(),
        })
    }
}

fn subscriber_gone() -> BackendError {
    BackendError::Redis(redis::RedisError::from((
        redis::ErrorKind::Io,
        "the sharded release subscriber is gone",
    )))
}

enum Control {
    Subscribe(String, oneshot::Sender<BackendResult<()>>),
    Unsubscribe(String),
}

struct Subscriber {
    hub: Arc<ReleaseHub>,
    control: mpsc::UnboundedSender<Control>,
    task: AbortHandle,
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Subscriber {
    async fn run(
        hub: Arc<ReleaseHub>,
        mut conn: ClusterConnection,
        mut pushes: mpsc::UnboundedReceiver<PushInfo>,
        mut requests: mpsc::UnboundedReceiver<Control>,
        op_timeout: Duration,
    ) {
        let why = loop {
            tokio::select! {
                push = pushes.recv() => match push {
                    Some(PushInfo { kind: PushKind::SMessage, data }) => {
                        if let Some(Value::BulkString(channel)) = data.first()
                            && let Ok(channel) = std::str::from_utf8(channel)
                            && let Some(key) = key_of_sharded_channel(channel)
                        {
                            hub.notify(key);
                        }
                    }
                    Some(_) => {}
                    None => break "the push channel closed",
                },
                request = requests.recv() => match request {
                    Some(Control::Subscribe(key, done)) => {
                        let subscribe = conn.ssubscribe(sharded_release_channel(&key));
                        let result = match tokio::time::timeout(op_timeout, subscribe).await {
                            Ok(result) => result.map_err(BackendError::from),
                            Err(_) => Err(subscriber_gone()),
                        };
                        let _ = done.send(result);
                    }
                    Some(Control::Unsubscribe(key)) => {
                        if !hub.is_watched(&key) {
                            let unsubscribe = conn.sunsubscribe(sharded_release_channel(&key));
                            let _ = tokio::time::timeout(op_timeout, unsubscribe).await;
                        }
                    }
                    None => break "the client was dropped",
                },
            }
        };
        tracing::debug!(reason = why, "sharded release subscriber closed");
        hub.close();
    }
}
