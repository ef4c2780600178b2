//! A crate's own `Result` alias, with a default error type parameter, and
//! the alias shadowing the prelude's `Result`.
#![deny(warnings)]

use lock_runtime::{LockError, distributed_lock};

mod error {
    #[derive(Debug)]
    pub enum Error {
        Lock(lock_runtime::LockError),
        Parse(std::num::ParseIntError),
    }

    impl From<lock_runtime::LockError> for Error {
        fn from(err: lock_runtime::LockError) -> Self {
            Error::Lock(err)
        }
    }

    impl From<std::num::ParseIntError> for Error {
        fn from(err: std::num::ParseIntError) -> Self {
            Error::Parse(err)
        }
    }

    pub type Result<T, E = Error> = std::result::Result<T, E>;
}

use error::{Error, Result};

// `?` converts `ParseIntError` into the declared error type.
#[distributed_lock(key = "n:{text}")]
async fn number(text: &str) -> Result<u64> {
    let n: u64 = text.parse()?;
    Ok(n)
}

// The alias's second parameter given explicitly.
#[distributed_lock(key = "m")]
async fn plain() -> Result<(), LockError> {
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    assert!(matches!(number("1").await, Err(Error::Lock(LockError::NoClient { .. }))));
    lock_runtime::LockClient::in_memory().install_global();
    assert_eq!(number("7").await.unwrap(), 7);
    assert!(matches!(number("x").await, Err(Error::Parse(_))));
    plain().await.unwrap();
}
