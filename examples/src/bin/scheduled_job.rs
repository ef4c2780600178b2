//! # scheduled_job: three replicas, one run per tick (ShedLock-style)
//!
//! Three replicas of a service each have the same scheduled job, ticking on every
//! wall-clock second (each replica's timer fires a few random milliseconds after the
//! second, as real timers do). The job is
//!
//! ```text
//! #[distributed_lock(key = "report:tick:<tick>", ttl = "10s", client = &replica.locks,
//!                    on_busy = "skip", min_hold = "1500ms")]
//! ```
//!
//! with no `wait`: the first replica to ask runs the tick; for the others the lock is busy,
//! and `on_busy = "skip"` (ShedLock's behaviour) makes the call return `Ok(None)` without
//! running the job.
//!
//! `min_hold` (ShedLock's `lockAtLeastFor`) keeps the lock for 1.5 s after it was taken, even
//! when the job finishes sooner: a replica whose timer fires late for the same tick then
//! still finds it taken, instead of running the tick a second time once the first run
//! released the lock.
//!
//! Every run is recorded in the shared state (Redis when there is Redis). At the end it
//! prints a timeline (which replica ran which tick, and when the others were refused), reads
//! the runs back, and exits non-zero if any tick ran twice or not at all.
//!
//! Run it (ten ticks by default; `--ticks 3` for a short run):
//!
//! ```text
//! cargo run -p lock-examples --bin scheduled_job
//! cargo run -p lock-examples --bin scheduled_job -- --ticks 3
//! REDIS_URL=redis://127.0.0.1:6379/ cargo run -p lock-examples --bin scheduled_job
//! ```

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lock_examples::{Args, LockServer, SharedState, run_id};
use lock_runtime::{LockClient, LockError, distributed_lock};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

const USAGE: &str = "\
usage: scheduled_job [--ticks N]

Three replicas tick every second; a lock with no wait lets exactly one of them run each tick
(the others skip it, and the lock is held at least 1.5 s).
Runs N ticks (default 10), prints the timeline and checks that no tick ran twice.
REDIS_URL=redis://host:port/ picks the lock server.";

const REPLICAS: [&str; 3] = ["replica-a", "replica-b", "replica-c"];
/// How long after it was taken the lock is held at least (`lockAtLeastFor`): the attribute's
/// `min_hold = "1500ms"`, for the messages.
const HOLD_AT_LEAST_MS: u64 = 1500;
/// The latest a replica's timer fires after the second.
const MAX_TIMER_JITTER_MS: u64 = 80;

/// The Redis keys of the shared state, under one namespace.
struct Keys {
    /// Hash: tick -> how many times it ran (must be exactly 1).
    runs: String,
    /// List: `"<tick> <replica>"` for every run, in order.
    log: String,
}

struct Replica {
    name: &'static str,
    locks: LockClient,
    state: SharedState,
    keys: Arc<Keys>,
    /// Where the replica reports what it did, for the timeline.
    events: mpsc::UnboundedSender<Event>,
}

impl Replica {
    fn report(&self, tick: u64, outcome: Outcome) {
        let _ = self.events.send(Event {
            tick,
            replica: self.name,
            at_ms: unix_ms().saturating_sub(tick * 1000),
            outcome,
        });
    }
}

/// How the job can fail; `LockError` converts into it, as `#[distributed_lock]` requires.
#[derive(Debug)]
enum JobError {
    Lock(LockError),
    Store(redis::RedisError),
}

impl From<LockError> for JobError {
    fn from(e: LockError) -> Self {
        JobError::Lock(e)
    }
}

impl std::fmt::Display for JobError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JobError::Lock(e) => write!(f, "{e}"),
            JobError::Store(e) => write!(f, "shared state: {e}"),
        }
    }
}

impl From<redis::RedisError> for JobError {
    fn from(e: redis::RedisError) -> Self {
        JobError::Store(e)
    }
}

