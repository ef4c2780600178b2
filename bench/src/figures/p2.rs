//! P2: throughput, many tasks on one client, no contention. Everything about the figure is
//! here: the workload, its goals, its table, its panel of the bar chart.
//!
//! **Workload.** [`TASKS`] tasks on one client (for redlock, as many OS threads sharing one
//! `RedLock`), each looping acquire + release over its own share of [`KEYS`] keys, so no two
//! tasks contend and no retry pauses are involved. Completed cycles are counted in timed
//! windows, interleaved with the SET floors (redis-rs from as many tasks on one connection,
//! and one redis-benchmark SET run per round): rounds of one window per subject, the order
//! rotating every round.

use std::fmt::Write as _;

use super::{Figure, Goal, Ratios, TsvLine, ahead_goal, paired_losses, ratio_row, rounds_goal};
use crate::floor::{self, BenchSet};
use crate::format::{count, dur, header, sig3, times};
use crate::measure::{Bench, Rate, rotated};
use crate::peers::{Ours, Redlock, Rslock, of};
use crate::plots::{Bar, BarPanel};
use crate::probe::{Counters, Cpu};
use crate::workload::{
    AsyncLocker, SyncLocker, Throughput, Window, partition_keys, throughput, throughput_sync,
};
use crate::{Lib, Res, Results, step};

/// Tasks, all on one client.
pub const TASKS: usize = 64;
/// Keys, split between the tasks.
pub const KEYS: usize = 1000;
/// Connections of redis-benchmark's SET run.
pub const BENCH_SET_CLIENTS: usize = 50;
/// Goal: cycles per second, at least this share of the SET floor.
const MIN_SET: f64 = 0.4;

/// P2's shape.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Rounds; each runs one window per subject.
    pub rounds: usize,
    /// Warm-up and timed window, per subject per round.
    pub window: Window,
    /// redis-benchmark requests for `-t set -c 50`, split over the rounds.
    pub bench_set_n: usize,
}

/// The full run.
pub const FULL: Config = Config {
    rounds: 20,
    window: Window {
        warmup: std::time::Duration::from_millis(250),
        measure: std::time::Duration::from_millis(500),
    },
    bench_set_n: 200_000,
};

/// The quick run.
pub const QUICK: Config = Config {
    rounds: 2,
    window: Window {
        warmup: std::time::Duration::from_millis(50),
        measure: std::time::Duration::from_millis(150),
    },
    bench_set_n: 10_000,
};

/// P2 and the floors taken in its rounds.
#[derive(Debug, Clone)]
pub struct P2 {
    /// The shape measured.
    pub config: Config,
    /// Ours, rslock, redlock.
    pub rows: Vec<(Lib, Rate)>,
    /// SET from redis-rs, [`TASKS`] tasks on one connection.
    pub set: Rate,
    /// redis-benchmark SET, one run per round, combined.
    pub bench_set: Option<BenchSet>,
    /// What the server counted during the redis-benchmark runs.
    pub bench_set_counters: Option<Counters>,
}

/// One subject of the interleaved run.
type Run<'a> = Box<dyn FnMut(Window) -> Res<Throughput> + 'a>;

