//! A method taking `self` (and `mut self`) by value.
#![deny(warnings)]

use lock_runtime::{LockClient, LockError, distributed_lock};

struct Job {
    id: u32,
    log: Vec<String>,
}

impl Job {
    #[distributed_lock(key = "job:{self.id}")]
    async fn finish(self) -> Result<Vec<String>, LockError> {
        Ok(self.log)
    }

    #[distributed_lock(key = "job:{self.id}")]
    async fn finish_with(mut self, line: &str) -> Result<Vec<String>, LockError> {
        self.log.push(line.to_owned());
        Ok(self.log)
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    LockClient::in_memory().install_global();
    let job = Job { id: 1, log: vec!["a".into()] };
    assert_eq!(job.finish().await.unwrap(), ["a"]);
    let job = Job { id: 2, log: vec![] };
    assert_eq!(job.finish_with("b").await.unwrap(), ["b"]);
}
