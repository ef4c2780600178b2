// Every argument problem is reported in one build, not one per build.
use lock_runtime::{LockError, distributed_lock};

#[distributed_lock(key = "order:{idd}", ttl = "10", wait = "5h", fencing = "yes", retries = 3)]
fn settle(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

fn main() {}
