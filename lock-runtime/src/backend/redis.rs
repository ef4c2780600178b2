//! A single Redis server, through redis-rs's `ConnectionManager` (one multiplexed
//! connection, reconnected in the background) and `Script` (EVALSHA, falling back to EVAL
//! on NOSCRIPT, so each script body crosses the wire once per connection).

use std::fmt;
use std::sync::LazyLock;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{Script, Value};

use super::{AcquireArgs, Acquired, Backend, BackendResult, BoxFuture, Renewal};
use crate::error::BackendError;

/// `SET NX PX`; on success optionally `INCR` the fencing counter, on failure report the
/// holder's PTTL (so waiters never sleep past it) or the foreign type found at the key.
/// Replies: `{1, fence}` taken (fence 0 when off), `{0, pttl}` busy, `{-1, type}` not a lock.
static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  if KEYS[2] then return {1, redis.call('INCR', KEYS[2])} end
  return {1, 0}
end
local t = redis.call('TYPE', KEYS[1])['ok']
if t ~= 'string' then return {-1, t} end
return {0, redis.call('PTTL', KEYS[1])}
",
    )
});

/// Compare-and-delete.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
",
    )
});

/// Compare-and-pexpire over a batch: KEYS[i] is renewed to ARGV[2i] ms if it holds
/// ARGV[2i-1]. A key of another type counts as not held (someone overwrote it), rather than
/// failing the whole batch.
static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
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
",
    )
});

pub(crate) struct RedisBackend {
    conn: ConnectionManager,
    /// The URL with its password masked: the only form we ever print.
    redacted_url: String,
    op_timeout: Duration,
}

impl RedisBackend {
    pub(crate) fn new(conn: ConnectionManager, redacted_url: String, op_timeout: Duration) -> Self {
        RedisBackend {
            conn,
            redacted_url,
            op_timeout,
        }
    }
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redis")
            .field("url", &self.redacted_url)
            .finish_non_exhaustive()
    }
}

fn millis(d: Duration) -> u64 {
    // Round up so a sub-millisecond remainder never shortens a lease.
    d.as_nanos().div_ceil(1_000_000) as u64
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        _ => None,
    }
}

fn protocol_error(what: &str) -> BackendError {
    BackendError::Redis(redis::RedisError::from((
        redis::ErrorKind::Parse,
        "unexpected reply from the lock script",
        what.to_owned(),
    )))
}

impl Backend for RedisBackend {
    fn acquire<'a>(&'a self, args: AcquireArgs<'a>) -> BoxFuture<'a, BackendResult<Acquired>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let mut inv = ACQUIRE.key(args.key);
            if let Some(fence) = args.fence_key {
                inv.key(fence);
            }
            inv.arg(args.token).arg(millis(args.ttl));
            let reply: Vec<Value> = inv.invoke_async(&mut conn).await?;
            match reply.as_slice() {
                [Value::Int(1), fence] => Ok(Acquired::Yes {
                    fence: args
                        .fence_key
                        .and_then(|_| int(fence))
                        .map(|f| f.max(0) as u64),
                }),
                [Value::Int(0), pttl] => Ok(Acquired::Busy {
                    holder_ttl: match int(pttl) {
                        // -1: the key has no expiry. -2: it vanished since the SET.
                        Some(-1) => None,
                        Some(ms) => Some(Duration::from_millis(ms.max(0) as u64)),
                        None => return Err(protocol_error("busy without a PTTL")),
                    },
                }),
                [Value::Int(-1), found] => Err(BackendError::WrongType(match found {
                    Value::SimpleString(s) => s.clone(),
                    Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                    other => format!("{other:?}"),
                })),
                other => Err(protocol_error(&format!("{other:?}"))),
            }
        })
    }

    fn release<'a>(&'a self, key: &'a str, token: &'a str) -> BoxFuture<'a, BackendResult<bool>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let deleted: i64 = RELEASE.key(key).arg(token).invoke_async(&mut conn).await?;
            Ok(deleted == 1)
        })
    }

    fn renew<'a>(&'a self, batch: &'a [Renewal<'a>]) -> BoxFuture<'a, BackendResult<Vec<bool>>> {
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
            Ok(replies.into_iter().map(|r| r == 1).collect())
        })
    }

    fn is_held<'a>(&'a self, key: &'a str, token: &'a str) -> BoxFuture<'a, BackendResult<bool>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let value: Option<Vec<u8>> = redis::cmd("GET").arg(key).query_async(&mut conn).await?;
            Ok(value.as_deref() == Some(token.as_bytes()))
        })
    }

    fn op_timeout(&self) -> Duration {
        self.op_timeout
    }
}
