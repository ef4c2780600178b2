//! A body written on one line must not warn `unused_braces`: the user's braces are not
//! a block we may treat as redundant. Not rustfmt-formatted on purpose.
#![deny(warnings)]

use lock_runtime::{LockClient, LockError, distributed_lock};

#[rustfmt::skip]
#[distributed_lock(key = "order:{id}")]
async fn settle(id: u64) -> Result<u64, LockError> { Ok(id) }

#[rustfmt::skip]
#[distributed_lock(key = "unit")]
async fn unit() -> Result<(), LockError> { Ok(()) }

struct Service;

#[rustfmt::skip]
impl Service {
    #[distributed_lock(key = "service:{n}")]
    async fn twice(&self, n: u64) -> Result<u64, LockError> { Ok(n * 2) }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    LockClient::in_memory().install_global();
    assert_eq!(settle(7).await.unwrap(), 7);
    unit().await.unwrap();
    assert_eq!(Service.twice(2).await.unwrap(), 4);
}
