//! `async unsafe fn`: the body stays an unsafe context's body.
#![deny(warnings)]

use lock_runtime::{LockClient, LockError, distributed_lock};

/// # Safety
/// `ptr` must be valid for reads.
#[distributed_lock(key = "raw")]
async unsafe fn read(ptr: *const u32) -> Result<u32, LockError> {
    // SAFETY: the caller promises `ptr` is valid.
    Ok(unsafe { *ptr })
}

struct S;

impl S {
    #[distributed_lock(key = "raw:{n}")]
    async unsafe fn method(&self, n: u8) -> Result<u8, LockError> {
        Ok(n)
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    LockClient::in_memory().install_global();
    let x = 5;
    // SAFETY: `x` outlives the call.
    assert_eq!(unsafe { read(&x) }.await.unwrap(), 5);
    // SAFETY: nothing to uphold.
    assert_eq!(unsafe { S.method(1) }.await.unwrap(), 1);
}
