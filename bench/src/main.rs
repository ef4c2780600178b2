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
//!   connection lock-runtime uses); the bare protocol cycle (`SET NX PX`, then the
//!   compare-and-delete script) on the same kind of connection; `SET` throughput from 64
//!   tasks on one such connection; and, if `redis-benchmark` is installed, `-t ping_mbulk
//!   -c 1` and `-t set -c 50`.
//! - **P1.** Uncontended acquire + release of one key on one task: time per cycle, divided
//!   by the PING round trip; round trips per cycle; client and server CPU per cycle.
//! - **P2.** Throughput: 64 tasks on one client, 1,000 keys split between them (no two
//!   tasks share a key), acquire + release in a closed loop; divided by redis-benchmark's
//!   SET throughput.
//! - **P3.** Contended hand-off: two clients on one key; from the holder's release
//!   returning to the waiter's acquire returning. p50, p99, p999.
//! - **P4.** 10,000 locks held on one client with a 3 s TTL: renewal commands per tick as
//!   counted by the server (`INFO commandstats`) over three renewal periods, and RSS per
//!   held lock (`VmRSS`).
//! - **P5.** The `#[distributed_lock]` attribute against the manual guard on P1's
//!   workload.
//! - **P6.** Many waiters: 4 clients × 16 tasks on one key (`p6.rs`, which holds the whole
//!   figure: workload, counting, goals, table, plots).
//! - **Quorum.** P1's cycle on 5 nodes against one node (`quorum.rs`, likewise).
//!
//! P1-P3 also run with rslock 0.10 and redlock 2.0, with their default retry settings,
//! against the same server. Figures that are divided by each other are taken interleaved
//! (short blocks in rotating order), because the machine's load drifts; round trips are
//! counted in an untimed pass under `MONITOR`. See BENCHMARKS.md for the figures and how
//! they were taken.

mod alloc;
mod figures;
mod floor;
mod format;
mod measure;
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

use crate::figures::{p3, p4, p5, p6, quorum};
use crate::floor::{BenchPing, BenchSet, RedisBenchmark};
use crate::measure::{Bench, Cycles, Rate};
use crate::peers::Lib;
use crate::probe::{Counters, Machine, Probe};
use crate::workload::Window;

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

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
    /// Untimed cycles before P1 and its floors.
    pub p1_warmup: usize,
    /// Rounds of P1 and its floors, interleaved.
    pub p1_rounds: usize,
    /// Timed cycles per subject per round.
    pub p1_block: usize,
    /// Rounds of P2 and its floors, interleaved.
    pub p2_rounds: usize,
    /// P2's (and the SET floor's) warm-up and timed window, per round.
    pub p2_window: Window,
    /// redis-benchmark requests for `-t ping_mbulk -c 1`.
    pub bench_ping_n: usize,
    /// redis-benchmark requests for `-t set -c 50`.
    pub bench_set_n: usize,
    /// P3's shape.
    pub p3: p3::Config,
    /// Untimed P1 cycles (and bare floor cycles) run under `MONITOR` to count round trips.
    pub accounting_cycles: usize,
    /// P4's shape.
    pub p4: p4::Config,
    /// P5's shape.
    pub p5: p5::Config,
    /// P6's shape.
    pub p6: p6::Config,
    /// The quorum figure's shape.
    pub quorum: quorum::Config,
}

impl Config {
    fn full() -> Config {
        Config {
            quick: false,
            p1_warmup: 1_000,
            p1_rounds: 20,
            p1_block: 500,
            p2_rounds: 20,
            p2_window: Window {
                warmup: Duration::from_millis(250),
                measure: Duration::from_millis(500),
            },
            bench_ping_n: 20_000,
            bench_set_n: 200_000,
            p3: p3::FULL,
            accounting_cycles: 200,
            p4: p4::FULL,
            p5: p5::FULL,
            p6: p6::FULL,
            quorum: quorum::FULL,
        }
    }

