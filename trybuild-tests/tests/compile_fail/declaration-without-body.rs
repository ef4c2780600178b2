use lock_runtime::{LockError, distributed_lock};

trait Settle {
    #[distributed_lock(key = "order:{id}")]
    async fn settle(&self, id: u64) -> Result<u64, LockError>;
}

fn main() {}
