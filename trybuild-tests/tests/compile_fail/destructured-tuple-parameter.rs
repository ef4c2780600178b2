use lock_runtime::{LockError, distributed_lock};

#[distributed_lock(key = "pair:{a}")]
async fn settle((a, b): (u8, u8)) -> Result<u8, LockError> {
    Ok(a + b)
}

fn main() {}
