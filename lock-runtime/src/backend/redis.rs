//! A single Redis server, through redis-rs's `ConnectionManager` (one multiplexed
//! connection, reconnected in the background) and `Script` (EVALSHA, falling back to EVAL
//! on NOSCRIPT, so each script body crosses the wire once per connection).

use std::fmt;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{ConnectionManager, PubSubSink, PubSubStream};
use redis::{Script, Value};
use tokio::sync::{Mutex as AsyncMutex, mpsc, oneshot};
use tokio::task::AbortHandle;

use super::wakeup::{ReleaseHub, ReleaseWatch};
use super::{
    AcquireArgs, Acquired, Backend, BackendResult, BoxFuture, HolderTtl, Renewal, Renewed,
};
use crate::error::BackendError;

/// With fencing: `SET NX PX`, on success `INCR` the fencing counter in the same atomic step,
/// on failure report the holder's PTTL (so waiters never sleep past it) or the foreign type
/// found at the key. Replies: `{1, fence}` taken, `{0, pttl}` busy, `{-1, type}` not a lock.
///
/// Without fencing nothing needs to be atomic with the `SET`: see [`HolderTtl`] for how
/// the holder's PTTL is asked (the uncontended path is one plain `SET NX PX`).
const ACQUIRE_FENCED_LUA: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {1, redis.call('INCR', KEYS[2])}
end
local t = redis.call('TYPE', KEYS[1])['ok']
if t ~= 'string' then return {-1, t} end
return {0, redis.call('PTTL', KEYS[1])}
";
pub(crate) static ACQUIRE_FENCED: LazyLock<Script> =
    LazyLock::new(|| Script::new(ACQUIRE_FENCED_LUA));

/// For a waiter's retries: `SET NX PX`, or the holder's PTTL in the same round trip (and the
/// foreign type found at the key, looked up only when it has no expiry). Replies: `{1}`
/// taken, `{0, pttl}` busy, `{-1, type}` not a lock.
const ACQUIRE_OR_PTTL_LUA: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {1} end
local p = redis.call('PTTL', KEYS[1])
if p == -1 then
  local t = redis.call('TYPE', KEYS[1])['ok']
  if t ~= 'string' then return {-1, t} end
end
return {0, p}
";
static ACQUIRE_OR_PTTL: LazyLock<Script> = LazyLock::new(|| Script::new(ACQUIRE_OR_PTTL_LUA));

/// For a quorum: `SET NX PX`, and on success report the fencing counter as it is (0 if
/// none) in the same atomic step. Replies as [`ACQUIRE_FENCED`].
const ACQUIRE_READING_FENCE_LUA: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {1, tonumber(redis.call('GET', KEYS[2]) or '0')}
end
local t = redis.call('TYPE', KEYS[1])['ok']
if t ~= 'string' then return {-1, t} end
return {0, redis.call('PTTL', KEYS[1])}
";
static ACQUIRE_READING_FENCE: LazyLock<Script> =
    LazyLock::new(|| Script::new(ACQUIRE_READING_FENCE_LUA));

/// For a quorum: if KEYS[1] holds ARGV[1], raise the counter at KEYS[2] to ARGV[2] unless it
/// is already higher; 1 if the lock was ours, else 0.
const RAISE_FENCE_LUA: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local cur = tonumber(redis.call('GET', KEYS[2]) or '0')
if cur < tonumber(ARGV[2]) then redis.call('SET', KEYS[2], ARGV[2]) end
return 1
";
static RAISE_FENCE: LazyLock<Script> = LazyLock::new(|| Script::new(RAISE_FENCE_LUA));

/// Compare-and-delete, then tell waiters on ARGV[2] (see [`release_channel`]).
const RELEASE_LUA: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], '')
  return 1
end
return 0
";
static RELEASE: LazyLock<Script> = LazyLock::new(|| Script::new(RELEASE_LUA));

/// Compare-and-delete, then tell waiters on the sharded channel ARGV[2], which hashes to the
/// key's slot (see [`sharded_release_channel`]): for Redis Cluster.
#[cfg_attr(not(feature = "cluster"), allow(dead_code))]
const RELEASE_SHARDED_LUA: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('SPUBLISH', ARGV[2], '')
  return 1
