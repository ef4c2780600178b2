use lock_runtime::{LockError, distributed_lock};

#[distributed_lock(key = "order:{id}", ttl = "400days")]
async fn settle(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

fn main() {}
