use lock_runtime::{LockError, distributed_lock};

const TTL_SECS: u64 = 10;

#[distributed_lock(key = "order:{id}", ttl = TTL_SECS)]
async fn settle(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

fn main() {}
