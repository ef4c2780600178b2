//! Under `#[async_trait]`, a parameter used only in `client = …` must not warn as unused.
#![deny(warnings)]

use async_trait::async_trait;
use lock_runtime::{LockClient, LockError, distributed_lock};

#[async_trait]
trait Job {
    async fn run(&self, locks: LockClient, id: u64) -> Result<u64, LockError>;
}

struct Nightly;

#[async_trait]
impl Job for Nightly {
    #[distributed_lock(key = "nightly:{id}", client = locks)]
    async fn run(&self, locks: LockClient, id: u64) -> Result<u64, LockError> {
        Ok(id)
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    assert_eq!(Nightly.run(LockClient::in_memory(), 3).await.unwrap(), 3);
}
