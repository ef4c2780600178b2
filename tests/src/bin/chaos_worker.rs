//! One worker process of the chaos rig (`scripts/chaos`, driven by the `chaos` binary).
//!
//! ```text
//! chaos-worker --name A --url redis://127.0.0.1:PORT/ --history FILE [options]
//! ```
//!
//! Several comma-separated URLs make it a quorum (Redlock) client over those servers. With
//! `--sentinel SERVICE` they are the sentinels that manage `SERVICE`; with `--cluster`, nodes
//! of a Redis Cluster. `--replicas N,MS` turns on `wait_for_replicas(N, MS)`.
//!
//! Runs `--tasks` tasks that each take locks on `--keys` keys (`chaos:0`, `chaos:1`, ...) in
//! a loop, with fencing on, and hold each for `--hold-ms` (a random time between the two
//! bounds given as `MIN,MAX`). Every critical section is written to the history file: an
//! `enter` line when the body starts and a `leave` line when it ends or is dropped. Inside
//! the section, the fencing token is written to a fenced register (`--register URL`) at the
//! start and at the end, and the answer is recorded.
//!
//! The worker stops on its own after `--duration-ms`. A line on standard input (or its end)
//! shuts it down early, as a deploy would, and a `down` line names the keys it was holding.
//! With `--close` it calls `LockClient::close`, which cancels the work still running under
//! its locks and releases them, before its runtime shuts down; without it, the runtime shuts
//! down with the guards still alive in their tasks.
//!
//! `--no-lock` runs the same sections without taking any lock: the negative control, whose
//! history must show overlaps.

use std::collections::BTreeSet;
use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lock_runtime::{Backoff, LockClient, LockError, LostReason};
use lock_tests::history::{Entry, Recorder, now_ns};
use tokio::sync::watch;
use tokio::time::Instant;

/// Refuses a token lower than the highest written so far; accepts an equal one, since a
/// holder writes its token more than once.
const REGISTER_SCRIPT: &str = r"
local highest = tonumber(redis.call('GET', KEYS[1]) or '0')
local token = tonumber(ARGV[1])
if token < highest then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
return 1
";

/// A bound on the sections of one task, whatever the duration.
const MAX_SECTIONS_PER_TASK: u64 = 100_000;

#[derive(Debug, Clone)]
struct Args {
    name: String,
    url: String,
    register: Option<String>,
    history: PathBuf,
    keys: usize,
    tasks: usize,
    ttl: Duration,
    hold: (Duration, Duration),
    wait: Duration,
    duration: Duration,
    response_timeout: Duration,
    lock: bool,
    close: bool,
    /// `--sentinel SERVICE`: the URLs are sentinels managing `SERVICE`.
    sentinel: Option<String>,
    /// `--cluster`: the URLs are nodes of a Redis Cluster.
    cluster: bool,
    /// `--replicas N,MS`: `wait_for_replicas(N, MS)` on every acquire.
    replicas: Option<(usize, Duration)>,
}

fn millis(value: &str) -> Result<Duration, String> {
    value
        .parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| format!("`{value}` is not a number of milliseconds"))
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        name: String::new(),
        url: String::new(),
        register: None,
        history: PathBuf::new(),
        keys: 2,
        tasks: 2,
        ttl: Duration::from_millis(500),
        hold: (Duration::from_millis(200), Duration::from_millis(400)),
        wait: Duration::from_secs(10),
        duration: Duration::from_secs(10),
        response_timeout: Duration::from_secs(1),
        lock: true,
        close: false,
        sentinel: None,
        cluster: false,
        replicas: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--name" => args.name = value()?,
            "--url" => args.url = value()?,
            "--register" => args.register = Some(value()?),
            "--history" => args.history = value()?.into(),
            "--keys" => args.keys = value()?.parse().map_err(|_| "--keys: not a number")?,
            "--tasks" => args.tasks = value()?.parse().map_err(|_| "--tasks: not a number")?,
            "--ttl-ms" => args.ttl = millis(&value()?)?,
            "--hold-ms" => {
                let v = value()?;
                let (lo, hi) = v.split_once(',').unwrap_or((&v, &v));
                args.hold = (millis(lo)?, millis(hi)?);
            }
            "--wait-ms" => args.wait = millis(&value()?)?,
            "--duration-ms" => args.duration = millis(&value()?)?,
            "--response-timeout-ms" => args.response_timeout = millis(&value()?)?,
            "--no-lock" => args.lock = false,
            "--close" => args.close = true,
            "--sentinel" => args.sentinel = Some(value()?),
            "--cluster" => args.cluster = true,
            "--replicas" => {
                let v = value()?;
                let (n, ms) = v
                    .split_once(',')
                    .ok_or("--replicas takes N,MS (replicas, timeout in ms)")?;
                let n = n.parse().map_err(|_| "--replicas: N is not a number")?;
                args.replicas = Some((n, millis(ms)?));
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if args.name.is_empty() || args.name.contains(['/', ' ', '=']) {
        return Err("--name is required, without '/', ' ' or '='".into());
    }
    if args.url.is_empty() || args.history.as_os_str().is_empty() {
        return Err("--url and --history are required".into());
    }
    if args.sentinel.is_some() && args.cluster {
        return Err("--sentinel and --cluster exclude each other".into());
    }
    if args.keys == 0 || args.tasks == 0 || args.hold.0 > args.hold.1 {
        return Err("--keys and --tasks must be positive, and --hold-ms MIN,MAX ordered".into());
    }
    Ok(args)
}

