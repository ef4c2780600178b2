use async_trait::async_trait;
use lock_runtime::distributed_lock;

#[async_trait]
trait Settle {
    async fn settle(&self, id: u64) -> Option<u64>;
}

struct Ledger;

#[async_trait]
impl Settle for Ledger {
    #[distributed_lock(key = "order:{id}")]
    async fn settle(&self, id: u64) -> Option<u64> {
        Some(id)
    }
}

fn main() {}
