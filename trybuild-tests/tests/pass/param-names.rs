//! Parameters named like the expansion's internals (`key`, `client`,
//! `guard`, `ttl`, `spec`, `body`, `__lock_spec`, ...) neither clash with
//! them nor get shadowed by them, and the body cannot see the expansion's
//! locals.
#![deny(warnings)]

use lock_runtime::{LockClient, LockError, distributed_lock};

#[distributed_lock(key = "{key}:{client}:{guard}:{ttl}:{spec}:{body}", ttl = "5s")]
#[allow(clippy::too_many_arguments)]
async fn everything(
    key: &str,
    client: u8,
    guard: u8,
    ttl: u8,
    spec: u8,
    body: u8,
    __lock_spec: u8,
    __lock_client: u8,
    __lock_ret: u8,
) -> Result<String, LockError> {
    let current = lock_runtime::current().unwrap().key().to_owned();
    assert_eq!(current, format!("{key}:{client}:{guard}:{ttl}:{spec}:{body}"));
    Ok(format!("{__lock_spec}{__lock_client}{__lock_ret}"))
}

// A `client` parameter that really is a client.
#[distributed_lock(key = "k:{key}", client = client)]
async fn with_client(client: &LockClient, key: u32) -> Result<u32, LockError> {
    Ok(key)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    LockClient::in_memory().install_global();
    assert_eq!(everything("k", 1, 2, 3, 4, 5, 6, 7, 8).await.unwrap(), "678");
    assert_eq!(with_client(&LockClient::in_memory(), 9).await.unwrap(), 9);
}