/// A small xorshift generator: key choice and hold times need no more than that.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        let span = (hi - lo).as_millis() as u64;
        lo + Duration::from_millis(if span == 0 {
            0
        } else {
            self.next() % (span + 1)
        })
    }
}

/// Log timestamps in the history's clock (`CLOCK_MONOTONIC` milliseconds), so that log lines
/// and history lines can be lined up.
struct MonotonicTimer;

impl tracing_subscriber::fmt::time::FormatTime for MonotonicTimer {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        let ns = now_ns();
        write!(w, "{}.{:06}", ns / 1_000_000, ns % 1_000_000)
    }
}

/// What every task shares.
struct Shared {
    args: Args,
    recorder: Recorder,
    locks: LockClient,
    register: Option<redis::aio::MultiplexedConnection>,
    /// `(holder, key)` of every section inside its body now.
    inside: Mutex<BTreeSet<(String, String)>>,
}

impl Shared {
    fn record(&self, entry: &Entry) {
        if let Err(e) = self.recorder.record(entry) {
            eprintln!("{}: cannot write the history: {e}", self.args.name);
        }
    }
}

/// One critical section: `enter` written on creation, `leave` on drop, whether the body ran
/// to its end or was dropped.
struct Section<'a> {
    shared: &'a Shared,
    holder: &'a str,
    key: &'a str,
    done: bool,
}

impl<'a> Section<'a> {
    fn enter(shared: &'a Shared, holder: &'a str, key: &'a str, fence: Option<u64>) -> Self {
        shared
            .inside
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((holder.to_owned(), key.to_owned()));
        shared.record(&Entry::Enter {
            holder: holder.into(),
            key: key.into(),
            at: now_ns(),
            fence,
        });
        Section {
            shared,
            holder,
            key,
            done: false,
        }
    }
}

impl Drop for Section<'_> {
    fn drop(&mut self) {
        let at = now_ns();
        self.shared.record(&Entry::Leave {
            holder: self.holder.into(),
            key: self.key.into(),
            at,
            done: self.done,
        });
        self.shared
            .inside
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(self.holder.to_owned(), self.key.to_owned()));
    }
}

async fn write_fence(shared: &Shared, holder: &str, key: &str, fence: u64) {
    let Some(register) = &shared.register else {
        return;
    };
    let mut con = register.clone();
    let accepted: redis::RedisResult<i64> = redis::Script::new(REGISTER_SCRIPT)
        .key(format!("register:{key}"))
        .arg(fence)
        .invoke_async(&mut con)
        .await;
    if let Ok(accepted) = accepted {
        shared.record(&Entry::Write {
            holder: holder.into(),
            key: key.into(),
            at: now_ns(),
            fence,
            accepted: accepted == 1,
        });
    }
}

/// The protected work: write the token, hold, write it again.
async fn body(shared: &Shared, holder: &str, key: &str, hold: Duration) {
    let fence = lock_runtime::current().and_then(|c| c.fencing_token());
    let mut section = Section::enter(shared, holder, key, fence);
    if let Some(fence) = fence {
        write_fence(shared, holder, key, fence).await;
    }
    tokio::time::sleep(hold).await;
    if let Some(fence) = fence {
        write_fence(shared, holder, key, fence).await;
    }
    section.done = true;
}

