//! P1: uncontended acquire + release of one key on one task. Everything about the figure is
//! here: the workload, its goals, its table, its panel of the bar chart.
//!
//! **Workload.** Each library acquires and releases one key on one client, in a loop,
//! interleaved with its floors (our PINGs and the bare protocol cycle, see `floor.rs`) and,
//! once per round, redis-benchmark's PING: rounds of one block per subject, the order
//! rotating every round. The PING p50 of these rounds is the RTT every goal is stated in.
//! An untimed pass per subject counts its round trips and commands.

use std::fmt::Write as _;

use super::{Figure, Goal, Ratios, TsvLine, ahead_goal, paired_losses, ratio_row, rounds_goal};
use crate::floor::{self, BenchPing};
use crate::format::{count, dur, header, sig3, times};
use crate::measure::{Bench, Blocks, CycleRun, Cycles, account_each, interleave_cycles};
use crate::peers::{Ours, Redlock, Rslock, of};
use crate::plots::{Bar, BarPanel};
use crate::workload::{uncontended, uncontended_sync};
use crate::{Lib, Res, Results, step};

/// Goal: time per cycle, at most this many PING round trips.
const MAX_RTT: f64 = 2.3;

/// P1's shape.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Warm-up, rounds and cycles per block, for every subject.
    pub blocks: Blocks,
    /// Untimed cycles per subject run under `MONITOR` to count round trips.
    pub accounting: usize,
    /// redis-benchmark requests for `-t ping_mbulk -c 1`, split over the rounds.
    pub bench_ping_n: usize,
}

/// The full run.
pub const FULL: Config = Config {
    blocks: Blocks {
        warmup: 1_000,
        rounds: 20,
        block: 500,
    },
    accounting: 200,
    bench_ping_n: 20_000,
};

/// The quick run.
pub const QUICK: Config = Config {
    blocks: Blocks {
        warmup: 50,
        rounds: 2,
        block: 150,
    },
    accounting: 20,
    bench_ping_n: 1_000,
};

/// P1 and the floors taken in its rounds.
#[derive(Debug, Clone)]
pub struct P1 {
    /// The shape measured.
    pub config: Config,
    /// Ours, rslock, redlock.
    pub rows: Vec<(Lib, Cycles)>,
    /// Our PINGs (the RTT).
    pub ping: Cycles,
    /// The bare protocol cycle.
    pub bare: Cycles,
    /// redis-benchmark's PING, one run per round, combined.
    pub bench_ping: Option<BenchPing>,
}

impl P1 {
    /// The cycles of `lib`.
    pub fn row(&self, lib: Lib) -> &Cycles {
        of(&self.rows, lib)
    }

    /// The mean cycle of `lib`, microseconds.
    fn mean(&self, lib: Lib) -> f64 {
        self.row(lib).cycle.mean
    }

    /// The figure's panel of the P1/P2 bar chart.
    pub fn bars(&self) -> BarPanel {
        let floor = |label: &str, value| Bar {
            label: label.to_owned(),
            value,
            floor: true,
        };
        let mut bars = vec![floor("PING, redis-rs (floor)", self.ping.cycle.p50)];
        if let Some(bp) = &self.bench_ping {
            bars.push(floor("PING, redis-benchmark (floor)", bp.p50_us));
        }
        bars.push(floor("bare protocol cycle (floor)", self.bare.cycle.mean));
        bars.extend(self.rows.iter().map(|(lib, row)| Bar {
            label: lib.name().to_owned(),
            value: row.cycle.mean,
            floor: false,
        }));
        BarPanel {
            title: "P1: uncontended acquire + release, one task (lower is better)".to_owned(),
            unit: "µs per cycle (mean); floors: PING p50, bare protocol cycle mean".to_owned(),
            bars,
        }
    }
}

/// Measures P1 and its floors, interleaved.
pub fn measure(b: &mut Bench, config: Config) -> Res<P1> {
    step("P1 and floor: uncontended cycles, PING and bare protocol, interleaved");
    let (rt, probe, port) = (&b.rt, &mut b.probe, b.server.port());
    let url = b.server.url();
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
    let blocks = config.blocks;
    let mut bench_pings = Vec::new();
    let mut measured = interleave_cycles(&mut subjects, blocks, Some(&mut *probe), |_| {
        if let Some(rb) = &b.redis_benchmark {
            bench_pings.push(rb.ping(port, config.bench_ping_n / blocks.rounds)?);
        }
        Ok(())
    })?;
    account_each(probe, port, &mut subjects, &mut measured, config.accounting)?;
    probe.flush()?;
    let mut measured = measured.into_iter();
    let (ping, bare) = (measured.next(), measured.next());
    Ok(P1 {
        config,
        rows: [Lib::Ours, Lib::Rslock, Lib::Redlock]
            .into_iter()
            .zip(measured)
            .collect(),
        ping: ping.ok_or("P1: no PING floor")?,
        bare: bare.ok_or("P1: no bare floor")?,
        bench_ping: BenchPing::combine(&bench_pings),
    })
}

