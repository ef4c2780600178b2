//! `lock-bench`: what a lock from lock-runtime costs, in round trips and waiting, measured
//! against the floor (PING round trip, `redis-benchmark`) and two peer crates (rslock 0.10,
//! redlock 2.0), all in one run against one `redis-server` that the bench starts itself on
//! a free loopback port (through the lock-tests harness).
//!
//! ```text
//! cargo run --release -p lock-bench            # full run: writes BENCHMARKS.md and bench/plots/*.svg
//! scripts/bench                                # the same
//! cargo run --release -p lock-bench -- --quick # a few seconds; writes to a temporary directory
//! cargo run --release -p lock-bench -- --quick --out DIR
//! ```
//!
//! `LOCK_BENCH_QUICK=1` is the same as `--quick`.
//!
//! What it measures:
//!
//! - **Floor.** Timed `PING`s, one at a time, on a redis-rs `ConnectionManager` (the
//!   connection lock-runtime uses); `SET` throughput from 64 tasks on one such connection;
//!   and, if `redis-benchmark` is installed, `-t ping_mbulk -c 1` and `-t set -c 50`.
//! - **P1.** Uncontended acquire + release of one key on one task: time per cycle, divided
//!   by the PING round trip; and the commands the server counted per cycle.
//! - **P2.** Throughput: 64 tasks on one client, 1,000 keys split between them (no two
//!   tasks share a key), acquire + release in a closed loop; divided by redis-benchmark's
//!   SET throughput.
//! - **P3.** Contended hand-off: two clients on one key; from the holder's release
//!   returning to the waiter's acquire returning. p50, p99, p999.
//! - **P4.** 10,000 locks held on one client with a 3 s TTL for three renewal periods:
//!   renewal commands per tick as counted by the server (`INFO commandstats`), and RSS
//!   per held lock (`VmRSS`).
//! - **P5.** The `#[distributed_lock]` attribute against the manual guard on P1's
//!   workload.
//!
//! P1-P3 also run with rslock and redlock, with their default retry settings, against the
//! same server. See BENCHMARKS.md for the figures and how to read them.

mod floor;
mod ours;
mod peers;
mod plots;
mod probe;
mod report;
mod stats;
mod workload;

use std::env;
use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use lock_tests::RedisServer;

use crate::floor::{BenchPing, BenchSet, RedisBenchmark};
use crate::ours::{AttributeVsManual, HeldLocks, HeldLocksConfig, Ours};
use crate::peers::{Redlock, Rslock};
use crate::probe::{Accounting, Counters, Cpu, Machine, Monitor, Probe};
use crate::stats::Summary;
use crate::workload::{
    AsyncLocker, Handoff, SyncLocker, Throughput, Window, handoff, handoff_sync, partition_keys,
    throughput, throughput_sync, uncontended, uncontended_sync,
};

/// The error type of the whole bench: anything, with a message.
pub type Res<T> = Result<T, Box<dyn Error + Send + Sync>>;

/// The workspace root (where BENCHMARKS.md lives), from this package's manifest directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Tasks and keys of P2.
pub const P2_TASKS: usize = 64;
/// Keys of P2, split between the tasks.
pub const P2_KEYS: usize = 1000;
/// Connections of redis-benchmark's SET run.
pub const BENCH_SET_CLIENTS: usize = 50;

