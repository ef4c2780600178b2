//! `anyhow::Result<T>`, with `?` on other error types and `bail!`.
#![deny(warnings)]

use lock_runtime::{LockError, distributed_lock};

#[distributed_lock(key = "parse:{input}")]
async fn parse(input: &str) -> anyhow::Result<u32> {
    if input.is_empty() {
        anyhow::bail!("empty input");
    }
    Ok(input.parse::<u32>()?)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let err = parse("1").await.unwrap_err();
    assert!(matches!(err.downcast_ref::<LockError>(), Some(LockError::NoClient { .. })));
    lock_runtime::LockClient::in_memory().install_global();
    assert_eq!(parse("12").await.unwrap(), 12);
    assert!(parse("x").await.is_err());
    assert!(parse("").await.is_err());
}
