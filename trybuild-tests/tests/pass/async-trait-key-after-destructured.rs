//! Under `#[async_trait]`, a key parameter that comes after a destructured one must not
//! warn as unused.
#![deny(warnings)]

use async_trait::async_trait;
use lock_runtime::{LockClient, LockError, distributed_lock};

#[async_trait]
trait Job {
    async fn run(&self, pair: (u64, u64), id: u64) -> Result<String, LockError>;
}

struct Nightly;

#[async_trait]
impl Job for Nightly {
    #[distributed_lock(key = "job:{id}")]
    async fn run(&self, (a, b): (u64, u64), id: u64) -> Result<String, LockError> {
        let key = lock_runtime::current().unwrap().key().to_owned();
        Ok(format!("{key}:{}", a + b))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    LockClient::in_memory().install_global();
    assert_eq!(Nightly.run((1, 2), 3).await.unwrap(), "job:3:3");
}