/// Sample counts and durations: the full run, or a few seconds' worth with `--quick`.
#[derive(Debug, Clone)]
pub struct Config {
    /// Whether this is the quick run.
    pub quick: bool,
    /// Untimed cycles before P1 and the PING samples.
    pub p1_warmup: usize,
    /// Timed P1 cycles, per library.
    pub p1_cycles: usize,
    /// Timed PINGs.
    pub pings: usize,
    /// P2's (and the SET floor's) warm-up and timed window.
    pub p2_window: Window,
    /// redis-benchmark requests for `-t ping_mbulk -c 1`.
    pub bench_ping_n: usize,
    /// redis-benchmark requests for `-t set -c 50`.
    pub bench_set_n: usize,
    /// Discarded hand-offs before P3's samples.
    pub p3_warmup: usize,
    /// P3 samples, per library.
    pub p3_samples: usize,
    /// Untimed P1 cycles (and bare floor cycles) run under `MONITOR` to count round trips.
    pub accounting_cycles: usize,
    /// Untimed P3 rounds run under `MONITOR` to count commands.
    pub accounting_rounds: usize,
    /// P4's shape.
    pub p4: HeldLocksConfig,
    /// P5: rounds, and cycles per block.
    pub p5_rounds: usize,
    /// P5: cycles per block.
    pub p5_block: usize,
}

impl Config {
    fn full() -> Config {
        Config {
            quick: false,
            p1_warmup: 1_000,
            p1_cycles: 10_000,
            pings: 20_000,
            p2_window: Window {
                warmup: Duration::from_millis(500),
                measure: Duration::from_secs(3),
            },
            bench_ping_n: 20_000,
            bench_set_n: 200_000,
            p3_warmup: 20,
            p3_samples: 2_000,
            accounting_cycles: 200,
            accounting_rounds: 20,
            p4: HeldLocksConfig {
                locks: 10_000,
                ttl: Duration::from_secs(3),
                settle: Duration::from_millis(1_500),
                hold: Duration::from_secs(3),
            },
            p5_rounds: 20,
            p5_block: 500,
        }
    }

    fn quick() -> Config {
        Config {
            quick: true,
            p1_warmup: 50,
            p1_cycles: 300,
            pings: 500,
            p2_window: Window {
                warmup: Duration::from_millis(100),
                measure: Duration::from_millis(300),
            },
            bench_ping_n: 1_000,
            bench_set_n: 10_000,
            p3_warmup: 2,
            p3_samples: 12,
            accounting_cycles: 20,
            accounting_rounds: 3,
            p4: HeldLocksConfig {
                locks: 1_000,
                ttl: Duration::from_millis(600),
                settle: Duration::from_millis(300),
                hold: Duration::from_millis(600),
            },
            p5_rounds: 4,
            p5_block: 50,
        }
    }
}

/// Which lock implementation a row is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lib {
    /// lock-runtime, with its defaults.
    Ours,
    /// rslock 0.10.
    Rslock,
    /// redlock 2.0.
    Redlock,
}

impl Lib {
    /// The name used in tables and plots.
    pub fn name(self) -> &'static str {
        match self {
            Lib::Ours => "lock-runtime",
            Lib::Rslock => "rslock 0.10",
            Lib::Redlock => "redlock 2.0",
        }
    }

    /// The short id used in results.tsv.
    pub fn id(self) -> &'static str {
        match self {
            Lib::Ours => "ours",
            Lib::Rslock => "rslock",
            Lib::Redlock => "redlock",
        }
    }
}

/// The floor figures.
#[derive(Debug, Clone)]
pub struct Floor {
    /// Our timed PINGs.
    pub ping: Summary,
    /// The protocol's minimum cycle (`SET NX PX` + compare-and-delete) sent straight
    /// through redis-rs, one cycle at a time.
    pub bare: Summary,
    /// What the server counted during `bare`.
    pub bare_counters: Counters,
    /// Round trips of `bare`.
    pub bare_accounting: Accounting,
    /// CPU time during `bare`.
    pub bare_cpu: Cpu,
    /// SET throughput, 64 tasks on one `ConnectionManager`.
    pub set: Throughput,
    /// What the server counted during `set`.
    pub set_counters: Counters,
    /// redis-benchmark, if installed.
    pub bench: Option<RedisBenchmark>,
    /// `redis-benchmark -t ping_mbulk -c 1`.
    pub bench_ping: Option<BenchPing>,
    /// `redis-benchmark -t set -c 50`.
    pub bench_set: Option<BenchSet>,
    /// What the server counted during `bench_set`.
    pub bench_set_counters: Option<Counters>,
}