/// The scheduled job: builds the report for `tick`, on one replica only. `Ok(None)` when
/// another replica has the tick (`on_busy = "skip"`).
#[distributed_lock(
    key = "report:tick:<tick>",
    ttl = "10s",
    client = &replica.locks,
    on_busy = "skip",
    min_hold = "1500ms"
)]
async fn report_job(replica: &Replica, tick: u64) -> Result<Option<()>, JobError> {
    replica.report(tick, Outcome::Ran);
    let keys = &replica.keys;
    replica.state.hincr(&keys.runs, &tick.to_string()).await?;
    replica
        .state
        .rpush(&keys.log, &format!("{tick} {}", replica.name))
        .await?;
    // The report itself. The lock then stays taken until `min_hold` after it was acquired,
    // so that every replica's timer for this tick has fired by the time it frees itself.
    tokio::time::sleep(Duration::from_millis(rand::random_range(50..200))).await;
    Ok(Some(()))
}

/// What one replica did on one tick.
struct Event {
    tick: u64,
    replica: &'static str,
    /// Milliseconds after the start of the tick's second that it happened.
    at_ms: u64,
    outcome: Outcome,
}

/// Whether a replica ran a tick.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Ran,
    Busy,
    Failed(String),
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is before 1970")
        .as_millis() as u64
}

