//! `crate = "..."` for crates that re-export the runtime: the expansion
//! names only the given path, never `::lock_runtime`.
#![deny(warnings)]

mod platform {
    pub mod locks {
        pub use lock_runtime::*;
    }
}

use lock_runtime::distributed_lock;

#[distributed_lock(key = "k:{n}", crate = "platform::locks")]
async fn work(n: u8) -> Result<u8, platform::locks::LockError> {
    Ok(n)
}

#[distributed_lock(key = "k", crate = crate::platform::locks)]
async fn bare_path() -> Result<(), platform::locks::LockError> {
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    platform::locks::LockClient::in_memory().install_global();
    assert_eq!(work(1).await.unwrap(), 1);
    bare_path().await.unwrap();
}
