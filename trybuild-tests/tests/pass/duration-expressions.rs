//! `ttl`, `wait`, `min_hold` and `max_hold` take any expression of type `Duration`:
//! a `const`, a config field, a call. They are checked at run time.
#![deny(warnings)]

use std::time::Duration;

use lock_runtime::{LockClient, LockError, distributed_lock};

const TTL: Duration = Duration::from_secs(5);

struct Config {
    wait: Duration,
    max_hold: Duration,
}

struct Worker {
    config: Config,
    locks: LockClient,
}

fn min_hold() -> Duration {
    Duration::from_millis(100)
}

impl Worker {
    #[distributed_lock(
        key = "worker",
        client = &self.locks,
        ttl = TTL,
        wait = self.config.wait,
        min_hold = min_hold(),
        max_hold = self.config.max_hold
    )]
    async fn work(&self) -> Result<u64, LockError> {
        Ok(1)
    }
}

/// A bad value is a run-time `LockError`, not a panic.
#[distributed_lock(key = "tiny", ttl = Duration::from_millis(5))]
async fn tiny() -> Result<(), LockError> {
    Ok(())
}

/// Hold bounds that contradict each other are the runtime's `InvalidOption`.
#[distributed_lock(
    key = "holds",
    min_hold = Duration::from_secs(30),
    max_hold = Duration::from_secs(10)
)]
async fn bad_holds() -> Result<(), LockError> {
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    LockClient::in_memory().install_global();
    let worker = Worker {
        config: Config {
            wait: Duration::from_millis(50),
            max_hold: Duration::from_secs(60),
        },
        locks: LockClient::in_memory(),
    };
    assert_eq!(worker.work().await.unwrap(), 1);
    assert!(matches!(tiny().await, Err(LockError::InvalidTtl { .. })));
    assert!(matches!(
        bad_holds().await,
        Err(LockError::InvalidOption { option: "min_hold", .. })
    ));
}
