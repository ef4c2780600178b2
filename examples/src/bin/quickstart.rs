//! # quickstart: twenty tasks race to settle five orders
//!
//! Twenty concurrent tasks call `settle(id, ..)` over five order ids. `settle` runs under
//! `#[distributed_lock(key = "order:<id>", ttl = "10s")]`: it checks whether the order is
//! settled, "charges the card" (a 100 ms await, exactly where an unlocked version would let
//! a second task in), and records who settled it. The lock makes every order settled
//! exactly once: the other calls are refused with `Busy` while the lock is held, or find the
//! order already settled once it is released.
//!
//! It prints each call as it returns, then a table (order, who settled it, how many times,
//! how many attempts were refused), and exits non-zero if any order was settled twice or
//! not at all. It takes about half a second.
//!
//! Run it:
//!
//! ```text
//! cargo run -p lock-examples --bin quickstart
//! REDIS_URL=redis://127.0.0.1:6379/ cargo run -p lock-examples --bin quickstart
//! ```
//!
//! Without `REDIS_URL` it starts a private `redis-server` for the run if one is installed,
//! and otherwise uses the in-memory backend (and says so).

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lock_examples::{Args, LockServer, Stopwatch};
use lock_runtime::{LockError, distributed_lock};

const ORDERS: u64 = 5;
const TASKS: u64 = 20;
/// How long "charging the card" takes, with the lock held.
const CHARGE_TIME: Duration = Duration::from_millis(100);

const USAGE: &str = "usage: quickstart\n\n\
    Twenty tasks settle five orders under #[distributed_lock]; each order must be settled \
    exactly once.\nREDIS_URL=redis://host:port/ picks the lock server.";

/// Who settled which order: the data the lock protects.
#[derive(Default)]
struct Ledger(Mutex<BTreeMap<u64, Vec<String>>>);

impl Ledger {
    fn settlements(&self, id: u64) -> Vec<String> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&id).cloned().unwrap_or_default()
    }

    fn record(&self, id: u64, by: &str) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(id).or_default().push(by.to_owned());
    }
}

/// What one successful call of `settle` did.
enum Outcome {
    Settled,
    AlreadySettled { by: String },
}

/// Settles order `id` once: the lock keeps every other call out while it runs.
#[distributed_lock(key = "order:<id>", ttl = "10s")]
async fn settle(id: u64, caller: &str, ledger: &Ledger) -> Result<Outcome, LockError> {
    if let Some(by) = ledger.settlements(id).first() {
        return Ok(Outcome::AlreadySettled { by: by.clone() });
    }
    // Charge the card: without the lock, every task that got here before the first one
    // recorded its settlement would charge it again.
    tokio::time::sleep(CHARGE_TIME).await;
    ledger.record(id, caller);
    Ok(Outcome::Settled)
}

#[tokio::main]
async fn main() -> ExitCode {
    if let Err(e) = Args::from_env(USAGE).finish() {
        eprintln!("{e}");
        return ExitCode::from(2);
    }
    let server = LockServer::discover("quickstart");
    let client = match server.client().await {
        Ok(client) => client,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The global client is what `#[distributed_lock]` uses. The namespace keeps these keys
    // apart from anything else in your Redis.
    client.with_namespace("lock-examples").install_global();
    println!(
        "{TASKS} tasks settle {ORDERS} orders with #[distributed_lock(key = \"order:<id>\", \
         ttl = \"10s\")] async fn settle(..)\n"
    );

    let ledger = Arc::new(Ledger::default());
    let clock = Stopwatch::start();
    let calls: Vec<_> = (1..=TASKS)
        .map(|n| {
            let id = (n - 1) % ORDERS + 1;
            let caller = format!("task-{n:02}");
            let ledger = Arc::clone(&ledger);
            // Tasks start within a quarter second: some overlap the holder, some come after.
            let start_after = Duration::from_millis(rand::random_range(0..250));
            tokio::spawn(async move {
                tokio::time::sleep(start_after).await;
                let result = settle(id, &caller, &ledger).await;
                let what = match &result {
                    Ok(Outcome::Settled) => "settled it".to_owned(),
                    Ok(Outcome::AlreadySettled { by }) => {
                        format!("found it already settled by {by}")
                    }
                    Err(LockError::Busy {
                        key,
                        holder_ttl: Some(ttl),
                    }) => format!(
                        "refused: Busy (`{key}` held for {} ms more)",
                        ttl.as_millis()
                    ),
                    Err(e) if e.is_busy() => "refused: Busy".to_owned(),
                    Err(e) => format!("ERROR: {e}"),
                };
                println!("{}  {caller}  order {id}  {what}", clock.stamp());
                (id, result)
            })
        })
        .collect();

    let mut refused = BTreeMap::<u64, usize>::new();
    let mut found_settled = BTreeMap::<u64, usize>::new();
    let mut errors = 0;
    for call in calls {
        let (id, result) = call.await.expect("a settle task panicked");
        match result {
            Ok(Outcome::Settled) => {}
            Ok(Outcome::AlreadySettled { .. }) => *found_settled.entry(id).or_default() += 1,
            Err(e) if e.is_busy() => *refused.entry(id).or_default() += 1,
            Err(_) => errors += 1,
        }
    }

    println!(
        "\n{:>5}  {:<10}  {:>13}  {:>14}  {:>21}",
        "order", "settled by", "times settled", "refused (Busy)", "found already settled"
    );
    let mut failures = Vec::new();
    for id in 1..=ORDERS {
        let settlements = ledger.settlements(id);
        println!(
            "{id:>5}  {:<10}  {:>13}  {:>14}  {:>21}",
            settlements.join(","),
            settlements.len(),
            refused.get(&id).copied().unwrap_or(0),
            found_settled.get(&id).copied().unwrap_or(0),
        );
        match settlements.len() {
            1 => {}
            0 => failures.push(format!("order {id} was never settled")),
            n => failures.push(format!(
                "order {id} was settled {n} times ({})",
                settlements.join(", ")
            )),
        }
    }
    if errors > 0 {
        failures.push(format!("{errors} calls failed with an error (see above)"));
    }
    println!();
    if failures.is_empty() {
        println!(
            "OK: each of the {ORDERS} orders was settled exactly once; {} attempts were refused \
             with Busy and {} found the order already settled ({:.2}s)",
            refused.values().sum::<usize>(),
            found_settled.values().sum::<usize>(),
            clock.elapsed().as_secs_f64(),
        );
        ExitCode::SUCCESS
    } else {
        for failure in failures {
            println!("FAILED: {failure}");
        }
        ExitCode::FAILURE
    }
}