/// `41.0 µs / 20.1 µs (6.2 µs)`: client / server CPU per cycle (server time in commands).
pub fn cpu_pair(client_us: f64, server_us: f64, in_commands_us: f64) -> String {
    format!(
        "{} / {} ({})",
        dur(client_us),
        dur(server_us),
        dur(in_commands_us)
    )
}

impl P1 {
    /// What bounds the cycle: the protocol's own floor, and what lock-runtime adds to it.
    fn bound(&self, rtt: f64) -> String {
        let p1 = self.row(Lib::Ours);
        let bare = &self.bare;
        let headroom = MAX_RTT * rtt - bare.cycle.mean;
        let floor_note = if headroom < 0.0 {
            "so on this machine the protocol alone is already above the goal".to_owned()
        } else {
            format!(
                "which leaves {} per cycle ({} RTT) for everything a library adds",
                dur(headroom),
                times(headroom / rtt)
            )
        };
        format!(
            "**P1: {} per cycle = {} RTT.** lock-runtime sends {} round trips per cycle ({}). The \
             protocol's minimum, `SET NX PX` then the compare-and-delete script sent bare through \
             redis-rs on the same kind of connection, takes {} = {} RTT, {floor_note}. lock-runtime \
             takes {} {} per cycle than that. Its commands cost the server {} of execution per cycle \
             against {} for the bare pair (`INFO commandstats`), and the client process spends {} of \
             CPU per cycle against {} for the bare pair: lock-runtime's own work per acquire and \
             release (token, lease, renewal scheduler, futures) and the task wake-ups it causes.",
            dur(p1.cycle.mean),
            times(p1.cycle.mean / rtt),
            sig3(p1.round_trips_per_cycle()),
            p1.accounting.described(),
            dur(bare.cycle.mean),
            times(bare.cycle.mean / rtt),
            dur((p1.cycle.mean - bare.cycle.mean).abs()),
            if p1.cycle.mean >= bare.cycle.mean {
                "more"
            } else {
                "less"
            },
            dur(p1.server_us_per_cycle()),
            dur(bare.server_us_per_cycle()),
            dur(p1.client_cpu_us()),
            dur(bare.client_cpu_us()),
        )
    }

    /// Why lock-runtime is behind `peer`.
    fn behind(&self, peer: Lib) -> String {
        let (o, p) = (self.row(Lib::Ours), self.row(peer));
        format!(
            "**P1: behind {}**, {} against {} per cycle ({}), slower in {} of {} interleaved rounds. \
             lock-runtime sends {} round trips per cycle, {} {}. Per cycle, client CPU {} against {}; server CPU {} \
             against {}, of which executing commands {} against {}. lock-runtime sends {}; {} sends {}.",
            peer.name(),
            dur(o.cycle.mean),
            dur(p.cycle.mean),
            times(o.cycle.mean / p.cycle.mean),
            paired_losses(&o.block_means, &p.block_means, true),
            o.block_means.len(),
            sig3(o.round_trips_per_cycle()),
            peer.name(),
            sig3(p.round_trips_per_cycle()),
            dur(o.client_cpu_us()),
            dur(p.client_cpu_us()),
            dur(o.server_cpu_us()),
            dur(p.server_cpu_us()),
            dur(o.server_us_per_cycle()),
            dur(p.server_us_per_cycle()),
            o.accounting.described(),
            peer.name(),
            p.accounting.described(),
        )
    }

    /// What lock-runtime and rslock have in common round by round (for P1's and P2's rounds
    /// goals): the round trips, and the CPU that is left to move.
    pub fn rounds_bound(&self, cpus: usize) -> String {
        let (o, p) = (self.row(Lib::Ours), self.row(Lib::Rslock));
        format!(
            "lock-runtime sends {} round trips per cycle and rslock {} (P1 table); what is left is \
             client and server CPU ({} and {} of client CPU per P1 cycle) on {cpus} shared CPUs, \
             which moves from round to round.",
            sig3(o.round_trips_per_cycle()),
            sig3(p.round_trips_per_cycle()),
            dur(o.client_cpu_us()),
            dur(p.client_cpu_us()),
        )
    }
}