    fn quick() -> Config {
        Config {
            quick: true,
            p1_warmup: 50,
            p1_rounds: 2,
            p1_block: 150,
            p2_rounds: 2,
            p2_window: Window {
                warmup: Duration::from_millis(50),
                measure: Duration::from_millis(150),
            },
            bench_ping_n: 1_000,
            bench_set_n: 10_000,
            p3: p3::QUICK,
            accounting_cycles: 20,
            p4: p4::QUICK,
            p5: p5::QUICK,
            p6: p6::QUICK,
            quorum: quorum::QUICK,
        }
    }
}

/// The floor figures.
#[derive(Debug, Clone)]
pub struct Floor {
    /// Our timed PINGs on a `ConnectionManager`.
    pub ping: Cycles,
    /// The protocol's minimum cycle (`SET NX PX` + compare-and-delete) sent straight
    /// through redis-rs.
    pub bare: Cycles,
    /// SET throughput, [`P2_TASKS`] tasks on one `ConnectionManager`.
    pub set: Rate,
    /// redis-benchmark, if installed.
    pub bench: Option<RedisBenchmark>,
    /// `redis-benchmark -t ping_mbulk -c 1`.
    pub bench_ping: Option<BenchPing>,
    /// `redis-benchmark -t set -c 50`.
    pub bench_set: Option<BenchSet>,
    /// What the server counted during `bench_set`.
    pub bench_set_counters: Option<Counters>,
}

/// One library's P1.
#[derive(Debug, Clone)]
pub struct P1 {
    /// Which library.
    pub lib: Lib,
    /// Its cycles.
    pub cycles: Cycles,
}

/// One library's P2.
#[derive(Debug, Clone)]
pub struct P2 {
    /// Which library.
    pub lib: Lib,
    /// Its cycles per second.
    pub rate: Rate,
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
    /// P3.
    pub p3: p3::P3,
    /// P4.
    pub p4: p4::P4,
    /// P5.
    pub p5: p5::P5,
    /// P6: many waiters.
    pub p6: p6::P6,
    /// The quorum figure.
    pub quorum: quorum::Quorum,
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
    let date = format::utc_now();
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
    if let Some(pid) = server.pid() {
        let _ = probe::SERVER_PID.set(pid);
    }
    let mut b = Bench {
        probe: Probe::new(&server)?,
        server,
        rt: tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?,
        redis_benchmark: RedisBenchmark::find(),
    };
    let redis_version = b.probe.redis_version()?;
    eprintln!(
        "lock-bench: redis-server {redis_version} on port {}",
        b.server.port()
    );

    // P4 first, while the heap is fresh, so that the RSS growth it reports is not absorbed
    // by memory that earlier measurements freed.
    let p4 = p4::measure(&mut b, config.p4)?;

    if b.redis_benchmark.is_none() {
        eprintln!(
            "lock-bench: redis-benchmark is not installed (apt-get install redis-tools); \
             the floor is our own PINGs and SETs only"
        );
    }
    let bench = b.redis_benchmark.clone();
    let cycles = measure::cycles_phase(&b.rt, &mut b.probe, &b.server, &config, bench.as_ref())?;
    let rates = measure::throughput_phase(&b.rt, &mut b.probe, &b.server, &config, bench.as_ref())?;
    let p3 = p3::measure(&mut b, config.p3)?;
    let floor = Floor {
        ping: cycles.ping,
        bare: cycles.bare,
        set: rates.set,
        bench,
        bench_ping: cycles.bench_ping,
        bench_set: rates.bench_set,
        bench_set_counters: rates.bench_set_counters,
    };
    let (p1, p2) = (cycles.p1, rates.p2);

    let p6 = p6::measure(&mut b, config.p6)?;
    let quorum = quorum::measure(&mut b, config.quorum)?;

    let p5 = p5::measure(&mut b, config.p5)?;
    drop(b);

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
        p6,
        quorum,
    };
    let written = report::write_all(&results, &out)?;
    println!("{}", report::summary(&results));
    for path in written {
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// Prints a progress line.
pub fn step(what: &str) {
    eprintln!("lock-bench: {what}");
}
