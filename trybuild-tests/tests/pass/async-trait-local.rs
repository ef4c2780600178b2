//! `#[async_trait(?Send)]`: the boxed future is not `Send`, and the lock
//! works inside it all the same.
#![deny(warnings)]

use std::rc::Rc;

use async_trait::async_trait;
use lock_runtime::{LockClient, LockError, distributed_lock};

#[async_trait(?Send)]
trait Render {
    async fn render(&self, page: Rc<str>) -> Result<String, LockError>;
}

struct Site;

#[async_trait(?Send)]
impl Render for Site {
    #[distributed_lock(key = "page:{page}")]
    async fn render(&self, page: Rc<str>) -> Result<String, LockError> {
        Ok(format!("<{page}>"))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    LockClient::in_memory().install_global();
    assert_eq!(Site.render("home".into()).await.unwrap(), "<home>");
}
