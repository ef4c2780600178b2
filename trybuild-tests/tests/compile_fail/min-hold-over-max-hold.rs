use lock_runtime::{LockError, distributed_lock};

#[distributed_lock(key = "report", min_hold = "30s", max_hold = "10s")]
async fn report() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
