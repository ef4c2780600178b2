use lock_runtime::{LockError, distributed_lock};

#[distributed_lock(key = "order:{order_id}")]
async fn settle(id: u64, amount: u64) -> Result<u64, LockError> {
    Ok(id + amount)
}

fn main() {}
