//! Generic functions with bounds in both places, lifetimes, and a const
//! generic.
#![deny(warnings)]

use std::fmt::Display;

use lock_runtime::{LockClient, LockError, distributed_lock};

#[distributed_lock(key = "item:{id}")]
async fn store<T: Clone + Send, I>(id: I, value: &T) -> Result<T, LockError>
where
    I: Display + Send,
{
    Ok(value.clone())
}

#[distributed_lock(key = "first:{name}")]
async fn first<'a, const N: usize>(name: &'a str, items: &'a [u8; N]) -> Result<&'a u8, LockError> {
    Ok(&items[0])
}

struct Repo<T> {
    prefix: T,
}

impl<T> Repo<T>
where
    T: Display + Sync,
{
    #[distributed_lock(key = "{self.prefix}:{id}")]
    async fn get<K: Display + Sync>(&self, id: &K) -> Result<String, LockError> {
        Ok(format!("{}:{}", self.prefix, id))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    LockClient::in_memory().install_global();
    assert_eq!(store(1u8, &"v".to_owned()).await.unwrap(), "v");
    assert_eq!(*first("n", &[9, 8]).await.unwrap(), 9);
    assert_eq!(Repo { prefix: "p" }.get(&3).await.unwrap(), "p:3");
}