end
return 0
";
#[cfg_attr(not(feature = "cluster"), allow(dead_code))]
pub(crate) static RELEASE_SHARDED: LazyLock<Script> =
    LazyLock::new(|| Script::new(RELEASE_SHARDED_LUA));

/// The sharded channel for releases of `key` in a cluster: it starts with
/// `lock-released:` and lands in the key's slot. A key with a hash tag keeps it (the prefix
/// has no braces, so the key's tag is the channel's); a key without one is wrapped in one.
#[cfg_attr(not(feature = "cluster"), allow(dead_code))]
pub(crate) fn sharded_release_channel(key: &str) -> String {
    if crate::keys::has_hash_tag(key) {
        format!("{RELEASE_PREFIX}{key}")
    } else {
        format!("{RELEASE_PREFIX}{{{key}}}")
    }
}

/// The key whose releases `channel` announces (either form of [`sharded_release_channel`]).
#[cfg_attr(not(feature = "cluster"), allow(dead_code))]
pub(crate) fn key_of_sharded_channel(channel: &str) -> Option<&str> {
    let rest = channel.strip_prefix(RELEASE_PREFIX)?;
    Some(
        rest.strip_prefix('{')
            .and_then(|r| r.strip_suffix('}'))
            .filter(|inner| !crate::keys::has_hash_tag(inner))
            .unwrap_or(rest),
    )
}

/// Compare-and-delete without announcing it: for a quorum undoing an attempt that did not
/// win. Such an undo frees nothing anyone was waiting for in earnest, and announcing it
/// would wake every waiter at once into the next split vote.
const RELEASE_QUIETLY_LUA: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";
static RELEASE_QUIETLY: LazyLock<Script> = LazyLock::new(|| Script::new(RELEASE_QUIETLY_LUA));

/// For operators: what KEYS[1] holds and its PTTL, and the fencing counter at KEYS[2] when
/// given. Replies `{1, value, pttl, fence}`, `{0, '', -2, fence}` for no key, or
/// `{-1, type, -2, fence}` for a key of another type; `fence` is `''` when there is none.
const INSPECT_LUA: &str = r"
local f = ''
if KEYS[2] then
  local ok, v = pcall(redis.call, 'GET', KEYS[2])
  if ok and v then f = v end
end
local t = redis.call('TYPE', KEYS[1])['ok']
if t == 'none' then return {0, '', -2, f} end
if t ~= 'string' then return {-1, t, -2, f} end
return {1, redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1]), f}
";
static INSPECT: LazyLock<Script> = LazyLock::new(|| Script::new(INSPECT_LUA));

/// For operators: delete KEYS[1] whatever it holds, and announce it on ARGV[1] (sharded
/// when ARGV[2] is `s`). Replies `{1, value, pttl}` when deleted, `{0, '', -2}` for no key;
/// refuses a key of another type (`{-1, type, -2}`) or one with no expiry
/// (`{-2, value, -1}`), which no lock is.
const FORCE_RELEASE_LUA: &str = r"
local t = redis.call('TYPE', KEYS[1])['ok']
if t == 'none' then return {0, '', -2} end
if t ~= 'string' then return {-1, t, -2} end
local v = redis.call('GET', KEYS[1])
local p = redis.call('PTTL', KEYS[1])
if p == -1 then return {-2, v, p} end
redis.call('DEL', KEYS[1])
if ARGV[2] == 's' then
  redis.call('SPUBLISH', ARGV[1], '')
else
  redis.call('PUBLISH', ARGV[1], '')
end
return {1, v, p}
";
static FORCE_RELEASE: LazyLock<Script> = LazyLock::new(|| Script::new(FORCE_RELEASE_LUA));

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

fn pttl_of(ms: i64) -> Option<Duration> {
    (ms >= 0).then(|| Duration::from_millis(ms as u64))
}