fn error_kind(e: &LockError) -> String {
    let debug = format!("{e:?}");
    debug
        .split(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap_or("Error")
        .to_owned()
}

async fn task(shared: Arc<Shared>, index: usize, end: Instant) {
    let args = &shared.args;
    let mut rng = Rng::new(now_ns() ^ (u64::from(std::process::id()) << 20) ^ index as u64);
    for seq in 0..MAX_SECTIONS_PER_TASK {
        if Instant::now() >= end {
            return;
        }
        let key = format!("chaos:{}", rng.next() % args.keys as u64);
        let holder = format!("{}/{index}/{seq}", args.name);
        let hold = rng.between(args.hold.0, args.hold.1);
        shared.record(&Entry::Try {
            holder: holder.clone(),
            key: key.clone(),
            at: now_ns(),
        });
        let attempt = async {
            if !args.lock {
                body(&shared, &holder, &key, hold).await;
                return;
            }
            let outcome = shared
                .locks
                .lock(&key)
                .ttl(args.ttl)
                .wait(args.wait)
                .fencing(true)
                .backoff(Backoff::exponential(
                    Duration::from_millis(2),
                    Duration::from_millis(20),
                ))
                .run(body(&shared, &holder, &key, hold))
                .await;
            match outcome {
                Ok(()) => {}
                // Work cancelled by `close` is a shutdown, not a loss.
                Err(LockError::Lost {
                    reason: LostReason::Closed,
                    ..
                }) => shared.record(&Entry::Fail {
                    holder: holder.clone(),
                    key: key.clone(),
                    at: now_ns(),
                    error: "Closed".into(),
                }),
                Err(LockError::Lost { .. }) => shared.record(&Entry::Lost {
                    holder: holder.clone(),
                    key: key.clone(),
                    at: now_ns(),
                }),
                Err(e) => {
                    shared.record(&Entry::Fail {
                        holder: holder.clone(),
                        key: key.clone(),
                        at: now_ns(),
                        error: error_kind(&e),
                    });
                    // Do not spin on a dead server.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        };
        tokio::select! {
            () = attempt => {}
            () = tokio::time::sleep_until(end) => return,
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    // Die with the driver: a worker must never outlive the run that started it.
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes integers and touches none of our memory.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    }
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("chaos-worker: {e}");
            return ExitCode::from(2);
        }
    };
    // `CHAOS_LOG=lock_runtime=debug` logs the runtime's events (to stderr, which the driver
    // sends to a file beside the history), with monotonic timestamps.
    if let Ok(filter) = std::env::var("CHAOS_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_timer(MonotonicTimer)
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .init();
    }
    let recorder = match Recorder::create(&args.history) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("chaos-worker: {}: {e}", args.history.display());
            return ExitCode::FAILURE;
        }
    };
    // Several comma-separated URLs make a quorum (Redlock) client, unless they name the
    // sentinels or the nodes of a cluster.
    let builder = if let Some(service) = &args.sentinel {
        LockClient::sentinel(service.clone(), args.url.split(','))
    } else if args.cluster {
        LockClient::cluster(args.url.split(','))
    } else if args.url.contains(',') {
        LockClient::quorum(args.url.split(','))
    } else {
        LockClient::builder(args.url.clone())
    };
    let builder = match args.replicas {
        Some((n, timeout)) => builder.wait_for_replicas(n, timeout),
        None => builder,
    };
    let locks = match builder
        .connect_timeout(Duration::from_secs(1))
        .response_timeout(args.response_timeout)
        .connect()
        .await
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("chaos-worker {}: {e}", args.name);
            return ExitCode::FAILURE;
        }
    };
    let register = match &args.register {
        Some(url) => {
            let con = async {
                redis::Client::open(url.as_str())?
                    .get_multiplexed_async_connection()
                    .await
            };
            match con.await {
                Ok(con) => Some(con),
                Err(e) => {
                    eprintln!("chaos-worker {}: register: {e}", args.name);
                    return ExitCode::FAILURE;
                }
            }
        }
        None => None,
    };

    // A line on stdin, or its end, is the order to shut down.
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped_at = Arc::new(Mutex::new(None::<u64>));
    {
        let stopped_at = Arc::clone(&stopped_at);
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::stdin().lock().read_line(&mut line);
            *stopped_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(now_ns());
            let _ = stop_tx.send(true);
        });
    }

    let end = Instant::now() + args.duration;
    let shared = Arc::new(Shared {
        args: args.clone(),
        recorder,
        locks: locks.clone(),
        register,
        inside: Mutex::new(BTreeSet::new()),
    });
    // The tasks never see the stop order: the shutdown below is what stops them, as on a
    // SIGTERM in a service whose handlers are still running.
    let tasks: Vec<_> = (0..args.tasks)
        .map(|i| tokio::spawn(task(Arc::clone(&shared), i, end)))
        .collect();
    let mut stop = stop_rx.clone();
    let all_done = async {
        for t in tasks {
            let _ = t.await;
        }
    };
    tokio::select! {
        () = all_done => return ExitCode::SUCCESS,
        _ = stop.wait_for(|s| *s) => {}
    }

    // Shutting down: the keys held now are the ones the next holders wait for.
    let at = stopped_at
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .unwrap_or_else(now_ns);
    let keys: BTreeSet<String> = shared
        .inside
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(_, key)| key.clone())
        .collect();
    shared.record(&Entry::Down {
        worker: args.name.clone(),
        at,
        keys: Some(keys.into_iter().collect()),
    });
    if args.close {
        // `close` cancels the work still running under the client's locks, then releases
        // them, before the runtime goes away.
        if let Err(e) = locks.close().await {
            eprintln!("chaos-worker {}: close: {e}", args.name);
        }
    }
    // Without `--close`, returning drops the runtime with the guards still alive in their
    // tasks.
    ExitCode::SUCCESS
}
