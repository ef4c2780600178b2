//! One process of the two-process mutual-exclusion test (`tests/redis_only.rs`).
//!
//! `mutex-worker <lock-url>[,<lock-url>...] <keys> <tasks> <per-task> [<data-url>]`: runs
//! `tasks` tasks that each do `per-task` critical sections. A section locks `lock:<k>` and
//! then increments `counter:<k>` by a non-atomic GET, a yield and a SET, so two holders at
//! once would lose an update. Several lock URLs make a quorum client (`tests/quorum.rs`);
//! the counters then live on `data-url`, a server outside the quorum.

use std::process::ExitCode;
use std::time::Duration;

use lock_runtime::{Backoff, LockClient};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (lock_urls, keys, tasks, per_task, data_url) = match args.as_slice() {
        [urls, keys, tasks, per_task] => (urls, keys, tasks, per_task, None),
        [urls, keys, tasks, per_task, data] => (urls, keys, tasks, per_task, Some(data)),
        _ => {
            eprintln!(
                "usage: mutex-worker <lock-url>[,<lock-url>...] <keys> <tasks> <per-task> [<data-url>]"
            );
            return ExitCode::from(2);
        }
    };
    let urls: Vec<&str> = lock_urls.split(',').collect();
    let url = data_url.map_or(urls[0], String::as_str).to_owned();
    let (Ok(keys), Ok(tasks), Ok(per_task)) = (
        keys.parse::<usize>(),
        tasks.parse::<usize>(),
        per_task.parse::<usize>(),
    ) else {
        eprintln!("keys, tasks and per-task must be numbers");
        return ExitCode::from(2);
    };
    let connect = match urls.as_slice() {
        [one] => LockClient::connect(one).await,
        many => {
            LockClient::quorum(many.iter().copied())
                .node_timeout(Duration::from_millis(30))
                .connect()
                .await
        }
    };
    let locks = match connect {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    // The counters go through a connection of their own, outside the lock library.
    let data = redis::Client::open(url.as_str()).expect("url");
    let data = data
        .get_multiplexed_async_connection()
        .await
        .expect("data connection");

    let mut handles = Vec::new();
    for task in 0..tasks {
        let locks = locks.clone();
        let mut data = data.clone();
        handles.push(tokio::spawn(async move {
            for i in 0..per_task {
                let k = (task + i) % keys;
                let counter = format!("counter:{k}");
                locks
                    .lock(format!("lock:{k}"))
                    .ttl(Duration::from_secs(5))
                    .wait(Duration::from_secs(60))
                    .backoff(Backoff::exponential(
                        Duration::from_millis(1),
                        Duration::from_millis(8),
                    ))
                    .run(async {
                        let n: Option<u64> = redis::cmd("GET")
                            .arg(&counter)
                            .query_async(&mut data)
                            .await?;
                        tokio::task::yield_now().await;
                        redis::cmd("SET")
                            .arg(&counter)
                            .arg(n.unwrap_or(0) + 1)
                            .exec_async(&mut data)
                            .await
                    })
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?;
            }
            Ok::<(), String>(())
        }));
    }
    for handle in handles {
        match handle.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                eprintln!("critical section failed: {e}");
                return ExitCode::FAILURE;
            }
            Err(e) => {
                eprintln!("task failed: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
