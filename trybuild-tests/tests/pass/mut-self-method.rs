//! A `&mut self` method that mutates its receiver under the lock.
#![deny(warnings)]

use lock_runtime::{LockClient, LockError, distributed_lock};

struct Counter {
    name: &'static str,
    count: u32,
}

impl Counter {
    #[distributed_lock(key = "counter:{self.name}")]
    async fn bump(&mut self, by: u32) -> Result<u32, LockError> {
        self.count += by;
        Ok(self.count)
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    LockClient::in_memory().install_global();
    let mut counter = Counter { name: "c", count: 0 };
    counter.bump(2).await.unwrap();
    assert_eq!(counter.bump(3).await.unwrap(), 5);
    assert_eq!(counter.count, 5);
}