/// One library's P2.
#[derive(Debug, Clone)]
pub struct P2 {
    /// Which library.
    pub lib: Lib,
    /// Cycles completed.
    pub throughput: Throughput,
    /// What the server counted over the whole run, warm-up included.
    pub counters: Counters,
}

/// One library's P1.
#[derive(Debug, Clone)]
pub struct P1 {
    /// Which library.
    pub lib: Lib,
    /// Cycle times, microseconds.
    pub cycle: Summary,
    /// What the server counted during the timed cycles.
    pub counters: Counters,
    /// Round trips, from an untimed pass under `MONITOR`.
    pub accounting: Accounting,
    /// CPU time during the timed cycles.
    pub cpu: Cpu,
}

impl P1 {
    /// Client CPU per cycle, microseconds.
    pub fn client_cpu_us(&self) -> f64 {
        self.cpu.client * 1e6 / self.cycle.n as f64
    }

    /// Top-level commands (round trips) per cycle.
    pub fn commands_per_cycle(&self) -> f64 {
        self.accounting.per_cycle()
    }

    /// Server time per cycle in top-level commands, microseconds.
    pub fn server_us_per_cycle(&self) -> f64 {
        self.counters.top_level_usec(&self.accounting) / self.cycle.n as f64
    }

    /// TCP connections the server accepted per cycle.
    pub fn connections_per_cycle(&self) -> f64 {
        self.counters.connections as f64 / self.cycle.n as f64
    }
}

/// One library's P3.
#[derive(Debug, Clone)]
pub struct P3 {
    /// Which library.
    pub lib: Lib,
    /// The hand-off latencies.
    pub handoff: Handoff,
    /// Commands per round, from an untimed pass under `MONITOR`.
    pub accounting: Accounting,
}

/// Everything one run measured.
#[derive(Debug, Clone)]
pub struct Results {
    /// Sample counts used.
    pub config: Config,
    /// Where.
    pub machine: Machine,
    /// Load average when the run ended.
    pub load_at_end: String,
    /// The server's version.
    pub redis_version: String,
    /// The source measured.
    pub revision: String,
    /// When the run started, UTC.
    pub date: String,
    /// How long the run took.
    pub elapsed: Duration,
    /// The floor.
    pub floor: Floor,
    /// P1 per library: ours, rslock, redlock.
    pub p1: Vec<P1>,
    /// P2 per library.
    pub p2: Vec<P2>,
    /// P3 per library.
    pub p3: Vec<P3>,
    /// P4.
    pub p4: HeldLocks,
    /// P5.
    pub p5: AttributeVsManual,
}

/// Command-line options.
#[derive(Debug)]
struct Options {
    quick: bool,
    out: Option<PathBuf>,
}

