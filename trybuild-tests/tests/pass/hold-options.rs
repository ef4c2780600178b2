//! `watchdog`, `min_hold` and `max_hold`, each alone and all together, with literals.
#![deny(warnings)]

use lock_runtime::{LockClient, LockError, distributed_lock};

#[distributed_lock(key = "a", watchdog = false)]
async fn no_watchdog() -> Result<(), LockError> {
    Ok(())
}

#[distributed_lock(key = "b", watchdog)]
async fn watchdog_on() -> Result<(), LockError> {
    Ok(())
}

#[distributed_lock(key = "c", min_hold = "200ms")]
async fn held_at_least() -> Result<(), LockError> {
    Ok(())
}

#[distributed_lock(key = "d", max_hold = "10m")]
async fn held_at_most() -> Result<(), LockError> {
    Ok(())
}

#[distributed_lock(
    key = "job:{id}",
    ttl = "10s",
    wait = "1s",
    fencing,
    watchdog = true,
    on_busy = "skip",
    min_hold = "100ms",
    max_hold = "1m"
)]
async fn everything(id: u64) -> Result<Option<u64>, LockError> {
    Ok(Some(id))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    LockClient::in_memory().install_global();
    no_watchdog().await.unwrap();
    watchdog_on().await.unwrap();
    held_at_least().await.unwrap();
    held_at_most().await.unwrap();
    assert_eq!(everything(3).await.unwrap(), Some(3));
}
