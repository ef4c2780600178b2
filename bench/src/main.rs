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
//! Where things are:
//!
//! - `figures/`: one module per figure, each with its workload, its shape (full and quick),
//!   its goals and what bounds them, its table and text, its plots: `p1.rs` uncontended
//!   acquire + release, `p2.rs` throughput, `p3.rs` contended hand-off, `p4.rs` renewals
//!   and memory per held lock, `p5.rs` the attribute against the manual guard, `p6.rs` many
//!   waiters, `quorum.rs` five nodes against one. `figures/mod.rs` has the [`Figure`] trait
//!   they implement and the goal helpers they share.
//! - `report.rs` assembles BENCHMARKS.md, results.tsv and the terminal summary from them.
//! - Shared: `floor.rs` (the PING/bare-protocol/SET floors and redis-benchmark),
//!   `peers.rs` (lock-runtime, rslock and redlock behind one interface), `workload.rs`
//!   (timed cycles, closed-loop throughput), `measure.rs` (interleaved rounds), `probe.rs`
//!   (server counters, `MONITOR`, CPU, RSS), `stats.rs`, `plots.rs`, `format.rs`, `alloc.rs`.
//!
//! Figures that are divided by each other are taken interleaved (short blocks in rotating
//! order), because the machine's load drifts; round trips are counted in an untimed pass
//! under `MONITOR`. See BENCHMARKS.md for the figures and how they were taken.

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

use crate::figures::{Figure, p1, p2, p3, p4, p5, p6, quorum};
use crate::floor::{Floor, RedisBenchmark};
use crate::measure::Bench;
use crate::peers::Lib;
use crate::probe::{Machine, Probe};

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

/// Everything one run measured.
#[derive(Debug, Clone)]
pub struct Results {
    /// Whether this was the quick run (each figure keeps the shape it was measured with).
    pub quick: bool,
    /// Where.
    pub machine: Machine,
    /// Load average when the run ended.
    pub load_at_end: String,
    /// The server's version.
    pub redis_version: String,
    /// redis-benchmark, if it was installed.
    pub redis_benchmark: Option<RedisBenchmark>,
    /// The source measured.
    pub revision: String,
    /// When the run started, UTC.
    pub date: String,
    /// How long the run took.
    pub elapsed: Duration,
    /// P1, with the PING and bare-protocol floors.
    pub p1: p1::P1,
    /// P2, with the SET floors.
    pub p2: p2::P2,
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

impl Results {
    /// The figures (and the floor), in the order of the report.
    pub fn figures(&self) -> [&dyn Figure; 8] {
        [
            &Floor,
            &self.p1,
            &self.p2,
            &self.p3,
            &self.p4,
            &self.p5,
            &self.p6,
            &self.quorum,
        ]
    }

    /// The round trip the goals are stated in: our own PING p50, microseconds.
    pub fn rtt(&self) -> f64 {
        self.p1.ping.cycle.p50
    }
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
    let quick = options.quick;
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
        if quick { "quick" } else { "full" },
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
    if b.redis_benchmark.is_none() {
        eprintln!(
            "lock-bench: redis-benchmark is not installed (apt-get install redis-tools); \
             the floor is our own PINGs and SETs only"
        );
    }

    // P4 first, while the heap is fresh, so that the RSS growth it reports is not absorbed
    // by memory that earlier measurements freed.
    let p4 = p4::measure(&mut b, shape(quick, p4::FULL, p4::QUICK))?;
    let p1 = p1::measure(&mut b, shape(quick, p1::FULL, p1::QUICK))?;
    let p2 = p2::measure(&mut b, shape(quick, p2::FULL, p2::QUICK))?;
    let p3 = p3::measure(&mut b, shape(quick, p3::FULL, p3::QUICK))?;
    let p6 = p6::measure(&mut b, shape(quick, p6::FULL, p6::QUICK))?;
    let quorum = quorum::measure(&mut b, shape(quick, quorum::FULL, quorum::QUICK))?;
    let p5 = p5::measure(&mut b, shape(quick, p5::FULL, p5::QUICK))?;
    let redis_benchmark = b.redis_benchmark.take();
    drop(b);

    let results = Results {
        quick,
        machine,
        load_at_end: probe::load_average(),
        redis_version,
        redis_benchmark,
        revision: probe::source_revision(),
        date,
        elapsed: started.elapsed(),
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

/// A figure's shape: `full`, or `fast` for the quick run.
fn shape<C>(quick: bool, full: C, fast: C) -> C {
    if quick { fast } else { full }
}

/// Prints a progress line.
pub fn step(what: &str) {
    eprintln!("lock-bench: {what}");
}