const USAGE: &str = "usage: lock-bench [--quick] [--out DIR]

  (no options)  full run; writes BENCHMARKS.md, bench/plots/*.svg and bench/results.tsv
                in the workspace root
  --quick       a few seconds, small sample counts; writes to a temporary directory
                (also LOCK_BENCH_QUICK=1)
  --out DIR     write BENCHMARKS.md, DIR/bench/plots/*.svg and DIR/bench/results.tsv
                under DIR instead";

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        quick: env::var("LOCK_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0"),
        out: None,
    };
    let mut args = env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => options.quick = true,
            "--out" => {
                let dir = args.next().ok_or("--out needs a directory")?;
                options.out = Some(PathBuf::from(dir));
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(options)
}

fn main() -> ExitCode {
    let options = match parse_options() {
        Ok(options) => options,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("lock-bench: {message}");
            }
            eprintln!("{USAGE}");
            return if message.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            };
        }
    };
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lock-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(options: &Options) -> Res<()> {
    let config = if options.quick {
        Config::quick()
    } else {
        Config::full()
    };
    let out = match (&options.out, options.quick) {
        (Some(dir), _) => dir.clone(),
        (None, true) => env::temp_dir().join(format!("lock-bench-{}", std::process::id())),
        (None, false) => workspace_root(),
    };
    let started = Instant::now();
    let date = report::utc_now();
    let machine = Machine::detect();
    eprintln!(
        "lock-bench: {} run on {} ({} CPUs), load average {}",
        if config.quick { "quick" } else { "full" },
        machine.cpu,
        machine.cpus,
        machine.load_at_start
    );
    if let Some(load) = probe::load_1min()
        && load > machine.parallelism as f64 * 0.5
    {
        eprintln!(
            "lock-bench: warning: the machine is busy (load {load:.2} on {} CPUs); figures will be noisy",
            machine.parallelism
        );
    }

    let server = RedisServer::start()?;
    let url = server.url();
    if let Some(pid) = server.pid() {
        let _ = probe::SERVER_PID.set(pid);
    }
    let mut probe = Probe::new(&server)?;
    let redis_version = probe.redis_version()?;
    eprintln!(
        "lock-bench: redis-server {redis_version} on port {}",
        server.port()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;

    // P4 first, while the heap is fresh, so that the RSS growth it reports is not absorbed
    // by memory that earlier measurements freed.
    step("P4: held locks");
    let p4 = ours::held_locks(&rt, &mut probe, &url, config.p4)?;
    probe.flush()?;

    let floor = measure_floor(&rt, &mut probe, &server, &config)?;
    let p1 = measure_p1(&rt, &mut probe, &server, &config)?;
    let p2 = measure_p2(&rt, &mut probe, &url, &config)?;
    let p3 = measure_p3(&rt, &mut probe, &server, &config)?;

    step("P5: attribute vs manual guard");
    let p5 = rt.block_on(async {
        let ours = Ours::connect(&url).await?;
        ours::attribute_vs_manual(ours.client(), config.p5_rounds, config.p5_block).await
    })?;
    drop(rt);

    let results = Results {
        config,
        machine,
        load_at_end: probe::load_average(),
        redis_version,
        revision: probe::source_revision(),
        date,
        elapsed: started.elapsed(),
        floor,
        p1,
        p2,
        p3,
        p4,
        p5,
    };
    let written = report::write_all(&results, &out)?;
    println!("{}", report::summary(&results));
    for path in written {
        println!("wrote {}", path.display());
    }
    Ok(())
}

fn step(what: &str) {
    eprintln!("lock-bench: {what}");
}

fn measure_floor(
    rt: &tokio::runtime::Runtime,
    probe: &mut Probe,
    server: &RedisServer,
    config: &Config,
) -> Res<Floor> {
    let url = server.url();
    step("floor: PING round trip (redis-rs ConnectionManager)");
    let ping = rt.block_on(floor::ping(&url, config.p1_warmup, config.pings))?;
    step("floor: SET NX PX + compare-and-delete, bare (redis-rs ConnectionManager)");
    let Measured {
        timed: bare,
        counters: bare_counters,
        accounting: bare_accounting,
        cpu: bare_cpu,
    } = counted_and_accounted(
        probe,
        server.port(),
        (config.p1_warmup, config.p1_cycles, config.accounting_cycles),
        |w, n| rt.block_on(floor::bare_cycle(&url, w, n)),
    )?;
    step("floor: SET throughput (redis-rs, 64 tasks, one connection)");
    probe.reset()?;
    let set = rt.block_on(floor::set_throughput(
        &url,
        P2_TASKS,
        P2_KEYS,
        config.p2_window,
    ))?;
    let set_counters = probe.counters()?;
    probe.flush()?;
    let bench = RedisBenchmark::find();
    let (bench_ping, bench_set, bench_set_counters) = match &bench {
        Some(rb) => {
            step("floor: redis-benchmark -t ping_mbulk -c 1, -t set -c 50");
            let ping = rb.ping(server.port(), config.bench_ping_n)?;
            probe.reset()?;
            let cpu = Cpu::now();
            let set = rb.set(server.port(), config.bench_set_n, BENCH_SET_CLIENTS)?;
            let cpu = Cpu::now().since(cpu);
            let server_cpu_us = cpu.server * 1e6 / config.bench_set_n as f64;
            let set = BenchSet {
                server_cpu_us,
                ..set
            };
            let counters = probe.counters()?;
            probe.flush()?;
            (Some(ping), Some(set), Some(counters))
        }
        None => {
            eprintln!(
                "lock-bench: redis-benchmark is not installed (apt-get install redis-tools); \
                 the floor is our own PINGs and SETs only"
            );
            (None, None, None)
        }
    };
    Ok(Floor {
        ping,
        bare,
        bare_counters,
        bare_accounting,
        bare_cpu,
        set,
        set_counters,
        bench,
        bench_ping,
        bench_set,
        bench_set_counters,
    })
}

/// One measurement's timed result, with what the server and the CPUs saw meanwhile.
struct Measured<T> {
    timed: T,
    counters: Counters,
    accounting: Accounting,
    cpu: Cpu,
}

/// Runs one measurement the standard way: `run(warmup, 0)` untimed; counters reset;
/// `run(0, n)` timed, counted and its CPU time taken; then `run(0, accounting)` under
/// `MONITOR` to count round trips; then the keys are flushed.
fn counted_and_accounted<T>(
    probe: &mut Probe,
    port: u16,
    (warmup, n, accounting): (usize, usize, usize),
    mut run: impl FnMut(usize, usize) -> Res<T>,
) -> Res<Measured<T>> {
    run(warmup, 0)?;
    probe.reset()?;
    let cpu = Cpu::now();
    let timed = run(0, n)?;
    let cpu = Cpu::now().since(cpu);
    let counters = probe.counters()?;
    let monitor = Monitor::start(port)?;
    run(0, accounting)?;
    let accounting = monitor.finish(probe, accounting)?;
    probe.flush()?;
    Ok(Measured {
        timed,
        counters,
        accounting,
        cpu,
    })
}

fn measure_p1(
    rt: &tokio::runtime::Runtime,
    probe: &mut Probe,
    server: &RedisServer,
    config: &Config,
) -> Res<Vec<P1>> {
    let (url, port) = (server.url(), server.port());
    let counts = (config.p1_warmup, config.p1_cycles, config.accounting_cycles);
    let mut rows = Vec::new();
    let mut push = |lib: Lib, m: Measured<Summary>| {
        rows.push(P1 {
            lib,
            cycle: m.timed,
            counters: m.counters,
            accounting: m.accounting,
            cpu: m.cpu,
        })
    };
    let key = |lib: Lib| format!("bench:p1:{}", lib.id());

    step("P1: uncontended cycles, lock-runtime");
    let ours = rt.block_on(Ours::connect(&url))?;
    push(
        Lib::Ours,
        counted_and_accounted(probe, port, counts, |w, n| {
            rt.block_on(uncontended(&ours, &key(Lib::Ours), w, n))
        })?,
    );
    step("P1: uncontended cycles, rslock");
    let rslock = Rslock::new(&url);
    push(
        Lib::Rslock,
        counted_and_accounted(probe, port, counts, |w, n| {
            rt.block_on(uncontended(&rslock, &key(Lib::Rslock), w, n))
        })?,
    );
    step("P1: uncontended cycles, redlock");
    let redlock = Redlock::new(&url);
    push(
        Lib::Redlock,
        counted_and_accounted(probe, port, counts, |w, n| {
            uncontended_sync(&redlock, &key(Lib::Redlock), w, n)
        })?,
    );
    Ok(rows)
}

fn measure_p2(
    rt: &tokio::runtime::Runtime,
    probe: &mut Probe,
    url: &str,
    config: &Config,
) -> Res<Vec<P2>> {
    fn p2_async<L: AsyncLocker>(
        locker: L,
        lib: Lib,
        window: Window,
    ) -> impl Future<Output = Res<Throughput>> {
        let keys = partition_keys(&format!("bench:p2:{}", lib.id()), P2_TASKS, P2_KEYS);
        throughput(P2_TASKS, window, move |task, i| {
            let locker = locker.clone();
            let mine = &keys[task];
            let key = mine[i as usize % mine.len()].clone();
            async move {
                let guard = locker.acquire(key).await?;
                locker.release(guard).await
            }
        })
    }

    let window = config.p2_window;
    let mut rows = Vec::new();
    let mut counted =
        |lib: Lib, probe: &mut Probe, run: &mut dyn FnMut() -> Res<Throughput>| -> Res<()> {
            probe.reset()?;
            let throughput = run()?;
            let counters = probe.counters()?;
            probe.flush()?;
            rows.push(P2 {
                lib,
                throughput,
                counters,
            });
            Ok(())
        };
    step("P2: throughput, lock-runtime");
    let ours = rt.block_on(Ours::connect(url))?;
    counted(Lib::Ours, probe, &mut || {
        rt.block_on(p2_async(ours.clone(), Lib::Ours, window))
    })?;
    step("P2: throughput, rslock");
    let rslock = Rslock::new(url);
    counted(Lib::Rslock, probe, &mut || {
        rt.block_on(p2_async(rslock.clone(), Lib::Rslock, window))
    })?;
    step("P2: throughput, redlock (64 OS threads)");
    let redlock = Redlock::new(url);
    let keys = partition_keys("bench:p2:redlock", P2_TASKS, P2_KEYS);
    counted(Lib::Redlock, probe, &mut || {
        throughput_sync(P2_TASKS, window, |task, i| {
            let mine = &keys[task];
            let guard = redlock.acquire(&mine[i as usize % mine.len()])?;
            redlock.release(guard)
        })
    })?;
    Ok(rows)
}

fn measure_p3(
    rt: &tokio::runtime::Runtime,
    probe: &mut Probe,
    server: &RedisServer,
    config: &Config,
) -> Res<Vec<P3>> {
    let (url, port) = (server.url(), server.port());
    let counts = (
        config.p3_warmup,
        config.p3_samples,
        config.accounting_rounds,
    );
    let mut rows = Vec::new();
    let mut push = |lib: Lib, m: Measured<Handoff>| {
        rows.push(P3 {
            lib,
            handoff: m.timed,
            accounting: m.accounting,
        })
    };
    let key = |lib: Lib| format!("bench:p3:{}", lib.id());

    step("P3: hand-off, lock-runtime");
    let (a, b) = rt.block_on(async {
        Ok::<_, Box<dyn Error + Send + Sync>>((
            Ours::connect(&url).await?,
            Ours::connect(&url).await?,
        ))
    })?;
    push(
        Lib::Ours,
        counted_and_accounted(probe, port, counts, |w, n| {
            rt.block_on(handoff(a.clone(), b.clone(), &key(Lib::Ours), w, n))
        })?,
    );
    step("P3: hand-off, rslock");
    let (a, b) = (Rslock::new(&url), Rslock::new(&url));
    push(
        Lib::Rslock,
        counted_and_accounted(probe, port, counts, |w, n| {
            rt.block_on(handoff(a.clone(), b.clone(), &key(Lib::Rslock), w, n))
        })?,
    );
    step("P3: hand-off, redlock");
    let (a, b) = (Redlock::new(&url), Redlock::new(&url));
    push(
        Lib::Redlock,
        counted_and_accounted(probe, port, counts, |w, n| {
            handoff_sync(&a, &b, &key(Lib::Redlock), w, n)
        })?,
    );
    Ok(rows)
}
