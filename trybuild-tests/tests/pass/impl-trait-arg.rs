//! `impl Trait` in argument position, in the key and in the body, and in
//! the return type.
#![deny(warnings)]

use std::fmt::Display;

use lock_runtime::{LockClient, LockError, distributed_lock};

#[distributed_lock(key = "user:{user}")]
async fn greet(user: impl Display + Send, greeting: impl AsRef<str>) -> Result<String, LockError> {
    Ok(format!("{} {user}", greeting.as_ref()))
}

#[distributed_lock(key = "lazy")]
async fn lazy() -> Result<impl Display, LockError> {
    Ok(5)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    LockClient::in_memory().install_global();
    assert_eq!(greet("ann", "hi").await.unwrap(), "hi ann");
    assert_eq!(lazy().await.unwrap().to_string(), "5");
}
