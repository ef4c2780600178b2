//! The `fn … -> impl Future` form: the returned async block runs under the lock, with its
//! own captures (`move` or not); statements before it run when the function is called.
#![deny(warnings)]

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};

use lock_runtime::{LockClient, LockError, distributed_lock};

struct Service {
    locks: LockClient,
    tenant: String,
}

impl Service {
    /// The reason for this form: a `'static` future that does not borrow `self`.
    #[distributed_lock(key = "{self.tenant}:{id}", client = &self.locks)]
    fn settle(&self, id: u64) -> impl Future<Output = Result<String, LockError>> + Send + 'static {
        let tenant = self.tenant.clone();
        async move {
            let key = lock_runtime::current().expect("under the lock").key().to_owned();
            Ok(format!("{key} for {tenant}"))
        }
    }

    /// A boxed future.
    #[distributed_lock(key = "boxed:{id}", client = &self.locks)]
    fn boxed(&self, id: u64) -> Pin<Box<dyn Future<Output = Result<u64, LockError>> + Send>> {
        Box::pin(async move {
            assert!(lock_runtime::current().is_some());
            Ok(id)
        })
    }
}

static RAN: AtomicBool = AtomicBool::new(false);

/// A non-`move` tail that captures nothing.
#[distributed_lock(key = "plain")]
fn plain() -> impl Future<Output = Result<bool, LockError>> {
    async {
        RAN.store(true, Ordering::SeqCst);
        Ok(lock_runtime::current().is_some())
    }
}

/// A non-`move` tail with a key built from a parameter: the key is built before the
/// future exists, so the async block need not borrow `id` (this was E0373).
#[distributed_lock(key = "plain:{id}")]
fn plain_with_key(id: u64) -> impl Future<Output = Result<String, LockError>> {
    async { Ok(lock_runtime::current().unwrap().key().to_owned()) }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    LockClient::in_memory().install_global();
    let service = Service { locks: LockClient::in_memory(), tenant: "acme".into() };
    let future = service.settle(7);
    drop(service.tenant.clone());
    assert_eq!(future.await.unwrap(), "acme:7 for acme");
    assert_eq!(service.boxed(3).await.unwrap(), 3);
    assert!(plain().await.unwrap());
    assert!(RAN.load(Ordering::SeqCst));
    assert_eq!(plain_with_key(9).await.unwrap(), "plain:9");

    // The lock is real: a held key makes the future `Busy`.
    let held = LockClient::global().unwrap().lock("plain").acquire().await.unwrap();
    assert!(matches!(plain().await, Err(LockError::Busy { .. })));
    held.release().await.unwrap();
}
