//! How figures are measured, apart from what they measure: the context every figure runs
//! in, and interleaving.
//!
//! The machine is shared, and its load drifts over minutes, so figures that are compared
//! with each other are taken *interleaved*: in rounds of short blocks, one block per
//! subject per round, the order rotating every round. Samples are pooled over the rounds;
//! the spread of the per-round figures is kept to show the noise.

use lock_tests::RedisServer;
use tokio::runtime::Runtime;

use crate::Res;
use crate::floor::RedisBenchmark;
use crate::probe::{Accounting, Counters, Cpu, Probe, account};
use crate::stats::{Samples, Summary};
use crate::workload::Throughput;

/// What every figure is measured with: the runtime, the server (started by the bench) and
/// the probe on it, and redis-benchmark if it is installed.
pub struct Bench {
    /// The clients' runtime (dropped first, before the server).
    pub rt: Runtime,
    /// The main server.
    pub server: RedisServer,
    /// A side connection to it, for counters and cleanup.
    pub probe: Probe,
    /// `redis-benchmark`, if installed.
    pub redis_benchmark: Option<RedisBenchmark>,
}

/// Sequential cycles of one subject, pooled over the rounds of an interleaved run.
#[derive(Debug, Clone)]
pub struct Cycles {
    /// Every timed cycle, microseconds.
    pub cycle: Summary,
    /// The mean of each round's block, microseconds.
    pub block_means: Vec<f64>,
    /// What the server counted during the timed blocks.
    pub counters: Counters,
    /// Round trips, from an untimed pass under `MONITOR`.
    pub accounting: Accounting,
    /// CPU time during the timed blocks.
    pub cpu: Cpu,
}

impl Cycles {
    /// Client CPU per cycle, microseconds.
    pub fn client_cpu_us(&self) -> f64 {
        self.cpu.client * 1e6 / self.cycle.n as f64
    }

    /// Server CPU per cycle, microseconds.
    pub fn server_cpu_us(&self) -> f64 {
        self.cpu.server * 1e6 / self.cycle.n as f64
    }

    /// Server time per cycle spent executing top-level commands, microseconds.
    pub fn server_us_per_cycle(&self) -> f64 {
        self.counters.top_level_usec(&self.accounting) / self.cycle.n as f64
    }

    /// Top-level commands per cycle.
    pub fn commands_per_cycle(&self) -> f64 {
        self.accounting.per_cycle()
    }

    /// Round trips per cycle (pipelined commands share one).
    pub fn round_trips_per_cycle(&self) -> f64 {
        self.accounting.round_trips_per_cycle()
    }

    /// TCP connections the server accepted per cycle.
    pub fn connections_per_cycle(&self) -> f64 {
        self.counters.connections as f64 / self.cycle.n as f64
    }

    /// The lowest and highest per-round block mean, microseconds.
    pub fn spread(&self) -> (f64, f64) {
        spread(&self.block_means)
    }
}

/// The smallest and largest value.
pub fn spread(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(*v), hi.max(*v))
        })
}

/// One subject of an interleaved cycles run: `run(warmup, n)` does `warmup` untimed and
/// `n` timed cycles.
pub type CycleRun<'a> = Box<dyn FnMut(usize, usize) -> Res<Summary> + 'a>;

/// The shape of an interleaved cycles run.
#[derive(Debug, Clone, Copy)]
pub struct Blocks {
    /// Untimed cycles per subject before the rounds.
    pub warmup: usize,
    /// Rounds; each times one block of every subject.
    pub rounds: usize,
    /// Cycles per block.
    pub block: usize,
}

/// The order of `n` subjects in round `round`: rotated by one every round, so that drift
/// in the machine's load hits every subject alike.
pub fn rotated(round: usize, n: usize) -> impl Iterator<Item = usize> {
    (0..n).map(move |k| (round + k) % n)
}

/// Runs `subjects` in `blocks.rounds` rounds of `blocks.block` cycles, rotating the order;
/// `between(round)` runs once per round after the blocks. With a `probe`, the server's
/// counters are read around every block.
pub fn interleave_cycles(
    subjects: &mut [CycleRun<'_>],
    blocks: Blocks,
    mut probe: Option<&mut Probe>,
    mut between: impl FnMut(usize) -> Res<()>,
) -> Res<Vec<Cycles>> {
    let n = subjects.len();
    let mut pooled: Vec<(Samples, Cycles)> = (0..n)
        .map(|_| {
            let empty = Samples::default().sorted();
            let cycles = Cycles {
                cycle: empty,
                block_means: Vec::new(),
                counters: Counters::default(),
                accounting: Accounting::default(),
                cpu: Cpu::default(),
            };
            (Samples::with_capacity(blocks.rounds * blocks.block), cycles)
        })
        .collect();
    for run in subjects.iter_mut() {
        run(blocks.warmup, 0)?;
    }
    for round in 0..blocks.rounds {
        for i in rotated(round, n) {
            if let Some(probe) = probe.as_deref_mut() {
                probe.reset()?;
            }
            let cpu = Cpu::now();
            let block = subjects[i](0, blocks.block)?;
            let cpu = Cpu::now().since(cpu);
            let (samples, into) = &mut pooled[i];
            if let Some(probe) = probe.as_deref_mut() {
                into.counters.add(&probe.counters()?);
            }
            for us in &block.sorted_us {
                samples.push_us(*us);
            }
            into.block_means.push(block.mean);
            into.cpu = into.cpu.plus(cpu);
        }
        between(round)?;
    }
    Ok(pooled
        .into_iter()
        .map(|(samples, cycles)| Cycles {
            cycle: samples.sorted(),
            ..cycles
        })
        .collect())
}

/// Counts each subject's round trips and commands in an untimed pass of `cycles` cycles.
pub fn account_each(
    probe: &mut Probe,
    port: u16,
    subjects: &mut [CycleRun<'_>],
    measured: &mut [Cycles],
    cycles: usize,
) -> Res<()> {
    for (run, into) in subjects.iter_mut().zip(measured) {
        into.accounting = account(probe, port, cycles, || run(0, cycles).map(drop))?;
    }
    Ok(())
}

/// A closed-loop throughput, pooled over the rounds of an interleaved run.
#[derive(Debug, Clone, Default)]
pub struct Rate {
    /// The pooled figures.
    pub throughput: Throughput,
    /// The rate of each round, per second.
    pub round_rates: Vec<f64>,
    /// What the server counted during the rounds (warm-ups included).
    pub counters: Counters,
}

impl Rate {
    /// Adds one round's run and what the server counted during it.
    pub fn add(&mut self, t: Throughput, counters: &Counters) {
        self.round_rates.push(t.per_sec);
        self.counters.add(counters);
        let p = &mut self.throughput;
        p.ops += t.ops;
        p.secs += t.secs;
        p.errors += t.errors;
        if p.first_error.is_none() {
            p.first_error = t.first_error;
        }
        p.cpu = p.cpu.plus(t.cpu);
        p.per_sec = p.ops as f64 / p.secs;
    }

    /// The lowest and highest per-round rate.
    pub fn spread(&self) -> (f64, f64) {
        spread(&self.round_rates)
    }
}
