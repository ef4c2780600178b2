//! Under `#[async_trait]`, an argument used only in the key must not warn as unused:
//! async-trait rebinds it inside the boxed future (`let id = id;`).
#![deny(warnings)]

use async_trait::async_trait;
use lock_runtime::{LockClient, LockError, distributed_lock};

#[async_trait]
trait Job {
    async fn run(&self, id: u64, tenant: String) -> Result<String, LockError>;
}

struct Nightly;

#[async_trait]
impl Job for Nightly {
    #[distributed_lock(key = "nightly:{tenant}:<id>")]
    async fn run(&self, id: u64, tenant: String) -> Result<String, LockError> {
        Ok(lock_runtime::current().unwrap().key().to_owned())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    LockClient::in_memory().install_global();
    assert_eq!(Nightly.run(3, "acme".into()).await.unwrap(), "nightly:acme:3");
}
