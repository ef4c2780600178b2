//! A Sentinel-managed primary: one Redis server at a time, found through the sentinels, and
//! found again after a failover.
//!
//! Every operation goes to the current primary through a [`RedisBackend`]. An error that
//! says the primary may have changed (connection refused, dropped or timed out; `READONLY`
//! from a demoted primary; `MASTERDOWN`, `LOADING`) makes the backend ask the sentinels
//! again; if they name another server, it connects there and swaps it in. The operation
//! itself still fails, and its caller retries as after any transient error: the watchdog
//! retries renewals until the lease deadline, so its next renewal reaches the new primary.
//!
//! A forced or graceful failover gives no error at all: the old primary keeps answering as
//! one for seconds, until Sentinel converts it. So at most every [`PRIMARY_CHECK`], an
//! operation first asks one sentinel (`SENTINEL GET-MASTER-ADDR-BY-NAME`, on a connection
//! kept for it) where the primary is, and switches when it moved.

use std::fmt;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::sentinel::SentinelClient;
use tokio::sync::Mutex as AsyncMutex;

use super::redis::RedisBackend;
use super::wakeup::ReleaseWatch;
use super::{
    AcquireArgs, Acquired, Backend, BackendResult, BoxFuture, Renewal, Renewed, ScanFrom, ScanPage,
    Stored,
};
use crate::client::ClientBuilder;
use crate::error::BackendError;

pub(crate) struct SentinelBackend {
    service: String,
    sentinel: AsyncMutex<SentinelClient>,
    primary: RwLock<Arc<RedisBackend>>,
    /// Connects to a newly found primary with the client's timeouts and options.
    builder: ClientBuilder,
    op_timeout: Duration,
    /// When the sentinels were last asked where the primary is.
    last_check: Mutex<Instant>,
    /// A connection to one sentinel, for those checks.
    watch: AsyncMutex<Option<MultiplexedConnection>>,
}

/// How often operations check with a sentinel that the primary has not moved. Until the
/// check notices a forced failover, renewals land on the old primary, not the new one, so
/// this must stay well under the TTLs in use; one small command per 200 ms per client is
/// little load for a sentinel.
pub(crate) const PRIMARY_CHECK: Duration = Duration::from_millis(200);

/// How long an operation waits for that check: it runs inline, so a sentinel that hangs
/// must not hold up the lock operation behind it for a whole operation timeout.
const PRIMARY_CHECK_TIMEOUT: Duration = Duration::from_millis(250);

impl fmt::Debug for SentinelBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sentinel")
            .field("service", &self.service)
            .field("primary", &self.current())
            .finish_non_exhaustive()
    }
}

/// The address of the server a client points at, as `host:port`.
pub(crate) fn address(client: &redis::Client) -> String {
    client.get_connection_info().addr().to_string()
}

impl SentinelBackend {
    pub(crate) fn new(
        service: String,
        sentinel: SentinelClient,
        primary: RedisBackend,
        builder: ClientBuilder,
    ) -> Self {
        let op_timeout = primary.op_timeout();
        SentinelBackend {
            service,
            sentinel: AsyncMutex::new(sentinel),
            primary: RwLock::new(Arc::new(primary)),
            builder,
            op_timeout,
            last_check: Mutex::new(Instant::now()),
            watch: AsyncMutex::new(None),
        }
    }

    /// The primary to use now: the current one, after a check with a sentinel if the last
    /// check is older than [`PRIMARY_CHECK`].
    async fn primary(&self) -> Arc<RedisBackend> {
        let current = self.current();
        {
            let mut last = self.last_check.lock().unwrap_or_else(|p| p.into_inner());
            if last.elapsed() < PRIMARY_CHECK {
                return current;
            }
            *last = Instant::now();
        }
        match tokio::time::timeout(
            PRIMARY_CHECK_TIMEOUT.min(self.op_timeout),
            self.reported_primary(),
        )
        .await
        {
            Ok(Ok(addr)) if addr != current.url() => {
                self.switch(&current).await;
                self.current()
            }
            Ok(Ok(_)) => current,
            Ok(Err(e)) => {
                tracing::debug!(service = %self.service, error = %e, "primary check failed");
                *self.watch.lock().await = None;
                current
            }
            Err(_) => {
                *self.watch.lock().await = None;
                current
            }
        }
    }

