//! A `&self` method: `self` fields and parameter fields in the key, both
//! placeholder styles, `wait` and `fencing`, an `anyhow::Result`.
#![deny(warnings)]

use lock_runtime::{LockClient, distributed_lock};

struct Order {
    id: u64,
}

struct Shipper {
    tenant: String,
}

impl Shipper {
    #[distributed_lock(key = "tenant:{self.tenant}:order:<order.id>", ttl = "30s", wait = "2s", fencing)]
    async fn ship(&self, order: &Order) -> anyhow::Result<(String, u64)> {
        let lock = lock_runtime::current().expect("runs under the lock");
        Ok((lock.key().to_owned(), lock.fencing_token().expect("fencing is on")))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    LockClient::in_memory().install_global();
    let shipper = Shipper { tenant: "acme".into() };
    let (key, first) = shipper.ship(&Order { id: 7 }).await.unwrap();
    assert_eq!(key, "tenant:acme:order:7");
    let (_, second) = shipper.ship(&Order { id: 7 }).await.unwrap();
    assert!(second > first);
}
