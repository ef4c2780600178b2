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
use tokio::runtime::Runtime;

use crate::ours::Ours;
use crate::peers::{Redlock, Rslock};
use crate::report::{Goal, dur, sig3, times};
use crate::stats::{Samples, Summary, median};
use crate::workload::{uncontended, uncontended_sync};
use crate::{Lib, Res, step};

/// Nodes of the quorum.
pub const NODES: usize = 5;
/// lock-runtime's per-node timeout.
const NODE_TIMEOUT: Duration = Duration::from_millis(50);
/// Goal: the quorum cycle, at most this multiple of the single-node cycle.
const MAX_OF_SINGLE: f64 = 1.3;

/// The figure's shape.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Untimed cycles per subject before the rounds.
    pub warmup: usize,
    /// Rounds.
    pub rounds: usize,
    /// Cycles per subject per round.
    pub block: usize,
}

/// One subject's cycles.
#[derive(Debug, Clone)]
pub struct Row {
    /// What ran.
    pub name: String,
    /// Pooled cycle times, microseconds.
    pub cycle: Summary,
    /// Each round's block mean, microseconds.
    pub block_means: Vec<f64>,
}

/// The quorum figure.
#[derive(Debug, Clone)]
pub struct Quorum {
    /// The shape measured.
    pub config: Config,
    /// lock-runtime on the main server alone.
    pub single: Row,
    /// lock-runtime, rslock, redlock on five nodes.
    pub rows: Vec<(Lib, Row)>,
}

type Block<'a> = Box<dyn FnMut(usize, usize) -> Res<Summary> + 'a>;

/// Measures the quorum figure; `url` is the main (single) server.
pub fn measure(rt: &Runtime, url: &str, config: Config) -> Res<Quorum> {
    step("Quorum: uncontended cycle on 5 nodes, against one node, interleaved");
    let servers: Vec<RedisServer> = (0..NODES)
        .map(|_| RedisServer::start())
        .collect::<Result<_, _>>()?;
    let urls: Vec<String> = servers.iter().map(RedisServer::url).collect();
    let single = rt.block_on(Ours::connect(url))?;
    let ours = rt.block_on(
        LockClient::quorum(urls.iter().cloned())
            .node_timeout(NODE_TIMEOUT)
            .connect(),
    )?;
    let rslock = Rslock::multi(&urls);
    let redlock = Redlock::multi(&urls);
    let quorum_ours = Ours::from_client(ours);
    let mut subjects: Vec<Block<'_>> = vec![
        Box::new(|w, n| rt.block_on(uncontended(&single, "bench:q:single", w, n))),
        Box::new(|w, n| rt.block_on(uncontended(&quorum_ours, "bench:q:ours", w, n))),
        Box::new(|w, n| rt.block_on(uncontended(&rslock, "bench:q:rslock", w, n))),
        Box::new(|w, n| uncontended_sync(&redlock, "bench:q:redlock", w, n)),
    ];
    for run in subjects.iter_mut() {
        run(config.warmup, 0)?;
    }
    let k = subjects.len();
    let mut pooled: Vec<Samples> = (0..k)
        .map(|_| Samples::with_capacity(config.rounds * config.block))
        .collect();
    let mut means: Vec<Vec<f64>> = vec![Vec::new(); k];
    for round in 0..config.rounds {
        for j in 0..k {
            let i = (j + round) % k;
            let block = subjects[i](0, config.block)?;
            means[i].push(block.mean);
            for us in block.sorted_us {
                pooled[i].push_us(us);
            }
        }
    }
    drop(subjects);
    let names = [
        "lock-runtime, 1 node".to_owned(),
        format!("lock-runtime, {NODES} nodes"),
        format!("{}, {NODES} nodes", Lib::Rslock.name()),
        format!("{}, {NODES} nodes", Lib::Redlock.name()),
    ];
    let mut rows: Vec<Row> = pooled
        .into_iter()
        .zip(means)
        .zip(names)
        .map(|((samples, block_means), name)| Row {
            name,
            cycle: samples.sorted(),
            block_means,
        })
        .collect();
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
    fn row(&self, lib: Lib) -> &Row {
        &self
            .rows
            .iter()
            .find(|(l, _)| *l == lib)
            .expect("every library is measured")
            .1
    }

    /// The median over rounds of `row`'s block mean divided by lock-runtime's single-node
    /// block mean in the same round.
    fn ratio_to_single(&self, row: &Row) -> f64 {
        let ratios: Vec<f64> = row
            .block_means
            .iter()
            .zip(&self.single.block_means)
            .map(|(q, s)| q / s)
            .collect();
        median(&ratios)
    }

    /// The figure's goals.
    pub fn goals(&self) -> Vec<Goal> {
        let ours = self.row(Lib::Ours);
        let ratio = self.ratio_to_single(ours);
        let peers = [Lib::Rslock, Lib::Redlock];
        let ahead = peers
            .iter()
            .all(|&l| ours.cycle.mean < self.row(l).cycle.mean);
        let vs = peers
            .iter()
            .map(|&l| format!("{} {}", l.name(), dur(self.row(l).cycle.mean)))
            .collect::<Vec<_>>()
            .join(", ");
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
                status_note: None,
                miss: Some(format!(
                    "**Quorum: {} × the single-node cycle.** The five nodes are asked at once, so \
                     the round trips overlap, but each of the 2 round trips now waits for the \
                     slowest of the first three answers, and the client sends, and the machine's \
                     2 CPUs serve, five times the requests (six `redis-server` processes share them).",
                    sig3(ratio)
                )),
            },
            Goal {
                name: "Quorum of 5 ahead of both peers",
                target: "lower time per cycle".to_owned(),
                measured: format!("{} vs {vs}", dur(ours.cycle.mean)),
                pass: ahead,
                status_note: None,
                miss: Some(format!(
                    "**Quorum: behind a peer**, {} against {vs} per cycle.",
                    dur(ours.cycle.mean)
                )),
            },
        ]
    }

    /// The figure's section of BENCHMARKS.md.
    pub fn section(&self) -> String {
        let mut w = String::new();
        let _ = writeln!(
            w,
            "### Quorum: uncontended acquire + release on {NODES} nodes\n"
        );
        let _ = writeln!(
            w,
            "| Subject | mean per cycle | p50 | p99 | ÷ lock-runtime on 1 node (median of rounds) | lock-runtime on {NODES} ÷ this | block means, lowest-highest | cycles |"
        );
        let _ = writeln!(w, "|---|---|---|---|---|---|---|---|");
        let ours = self.row(Lib::Ours).cycle.mean;
        for row in std::iter::once(&self.single).chain(self.rows.iter().map(|(_, r)| r)) {
            let (lo, hi) = crate::measure::spread(&row.block_means);
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} | {} | {} | {} - {} | {} |",
                row.name,
                dur(row.cycle.mean),
                dur(row.cycle.p50),
                dur(row.cycle.p99),
                times(self.ratio_to_single(row)),
                times(ours / row.cycle.mean),
                dur(lo),
                dur(hi),
                crate::report::count(row.cycle.n as f64),
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
            dur(NODE_TIMEOUT.as_secs_f64() * 1e6),
        );
        w
    }

    /// The figure's lines of results.tsv.
    pub fn figures(&self) -> Vec<(String, f64, &'static str)> {
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
}