/// `HH:MM:SS` (UTC) of a unix second.
fn utc(second: u64) -> String {
    let s = second % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// One replica's scheduler: fires on every second from `first` to `last`, a little late.
async fn scheduler(replica: Arc<Replica>, first: u64, last: u64) {
    let mut runs = JoinSet::new();
    let mut next = first;
    while next <= last {
        let fire_at = next * 1000 + rand::random_range(0..=MAX_TIMER_JITTER_MS);
        tokio::time::sleep(Duration::from_millis(fire_at.saturating_sub(unix_ms()))).await;
        // Like cron: the tick is the second we are in now (a replica that stalled past a
        // whole second skips the missed tick rather than running it late).
        let now = unix_ms();
        let tick = now / 1000;
        if tick > last {
            break;
        }
        let replica = Arc::clone(&replica);
        // Each run is a task of its own, so the lock held past the tick does not delay the
        // next tick's timer.
        runs.spawn(async move {
            match report_job(&replica, tick).await {
                Ok(Some(())) => {} // reported when it started
                Ok(None) => replica.report(tick, Outcome::Busy),
                Err(e) => replica.report(tick, Outcome::Failed(e.to_string())),
            }
        });
        next = tick + 1;
    }
    runs.join_all().await;
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = Args::from_env(USAGE);
    let ticks = match args.value::<u64>("--ticks").and_then(|t| {
        args.finish()?;
        Ok(t.unwrap_or(10).max(1))
    }) {
        Ok(ticks) => ticks,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let server = LockServer::discover("scheduled_job");
    match run(&server, ticks).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(server: &LockServer, ticks: u64) -> Result<ExitCode, String> {
    // A fresh namespace per run, so that earlier runs against the same Redis do not count.
    let namespace = format!("lock-examples:scheduled_job:{}", run_id());
    let keys = Arc::new(Keys {
        runs: format!("{namespace}:runs"),
        log: format!("{namespace}:log"),
    });
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut replicas = Vec::new();
    for name in REPLICAS {
        // Each replica has its own connections, as separate processes would.
        let locks = server.client().await.map_err(|e| e.to_string())?;
        let state = server.state().await.map_err(|e| e.to_string())?;
        replicas.push(Arc::new(Replica {
            name,
            locks: locks.with_namespace(&namespace),
            state,
            keys: Arc::clone(&keys),
            events: tx.clone(),
        }));
    }
    println!(
        "{}",
        replicas[0]
            .state
            .describe(&format!("{}, {}", keys.runs, keys.log))
    );

    // Start at the next whole second, with a little room to get going.
    let first = (unix_ms() + 200) / 1000 + 1;
    let last = first + ticks - 1;
    println!(
        "{} replicas, one job ticking every second from {} to {} UTC ({ticks} ticks); the job is \
         locked per tick with no wait (on_busy = \"skip\") and held at least {HOLD_AT_LEAST_MS} ms \
         after it is taken (min_hold)\n",
        REPLICAS.len(),
        utc(first),
        utc(last),
    );

    let schedulers: Vec<_> = replicas
        .iter()
        .map(|r| tokio::spawn(scheduler(Arc::clone(r), first, last)))
        .collect();
    // The replicas' event senders now live only in the schedulers: the channel closes when
    // the last of them is done.
    drop(replicas);
    drop(tx);
    // tick -> replica -> (ms into the tick, outcome)
    let mut timeline = BTreeMap::<u64, BTreeMap<&str, (u64, Outcome)>>::new();
    while let Some(event) = rx.recv().await {
        let what = match &event.outcome {
            Outcome::Ran => "ran the job".to_owned(),
            Outcome::Busy => "busy, skipped".to_owned(),
            Outcome::Failed(e) => format!("ERROR: {e}"),
        };
        println!(
            "{}.{:03}  tick {:>2}  {}  {what}",
            utc(event.tick),
            event.at_ms,
            event.tick - first + 1,
            event.replica
        );
        timeline
            .entry(event.tick)
            .or_default()
            .insert(event.replica, (event.at_ms, event.outcome));
    }
    for s in schedulers {
        s.await.map_err(|e| e.to_string())?;
    }

    let header = format!(
        "tick  second (UTC)  {:<17}{:<17}{}",
        REPLICAS[0], REPLICAS[1], REPLICAS[2]
    );
    println!("\n{header}");
    for tick in first..=last {
        let row = timeline.get(&tick);
        let cells: Vec<String> = REPLICAS
            .iter()
            .map(|name| match row.and_then(|r| r.get(name)) {
                Some((at, Outcome::Ran)) => format!("RAN (+{at} ms)"),
                Some((at, Outcome::Busy)) => format!("busy (+{at} ms)"),
                Some((_, Outcome::Failed(_))) => "ERROR".to_owned(),
                None => "-".to_owned(),
            })
            .collect();
        println!(
            "{:>4}  {:<12}  {:<17}{:<17}{}",
            tick - first + 1,
            utc(tick),
            cells[0],
            cells[1],
            cells[2]
        );
    }

    // The check, on a connection of its own, from the shared state the replicas wrote.
    let checker = server.state().await.map_err(|e| e.to_string())?;
    let runs = checker
        .hgetall(&keys.runs)
        .await
        .map_err(|e| e.to_string())?;
    let log = checker.lrange(&keys.log).await.map_err(|e| e.to_string())?;
    let source = checker.location();
    let mut failures = Vec::new();
    let mut counts = Vec::new();
    for tick in first..=last {
        let n: u64 = runs
            .get(&tick.to_string())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        counts.push(format!("{}x{n}", tick - first + 1));
        if n != 1 {
            let by: Vec<&str> = log
                .iter()
                .filter_map(|e| e.split_once(' '))
                .filter(|(t, _)| *t == tick.to_string())
                .map(|(_, by)| by)
                .collect();
            failures.push(format!(
                "tick {} ran {n} times ({})",
                tick - first + 1,
                by.join(", ")
            ));
        }
    }
    let errors = timeline
        .values()
        .flat_map(|r| r.values())
        .filter(|(_, o)| matches!(o, Outcome::Failed(_)))
        .count();
    if errors > 0 {
        failures.push(format!("{errors} job attempts failed with an error"));
    }
    println!(
        "\nruns read back from {source} (tick x runs): {}",
        counts.join(" ")
    );
    if failures.is_empty() {
        println!("OK: {ticks} ticks, each ran exactly once; no tick ran twice");
        Ok(ExitCode::SUCCESS)
    } else {
        for failure in failures {
            println!("FAILED: {failure}");
        }
        Ok(ExitCode::FAILURE)
    }
}
