use lock_runtime::{LockError, distributed_lock};

#[distributed_lock(key = ids.clone())]
async fn settle(ids: Vec<u64>) -> Result<usize, LockError> {
    Ok(ids.len())
}

fn main() {}
