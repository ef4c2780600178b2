//! `?` and `return` in the body behave as without the attribute: `return`
//! leaves the function, `?` converts into the declared error type, even
//! where inference needs the return type (`.into()`, `collect()`).
#![deny(warnings)]

use lock_runtime::{LockError, distributed_lock};

#[derive(Debug)]
enum AppError {
    Lock(LockError),
    Bad(String),
}

impl From<LockError> for AppError {
    fn from(err: LockError) -> Self {
        AppError::Lock(err)
    }
}

impl From<&str> for AppError {
    fn from(msg: &str) -> Self {
        AppError::Bad(msg.to_owned())
    }
}

fn check(n: i32) -> Result<i32, &'static str> {
    if n < 0 { Err("negative") } else { Ok(n) }
}

#[distributed_lock(key = "calc:{n}")]
async fn calc(n: i32) -> Result<i32, AppError> {
    let n = check(n)?;
    if n == 0 {
        return Ok(-1);
    }
    if n > 100 {
        return Err("too big".into());
    }
    let doubled: Vec<i32> = [n, n].iter().map(|x| check(*x)).collect::<Result<_, _>>()?;
    Ok(doubled.iter().sum())
}

#[distributed_lock(key = "early")]
async fn early() -> Result<(), AppError> {
    for i in 0.. {
        if i == 3 {
            return Ok(());
        }
    }
    unreachable!()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    lock_runtime::LockClient::in_memory().install_global();
    assert_eq!(calc(0).await.unwrap(), -1);
    assert_eq!(calc(2).await.unwrap(), 4);
    assert!(matches!(calc(-1).await, Err(AppError::Bad(m)) if m == "negative"));
    assert!(matches!(calc(101).await, Err(AppError::Bad(m)) if m == "too big"));
    early().await.unwrap();
}