/// [`Backend::inspect`] on any connection (one server's or a cluster's: the fencing side
/// key shares the lock key's slot).
pub(crate) async fn inspect_on<C>(
    mut conn: C,
    key: &str,
    fence_key: Option<&str>,
) -> BackendResult<super::Stored>
where
    C: redis::aio::ConnectionLike + Send,
{
    let mut inv = INSPECT.key(key);
    if let Some(fence_key) = fence_key {
        inv.key(fence_key);
    }
    let reply: Vec<Value> = inv.invoke_async(&mut conn).await?;
    let [status, value, pttl, fence] = reply.as_slice() else {
        return Err(protocol_error(&format!("{reply:?}")));
    };
    let fence = text(fence).and_then(|f| f.parse::<u64>().ok());
    match (int(status), int(pttl)) {
        (Some(1), Some(pttl)) => Ok(super::Stored {
            value: text(value),
            ttl: pttl_of(pttl),
            fence,
        }),
        (Some(0), _) => Ok(super::Stored {
            value: None,
            ttl: None,
            fence,
        }),
        (Some(-1), _) => Err(BackendError::WrongType(
            text(value).unwrap_or_else(|| "value of another type".into()),
        )),
        _ => Err(protocol_error(&format!("{reply:?}"))),
    }
}

/// [`Backend::force_release`] on any connection; `sharded` announces with `SPUBLISH` on the
/// key's sharded channel (Redis Cluster).
pub(crate) async fn force_release_on<C>(
    mut conn: C,
    key: &str,
    sharded: bool,
) -> BackendResult<super::Stored>
where
    C: redis::aio::ConnectionLike + Send,
{
    let (channel, mode) = if sharded {
        (sharded_release_channel(key), "s")
    } else {
        (release_channel(key), "p")
    };
    let reply: Vec<Value> = FORCE_RELEASE
        .key(key)
        .arg(channel)
        .arg(mode)
        .invoke_async(&mut conn)
        .await?;
    let [status, value, pttl] = reply.as_slice() else {
        return Err(protocol_error(&format!("{reply:?}")));
    };
    match int(status) {
        Some(1) => Ok(super::Stored {
            value: text(value),
            ttl: int(pttl).and_then(pttl_of),
            fence: None,
        }),
        Some(0) => Ok(super::Stored::default()),
        Some(-1) => Err(BackendError::WrongType(
            text(value).unwrap_or_else(|| "value of another type".into()),
        )),
        Some(-2) => Err(BackendError::WrongType("string with no expiry".into())),
        _ => Err(protocol_error(&format!("{reply:?}"))),
    }
}

/// The `SCAN` command for one listing step: string keys matching `pattern`.
pub(crate) fn scan_cmd(cursor: u64, pattern: &str, count: usize) -> redis::Cmd {
    let mut cmd = redis::cmd("SCAN");
    cmd.arg(cursor)
        .arg("MATCH")
        .arg(pattern)
        .arg("COUNT")
        .arg(count)
        .arg("TYPE")
        .arg("string");
    cmd
}

/// Reads a `SCAN` reply: the next cursor (0 at the end) and the keys (keys that are not
/// UTF-8 cannot be named by a lock, and are skipped).
pub(crate) fn scan_reply(reply: Value) -> BackendResult<(u64, Vec<String>)> {
    let Value::Array(parts) = reply else {
        return Err(protocol_error(&format!("SCAN reply {reply:?}")));
    };
    let [cursor, Value::Array(keys)] = parts.as_slice() else {
        return Err(protocol_error(&format!("SCAN reply {parts:?}")));
    };
    let cursor = text(cursor)
        .and_then(|c| c.parse::<u64>().ok())
        .ok_or_else(|| protocol_error(&format!("SCAN cursor {cursor:?}")))?;
    let keys = keys
        .iter()
        .filter_map(|k| match k {
            Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
            Value::SimpleString(s) => Some(s.clone()),
            _ => None,
        })
        .collect();
    Ok((cursor, keys))
}

