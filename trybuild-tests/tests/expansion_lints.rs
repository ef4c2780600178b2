//! The expansion must not trip lints in the user's crate: this file uses
//! the attribute in its common shapes under `deny(warnings)` and clippy's
//! pedantic and nursery groups, and `cargo clippy --all-targets` checks it.
#![deny(warnings, clippy::all, clippy::pedantic, clippy::nursery)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use lock_runtime::{LockClient, LockError, distributed_lock};

struct Order {
    id: u64,
}

struct Service {
    tenant: String,
    locks: LockClient,
}

#[distributed_lock(key = "order:<id>", ttl = "10s")]
async fn settle(id: u64, amount: u64) -> Result<u64, LockError> {
    Ok(id + amount)
}

#[distributed_lock(key = "constant")]
async fn constant() -> Result<(), LockError> {
    Ok(())
}

#[distributed_lock(key = format!("batch:{}", ids.len()))]
async fn batch(ids: Vec<u64>) -> Result<usize, LockError> {
    Ok(ids.len())
}

#[distributed_lock(key = "parse:{text}")]
async fn parse(text: &str) -> anyhow::Result<u64> {
    let n = text.parse::<u64>()?;
    if n == 0 {
        return Ok(1);
    }
    Ok(n)
}

impl Service {
    #[distributed_lock(key = "{self.tenant}:{order.id}", wait = "2s", fencing, client = &self.locks)]
    async fn ship(&self, order: &Order) -> Result<u64, LockError> {
        Ok(order.id)
    }

    #[distributed_lock(key = "{self.tenant}", client = self.locks.clone())]
    async fn by_arc(self: Arc<Self>) -> Result<String, LockError> {
        Ok(self.tenant.clone())
    }
}

#[async_trait]
trait Ship {
    async fn ship_boxed(&self, id: u64) -> Result<u64, LockError>;
}

#[async_trait]
impl Ship for Service {
    #[distributed_lock(key = "{self.tenant}:{id}", client = &self.locks)]
    async fn ship_boxed(&self, id: u64) -> Result<u64, LockError> {
        Ok(id)
    }
}

#[rustfmt::skip]
#[distributed_lock(key = "one-line:{id}")]
async fn one_line(id: u64) -> Result<u64, LockError> { Ok(id) }

const HOLD: Duration = Duration::from_secs(1);

#[distributed_lock(
    key = "skip:{id}",
    on_busy = "skip",
    watchdog = false,
    min_hold = HOLD,
    max_hold = "1m"
)]
async fn skippable(id: u64) -> Result<Option<u64>, LockError> {
    Ok(Some(id))
}

#[distributed_lock(key = "owned:{id}", client = locks)]
async fn owned_client(locks: LockClient, id: u64) -> Result<u64, LockError> {
    drop(locks);
    Ok(id)
}

#[distributed_lock(key = "borrowed:{id}", client = locks)]
async fn borrowed_client(locks: &LockClient, id: u64) -> Result<u64, LockError> {
    Ok(id)
}

#[distributed_lock(key = "future:{id}")]
fn returns_future(id: u64) -> impl Future<Output = Result<u64, LockError>> + Send + 'static {
    async move { Ok(id) }
}

#[async_trait]
trait Cases {
    async fn destructured(&self, pair: (u64, u64), id: u64) -> Result<u64, LockError>;
    async fn client_only(&self, locks: LockClient) -> Result<(), LockError>;
    async fn skip_with_literals(&self) -> Result<Option<u8>, LockError>;
}

#[async_trait]
impl Cases for Service {
    #[distributed_lock(key = format!("d:{id}"))]
    async fn destructured(&self, (a, b): (u64, u64), id: u64) -> Result<u64, LockError> {
        Ok(a + b)
    }

    #[distributed_lock(key = "{self.tenant}", client = locks)]
    async fn client_only(&self, locks: LockClient) -> Result<(), LockError> {
        Ok(())
    }

    #[distributed_lock(
        key = "{self.tenant}:skip",
        client = &self.locks,
        ttl = "10s",
        wait = HOLD,
        on_busy = "skip"
    )]
    async fn skip_with_literals(&self) -> Result<Option<u8>, LockError> {
        Ok(Some(1))
    }
}

const fn assert_send<T: Send>(_: &T) {}

#[test]
fn futures_are_send_when_their_parameters_are() {
    let service = Service {
        tenant: "t".into(),
        locks: LockClient::in_memory(),
    };
    let order = Order { id: 1 };
    assert_send(&settle(1, 2));
    assert_send(&batch(vec![1]));
    assert_send(&parse("1"));
    assert_send(&service.ship(&order));
    assert_send(&skippable(1));
    assert_send(&returns_future(1));
    assert_send(&service.destructured((1, 2), 3));
    assert_send(&Arc::new(service).by_arc());
}

#[test]
fn expansion_is_lint_clean_and_runs() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        LockClient::in_memory().install_global();
        assert_eq!(settle(1, 2).await.unwrap(), 3);
        constant().await.unwrap();
        assert_eq!(batch(vec![1, 2]).await.unwrap(), 2);
        assert_eq!(parse("0").await.unwrap(), 1);
        let service = Arc::new(Service {
            tenant: "t".into(),
            locks: LockClient::in_memory(),
        });
        assert_eq!(service.ship(&Order { id: 4 }).await.unwrap(), 4);
        assert_eq!(service.ship_boxed(5).await.unwrap(), 5);
        assert_eq!(Arc::clone(&service).by_arc().await.unwrap(), "t");
        assert_eq!(one_line(1).await.unwrap(), 1);
        assert_eq!(skippable(2).await.unwrap(), Some(2));
        assert_eq!(owned_client(LockClient::in_memory(), 3).await.unwrap(), 3);
        assert_eq!(borrowed_client(&service.locks, 4).await.unwrap(), 4);
        assert_eq!(returns_future(5).await.unwrap(), 5);
        assert_eq!(service.destructured((1, 2), 6).await.unwrap(), 3);
        service.client_only(LockClient::in_memory()).await.unwrap();
        assert_eq!(service.skip_with_literals().await.unwrap(), Some(1));
    });
}
