use lock_runtime::{LockError, distributed_lock};

// humantime 2.4.0 panics on this sum; the attribute must report it, not panic.
#[distributed_lock(key = "order:{id}", wait = "18446744073709551615s 1000ms")]
async fn settle(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

fn main() {}
