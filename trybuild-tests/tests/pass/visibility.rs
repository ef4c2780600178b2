//! `pub(crate)`, `pub(super)` and `pub` functions keep their visibility, and
//! doc comments and other attributes stay on the function.
#![deny(warnings, missing_docs)]
//! (crate docs for `missing_docs`)

mod inner {
    use lock_runtime::distributed_lock;
    use lock_runtime::LockError;

    /// Visible in the crate.
    #[distributed_lock(key = "a:{n}")]
    pub(crate) async fn crate_visible(n: u8) -> Result<u8, LockError> {
        Ok(n)
    }

    pub mod deeper {
        use super::*;

        /// Visible in `inner`.
        #[doc(alias = "parent")]
        #[distributed_lock(key = "b:{n}")]
        pub(super) async fn parent_visible(n: u8) -> Result<u8, LockError> {
            Ok(n)
        }
    }

    /// Public.
    #[distributed_lock(key = "c")]
    #[inline]
    pub async fn public() -> Result<u8, LockError> {
        deeper::parent_visible(1).await
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    lock_runtime::LockClient::in_memory().install_global();
    assert_eq!(inner::crate_visible(2).await.unwrap(), 2);
    assert_eq!(inner::public().await.unwrap(), 1);
}
