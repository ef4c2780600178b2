//! `#[distributed_lock]` without `client = ...`: the process-wide client. A test binary of
//! its own, because the global client is process state.

mod common;

use common::Fixture;
use lock_runtime::{LockClient, LockError, distributed_lock};

#[distributed_lock(key = "global:<id>", ttl = "5s")]
async fn settle(id: u64) -> Result<String, LockError> {
    Ok(lock_runtime::current().unwrap().key().to_owned())
}

#[derive(Debug)]
struct AppError(String);

impl From<LockError> for AppError {
    fn from(e: LockError) -> Self {
        AppError(e.to_string())
    }
}

#[distributed_lock(key = "global:app:<id>")]
async fn settle_app(id: u64) -> Result<u64, AppError> {
    Ok(id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_global_client_is_used_and_its_absence_is_a_clear_error() {
    // Before any client is installed: an error that says what to do, and the body never ran.
    assert!(LockClient::global().is_none());
    match settle(1).await {
        Err(LockError::NoClient { key }) => assert_eq!(key, "global:1"),
        other => panic!("expected NoClient, got {other:?}"),
    }
    let AppError(message) = settle_app(1).await.unwrap_err();
    assert!(message.contains("install_global"), "{message}");

    let fx = Fixture::redis();
    let previous = fx.client().await.with_namespace("svc").install_global();
    assert!(previous.is_none());
    assert_eq!(settle(2).await.unwrap(), "svc:global:2");
    assert_eq!(settle_app(3).await.unwrap(), 3);

    // The lock really is taken on that server, under the namespace.
    let _held = fx
        .client()
        .await
        .lock("svc:global:4")
        .acquire()
        .await
        .unwrap();
    assert!(matches!(settle(4).await, Err(LockError::Busy { .. })));
}
