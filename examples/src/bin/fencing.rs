//! # fencing: a paused holder wakes up, writes, and is rejected
//!
//! Kleppmann's scenario ("How to do distributed locking", 2016), for real:
//!
//! 1. client-1 takes the lock `report` with a fencing token and a 1 s TTL, then pauses for
//!    1.5 s: a stop-the-world GC pause, a stopped VM. A paused process renews nothing; the
//!    example stands for that by turning the watchdog off (`.watchdog(false)`).
//! 2. The lock expires on the server. client-2, which was waiting for it, takes it with
//!    `#[distributed_lock(key = "report", ttl = "10s", wait = "5s", fencing, ..)]`, gets a
//!    higher fencing token, and writes its report to the storage.
//! 3. client-1 wakes up, still believing it holds the lock, and writes with its old token.
//!    The storage has already seen a higher token, so it REJECTS the write.
//!
//! The lock alone cannot prevent step 3: a paused process cannot know it was paused. The
//! fencing token, checked by the storage, is what keeps the stale write out. The example
//! prints the tokens and each outcome, and exits non-zero if the stale write got in.
//!
//! Run it:
//!
//! ```text
//! cargo run -p lock-examples --bin fencing
//! REDIS_URL=redis://127.0.0.1:6379/ cargo run -p lock-examples --bin fencing
//! ```
//!
//! (The fencing counter never expires, so against a long-lived Redis the tokens keep going
//! up from run to run; with the private server they start at 1.)

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lock_examples::{Args, LockServer, Stopwatch};
use lock_runtime::{LockClient, LockError, distributed_lock};

const USAGE: &str = "\
usage: fencing

A lock holder pauses past its TTL; a second holder takes the lock with a higher fencing token
and writes; the first wakes up and writes with its old token, and the storage rejects it.
REDIS_URL=redis://host:port/ picks the lock server.";

/// client-1's lock TTL, with no renewal.
const TTL: Duration = Duration::from_secs(1);
/// How long client-1 is paused: longer than its TTL.
const PAUSE: Duration = Duration::from_millis(1500);

/// A toy storage service that checks fencing tokens: it remembers the highest token it has
/// seen and refuses writes that carry a lower one.
#[derive(Default)]
struct FencedStorage(Mutex<Stored>);

#[derive(Default)]
struct Stored {
    highest_token: u64,
    content: Option<(String, u64)>,
}

/// A write refused for carrying an old token.
#[derive(Debug)]
struct Rejected {
    token: u64,
    highest: u64,
}

impl FencedStorage {
    fn write(&self, token: u64, content: &str) -> Result<(), Rejected> {
        let mut stored = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if token < stored.highest_token {
            return Err(Rejected {
                token,
                highest: stored.highest_token,
            });
        }
        stored.highest_token = token;
        stored.content = Some((content.to_owned(), token));
        Ok(())
    }

    fn content(&self) -> Option<(String, u64)> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .content
            .clone()
    }
}

/// client-2: waits for the lock, then writes its report with its fencing token.
#[distributed_lock(key = "report", ttl = "10s", wait = "5s", fencing, client = client)]
async fn client2_writes(
    client: &LockClient,
    storage: &FencedStorage,
    clock: Stopwatch,
) -> Result<(u64, Result<(), Rejected>), LockError> {
    let held = lock_runtime::current().expect("inside a locked fn");
    let token = held.fencing_token().expect("taken with fencing");
    println!(
        "{}  client-2 acquires `{}`: fencing token {token}",
        clock.stamp(),
        held.key()
    );
    let written = storage.write(token, "report v2, by client-2");
    match &written {
        Ok(()) => println!(
            "{}  client-2 writes \"report v2\" with token {token}: ACCEPTED",
            clock.stamp()
        ),
        Err(r) => println!(
            "{}  client-2 writes with token {token}: REJECTED (highest seen {})",
            clock.stamp(),
            r.highest
        ),
    }
    Ok((token, written))
}

#[tokio::main]
async fn main() -> ExitCode {
    if let Err(e) = Args::from_env(USAGE).finish() {
        eprintln!("{e}");
        return ExitCode::from(2);
    }
    let server = LockServer::discover("fencing");
    match run(&server).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(server: &LockServer) -> Result<ExitCode, LockError> {
    // Two clients, each with its own connection, as two processes would have.
    let client1 = server
        .client()
        .await?
        .with_namespace("lock-examples:fencing");
    let client2 = server
        .client()
        .await?
        .with_namespace("lock-examples:fencing");
    let storage = Arc::new(FencedStorage::default());
    let clock = Stopwatch::start();

    let guard1 = client1
        .lock("report")
        .ttl(TTL)
        .watchdog(false)
        .fencing(true)
        .acquire()
        .await?;
    let token1 = guard1.fencing_token().expect("taken with fencing");
    println!(
        "{}  client-1 acquires `{}`: fencing token {token1} (ttl {} ms, watchdog off)",
        clock.stamp(),
        guard1.key(),
        TTL.as_millis()
    );
    println!(
        "{}  client-1 pauses for {} ms (a stop-the-world GC pause): it renews nothing",
        clock.stamp(),
        PAUSE.as_millis()
    );

    let client2_task = {
        let storage = Arc::clone(&storage);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            println!(
                "{}  client-2 asks for `report` (waiting up to 5 s)",
                clock.stamp()
            );
            client2_writes(&client2, &storage, clock).await
        })
    };

    // client-1's pause.
    tokio::time::sleep(PAUSE).await;

    println!(
        "{}  client-1 wakes up and, still believing it holds the lock, writes with token {token1}",
        clock.stamp()
    );
    let stale = storage.write(token1, "report v1, by client-1");
    let (token2, written2) = client2_task.await.expect("client-2 panicked")?;
    match &stale {
        Err(Rejected { token, highest }) => println!(
            "{}  storage: REJECTED client-1's write: token {token} < {highest}, the highest \
             token it has seen",
            clock.stamp()
        ),
        Ok(()) => println!(
            "{}  storage: ACCEPTED client-1's stale write: it overwrote client-2's report",
            clock.stamp()
        ),
    }
    match guard1.release().await {
        Err(e @ LockError::NotHeld { .. }) => {
            println!("{}  client-1 releases: {e}", clock.stamp())
        }
        Err(e) => println!("{}  client-1 releases: error: {e}", clock.stamp()),
        Ok(()) => println!(
            "{}  client-1 releases: it still held the lock (unexpected)",
            clock.stamp()
        ),
    }

    println!("\nfencing tokens: client-1 = {token1}, client-2 = {token2}");
    match storage.content() {
        Some((content, token)) => println!("storage holds:  \"{content}\" (token {token})"),
        None => println!("storage holds:  nothing"),
    }
    let ok = token2 > token1 && written2.is_ok() && stale.is_err();
    if ok {
        println!(
            "OK: the stale write from client-1 was rejected; without the fencing check it \
             would have overwritten client-2's report"
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "FAILED: expected client-2's token to be higher and the stale write to be rejected"
        );
        Ok(ExitCode::FAILURE)
    }
}
