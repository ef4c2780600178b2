//! `key = <expression>` and `client = <expression>`, evaluated with the
//! parameters in scope.
#![deny(warnings)]

use lock_runtime::{LockClient, LockError, distributed_lock};

struct Batches {
    locks: LockClient,
}

impl Batches {
    #[distributed_lock(key = format!("batch:{}", ids.len()), client = self.locks.clone())]
    async fn run_batch(&self, ids: Vec<u64>) -> Result<(), LockError> {
        assert_eq!(lock_runtime::current().unwrap().key(), format!("batch:{}", ids.len()));
        Ok(())
    }
}

const PREFIX: &str = "fixed";

// Any `Display` value works, not only strings.
#[distributed_lock(key = id * 2)]
async fn doubled(id: u64) -> Result<String, LockError> {
    Ok(lock_runtime::current().unwrap().key().to_owned())
}

#[distributed_lock(key = PREFIX)]
async fn constant() -> Result<String, LockError> {
    Ok(lock_runtime::current().unwrap().key().to_owned())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let batches = Batches { locks: LockClient::in_memory() };
    batches.run_batch(vec![1, 2, 3]).await.unwrap();
    LockClient::in_memory().install_global();
    assert_eq!(doubled(21).await.unwrap(), "42");
    assert_eq!(constant().await.unwrap(), "fixed");
}
