//! The template language end to end: escapes, nested and tuple fields,
//! adjacent placeholders, whitespace, unicode.
#![deny(warnings)]

use lock_runtime::{LockClient, LockError, distributed_lock};

struct Inner {
    c: u8,
}

struct Outer {
    b: Inner,
}

async fn key() -> String {
    lock_runtime::current().unwrap().key().to_owned()
}

#[distributed_lock(key = "{{lit}}<<lit>>:{{{a.b.c}}}:<<<pair.1>>>")]
async fn escapes(a: Outer, pair: (u8, u8)) -> Result<String, LockError> {
    let _ = (a.b.c, pair);
    Ok(key().await)
}

#[distributed_lock(key = "{x}{y}<x>{ y }< x >")]
async fn adjacent(x: u8, y: char) -> Result<String, LockError> {
    Ok(key().await)
}

#[distributed_lock(key = "заказ:{größe}:🔒")]
async fn unicode(größe: u8) -> Result<String, LockError> {
    Ok(key().await)
}

#[distributed_lock(key = "no placeholders {{at all}}")]
async fn constant() -> Result<String, LockError> {
    Ok(key().await)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    LockClient::in_memory().install_global();
    let outer = Outer { b: Inner { c: 3 } };
    assert_eq!(escapes(outer, (1, 2)).await.unwrap(), "{lit}<lit>:{3}:<2>");
    assert_eq!(adjacent(1, 'y').await.unwrap(), "1y1y1");
    assert_eq!(unicode(9).await.unwrap(), "заказ:9:🔒");
    assert_eq!(constant().await.unwrap(), "no placeholders {at all}");
}
