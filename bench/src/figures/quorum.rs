//! The quorum figure. Everything about it is here: the workload, its goals, its table.
//!
//! **Workload.** P1's uncontended acquire + release of one key on one task, on a quorum of
//! five `redis-server` processes (started by the lock-tests harness, apart from the main
//! server): lock-runtime's `LockClient::quorum([...]).node_timeout(50 ms)`, rslock's
//! `LockManager::new(vec![urls])` and redlock's `RedLock::new(vec![urls])`, interleaved with
//! lock-runtime on the main server alone (the single-node cycle the goal divides by).
//! Rounds of one block per subject, the order rotating; per-round ratios are kept.

use std::fmt::Write as _;
use std::time::Duration;

use lock_runtime::LockClient;
use lock_tests::RedisServer;

use super::{Figure, Goal, Ratios, TsvLine, ahead_goal, own_row, ratio_row};
use crate::format::{count, dur, dur_of, header, sig3, times};
use crate::measure::{Bench, Blocks, CycleRun, Cycles, interleave_cycles, spread};
use crate::peers::{Ours, Redlock, Rslock, of};
use crate::stats::median;
use crate::workload::{uncontended, uncontended_sync};
use crate::{Lib, Res, Results, step};

/// Nodes of the quorum.
pub const NODES: usize = 5;
/// lock-runtime's per-node timeout.
const NODE_TIMEOUT: Duration = Duration::from_millis(50);
/// Goal: the quorum cycle, at most this multiple of the single-node cycle.
const MAX_OF_SINGLE: f64 = 1.3;

/// The figure's shape.
pub type Config = Blocks;

/// The full run.
pub const FULL: Config = Blocks {
    warmup: 200,
    rounds: 10,
    block: 300,
};

/// The quick run.
pub const QUICK: Config = Blocks {
    warmup: 10,
    rounds: 2,
    block: 30,
};

/// The quorum figure.
#[derive(Debug, Clone)]
pub struct Quorum {
    /// The shape measured.
    pub config: Config,
    /// lock-runtime on the main server alone.
    pub single: Cycles,
    /// lock-runtime, rslock, redlock on five nodes.
    pub rows: Vec<(Lib, Cycles)>,
}

/// Measures the quorum figure, against lock-runtime on the main server alone.
pub fn measure(b: &mut Bench, config: Config) -> Res<Quorum> {
    step("Quorum: uncontended cycle on 5 nodes, against one node, interleaved");
    let rt = &b.rt;
    let servers: Vec<RedisServer> = (0..NODES)
        .map(|_| RedisServer::start())
        .collect::<Result<_, _>>()?;
    let urls: Vec<String> = servers.iter().map(RedisServer::url).collect();
    let single = rt.block_on(Ours::connect(&b.server.url()))?;
    let ours = Ours::from_client(
        rt.block_on(
            LockClient::quorum(urls.iter().cloned())
                .node_timeout(NODE_TIMEOUT)
                .connect(),
        )?,
    );
    let rslock = Rslock::multi(&urls);
    let redlock = Redlock::multi(&urls);
    let mut subjects: Vec<CycleRun<'_>> = vec![
        Box::new(|w, n| rt.block_on(uncontended(&single, "bench:q:single", w, n))),
        Box::new(|w, n| rt.block_on(uncontended(&ours, "bench:q:ours", w, n))),
        Box::new(|w, n| rt.block_on(uncontended(&rslock, "bench:q:rslock", w, n))),
        Box::new(|w, n| uncontended_sync(&redlock, "bench:q:redlock", w, n)),
    ];
    let mut rows = interleave_cycles(&mut subjects, config, None, |_| Ok(()))?;
    drop(subjects);
    let single = rows.remove(0);
    let rows = [Lib::Ours, Lib::Rslock, Lib::Redlock]
        .into_iter()
        .zip(rows)
        .collect();
    drop(servers);
    Ok(Quorum {
        config,
        single,
        rows,
    })
}

impl Quorum {
    fn row(&self, lib: Lib) -> &Cycles {
        of(&self.rows, lib)
    }

    /// The median over rounds of `row`'s block mean divided by lock-runtime's single-node
    /// block mean in the same round.
    fn ratio_to_single(&self, row: &Cycles) -> f64 {
        let ratios: Vec<f64> = row
            .block_means
            .iter()
            .zip(&self.single.block_means)
            .map(|(q, s)| q / s)
            .collect();
        median(&ratios)
    }
}