/// The command that line `line` of the script with hash `sha` calls, if it is one of ours:
/// Redis 7.0 reports an ACL refusal inside a script by script and line only.
pub(crate) fn script_command(sha: &str, line: usize) -> Option<String> {
    let scripts: [(&str, &Script); SCRIPT_COUNT] = [
        (ACQUIRE_FENCED_LUA, &*ACQUIRE_FENCED),
        (ACQUIRE_READING_FENCE_LUA, &*ACQUIRE_READING_FENCE),
        (RAISE_FENCE_LUA, &*RAISE_FENCE),
        (RELEASE_LUA, &*RELEASE),
        (RELEASE_QUIETLY_LUA, &*RELEASE_QUIETLY),
        (RENEW_LUA, &*RENEW),
        (TTL_IF_HELD_LUA, &*TTL_IF_HELD),
        (RELEASE_SHARDED_LUA, &*RELEASE_SHARDED),
        (ACQUIRE_OR_PTTL_LUA, &*ACQUIRE_OR_PTTL),
        (INSPECT_LUA, &*INSPECT),
        (FORCE_RELEASE_LUA, &*FORCE_RELEASE),
    ];
    let (lua, _) = scripts.iter().find(|(_, s)| s.get_hash() == sha)?;
    let text = lua.lines().nth(line.checked_sub(1)?)?;
    let (_, after) = text.split_once("redis.call")?;
    let name = after.split('\'').nth(1)?;
    Some(name.to_ascii_lowercase())
}

const SCRIPT_COUNT: usize = 11;

/// The pub/sub channel on which releases of `key` are announced.
pub(crate) fn release_channel(key: &str) -> String {
    format!("{RELEASE_PREFIX}{key}")
}

const RELEASE_PREFIX: &str = "lock-released:";

/// Compare-and-pexpire over a batch: KEYS[i] is renewed to ARGV[2i] ms if it holds
/// ARGV[2i-1]. A key of another type counts as not held (someone overwrote it), rather than
/// failing the whole batch.
pub(crate) const RENEW_LUA: &str = r"
local out = {}
for i = 1, #KEYS do
  local ok, v = pcall(redis.call, 'GET', KEYS[i])
  if ok and v == ARGV[2 * i - 1] then
    out[i] = redis.call('PEXPIRE', KEYS[i], ARGV[2 * i])
  else
    out[i] = 0
  end
end
return out
";
pub(crate) static RENEW: LazyLock<Script> = LazyLock::new(|| Script::new(RENEW_LUA));

/// The remaining PTTL of KEYS[1] if it holds ARGV[1], else -3.
const TTL_IF_HELD_LUA: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PTTL', KEYS[1]) end
return -3
";
/// [`Backend::ttl_if_held`] on any connection (one server's or a cluster's).
pub(crate) async fn ttl_if_held_on<C>(
    mut conn: C,
    key: &str,
    token: &str,
) -> BackendResult<Option<Duration>>
where
    C: redis::aio::ConnectionLike + Send,
{
    let pttl: i64 = TTL_IF_HELD
        .key(key)
        .arg(token)
        .invoke_async(&mut conn)
        .await?;
    Ok(match pttl {
        -1 => Some(Duration::MAX),
        ms if ms >= 0 => Some(Duration::from_millis(ms as u64)),
        _ => None,
    })
}

/// [`Backend::is_held`] on any connection.
pub(crate) async fn is_held_on<C>(mut conn: C, key: &str, token: &str) -> BackendResult<bool>
where
    C: redis::aio::ConnectionLike + Send,
{
    let value: Option<Vec<u8>> = redis::cmd("GET").arg(key).query_async(&mut conn).await?;
    Ok(value.as_deref() == Some(token.as_bytes()))
}

pub(crate) static TTL_IF_HELD: LazyLock<Script> = LazyLock::new(|| Script::new(TTL_IF_HELD_LUA));

/// Replica acknowledgement after each acquire (`WAIT`), on a connection of its own.
///
/// `WAIT` covers the writes made earlier *on the connection it is sent on*, so it must follow
/// the `SET` on the same connection; and it blocks that connection until it returns. On the
/// shared connection it would hold back every renewal and release queued behind it, so
/// acquires that wait for replicas use this second connection instead.
pub(crate) struct Replicas {
    pub conn: ConnectionManager,
    pub wanted: usize,
    pub timeout: Duration,
}

pub(crate) struct RedisBackend {
    conn: ConnectionManager,
    replicas: Option<Replicas>,
    client: redis::Client,
    /// The shared subscriber connection, made on the first wait.
    subscriber: AsyncMutex<Option<Subscriber>>,
    /// The URL with its password masked: the only form we ever print.
    redacted_url: String,
    op_timeout: Duration,
    /// Whether the first connection attempt succeeded.
    reachable_at_start: bool,
}

