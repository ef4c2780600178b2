use lock_runtime::{LockError, distributed_lock};

// A skipped call has no `u64` to return.
#[distributed_lock(key = "order:{id}", on_busy = "skip")]
async fn settle(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

fn main() {}