impl Figure for P1 {
    fn goals(&self, r: &Results) -> Vec<Goal> {
        let rtt = r.rtt();
        let p1 = self.mean(Lib::Ours);
        vec![
            Goal {
                name: "P1 uncontended acquire + release",
                target: format!("≤ {MAX_RTT} × PING RTT"),
                measured: format!(
                    "{} ({} per cycle / PING p50 {})",
                    times(p1 / rtt),
                    dur(p1),
                    dur(rtt)
                ),
                pass: p1 / rtt <= MAX_RTT,
                bound: self.bound(rtt),
            },
            ahead_goal(
                "P1 ahead of both peers",
                "lower time per cycle",
                p1,
                |l| self.mean(l),
                true,
                dur,
                |peer| self.behind(peer),
            ),
            rounds_goal(
                "P1 rounds at least rslock's",
                &self.row(Lib::Ours).block_means,
                &self.row(Lib::Rslock).block_means,
                true,
                "block mean per cycle, lower is better",
                self.rounds_bound(r.machine.parallelism),
            ),
        ]
    }

    fn section(&self, r: &Results) -> String {
        let rtt = r.rtt();
        let mut w = String::new();
        let _ = writeln!(
            w,
            "### P1: uncontended acquire + release, one task, one key\n"
        );
        header(
            &mut w,
            "| Subject | mean per cycle | p50 | p99 | mean ÷ PING p50 (redis-rs) | mean ÷ PING p50 (redis-benchmark) | lock-runtime ÷ this | round trips per cycle | commands per cycle | CPU per cycle: client / server (in commands) | TCP connections per cycle | block means, lowest-highest | cycles |",
        );
        let rb_ping = self.bench_ping.as_ref().map(|b| b.p50_us);
        let ours = self.mean(Lib::Ours);
        let rows = self
            .rows
            .iter()
            .map(|(lib, row)| (lib.name(), *lib == Lib::Ours, row))
            .chain([
                (
                    "*floor: `SET NX PX` + compare-and-delete script, bare redis-rs*",
                    false,
                    &self.bare,
                ),
                (
                    "*floor: `PING`, redis-rs `ConnectionManager`*",
                    false,
                    &self.ping,
                ),
            ]);
        for (name, is_ours, cy) in rows {
            let c = &cy.cycle;
            let (lo, hi) = cy.spread();
            let _ = writeln!(
                w,
                "| {name} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} - {} | {} |",
                dur(c.mean),
                dur(c.p50),
                dur(c.p99),
                times(c.mean / rtt),
                rb_ping.map_or("-".to_owned(), |p| times(c.mean / p)),
                if is_ours {
                    "-".to_owned()
                } else {
                    times(ours / c.mean)
                },
                sig3(cy.round_trips_per_cycle()),
                cy.accounting.described(),
                cpu_pair(
                    cy.client_cpu_us(),
                    cy.server_cpu_us(),
                    cy.server_us_per_cycle()
                ),
                sig3(cy.connections_per_cycle()),
                dur(lo),
                dur(hi),
                count(c.n as f64)
            );
        }
        let _ = writeln!(
            w,
            "\nThe subjects ran interleaved: {} rounds, each one block of {} cycles per subject, the \
             order rotating every round. The last-but-one column is the spread of the per-round block \
             means.\n",
            self.config.blocks.rounds,
            count(self.config.blocks.block as f64)
        );
        w
    }

    fn method(&self, _r: &Results) -> Option<String> {
        Some(format!(
            "- **P1.** One task acquires and releases one key on one client, {} rounds × {} cycles; \
             time per cycle is the mean. The goal divides it by our PING p50, taken in the same rounds.",
            self.config.blocks.rounds,
            count(self.config.blocks.block as f64)
        ))
    }

    fn tsv(&self, r: &Results) -> Vec<TsvLine> {
        let mut out = Vec::new();
        for (lib, row) in &self.rows {
            let mut put = |name: &str, value, unit| {
                out.push((format!("p1.{}.{name}", lib.id()), value, unit));
            };
            put("mean", row.cycle.mean, "us");
            put("p50", row.cycle.p50, "us");
            put("ratio_ping", row.cycle.mean / r.rtt(), "x");
            put("commands_per_cycle", row.commands_per_cycle(), "1");
            put("round_trips_per_cycle", row.round_trips_per_cycle(), "1");
        }
        out
    }

    fn ratios(&self, r: &Results) -> Vec<Ratios> {
        let p1 = self.mean(Lib::Ours);
        vec![ratio_row(
            "P1 time per cycle",
            p1,
            |l| self.mean(l),
            format!("{} × PING RTT", sig3(p1 / r.rtt())),
        )]
    }
}
