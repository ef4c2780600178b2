use async_trait::async_trait;
use lock_runtime::{LockError, distributed_lock};

#[async_trait]
trait Job {
    async fn run(&self, pair: (u64, u64), id: u64) -> Result<u64, LockError>;
}

struct Nightly;

#[async_trait]
impl Job for Nightly {
    // `a` is bound by a pattern: the message names the parameters as written, not `__arg1`.
    #[distributed_lock(key = "job:{a}:{idd}")]
    async fn run(&self, (a, b): (u64, u64), id: u64) -> Result<u64, LockError> {
        Ok(a + b + id)
    }
}

fn main() {}
