//! The measurement phases and their orchestration.
//!
//! The machine is shared, and its load drifts over minutes, so figures that are compared
//! with each other are taken *interleaved*: P1 with its floors (our PINGs, the bare
//! protocol cycle, redis-benchmark's PING) and P2 with its floors (redis-rs and
//! redis-benchmark SET) run in rounds of short blocks, one block per subject per round, the
//! order rotating every round. Samples are pooled over the rounds; the spread of the
//! per-round figures is kept to show the noise.

use lock_tests::RedisServer;
use tokio::runtime::Runtime;

use crate::floor::{self, BenchPing, BenchSet, RedisBenchmark};
use crate::peers::{Ours, Redlock, Rslock};
use crate::probe::{Accounting, Counters, Cpu, Probe, account};
use crate::stats::{Samples, Summary};
use crate::workload::{
    AsyncLocker, SyncLocker, Throughput, Window, partition_keys, throughput, throughput_sync,
    uncontended, uncontended_sync,
};
use crate::{BENCH_SET_CLIENTS, Config, Lib, P1, P2, P2_KEYS, P2_TASKS, Res, step};

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

/// What the cycles phase measured: P1 and its floors.
pub struct CyclesPhase {
    /// Our PINGs.
    pub ping: Cycles,
    /// The bare protocol cycle.
    pub bare: Cycles,
    /// redis-benchmark's PING, one run per round, combined.
    pub bench_ping: Option<BenchPing>,
    /// P1 per library.
    pub p1: Vec<P1>,
}

/// P1 and its floors, interleaved.
pub fn cycles_phase(
    rt: &Runtime,
    probe: &mut Probe,
    server: &RedisServer,
    config: &Config,
    bench: Option<&RedisBenchmark>,
) -> Res<CyclesPhase> {
    step("P1 and floor: uncontended cycles, PING and bare protocol, interleaved");
    let url = server.url();
    let ping_conn = rt.block_on(floor::connection_manager(&url))?;
    let bare_conn = rt.block_on(floor::connection_manager(&url))?;
    let ours = rt.block_on(Ours::connect(&url))?;
    let rslock = Rslock::new(&url);
    let redlock = Redlock::new(&url);
    let key = |lib: Lib| format!("bench:p1:{}", lib.id());
    let mut subjects: Vec<CycleRun<'_>> = vec![
        Box::new(|w, n| rt.block_on(floor::ping(&ping_conn, w, n))),
        Box::new(|w, n| rt.block_on(floor::bare_cycle(&bare_conn, w, n))),
        Box::new(|w, n| rt.block_on(uncontended(&ours, &key(Lib::Ours), w, n))),
        Box::new(|w, n| rt.block_on(uncontended(&rslock, &key(Lib::Rslock), w, n))),
        Box::new(|w, n| uncontended_sync(&redlock, &key(Lib::Redlock), w, n)),
    ];
    let blocks = Blocks {
        warmup: config.p1_warmup,
        rounds: config.p1_rounds,
        block: config.p1_block,
    };
    let mut bench_pings = Vec::new();
    let mut measured = interleave_cycles(&mut subjects, blocks, Some(probe), |_round| {
        if let Some(rb) = bench {
            bench_pings.push(rb.ping(server.port(), config.bench_ping_n / blocks.rounds)?);
        }
        Ok(())
    })?;
    account_each(
        probe,
        server.port(),
        &mut subjects,
        &mut measured,
        config.accounting_cycles,
    )?;
    probe.flush()?;
    let mut take = || measured.remove(0);
    let (ping, bare) = (take(), take());
    let p1 = [Lib::Ours, Lib::Rslock, Lib::Redlock]
        .into_iter()
        .map(|lib| P1 {
            lib,
            cycles: take(),
        })
        .collect();
    Ok(CyclesPhase {
        ping,
        bare,
        bench_ping: BenchPing::combine(&bench_pings),
        p1,
    })
}

/// One subject of an interleaved throughput run.
type ThroughputRun<'a> = Box<dyn FnMut(Window) -> Res<Throughput> + 'a>;

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
    fn add(&mut self, t: Throughput, counters: &Counters) {
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

/// What the throughput phase measured: P2 and its floors.
pub struct ThroughputPhase {
    /// SET from redis-rs, [`P2_TASKS`] tasks on one connection.
    pub set: Rate,
    /// redis-benchmark SET, one run per round, combined.
    pub bench_set: Option<BenchSet>,
    /// What the server counted during the redis-benchmark runs.
    pub bench_set_counters: Option<Counters>,
    /// P2 per library.
    pub p2: Vec<P2>,
}

/// P2 and its floors, interleaved.
pub fn throughput_phase(
    rt: &Runtime,
    probe: &mut Probe,
    server: &RedisServer,
    config: &Config,
    bench: Option<&RedisBenchmark>,
) -> Res<ThroughputPhase> {
    step("P2 and floor: throughput and SET, interleaved");
    let url = server.url();
    let window = config.p2_window;
    let set_conn = rt.block_on(floor::connection_manager(&url))?;
    let ours = rt.block_on(Ours::connect(&url))?;
    let rslock = Rslock::new(&url);
    let redlock = Redlock::new(&url);
    let redlock_keys = partition_keys("bench:p2:redlock", P2_TASKS, P2_KEYS);
    let mut subjects: Vec<ThroughputRun<'_>> = vec![
        Box::new(|w| {
            rt.block_on(floor::set_throughput(
                set_conn.clone(),
                P2_TASKS,
                P2_KEYS,
                w,
            ))
        }),
        Box::new(|w| rt.block_on(p2_async(ours.clone(), Lib::Ours, w))),
        Box::new(|w| rt.block_on(p2_async(rslock.clone(), Lib::Rslock, w))),
        Box::new(|w| {
            throughput_sync(P2_TASKS, w, |task, i| {
                let mine = &redlock_keys[task];
                let guard = redlock.acquire(&mine[i as usize % mine.len()])?;
                redlock.release(guard)
            })
        }),
    ];
    let n = subjects.len();
    let mut rates = vec![Rate::default(); n];
    let mut bench_sets = Vec::new();
    let mut bench_counters = Counters::default();
    for round in 0..config.p2_rounds {
        for i in rotated(round, n) {
            probe.reset()?;
            let t = subjects[i](window)?;
            let counters = probe.counters()?;
            rates[i].add(t, &counters);
            probe.flush()?;
        }
        if let Some(rb) = bench {
            probe.reset()?;
            let requests = config.bench_set_n / config.p2_rounds;
            let cpu = Cpu::now();
            let set = rb.set(server.port(), requests, BENCH_SET_CLIENTS)?;
            let cpu = Cpu::now().since(cpu);
            bench_sets.push(BenchSet {
                server_cpu_us: cpu.server * 1e6 / requests as f64,
                ..set
            });
            bench_counters.add(&probe.counters()?);
            probe.flush()?;
        }
    }
    let mut rates = rates.into_iter();
    let set = rates.next().expect("the SET floor was measured");
    let p2 = [Lib::Ours, Lib::Rslock, Lib::Redlock]
        .into_iter()
        .zip(rates)
        .map(|(lib, rate)| P2 { lib, rate })
        .collect();
    Ok(ThroughputPhase {
        set,
        bench_set: BenchSet::combine(&bench_sets),
        bench_set_counters: bench.map(|_| bench_counters),
        p2,
    })
}

/// P2's closed loop for an async library: each task acquires and releases its own keys.
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
