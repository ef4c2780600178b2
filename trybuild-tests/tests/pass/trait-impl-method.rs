//! A trait-impl method with a native `async fn` in the trait (no
//! `#[async_trait]`).
#![deny(warnings)]

use lock_runtime::{LockClient, LockError, distributed_lock};

trait Repo {
    #[allow(async_fn_in_trait)]
    async fn save(&self, id: u32) -> Result<u32, LockError>;
}

struct Db;

impl Repo for Db {
    #[distributed_lock(key = "save:{id}")]
    async fn save(&self, id: u32) -> Result<u32, LockError> {
        Ok(id)
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    LockClient::in_memory().install_global();
    assert_eq!(Db.save(3).await.unwrap(), 3);
}
