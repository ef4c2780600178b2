//! A `macro_rules!` may supply the key template and the signature from different
//! contexts: placeholders still resolve to the parameters, by the parameters' own hygiene.
#![deny(warnings)]

use lock_runtime::{LockClient, LockError, distributed_lock};

// The signature is the macro's, the template the caller's.
macro_rules! job_with_key {
    ($name:ident, $key:literal) => {
        #[distributed_lock(key = $key)]
        async fn $name(id: u64) -> Result<String, LockError> {
            let _ = id;
            Ok(lock_runtime::current().unwrap().key().to_owned())
        }
    };
}

job_with_key!(job, "job:{id}");

// The template is the macro's, the signature the caller's.
macro_rules! locked {
    ($($item:tt)*) => {
        #[distributed_lock(key = "order:{id}")]
        $($item)*
    };
}

locked! {
    async fn settle(id: u64) -> Result<String, LockError> {
        let _ = id;
        Ok(lock_runtime::current().unwrap().key().to_owned())
    }
}

struct Shop {
    name: &'static str,
}

// A method: `self` comes from the caller, the template from the macro.
macro_rules! locked_method {
    ($($item:tt)*) => {
        #[distributed_lock(key = "shop:{self.name}:<n>")]
        $($item)*
    };
}

impl Shop {
    locked_method! {
        async fn sell(&self, n: u64) -> Result<String, LockError> {
            let _ = n;
            Ok(lock_runtime::current().unwrap().key().to_owned())
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    LockClient::in_memory().install_global();
    assert_eq!(job(1).await.unwrap(), "job:1");
    assert_eq!(settle(2).await.unwrap(), "order:2");
    assert_eq!(Shop { name: "acme" }.sell(3).await.unwrap(), "shop:acme:3");
}