    /// `host:port` of the primary, as one sentinel reports it.
    async fn reported_primary(&self) -> redis::RedisResult<String> {
        let mut watch = self.watch.lock().await;
        if watch.is_none() {
            let client = self
                .sentinel
                .lock()
                .await
                .async_get_sentinel_client()
                .await?;
            let config = redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(self.op_timeout))
                .set_response_timeout(Some(self.op_timeout));
            *watch = Some(
                client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?,
            );
        }
        let conn = watch.as_mut().expect("just set");
        let (host, port): (String, u16) = redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(&self.service)
            .query_async(conn)
            .await?;
        Ok(format!("{host}:{port}"))
    }

    fn current(&self) -> Arc<RedisBackend> {
        Arc::clone(&self.primary.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// After a failed call on `used`: if the error hints at a failover, ask the sentinels
    /// for the primary and switch to it if it moved. Failures here are only logged: the
    /// caller's retry comes back here.
    async fn after<T>(&self, used: &Arc<RedisBackend>, result: &BackendResult<T>) {
        let Err(BackendError::Redis(e)) = result else {
            return;
        };
        let moved = e.is_io_error()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || e.is_timeout()
            || matches!(e.code(), Some("READONLY" | "MASTERDOWN" | "LOADING"));
        if moved {
            self.switch(used).await;
        }
    }

    /// Asks the sentinels for the primary (checking its role) and switches to it if it is
    /// not `used`.
    async fn switch(&self, used: &Arc<RedisBackend>) {
        // One rediscovery at a time; whoever comes second finds the switch made.
        let mut sentinel = self.sentinel.lock().await;
        if !Arc::ptr_eq(&self.current(), used) {
            return;
        }
        let found = tokio::time::timeout(self.op_timeout, sentinel.async_get_client()).await;
        let client = match found {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => {
                tracing::warn!(service = %self.service, error = %e, "sentinels did not name a primary");
                return;
            }
            Err(_) => {
                tracing::warn!(service = %self.service, "sentinels did not answer in time");
                return;
            }
        };
        let addr = address(&client);
        if addr == used.url() {
            return; // same primary: its connection manager reconnects by itself
        }
        match self
            .builder
            .connect_client(client, addr.clone(), false)
            .await
        {
            Ok(node) => {
                tracing::info!(service = %self.service, primary = %addr, "following a failover to the new primary");
                *self.primary.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(node);
            }
            Err(e) => {
                tracing::warn!(service = %self.service, primary = %addr, error = %e, "could not reach the new primary yet");
            }
        }
    }
}

impl Backend for SentinelBackend {
    fn acquire<'a>(&'a self, args: AcquireArgs<'a>) -> BoxFuture<'a, BackendResult<Acquired>> {
        Box::pin(async move {
            let node = self.primary().await;
            let result = node.acquire(args).await;
            self.after(&node, &result).await;
            result
        })
    }

    fn release<'a>(&'a self, key: &'a str, token: &'a str) -> BoxFuture<'a, BackendResult<bool>> {
        Box::pin(async move {
            let node = self.primary().await;
            let result = node.release(key, token).await;
            self.after(&node, &result).await;
            result
        })
    }

    fn renew<'a>(&'a self, batch: &'a [Renewal<'a>]) -> BoxFuture<'a, BackendResult<Vec<Renewed>>> {
        Box::pin(async move {
            let node = self.primary().await;
            let result = node.renew(batch).await;
            self.after(&node, &result).await;
            result
        })
    }

    fn ttl_if_held<'a>(
        &'a self,
        key: &'a str,
        token: &'a str,
    ) -> BoxFuture<'a, BackendResult<Option<Duration>>> {
        Box::pin(async move {
            let node = self.primary().await;
            let result = node.ttl_if_held(key, token).await;
            self.after(&node, &result).await;
            result
        })
    }

    fn is_held<'a>(&'a self, key: &'a str, token: &'a str) -> BoxFuture<'a, BackendResult<bool>> {
        Box::pin(async move {
            let node = self.primary().await;
            let result = node.is_held(key, token).await;
            self.after(&node, &result).await;
            result
        })
    }

    fn watch_releases<'a>(&'a self, key: &'a str) -> BoxFuture<'a, BackendResult<ReleaseWatch>> {
        Box::pin(async move {
            let node = self.primary().await;
            let result = node.watch_releases(key).await;
            self.after(&node, &result).await;
            result
        })
    }

    fn inspect<'a>(
        &'a self,
        key: &'a str,
        fence_key: Option<&'a str>,
    ) -> BoxFuture<'a, BackendResult<Stored>> {
        Box::pin(async move {
            let node = self.primary().await;
            let result = node.inspect(key, fence_key).await;
            self.after(&node, &result).await;
            result
        })
    }

    fn force_release<'a>(&'a self, key: &'a str) -> BoxFuture<'a, BackendResult<Stored>> {
        Box::pin(async move {
            let node = self.primary().await;
            let result = node.force_release(key).await;
            self.after(&node, &result).await;
            result
        })
    }

    fn scan<'a>(
        &'a self,
        from: ScanFrom,
        pattern: &'a str,
        count: usize,
    ) -> BoxFuture<'a, BackendResult<ScanPage>> {
        Box::pin(async move {
            let node = self.primary().await;
            let result = node.scan(from, pattern, count).await;
            self.after(&node, &result).await;
            result
        })
    }

    fn op_timeout(&self) -> Duration {
        // Room for one rediscovery after a failed call.
        self.op_timeout * 2
    }
}
