//! `std::io::Result<T>`: an alias whose error type is `std::io::Error`.
#![deny(warnings)]

use std::io;

use lock_runtime::distributed_lock;

#[distributed_lock(key = "file:{name}")]
async fn write(name: &str) -> io::Result<usize> {
    Ok(name.len())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let err = write("a").await.unwrap_err();
    assert!(err.to_string().contains("no lock client"), "{err}");
    lock_runtime::LockClient::in_memory().install_global();
    assert_eq!(write("abc").await.unwrap(), 3);
}
