//! Placeholders follow rustc's identifier rule, combining marks included: a template
//! written with `e` + U+0301 names the parameter rustc normalizes to `é`.
#![deny(warnings)]

use lock_runtime::{LockClient, LockError, distributed_lock};

#[distributed_lock(key = "{r\u{e9}sum\u{e9}}:{ide\u{301}}")]
async fn f(résumé: u8, idé: u8) -> Result<String, LockError> {
    let _ = (résumé, idé);
    Ok(lock_runtime::current().unwrap().key().to_owned())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    LockClient::in_memory().install_global();
    assert_eq!(f(1, 2).await.unwrap(), "1:2");
}
