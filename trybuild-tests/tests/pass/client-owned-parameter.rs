//! `client = locks` with an owned `LockClient` parameter borrows it: the body can still
//! use `locks`.
#![deny(warnings)]

use lock_runtime::{LockClient, LockError, distributed_lock};

#[distributed_lock(key = "outer:{id}", client = locks)]
async fn outer(locks: LockClient, id: u64) -> Result<bool, LockError> {
    // A different key, through the same client, from inside the body.
    let inner = locks.lock(format!("inner:{id}")).run(async { id }).await?;
    Ok(inner == id)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    assert!(outer(LockClient::in_memory(), 5).await.unwrap());
}