impl RedisBackend {
    pub(crate) fn new(
        conn: ConnectionManager,
        client: redis::Client,
        redacted_url: String,
        op_timeout: Duration,
        reachable_at_start: bool,
    ) -> Self {
        RedisBackend {
            conn,
            replicas: None,
            client,
            subscriber: AsyncMutex::new(None),
            redacted_url,
            op_timeout,
            reachable_at_start,
        }
    }

    /// The server's URL (password masked), or `host:port` for a discovered primary.
    pub(crate) fn url(&self) -> &str {
        &self.redacted_url
    }

    pub(crate) fn reachable_at_start(&self) -> bool {
        self.reachable_at_start
    }

    /// Makes every successful acquire wait for `replicas.wanted` replicas (see [`Replicas`]).
    pub(crate) fn with_replicas(mut self, replicas: Replicas) -> Self {
        self.op_timeout += replicas.timeout;
        self.replicas = Some(replicas);
        self
    }

    /// After an acquire on `conn`: `WAIT` for the replicas; if too few confirm, undo the
    /// acquire (announcing it, as waiters may have seen the key) and report it.
    async fn confirm_replicated(
        &self,
        conn: &mut ConnectionManager,
        key: &str,
        token: &str,
    ) -> BackendResult<()> {
        let Some(replicas) = &self.replicas else {
            return Ok(());
        };
        let acknowledged: i64 = redis::cmd("WAIT")
            .arg(replicas.wanted)
            .arg(millis(replicas.timeout))
            .query_async(conn)
            .await?;
        let acknowledged = acknowledged.max(0) as usize;
        if acknowledged >= replicas.wanted {
            return Ok(());
        }
        tracing::debug!(
            key,
            acknowledged,
            wanted = replicas.wanted,
            "acquire not replicated; undoing it"
        );
        self.release(key, token).await?;
        Err(BackendError::NotReplicated {
            wanted: replicas.wanted,
            acknowledged,
        })
    }
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redis")
            .field("url", &self.redacted_url)
            .finish_non_exhaustive()
    }
}

pub(crate) fn millis(d: Duration) -> u64 {
    // Round up so a sub-millisecond remainder never shortens a lease.
    d.as_nanos().div_ceil(1_000_000) as u64
}

/// A busy answer from the holder's PTTL: -1 means no expiry; -2 means the key went away
/// since the `SET`, so try again at once.
pub(crate) fn busy(pttl: i64) -> Acquired {
    Acquired::Busy {
        holder_ttl: match pttl {
            -1 => None,
            ms => Some(Duration::from_millis(ms.max(0) as u64)),
        },
    }
}

pub(crate) fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        _ => None,
    }
}

pub(crate) fn protocol_error(what: &str) -> BackendError {
    BackendError::Redis(redis::RedisError::from((
        redis::ErrorKind::Parse,
        "unexpected reply from the lock script",
        what.to_owned(),
    )))
}

/// Reads the reply of an acquire script: see [`ACQUIRE_FENCED`] and [`ACQUIRE_OR_PTTL`].
pub(crate) fn acquire_reply(reply: &[Value]) -> BackendResult<Acquired> {
    match reply {
        [Value::Int(1)] => Ok(Acquired::Yes { fence: None }),
        [Value::Int(1), fence] => Ok(Acquired::Yes {
            fence: int(fence).map(|f| f.max(0) as u64),
        }),
        [Value::Int(0), Value::Int(pttl)] => Ok(busy(*pttl)),
        [Value::Int(-1), found] => Err(BackendError::WrongType(
            text(found).unwrap_or_else(|| format!("{found:?}")),
        )),
        other => Err(protocol_error(&format!("{other:?}"))),
    }
}

