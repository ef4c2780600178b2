//! One process of the two-process mutual-exclusion test (`tests/redis_only.rs`).
//!
//! `mutex-worker <redis-url> <keys> <tasks> <per-task>`: runs `tasks` tasks that each do
//! `per-task` critical sections. A section locks `lock:<k>` and then increments
//! `counter:<k>` by a non-atomic GET, a yield and a SET, so two holders at once would lose
//! an update.

use std::process::ExitCode;
use std::time::Duration;

use lock_runtime::{Backoff, LockClient};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, keys, tasks, per_task] = args.as_slice() else {
        eprintln!("usage: mutex-worker <redis-url> <keys> <tasks> <per-task>");
        return ExitCode::from(2);
    };
    let (Ok(keys), Ok(tasks), Ok(per_task)) = (
        keys.parse::<usize>(),
        tasks.parse::<usize>(),
        per_task.parse::<usize>(),
    ) else {
        eprintln!("keys, tasks and per-task must be numbers");
        return ExitCode::from(2);
    };
    let locks = match LockClient::connect(url).await {
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
