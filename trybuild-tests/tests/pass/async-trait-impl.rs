//! `#[async_trait]` on the impl, `#[distributed_lock]` on the method.
//!
//! The impl's attribute expands first, so ours sees a plain `fn` returning
//! `Pin<Box<dyn Future + Send>>` whose body is `Box::pin(async move { .. })`
//! with `self` renamed; the lock goes inside that boxed future.
#![deny(warnings)]

use async_trait::async_trait;
use lock_runtime::{LockClient, LockError, distributed_lock};

#[async_trait]
trait Settle {
    async fn settle(&self, id: u64, amount: u64) -> Result<u64, LockError>;
    async fn settle_mut(&mut self, id: u64) -> Result<u64, LockError>;
}

struct Ledger {
    tenant: String,
    total: u64,
}

#[async_trait]
impl Settle for Ledger {
    #[distributed_lock(key = "{self.tenant}:order:{id}", ttl = "10s", fencing)]
    async fn settle(&self, id: u64, amount: u64) -> Result<u64, LockError> {
        let key = lock_runtime::current().unwrap().key().to_owned();
        assert_eq!(key, format!("acme:order:{id}"));
        if amount == 0 {
            return Ok(self.total);
        }
        Ok(self.total + amount)
    }

    // Another attribute before ours, and `mut` parameters.
    #[allow(unused_mut)]
    #[distributed_lock(key = "<self.tenant>:{id}")]
    async fn settle_mut(&mut self, mut id: u64) -> Result<u64, LockError> {
        self.total += id;
        Ok(self.total)
    }
}

fn assert_send<T: Send>(_: &T) {}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    LockClient::in_memory().install_global();
    let mut ledger = Ledger { tenant: "acme".into(), total: 1 };
    let fut = ledger.settle(7, 2);
    assert_send(&fut);
    assert_eq!(fut.await.unwrap(), 3);
    assert_eq!(ledger.settle(7, 0).await.unwrap(), 1);
    assert_eq!(ledger.settle_mut(4).await.unwrap(), 5);
}
