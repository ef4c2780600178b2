//! `on_busy = "skip"`: when the lock is held elsewhere the body does not run; an
//! `Option` result is `Ok(None)`, a unit result `Ok(())`. With `wait`, only after the wait.
#![deny(warnings)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use lock_runtime::{LockClient, LockError, distributed_lock};

static RUNS: AtomicUsize = AtomicUsize::new(0);

#[distributed_lock(key = "report:{day}", on_busy = "skip")]
async fn report(day: u32) -> Result<Option<u32>, LockError> {
    RUNS.fetch_add(1, Ordering::SeqCst);
    Ok(Some(day))
}

#[distributed_lock(key = "cleanup", on_busy = "skip")]
async fn cleanup() -> Result<(), LockError> {
    RUNS.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

/// Through an alias, and with a wait first.
#[distributed_lock(key = "report:{day}", on_busy = "skip", wait = "200ms")]
async fn report_waiting(day: u32) -> anyhow::Result<Option<u32>> {
    RUNS.fetch_add(1, Ordering::SeqCst);
    Ok(Some(day))
}

/// The default stays `Err(Busy)`.
#[distributed_lock(key = "cleanup", on_busy = "error")]
async fn cleanup_or_fail() -> Result<(), LockError> {
    RUNS.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let locks = LockClient::in_memory();
    locks.clone().install_global();
    assert_eq!(report(1).await.unwrap(), Some(1));
    cleanup().await.unwrap();
    assert_eq!(RUNS.load(Ordering::SeqCst), 2);

    let held = locks.lock("report:2").acquire().await.unwrap();
    assert_eq!(report(2).await.unwrap(), None);
    let started = Instant::now();
    assert_eq!(report_waiting(2).await.unwrap(), None);
    assert!(started.elapsed() >= Duration::from_millis(190), "skipped only after the wait");
    held.release().await.unwrap();

    let held = locks.lock("cleanup").acquire().await.unwrap();
    cleanup().await.unwrap();
    assert!(matches!(cleanup_or_fail().await, Err(LockError::Busy { .. })));
    held.release().await.unwrap();
    assert_eq!(RUNS.load(Ordering::SeqCst), 2, "no skipped body ran");
}
