use lock_runtime::{LockError, distributed_lock};

#[distributed_lock(key = "order:{order..id}")]
async fn settle(order: u64) -> Result<u64, LockError> {
    Ok(order)
}

fn main() {}