impl RedisBackend {
    /// Loads every script into the server's cache now, concurrently (one round trip on the
    /// multiplexed connection). Otherwise the first use of each script on a connection costs
    /// a second round trip (EVALSHA, NOSCRIPT, EVAL): on a slow link, the first renewal of a
    /// lock could then miss its deadline. Best effort: a server that refuses (an ACL user
    /// without SCRIPT) still gets each script by EVAL on first use.
    pub(crate) async fn preload_scripts(&self) {
        let scripts: [&Script; 8] = [
            &ACQUIRE_FENCED,
            &ACQUIRE_OR_PTTL,
            &ACQUIRE_READING_FENCE,
            &RAISE_FENCE,
            &RELEASE,
            &RELEASE_QUIETLY,
            &RENEW,
            &TTL_IF_HELD,
        ];
        let loads = scripts.map(|script| {
            let mut conn = self.conn.clone();
            async move { script.load_async(&mut conn).await }
        });
        for result in futures_util::future::join_all(loads).await {
            if let Err(e) = result {
                tracing::debug!(url = %self.redacted_url, error = %e, "could not preload a lock script; it is sent on first use");
                break;
            }
        }
    }

    /// Deletes `key` if it holds `token`, announcing nothing (see [`RELEASE_QUIETLY`]).
    pub(crate) fn release_quietly<'a>(
        &'a self,
        key: &'a str,
        token: &'a str,
    ) -> BoxFuture<'a, BackendResult<bool>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let deleted: i64 = RELEASE_QUIETLY
                .key(key)
                .arg(token)
                .invoke_async(&mut conn)
                .await?;
            Ok(deleted == 1)
        })
    }

    /// The quorum's fencing round on this node: see [`RAISE_FENCE`].
    pub(crate) fn raise_fence<'a>(
        &'a self,
        key: &'a str,
        token: &'a str,
        fence_key: &'a str,
        to: u64,
    ) -> BoxFuture<'a, BackendResult<bool>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let ours: i64 = RAISE_FENCE
                .key(key)
                .key(fence_key)
                .arg(token)
                .arg(to)
                .invoke_async(&mut conn)
                .await?;
            Ok(ours == 1)
        })
    }
}