/// Measures P2 and its floors, interleaved.
pub fn measure(b: &mut Bench, config: Config) -> Res<P2> {
    step("P2 and floor: throughput and SET, interleaved");
    let (rt, probe, port) = (&b.rt, &mut b.probe, b.server.port());
    let url = b.server.url();
    let set_conn = rt.block_on(floor::connection_manager(&url))?;
    let ours = rt.block_on(Ours::connect(&url))?;
    let rslock = Rslock::new(&url);
    let redlock = Redlock::new(&url);
    let redlock_keys = partition_keys("bench:p2:redlock", TASKS, KEYS);
    let mut subjects: Vec<Run<'_>> = vec![
        Box::new(|w| rt.block_on(floor::set_throughput(set_conn.clone(), TASKS, KEYS, w))),
        Box::new(|w| rt.block_on(closed_loop(ours.clone(), Lib::Ours, w))),
        Box::new(|w| rt.block_on(closed_loop(rslock.clone(), Lib::Rslock, w))),
        Box::new(|w| {
            throughput_sync(TASKS, w, |task, i| {
                let mine = &redlock_keys[task];
                let guard = redlock.acquire(&mine[i as usize % mine.len()])?;
                redlock.release(guard)
            })
        }),
    ];
    let n = subjects.len();
    let mut rates = vec![Rate::default(); n];
    let (mut bench_sets, mut bench_counters) = (Vec::new(), Counters::default());
    for round in 0..config.rounds {
        for i in rotated(round, n) {
            probe.reset()?;
            let t = subjects[i](config.window)?;
            rates[i].add(t, &probe.counters()?);
            probe.flush()?;
        }
        if let Some(rb) = &b.redis_benchmark {
            probe.reset()?;
            let requests = config.bench_set_n / config.rounds;
            let cpu = Cpu::now();
            let set = rb.set(port, requests, BENCH_SET_CLIENTS)?;
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
    let set = rates.next().ok_or("P2: no SET floor")?;
    Ok(P2 {
        config,
        rows: [Lib::Ours, Lib::Rslock, Lib::Redlock]
            .into_iter()
            .zip(rates)
            .collect(),
        set,
        bench_set: BenchSet::combine(&bench_sets),
        bench_set_counters: b.redis_benchmark.as_ref().map(|_| bench_counters),
    })
}

/// The closed loop for an async library: each task acquires and releases its own keys.
fn closed_loop<L: AsyncLocker>(
    locker: L,
    lib: Lib,
    window: Window,
) -> impl Future<Output = Res<Throughput>> {
    let keys = partition_keys(&format!("bench:p2:{}", lib.id()), TASKS, KEYS);
    throughput(TASKS, window, move |task, i| {
        let locker = locker.clone();
        let mine = &keys[task];
        let key = mine[i as usize % mine.len()].clone();
        async move {
            let guard = locker.acquire(key).await?;
            locker.release(guard).await
        }
    })
}

impl P2 {
    /// The rate of `lib`.
    pub fn row(&self, lib: Lib) -> &Rate {
        of(&self.rows, lib)
    }

    /// Cycles per second of `lib`.
    fn per_sec(&self, lib: Lib) -> f64 {
        self.row(lib).throughput.per_sec
    }

    /// The SET throughput P2 is divided by: redis-benchmark's, or, without it, ours.
    pub fn set_floor(&self) -> (f64, &'static str) {
        match &self.bench_set {
            Some(b) => (b.rps, "redis-benchmark SET"),
            None => (
                self.set.throughput.per_sec,
                "redis-rs SET (redis-benchmark missing)",
            ),
        }
    }

    /// The figure's panel of the P1/P2 bar chart.
    pub fn bars(&self) -> BarPanel {
        let mut bars = Vec::new();
        if let Some(bs) = &self.bench_set {
            bars.push(Bar {
                label: format!("SET, redis-benchmark -c {} (floor)", bs.clients),
                value: bs.rps,
                floor: true,
            });
        }
        bars.push(Bar {
            label: format!("SET, redis-rs {TASKS} tasks (floor)"),
            value: self.set.throughput.per_sec,
            floor: true,
        });
        bars.extend(self.rows.iter().map(|(lib, rate)| Bar {
            label: lib.name().to_owned(),
            value: rate.throughput.per_sec,
            floor: false,
        }));
        BarPanel {
            title: format!(
                "P2: {TASKS} tasks, {} keys, one client (higher is better)",
                count(KEYS as f64)
            ),
            unit: "acquire + release cycles per second; floors: SET requests per second".to_owned(),
            bars,
        }
    }

    /// Server time per P2 cycle in top-level commands, microseconds: the server time per
    /// top-level command under P2's load, times the commands per cycle from P1.
    fn server_us_per_cycle(&self, r: &Results, lib: Lib) -> f64 {
        let accounting = &r.p1.row(lib).accounting;
        let counters = &self.row(lib).counters;
        let calls = counters.top_level_calls(accounting).max(1.0);
        counters.top_level_usec(accounting) / calls * accounting.per_cycle()
    }

    /// What bounds the rate: round trips per cycle, and the CPU the run had.
    fn bound(&self, r: &Results) -> String {
        let t = &self.row(Lib::Ours).throughput;
        let (set, set_name) = self.set_floor();
        let per_cycle = r.p1.row(Lib::Ours).round_trips_per_cycle();
        let cpus = r.machine.parallelism;
        let used = (t.cpu.client + t.cpu.server) / t.secs;
        let cpu_per_cycle = t.client_cpu_us() + t.server_cpu_us();
        let saturated = if used >= 0.85 * cpus as f64 {
            format!(
                "Together they used {} of the machine's {cpus} CPUs, so the run is CPU-bound: at {} \
                 of CPU per cycle, {cpus} CPUs allow about {} cycles/s.",
                sig3(used),
                dur(cpu_per_cycle),
                count(cpus as f64 * 1e6 / cpu_per_cycle)
            )
        } else {
            format!(
                "Together they used {} of the machine's {cpus} CPUs, so CPU alone does not bound it; \
                 the rest is waiting (round trips, task hand-offs).",
                sig3(used),
            )
        };
        let peer = |lib: Lib| {
            let t = &self.row(lib).throughput;
            format!(
                "{} {} / {}",
                lib.name(),
                dur(t.client_cpu_us()),
                dur(t.server_cpu_us())
            )
        };
        format!(
            "**P2: {} cycles/s = {} {set_name}.** A cycle is {} round trips, so even at the SET rate \
             the ceiling would be {} ×. During the timed window the bench process used {} CPU ({} per \
             cycle) and redis-server {} CPU ({} per cycle, {} of it executing the commands). \
             {saturated} For comparison, CPU per cycle (client / server): {}, {}; a plain SET from \
             redis-rs costs {} / {}, and one from redis-benchmark costs the server {}.",
            count(t.per_sec),
            times(t.per_sec / set),
            sig3(per_cycle),
            sig3(1.0 / per_cycle),
            sig3(t.cpu.client / t.secs),
            dur(t.client_cpu_us()),
            sig3(t.cpu.server / t.secs),
            dur(t.server_cpu_us()),
            dur(self.server_us_per_cycle(r, Lib::Ours)),
            peer(Lib::Rslock),
            peer(Lib::Redlock),
            dur(self.set.throughput.client_cpu_us()),
            dur(self.set.throughput.server_cpu_us()),
            self.bench_set
                .as_ref()
                .map_or("(not measured)".to_owned(), |b| dur(b.server_cpu_us)),
        )
    }

    /// Why lock-runtime is behind `peer`.
    fn behind(&self, r: &Results, peer: Lib) -> String {
        let (o, p) = (self.row(Lib::Ours), self.row(peer));
        let (ot, pt) = (&o.throughput, &p.throughput);
        format!(
            "**P2: behind {}**, {} against {} cycles/s ({}), slower in {} of {} interleaved rounds. \
             Per cycle, client CPU {} against {}; server CPU {} against {}, of which executing \
             commands {} against {}; redis-server was busy {} against {} of a core.",
            peer.name(),
            count(ot.per_sec),
            count(pt.per_sec),
            times(ot.per_sec / pt.per_sec),
            paired_losses(&o.round_rates, &p.round_rates, false),
            o.round_rates.len(),
            dur(ot.client_cpu_us()),
            dur(pt.client_cpu_us()),
            dur(ot.server_cpu_us()),
            dur(pt.server_cpu_us()),
            dur(self.server_us_per_cycle(r, Lib::Ours)),
            dur(self.server_us_per_cycle(r, peer)),
            sig3(ot.cpu.server / ot.secs),
            sig3(pt.cpu.server / pt.secs),
        )
    }
}

impl Figure for P2 {
    fn goals(&self, r: &Results) -> Vec<Goal> {
        let p2 = self.per_sec(Lib::Ours);
        let (set, set_name) = self.set_floor();
        vec![
            Goal {
                name: "P2 throughput, 64 tasks, 1,000 keys",
                target: format!("≥ {MIN_SET} × {set_name}"),
                measured: format!(
                    "{} ({} cycles/s / {} SET/s); {} redis-rs SET",
                    times(p2 / set),
                    count(p2),
                    count(set),
                    times(p2 / self.set.throughput.per_sec)
                ),
                pass: p2 / set >= MIN_SET,
                bound: self.bound(r),
            },
            ahead_goal(
                "P2 ahead of both peers",
                "more cycles/s",
                p2,
                |l| self.per_sec(l),
                false,
                count,
                |peer| self.behind(r, peer),
            ),
            rounds_goal(
                "P2 rounds at least rslock's",
                &self.row(Lib::Ours).round_rates,
                &self.row(Lib::Rslock).round_rates,
                false,
                "cycles per second, higher is better",
                r.p1.rounds_bound(r.machine.parallelism),
            ),
        ]
    }

    fn section(&self, r: &Results) -> String {
        let (set, set_name) = self.set_floor();
        let set_rs = self.set.throughput.per_sec;
        let ours = self.per_sec(Lib::Ours);
        let mut w = String::new();
        let _ = writeln!(
            w,
            "### P2: throughput, {TASKS} tasks over {} keys, one client\n",
            count(KEYS as f64)
        );
        header(
            &mut w,
            &format!(
                "| Subject | per second | ÷ {set_name} | ÷ redis-rs SET ({TASKS} tasks) | lock-runtime ÷ this | CPU per operation: client / server (in commands) | CPU used: client cores, server cores | rounds, lowest-highest | errors | timed |"
            ),
        );
        let floor_name = format!("*floor: SET, redis-rs, {TASKS} tasks on one connection*");
        let rows = self
            .rows
            .iter()
            .map(|(lib, rate)| (lib.name(), Some(*lib), rate))
            .chain([(floor_name.as_str(), None, &self.set)]);
        for (name, lib, rate) in rows {
            let t = &rate.throughput;
            let (lo, hi) = rate.spread();
            let in_commands = match lib {
                Some(lib) => self.server_us_per_cycle(r, lib),
                None => rate.counters.usec_per_call("set"),
            };
            let _ = writeln!(
                w,
                "| {name} | {} | {} | {} | {} | {} | {}, {} | {} - {} | {} | {} s, {} operations |",
                count(t.per_sec),
                times(t.per_sec / set),
                times(t.per_sec / set_rs),
                if lib == Some(Lib::Ours) {
                    "-".to_owned()
                } else {
                    times(ours / t.per_sec)
                },
                super::p1::cpu_pair(t.client_cpu_us(), t.server_cpu_us(), in_commands),
                sig3(t.cpu.client / t.secs),
                sig3(t.cpu.server / t.secs),
                count(lo),
                count(hi),
                match &t.first_error {
                    Some(e) => format!(
                        "{} (first: {})",
                        count(t.errors as f64),
                        e.replace('|', "/")
                    ),
                    None => "0".to_owned(),
                },
                sig3(t.secs),
                count(t.ops as f64)
            );
        }
        let c = &self.config;
        let _ = writeln!(
            w,
            "\nThe subjects ran interleaved: {} rounds, each one window of {} (after {} of warm-up) \
             per subject, the order rotating every round, and one `redis-benchmark -t set` run of {} \
             requests per round.\n",
            c.rounds,
            crate::format::dur_of(c.window.measure),
            crate::format::dur_of(c.window.warmup),
            count((c.bench_set_n / c.rounds) as f64)
        );
        w
    }

    fn method(&self, _r: &Results) -> Option<String> {
        let c = &self.config;
        Some(format!(
            "- **P2.** {TASKS} tasks on one client (for redlock: {TASKS} OS threads sharing one \
             `RedLock`), each looping acquire + release over its own share of {} keys (task t owns \
             keys t, t+{TASKS}, ...), so no two tasks contend and no retry pauses are involved. \
             Completed cycles are counted over {} windows of {}, each after {} of warm-up. The floor \
             is `redis-benchmark -t set -c {BENCH_SET_CLIENTS} -n {} -q` against the same server, one \
             run per round, {} requests in all.",
            count(KEYS as f64),
            c.rounds,
            crate::format::dur_of(c.window.measure),
            crate::format::dur_of(c.window.warmup),
            count((c.bench_set_n / c.rounds) as f64),
            count(c.bench_set_n as f64)
        ))
    }

    fn tsv(&self, _r: &Results) -> Vec<TsvLine> {
        let (set, _) = self.set_floor();
        let mut out = Vec::new();
        for (lib, rate) in &self.rows {
            let id = lib.id();
            let per_sec = rate.throughput.per_sec;
            out.push((format!("p2.{id}.cycles_per_sec"), per_sec, "1/s"));
            out.push((format!("p2.{id}.ratio_set"), per_sec / set, "x"));
        }
        out
    }

    fn ratios(&self, _r: &Results) -> Vec<Ratios> {
        let p2 = self.per_sec(Lib::Ours);
        let (set, set_name) = self.set_floor();
        vec![ratio_row(
            "P2 cycles per second",
            p2,
            |l| self.per_sec(l),
            format!("{} × {set_name}", sig3(p2 / set)),
        )]
    }
}
