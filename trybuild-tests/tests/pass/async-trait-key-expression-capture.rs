//! Under `#[async_trait]`, a parameter captured only inside a `format!` string in the key
//! (`key = format!("job:{id}")`) must not warn as unused.
#![deny(warnings)]

use async_trait::async_trait;
use lock_runtime::{LockClient, LockError, distributed_lock};

#[async_trait]
trait Job {
    async fn run(&self, id: u64) -> Result<String, LockError>;
}

struct Nightly;

#[async_trait]
impl Job for Nightly {
    #[distributed_lock(key = format!("job:{id}"))]
    async fn run(&self, id: u64) -> Result<String, LockError> {
        Ok(lock_runtime::current().unwrap().key().to_owned())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    LockClient::in_memory().install_global();
    assert_eq!(Nightly.run(3).await.unwrap(), "job:3");
}
