//! A free function, the README's first example: an own error type with
//! `From<LockError>`, an angle-bracket placeholder.
#![deny(warnings)]

use lock_runtime::{LockClient, LockError, distributed_lock};

#[derive(Debug)]
enum AppError {
    Lock(LockError),
}

impl From<LockError> for AppError {
    fn from(err: LockError) -> Self {
        AppError::Lock(err)
    }
}

#[derive(Debug, PartialEq)]
struct Receipt(u64, u64);

#[distributed_lock(key = "order:<id>", ttl = "10s")]
async fn settle(id: u64, amount: u64) -> Result<Receipt, AppError> {
    let key = lock_runtime::current().expect("runs under the lock").key().to_owned();
    assert_eq!(key, format!("order:{id}"));
    Ok(Receipt(id, amount))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    assert!(matches!(
        settle(1, 2).await,
        Err(AppError::Lock(LockError::NoClient { .. }))
    ));
    LockClient::in_memory().install_global();
    assert_eq!(settle(42, 7).await.unwrap(), Receipt(42, 7));
}