impl Figure for Quorum {
    fn goals(&self, r: &Results) -> Vec<Goal> {
        let ours = self.row(Lib::Ours);
        let ratio = self.ratio_to_single(ours);
        let round_trips = r.p1.row(Lib::Ours).round_trips_per_cycle();
        let fan_out = |lib: Lib| self.row(lib).cycle.mean / r.p1.row(lib).cycle.mean;
        vec![
            Goal {
                name: "Quorum of 5: uncontended cycle",
                target: format!("≤ {MAX_OF_SINGLE} × the single-node cycle"),
                measured: format!(
                    "{} ({} / {} per cycle; median of per-round ratios)",
                    times(ratio),
                    dur(ours.cycle.mean),
                    dur(self.single.cycle.mean)
                ),
                pass: ratio <= MAX_OF_SINGLE,
                bound: format!(
                    "**Quorum: {} × the single-node cycle**, {} more per cycle. The {NODES} nodes are \
                     asked at once, so the round trips overlap, but each of the {} round trips \
                     (P1's count) now waits for the slowest of the first {} answers, and the client \
                     sends, and the machine's {} CPUs serve, {NODES} times the requests ({} \
                     `redis-server` processes share them). For comparison, on {NODES} nodes rslock \
                     takes {} and redlock {} its single-node cycle in P1.",
                    sig3(ratio),
                    dur(ours.cycle.mean - self.single.cycle.mean),
                    sig3(round_trips),
                    NODES / 2 + 1,
                    r.machine.parallelism,
                    NODES + 1,
                    times(fan_out(Lib::Rslock)),
                    times(fan_out(Lib::Redlock)),
                ),
            },
            ahead_goal(
                "Quorum of 5 ahead of both peers",
                "lower time per cycle",
                ours.cycle.mean,
                |l| self.row(l).cycle.mean,
                true,
                dur,
                |peer| {
                    format!(
                        "**Quorum: behind {}**, {} against {} per cycle ({}). On one node \
                         (P1) lock-runtime took {} against {}'s {}; on {NODES} nodes its \
                         cycle grew {} and {}'s {}, so the gap is in the fan-out: the client CPU \
                         spent sending and collecting {NODES} requests per step on {} CPUs \
                         shared with {} `redis-server` processes.",
                        peer.name(),
                        dur(ours.cycle.mean),
                        dur(self.row(peer).cycle.mean),
                        times(ours.cycle.mean / self.row(peer).cycle.mean),
                        dur(r.p1.row(Lib::Ours).cycle.mean),
                        peer.name(),
                        dur(r.p1.row(peer).cycle.mean),
                        times(fan_out(Lib::Ours)),
                        peer.name(),
                        times(fan_out(peer)),
                        r.machine.parallelism,
                        NODES + 1,
                    )
                },
            ),
        ]
    }

    fn section(&self, _r: &Results) -> String {
        let mut w = String::new();
        let _ = writeln!(
            w,
            "### Quorum: uncontended acquire + release on {NODES} nodes\n"
        );
        header(
            &mut w,
            &format!(
                "| Subject | mean per cycle | p50 | p99 | ÷ lock-runtime on 1 node (median of rounds) | lock-runtime on {NODES} ÷ this | block means, lowest-highest | cycles |"
            ),
        );
        let ours = self.row(Lib::Ours).cycle.mean;
        let named = self
            .rows
            .iter()
            .map(|(lib, row)| (format!("{}, {NODES} nodes", lib.name()), row));
        for (name, row) in
            std::iter::once(("lock-runtime, 1 node".to_owned(), &self.single)).chain(named)
        {
            let (lo, hi) = spread(&row.block_means);
            let _ = writeln!(
                w,
                "| {name} | {} | {} | {} | {} | {} | {} - {} | {} |",
                dur(row.cycle.mean),
                dur(row.cycle.p50),
                dur(row.cycle.p99),
                times(self.ratio_to_single(row)),
                times(ours / row.cycle.mean),
                dur(lo),
                dur(hi),
                count(row.cycle.n as f64),
            );
        }
        let _ = writeln!(
            w,
            "\n{} rounds of {} cycles per subject, the order rotating every round, after {} untimed \
             cycles each. The {NODES} nodes are separate `redis-server` processes on the same machine; \
             lock-runtime's per-node timeout is {}. Peers run in their multi-node (Redlock) modes with \
             their default retry settings.\n",
            self.config.rounds,
            self.config.block,
            self.config.warmup,
            dur_of(NODE_TIMEOUT),
        );
        w
    }

    fn tsv(&self, _r: &Results) -> Vec<TsvLine> {
        let mut out = vec![(
            "quorum.single.mean".to_owned(),
            self.single.cycle.mean,
            "us",
        )];
        for (lib, row) in &self.rows {
            out.push((format!("quorum.{}.mean", lib.id()), row.cycle.mean, "us"));
            out.push((
                format!("quorum.{}.ratio_single", lib.id()),
                self.ratio_to_single(row),
                "x",
            ));
        }
        out
    }

    fn ratios(&self, _r: &Results) -> Vec<Ratios> {
        let ours = self.row(Lib::Ours);
        vec![
            own_row(
                "Quorum of 5 ÷ single node, lock-runtime",
                sig3(self.ratio_to_single(ours)),
            ),
            ratio_row(
                "Quorum of 5 time per cycle",
                ours.cycle.mean,
                |l| self.row(l).cycle.mean,
                "-".to_owned(),
            ),
        ]
    }
}
