//! `#[distributed_lock]` on a default method of an `#[async_trait]` trait,
//! and on an `#[async_trait]` impl method with `self: Arc<Self>` and a
//! `client` taken from `self`.
#![deny(warnings)]

use std::sync::Arc;

use async_trait::async_trait;
use lock_runtime::{LockClient, LockError, distributed_lock};

#[async_trait]
trait Named: Sync {
    fn name(&self) -> String;

    #[distributed_lock(key = format!("named:{}", self.name()))]
    async fn locked_name(&self, suffix: &str) -> Result<String, LockError> {
        Ok(format!("{}{suffix}", self.name()))
    }
}

#[async_trait]
trait Spawned {
    async fn run(self: Arc<Self>, n: u32) -> Result<u32, LockError>;
}

struct Worker {
    locks: LockClient,
}

impl Named for Worker {
    fn name(&self) -> String {
        "w".into()
    }
}

#[async_trait]
impl Spawned for Worker {
    #[distributed_lock(key = "run:{n}", client = self.locks.clone())]
    async fn run(self: Arc<Self>, n: u32) -> Result<u32, LockError> {
        Ok(n * 2)
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let worker = Arc::new(Worker { locks: LockClient::in_memory() });
    assert_eq!(Arc::clone(&worker).run(4).await.unwrap(), 8);
    // The default method uses the global client.
    assert!(matches!(worker.locked_name("!").await, Err(LockError::NoClient { .. })));
    LockClient::in_memory().install_global();
    assert_eq!(worker.locked_name("!").await.unwrap(), "w!");
}
