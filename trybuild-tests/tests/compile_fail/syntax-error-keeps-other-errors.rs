use lock_runtime::{LockError, distributed_lock};

// A missing comma must not hide the unknown argument before it.
#[distributed_lock(tll = "10s", key = "order:{id}" wait = "2s")]
async fn settle(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

fn main() {}