impl Backend for RedisBackend {
    fn acquire<'a>(&'a self, args: AcquireArgs<'a>) -> BoxFuture<'a, BackendResult<Acquired>> {
        Box::pin(async move {
            // With replica acknowledgement the SET and its WAIT share a connection of their
            // own; see `Replicas`.
            let mut conn = match &self.replicas {
                Some(replicas) => replicas.conn.clone(),
                None => self.conn.clone(),
            };
            let ttl_ms = millis(args.ttl);
            let Some(fence_key) = args.fence_key else {
                if args.holder_ttl == HolderTtl::Within {
                    let reply: Vec<Value> = ACQUIRE_OR_PTTL
                        .key(args.key)
                        .arg(args.token)
                        .arg(ttl_ms)
                        .invoke_async(&mut conn)
                        .await?;
                    let acquired = acquire_reply(&reply)?;
                    if matches!(acquired, Acquired::Yes { .. }) {
                        self.confirm_replicated(&mut conn, args.key, args.token)
                            .await?;
                    }
                    return Ok(acquired);
                }
                // The uncontended path: one plain `SET`, nothing else for the server to run.
                let taken: Option<String> = redis::cmd("SET")
                    .arg(args.key)
                    .arg(args.token)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl_ms)
                    .query_async(&mut conn)
                    .await?;
                if taken.is_some() {
                    self.confirm_replicated(&mut conn, args.key, args.token)
                        .await?;
                    return Ok(Acquired::Yes { fence: None });
                }
                if args.holder_ttl == HolderTtl::Skip {
                    return Ok(Acquired::Busy { holder_ttl: None });
                }
                let pttl: i64 = redis::cmd("PTTL")
                    .arg(args.key)
                    .query_async(&mut conn)
                    .await?;
                if pttl == -1 {
                    // No expiry: a lock never looks like that, so see what is there. Off the
                    // hot path: only a key set by something else gets here.
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
            let script = match args.read_fence {
                true => &*ACQUIRE_READING_FENCE,
                false => &*ACQUIRE_FENCED,
            };
            let reply: Vec<Value> = script
                .key(args.key)
                .key(fence_key)
                .arg(args.token)
                .arg(ttl_ms)
                .invoke_async(&mut conn)
                .await?;
            let acquired = acquire_reply(&reply)?;
            if matches!(acquired, Acquired::Yes { .. }) {
                self.confirm_replicated(&mut conn, args.key, args.token)
                    .await?;
            }
            Ok(acquired)
        })
    }

    fn release<'a>(&'a self, key: &'a str, token: &'a str) -> BoxFuture<'a, BackendResult<bool>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let deleted: i64 = RELEASE
                .key(key)
                .arg(token)
                .arg(release_channel(key))
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
            let mut conn = self.conn.clone();
            let mut inv = RENEW.prepare_invoke();
            for r in batch {
                inv.key(r.key).arg(r.token).arg(millis(r.ttl));
            }
            let replies: Vec<i64> = inv.invoke_async(&mut conn).await?;
            if replies.len() != batch.len() {
                return Err(protocol_error("renewal reply of the wrong length"));
            }
            Ok(replies.into_iter().map(|r| Renewed::from(r == 1)).collect())
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
                    *slot = Some(Subscriber::connect(&self.client, self.op_timeout).await?);
                }
                let sub = slot.as_ref().expect("just set");
                (Arc::clone(&sub.hub), sub.control.clone())
            };
            // Watch first, then subscribe: the caller's next acquire attempt comes after the
            // subscription is confirmed, so no release can slip between the two. A channel
            // already confirmed for another waiter of this key (and not left since) needs no
            // second SUBSCRIBE.
            let (watch, subscribed) = hub.watch_confirmed(key);
            if !subscribed {
                let (done, confirmed) = oneshot::channel();
                control
                    .send(Control::Subscribe(key.to_owned(), done))
                    .map_err(|_| subscriber_gone())?;
                confirmed.await.map_err(|_| subscriber_gone())??;
                hub.confirm(key);
            }
            Ok(watch)
        })
    }

    fn watch_if_queued(&self, key: &str) -> Option<ReleaseWatch> {
        let slot = self.subscriber.try_lock().ok()?;
        let sub = slot.as_ref()?;
        if sub.task.is_finished() {
            return None;
        }
        sub.hub.watch_if_queued(key)
    }

    fn inspect<'a>(
        &'a self,
        key: &'a str,
        fence_key: Option<&'a str>,
    ) -> BoxFuture<'a, BackendResult<super::Stored>> {
        Box::pin(inspect_on(self.conn.clone(), key, fence_key))
    }

    fn force_release<'a>(&'a self, key: &'a str) -> BoxFuture<'a, BackendResult<super::Stored>> {
        Box::pin(force_release_on(self.conn.clone(), key, false))
    }

    fn scan<'a>(
        &'a self,
        from: super::ScanFrom,
        pattern: &'a str,
        count: usize,
    ) -> BoxFuture<'a, BackendResult<super::ScanPage>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let reply: Value = scan_cmd(from.cursor, pattern, count)
                .query_async(&mut conn)
                .await?;
            let (cursor, keys) = scan_reply(reply)?;
            Ok(super::ScanPage {
                keys,
                next: (cursor != 0).then_some(super::ScanFrom { node: 0, cursor }),
            })
        })
    }

    fn op_timeout(&self) -> Duration {
        self.op_timeout
    }
}

fn subscriber_gone() -> BackendError {
    BackendError::Redis(redis::RedisError::from((
        redis::ErrorKind::Io,
        "the release subscriber connection closed",
    )))
}

/// Requests to the subscriber task, handled in order: an UNSUBSCRIBE queued before a
/// SUBSCRIBE of the same channel cannot undo it.
enum Control {
    Subscribe(String, oneshot::Sender<BackendResult<()>>),
    Unsubscribe(String),
    /// Subscribe again, to hear of the key's releases after the other clients (see
    /// [`ROTATE_EVERY`](super::wakeup::ROTATE_EVERY)).
    Rotate(String),
}

