//! A method taking `self: Arc<Self>`, as spawned services often do.
#![deny(warnings)]

use std::sync::Arc;

use lock_runtime::{LockClient, LockError, distributed_lock};

struct Service {
    name: String,
    locks: LockClient,
}

impl Service {
    #[distributed_lock(key = "service:{self.name}", client = &self.locks)]
    async fn tick(self: Arc<Self>, n: u32) -> Result<u32, LockError> {
        Ok(n + 1)
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let service = Arc::new(Service { name: "s".into(), locks: LockClient::in_memory() });
    assert_eq!(Arc::clone(&service).tick(1).await.unwrap(), 2);
    assert_eq!(service.tick(2).await.unwrap(), 3);
}