/// One pub/sub connection per client, shared by every waiter of every key.
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
    async fn connect(client: &redis::Client, op_timeout: Duration) -> BackendResult<Subscriber> {
        let pubsub = tokio::time::timeout(op_timeout, client.get_async_pubsub())
            .await
            .map_err(|_| timed_out("connecting the release subscriber"))??;
        let (sink, stream) = pubsub.split();
        let (control, requests) = mpsc::unbounded_channel();
        let unsubscribe = control.clone();
        let rotate = control.clone();
        let hub = Arc::new(ReleaseHub::with_hooks(
            Box::new(move |key: &str| {
                // The task may be gone already; then there is nothing to unsubscribe from.
                let _ = unsubscribe.send(Control::Unsubscribe(key.to_owned()));
            }),
            Box::new(move |key: &str| {
                let _ = rotate.send(Control::Rotate(key.to_owned()));
            }),
        ));
        let task = tokio::spawn(Subscriber::run(
            Arc::clone(&hub),
            sink,
            stream,
            requests,
            op_timeout,
        ));
        Ok(Subscriber {
            hub,
            control,
            task: task.abort_handle(),
        })
    }

    /// Serves subscriptions and delivers release messages until the connection fails.
    ///
    /// Every command on the connection is bounded by the operation timeout, and an idle
    /// connection is checked with a PING every [`KEEPALIVE`]: a half-open connection is
    /// torn down within about that long instead of hanging its waiters forever. On the way
    /// out every watch is marked stale, so its waiter subscribes again on a new connection.
    async fn run(
        hub: Arc<ReleaseHub>,
        mut sink: PubSubSink,
        mut stream: PubSubStream,
        mut requests: mpsc::UnboundedReceiver<Control>,
        op_timeout: Duration,
    ) {
        let mut keepalive = tokio::time::interval(KEEPALIVE);
        keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        keepalive.reset();
        let why = loop {
            tokio::select! {
                message = stream.next() => match message {
                    Some(message) => {
                        if let Some(key) = message.get_channel_name().strip_prefix(RELEASE_PREFIX) {
                            hub.notify(key);
                        }
                    }
                    None => break "the connection closed",
                },
                request = requests.recv() => match request {
                    Some(Control::Subscribe(key, done)) => {
                        let subscribe = sink.subscribe(release_channel(&key));
                        let result = match tokio::time::timeout(op_timeout, subscribe).await {
                            Ok(result) => result.map_err(BackendError::from),
                            Err(_) => Err(timed_out("SUBSCRIBE")),
                        };
                        let failed = result.is_err();
                        let _ = done.send(result);
                        if failed {
                            break "a SUBSCRIBE failed or timed out";
                        }
                        keepalive.reset();
                    }
                    Some(Control::Rotate(key)) => {
                        if hub.is_watched(&key) {
                            // Both go out together, so the server runs them back to back.
                            // This client holds the lock now (a waiter of it just took it),
                            // so the only release that could fall between the two is its
                            // own, sent later on the other connection.
                            let channel = release_channel(&key);
                            let mut again = sink.clone();
                            let both = futures_util::future::join(
                                sink.unsubscribe(&channel),
                                again.subscribe(&channel),
                            );
                            if !matches!(
                                tokio::time::timeout(op_timeout, both).await,
                                Ok((Ok(()), Ok(())))
                            ) {
                                break "a re-SUBSCRIBE failed or timed out";
                            }
                        }
                    }
                    Some(Control::Unsubscribe(key)) => {
                        if !hub.is_watched(&key) {
                            let unsubscribe = sink.unsubscribe(release_channel(&key));
                            if !matches!(tokio::time::timeout(op_timeout, unsubscribe).await, Ok(Ok(()))) {
                                break "an UNSUBSCRIBE failed or timed out";
                            }
                        }
                    }
                    None => break "the client was dropped",
                },
                _ = keepalive.tick() => {
                    let ping = sink.ping::<Value>();
                    if !matches!(tokio::time::timeout(op_timeout, ping).await, Ok(Ok(_))) {
                        break "a keep-alive PING failed or timed out";
                    }
                }
            }
        };
        // Every waiter falls back to polling and subscribes again; the next subscription
        // opens a new connection.
        tracing::debug!(reason = why, "release subscriber closed");
        hub.close();
    }
}

/// How often an otherwise quiet subscriber connection is checked with a PING.
const KEEPALIVE: Duration = Duration::from_secs(5);

fn timed_out(what: &str) -> BackendError {
    BackendError::Redis(redis::RedisError::from((
        redis::ErrorKind::Io,
        "timed out",
        what.to_owned(),
    )))
}
