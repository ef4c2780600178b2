//! BENCHMARKS.md, the plots beside it, and `bench/results.tsv` (every figure as a number,
//! for the quick-mode test and for scripts).

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use crate::figures::{Figure, Goal, ahead_goal, p3, paired_losses, rounds_goal};
use crate::format::{count, dur, minutes, sig3, times};
use crate::measure::{Cycles, Rate};
use crate::plots::{Bar, BarPanel};
use crate::workload::TTL;
use crate::{BENCH_SET_CLIENTS, Lib, P2_KEYS, P2_TASKS, Res, Results, plots};

/// Where the plots go, relative to the output root.
pub const PLOTS_DIR: &str = "bench/plots";
/// The P1 and P2 bars.
pub const BARS_FILE: &str = "p1_p2_bars.svg";
/// Machine-readable figures, relative to the output root.
pub const RESULTS_FILE: &str = "bench/results.tsv";

/// [`P2_KEYS`] as text.
const P2_KEYS_TEXT: &str = "1,000";

/// The regenerate command printed at the top.
const REGENERATE: &str = "cargo run --release -p lock-bench";

// Goals, from the issue.
const P1_MAX_RTT: f64 = 2.3;
const P2_MIN_SET: f64 = 0.4;

impl Results {
    /// The figures, in the order of the report.
    pub fn figures(&self) -> [&dyn Figure; 5] {
        [&self.p3, &self.p4, &self.p5, &self.p6, &self.quorum]
    }

    /// P1 of `lib`.
    pub fn p1(&self, lib: Lib) -> &Cycles {
        &self
            .p1
            .iter()
            .find(|r| r.lib == lib)
            .expect("P1 measured for every library")
            .cycles
    }

    /// P2 of `lib`.
    pub fn p2(&self, lib: Lib) -> &Rate {
        &self
            .p2
            .iter()
            .find(|r| r.lib == lib)
            .expect("P2 measured for every library")
            .rate
    }

    /// The round trip the goals are stated in: our own PING p50, microseconds.
    pub fn rtt(&self) -> f64 {
        self.floor.ping.cycle.p50
    }

    /// The SET throughput P2 is divided by: redis-benchmark's, or, without it, ours.
    pub fn set_floor(&self) -> (f64, &'static str) {
        match &self.floor.bench_set {
            Some(b) => (b.rps, "redis-benchmark SET"),
            None => (
                self.floor.set.throughput.per_sec,
                "redis-rs SET (redis-benchmark missing)",
            ),
        }
    }
}

fn goals(r: &Results) -> Vec<Goal> {
    let rtt = r.rtt();
    let p1 = r.p1(Lib::Ours).cycle.mean;
    let p2 = r.p2(Lib::Ours).throughput.per_sec;
    let (set, set_name) = r.set_floor();
    let mut goals = vec![
        Goal {
            name: "P1 uncontended acquire + release",
            target: format!("≤ {P1_MAX_RTT} × PING RTT"),
            measured: format!(
                "{} ({} per cycle / PING p50 {})",
                times(p1 / rtt),
                dur(p1),
                dur(rtt)
            ),
            pass: p1 / rtt <= P1_MAX_RTT,
            bound: p1_miss(r),
        },
        Goal {
            name: "P2 throughput, 64 tasks, 1,000 keys",
            target: format!("≥ {P2_MIN_SET} × {set_name}"),
            measured: format!(
                "{} ({} cycles/s / {} SET/s); {} redis-rs SET",
                times(p2 / set),
                count(p2),
                count(set),
                times(p2 / r.floor.set.throughput.per_sec)
            ),
            pass: p2 / set >= P2_MIN_SET,
            bound: p2_miss(r),
        },
        ahead_goal(
            "P1 ahead of both peers",
            "lower time per cycle",
            p1,
            |l| r.p1(l).cycle.mean,
            true,
            dur,
            |peer| peers_miss(r, "P1", peer),
        ),
        ahead_goal(
            "P2 ahead of both peers",
            "more cycles/s",
            p2,
            |l| r.p2(l).throughput.per_sec,
            false,
            count,
            |peer| peers_miss(r, "P2", peer),
        ),
    ];
    let why = format!(
        "Both send the same two round trips per cycle (see the P1 table); the rest is \
         client and server CPU on {} shared cores, which moves from round to round.",
        r.machine.parallelism
    );
    goals.push(rounds_goal(
        "P1 rounds at least rslock's",
        &r.p1(Lib::Ours).block_means,
        &r.p1(Lib::Rslock).block_means,
        true,
        "block mean per cycle, lower is better",
        why.clone(),
    ));
    goals.push(rounds_goal(
        "P2 rounds at least rslock's",
        &r.p2(Lib::Ours).round_rates,
        &r.p2(Lib::Rslock).round_rates,
        false,
        "cycles per second, higher is better",
        why,
    ));
    goals.extend(r.figures().iter().flat_map(|f| f.goals(r)));
    goals
}

/// Writes the plots, results.tsv and BENCHMARKS.md under `root`; returns what it wrote.
pub fn write_all(r: &Results, root: &Path) -> Res<Vec<PathBuf>> {
    let plots_dir = root.join(PLOTS_DIR);
    fs::create_dir_all(&plots_dir)?;
    let bars = plots_dir.join(BARS_FILE);
    write_bars(r, &bars)?;
    let mut figure_plots = Vec::new();
    for f in r.figures() {
        figure_plots.extend(f.plots(r, &plots_dir)?);
    }
    let tsv = root.join(RESULTS_FILE);
    fs::write(&tsv, results_tsv(r))?;
    let md = root.join("BENCHMARKS.md");
    fs::write(&md, markdown(r))?;
    let mut written = vec![md, bars, tsv];
    written.extend(figure_plots);
    Ok(written)
}

fn write_bars(r: &Results, path: &Path) -> Res<()> {
    let mut p1 = vec![Bar {
        label: "PING, redis-rs (floor)".to_owned(),
        value: r.floor.ping.cycle.p50,
        floor: true,
    }];
    if let Some(bp) = &r.floor.bench_ping {
        p1.push(Bar {
            label: "PING, redis-benchmark (floor)".to_owned(),
            value: bp.p50_us,
            floor: true,
        });
    }
    p1.push(Bar {
        label: "bare protocol cycle (floor)".to_owned(),
        value: r.floor.bare.cycle.mean,
        floor: true,
    });
    for row in &r.p1 {
        p1.push(Bar {
            label: row.lib.name().to_owned(),
            value: row.cycles.cycle.mean,
            floor: false,
        });
    }
    let mut p2 = Vec::new();
    if let Some(bs) = &r.floor.bench_set {
        p2.push(Bar {
            label: format!("SET, redis-benchmark -c {} (floor)", bs.clients),
            value: bs.rps,
            floor: true,
        });
    }
    p2.push(Bar {
        label: "SET, redis-rs 64 tasks (floor)".to_owned(),
        value: r.floor.set.throughput.per_sec,
        floor: true,
    });
    for row in &r.p2 {
        p2.push(Bar {
            label: row.lib.name().to_owned(),
            value: row.rate.throughput.per_sec,
            floor: false,
        });
    }
    plots::bars(
        path,
        &[
            BarPanel {
                title: "P1: uncontended acquire + release, one task (lower is better)".to_owned(),
                unit: "µs per cycle (mean); floors: PING p50, bare protocol cycle mean".to_owned(),
                bars: p1,
            },
            BarPanel {
                title: format!(
                    "P2: {P2_TASKS} tasks, {} keys, one client (higher is better)",
                    count(P2_KEYS as f64)
                ),
                unit: "acquire + release cycles per second; floors: SET requests per second"
                    .to_owned(),
                bars: p2,
            },
        ],
    )
}

/// Every figure as `id<TAB>value<TAB>unit`.
fn results_tsv(r: &Results) -> String {
    let mut out = String::from("# lock-bench figures: id\tvalue\tunit\n");
    let mut put = |id: String, value: f64, unit: &str| {
        let _ = writeln!(out, "{id}\t{value}\t{unit}");
    };
    let rtt = r.rtt();
    put("floor.ping_rs.p50".into(), rtt, "us");
    put(
        "floor.bare_scripts.mean".into(),
        r.floor.bare.cycle.mean,
        "us",
    );
    put(
        "floor.set_rs.rps".into(),
        r.floor.set.throughput.per_sec,
        "1/s",
    );
    if let Some(bp) = &r.floor.bench_ping {
        put("floor.ping_rb.p50".into(), bp.p50_us, "us");
    }
    if let Some(bs) = &r.floor.bench_set {
        put("floor.set_rb.rps".into(), bs.rps, "1/s");
    }
    for row in &r.p1 {
        let id = row.lib.id();
        let row = &row.cycles;
        put(format!("p1.{id}.mean"), row.cycle.mean, "us");
        put(format!("p1.{id}.p50"), row.cycle.p50, "us");
        put(format!("p1.{id}.ratio_ping"), row.cycle.mean / rtt, "x");
        put(
            format!("p1.{id}.commands_per_cycle"),
            row.commands_per_cycle(),
            "1",
        );
        put(
            format!("p1.{id}.round_trips_per_cycle"),
            row.round_trips_per_cycle(),
            "1",
        );
    }
    let (set, _) = r.set_floor();
    for row in &r.p2 {
        let id = row.lib.id();
        let row = &row.rate;
        put(
            format!("p2.{id}.cycles_per_sec"),
            row.throughput.per_sec,
            "1/s",
        );
        put(
            format!("p2.{id}.ratio_set"),
            row.throughput.per_sec / set,
            "x",
        );
    }
    for (id, value, unit) in r.figures().iter().flat_map(|f| f.tsv(r)) {
        put(id, value, unit);
    }
    out
}

/// The goals as plain text, for the terminal.
pub fn summary(r: &Results) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nlock-bench results ({} run, {})",
        if r.config.quick { "quick" } else { "full" },
        r.date
    );
    for g in goals(r) {
        let _ = writeln!(
            out,
            "  {:<44} {:<10} {:<40} {}",
            g.name,
            g.status(),
            g.target,
            g.measured
        );
    }
    out
}

fn markdown(r: &Results) -> String {
    let mut md = String::new();
    let rtt = r.rtt();
    let (set, set_name) = r.set_floor();
    let w = &mut md;

    let _ = writeln!(w, "# Benchmarks\n");
    let _ = writeln!(
        w,
        "<!-- Generated by `{REGENERATE}` (bench/src/report.rs); do not edit by hand. -->\n"
    );
    let _ = writeln!(
        w,
        "**Regenerate:** `{REGENERATE}` (or `scripts/bench`). It starts its own `redis-server` on a free \
         loopback port, measures everything below in one run, and rewrites this file and the plots in \
         `{PLOTS_DIR}/`. `scripts/bench --quick` is a smoke run of a few seconds that writes to a \
         temporary directory instead.\n"
    );
    if r.config.quick {
        let _ = writeln!(
            w,
            "> **Quick run:** tiny sample counts, for checking that the bench works. Do not compare these figures.\n"
        );
    }
    let _ = writeln!(w, "| Run | |\n|---|---|");
    let _ = writeln!(
        w,
        "| Date | {} (took {}) |",
        r.date,
        minutes(r.elapsed.as_secs())
    );
    let _ = writeln!(
        w,
        "| Measured | {} (recorded when the bench was built) |",
        r.revision
    );
    let _ = writeln!(
        w,
        "| Machine | {}, {} logical CPUs (available parallelism {}), {} |",
        r.machine.cpu, r.machine.cpus, r.machine.parallelism, r.machine.kernel
    );
    let _ = writeln!(
        w,
        "| Load average (1, 5, 15 min) | {} at the start, {} at the end |",
        r.machine.load_at_start, r.load_at_end
    );
    let _ = writeln!(
        w,
        "| Server | redis-server {}, started by the bench (lock-tests harness), persistence off, TCP on 127.0.0.1 |",
        r.redis_version
    );
    let _ = writeln!(
        w,
        "| redis-benchmark | {} |",
        r.floor.bench.as_ref().map_or(
            "not installed: the floor is our own PINGs and SETs only".to_owned(),
            |b| b.version.clone()
        )
    );
    let _ = writeln!(
        w,
        "| Client runtime | tokio multi-thread, {} worker threads; redlock on OS threads |\n",
        r.machine.parallelism
    );
    let _ = writeln!(
        w,
        "All clients, redis-server and redis-benchmark share the machine's {} CPUs with each other (and with \
         whatever else runs), so the figures are from one run. The spread columns show how much they move \
         between rounds of this run; whole runs differ more. Ratios are taken within this one run.\n",
        r.machine.parallelism
    );

    // Goals.
    let _ = writeln!(w, "## Goals\n");
    let _ = writeln!(
        w,
        "RTT is the p50 of our own timed PINGs on a redis-rs `ConnectionManager`, the connection type \
         lock-runtime uses ({}). redis-benchmark's PING p50 is shown beside it in the tables.\n",
        dur(rtt)
    );
    let _ = writeln!(
        w,
        "| Goal | Target | Measured | Result |\n|---|---|---|---|"
    );
    let goals = goals(r);
    for g in &goals {
        let _ = writeln!(
            w,
            "| {} | {} | {} | **{}** |",
            g.name,
            g.target,
            g.measured,
            g.status()
        );
    }
    let _ = writeln!(w);
    misses(w, &goals);
    notes(w, r);

    // Figures.
    let _ = writeln!(w, "## Figures\n");
    let _ = writeln!(
        w,
        "![P3 hand-off latency CDF]({PLOTS_DIR}/{})\n",
        p3::CDF_FILE
    );
    let _ = writeln!(w, "![P1 and P2 bars]({PLOTS_DIR}/{BARS_FILE})\n");

    let _ = writeln!(w, "### Floor\n");
    let _ = writeln!(w, "| Figure | Value | Samples |\n|---|---|---|");
    let ping = &r.floor.ping.cycle;
    let _ = writeln!(
        w,
        "| PING round trip, redis-rs `ConnectionManager`, one task | p50 {}, mean {}, p99 {} | {} |",
        dur(ping.p50),
        dur(ping.mean),
        dur(ping.p99),
        count(ping.n as f64)
    );
    match &r.floor.bench_ping {
        Some(bp) => {
            let _ = writeln!(
                w,
                "| PING round trip, `redis-benchmark -t ping_mbulk -c 1` | p50 {}, mean {} | {} requests |",
                dur(bp.p50_us),
                dur(bp.avg_us),
                count(bp.n as f64)
            );
        }
        None => {
            let _ = writeln!(
                w,
                "| PING round trip, redis-benchmark | not installed | - |"
            );
        }
    }
    let bare = &r.floor.bare.cycle;
    let _ = writeln!(
        w,
        "| Bare protocol cycle: `SET NX PX` + compare-and-delete script through redis-rs, no lock library | mean {} ({} RTT), p50 {}; CPU per cycle: client {}, server {} | {} cycles |",
        dur(bare.mean),
        times(bare.mean / rtt),
        dur(bare.p50),
        dur(r.floor.bare.client_cpu_us()),
        dur(r.floor.bare.server_cpu_us()),
        count(bare.n as f64)
    );
    match (&r.floor.bench_set, &r.floor.bench_set_counters) {
        (Some(bs), Some(c)) => {
            let _ = writeln!(
                w,
                "| SET throughput, `redis-benchmark -t set -c {} -n {} -q` | {} req/s; server CPU {} per SET ({} in the command itself) | {} requests |",
                bs.clients,
                bs.n,
                count(bs.rps),
                dur(bs.server_cpu_us),
                dur(c.usec_per_call("set")),
                count(bs.n as f64)
            );
        }
        _ => {
            let _ = writeln!(w, "| SET throughput, redis-benchmark | not installed | - |");
        }
    }
    let _ = writeln!(
        w,
        "| SET throughput, redis-rs, {P2_TASKS} tasks on one `ConnectionManager` | {} req/s; CPU per SET: client {}, server {} ({} in the command itself) | {} s |\n",
        count(r.floor.set.throughput.per_sec),
        dur(r.floor.set.throughput.client_cpu_us()),
        dur(r.floor.set.throughput.server_cpu_us()),
        dur(r.floor.set.counters.usec_per_call("set")),
        sig3(r.floor.set.throughput.secs)
    );
    let _ = writeln!(
        w,
        "`redis-benchmark -c {BENCH_SET_CLIENTS}` keeps one request in flight per connection (no `-P`), so its SET \
         rate is bound by its own round trips and its share of the CPUs; redis-rs pipelines the requests of \
         {P2_TASKS} tasks on one connection, the harder floor. The P2 goal is stated against redis-benchmark, \
         and the tables show both.\n"
    );

    // P1.
    let ours1 = r.p1(Lib::Ours);
    let _ = writeln!(
        w,
        "### P1: uncontended acquire + release, one task, one key\n"
    );
    let _ = writeln!(
        w,
        "| Subject | mean per cycle | p50 | p99 | mean ÷ PING p50 (redis-rs) | mean ÷ PING p50 (redis-benchmark) | lock-runtime ÷ this | round trips per cycle | commands per cycle | CPU per cycle: client / server (in commands) | TCP connections per cycle | block means, lowest-highest | cycles |"
    );
    let _ = writeln!(w, "|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let rb_ping = r.floor.bench_ping.as_ref().map(|b| b.p50_us);
    let rows =
        r.p1.iter()
            .map(|row| (row.lib.name(), row.lib == Lib::Ours, &row.cycles))
            .chain([
                (
                    "*floor: `SET NX PX` + compare-and-delete script, bare redis-rs*",
                    false,
                    &r.floor.bare,
                ),
                (
                    "*floor: `PING`, redis-rs `ConnectionManager`*",
                    false,
                    &r.floor.ping,
                ),
            ]);
    for (name, is_ours, cy) in rows {
        let c = &cy.cycle;
        let (lo, hi) = cy.spread();
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} - {} | {} |",
            name,
            dur(c.mean),
            dur(c.p50),
            dur(c.p99),
            times(c.mean / rtt),
            rb_ping.map_or("-".to_owned(), |p| times(c.mean / p)),
            if is_ours {
                "-".to_owned()
            } else {
                times(ours1.cycle.mean / c.mean)
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
        "\nThe subjects ran interleaved: {} rounds, each one block of {} cycles per subject, the order \
         rotating every round. The last-but-one column is the spread of the per-round block means.\n",
        r.config.p1_rounds,
        count(r.config.p1_block as f64)
    );

    // P2.
    let ours2 = r.p2(Lib::Ours);
    let set_rs = r.floor.set.throughput.per_sec;
    let _ = writeln!(
        w,
        "### P2: throughput, {P2_TASKS} tasks over {} keys, one client\n",
        count(P2_KEYS as f64)
    );
    let _ = writeln!(
        w,
        "| Subject | per second | ÷ {set_name} | ÷ redis-rs SET ({P2_TASKS} tasks) | lock-runtime ÷ this | CPU per operation: client / server (in commands) | CPU used: client cores, server cores | rounds, lowest-highest | errors | timed |"
    );
    let _ = writeln!(w, "|---|---|---|---|---|---|---|---|---|---|");
    let rows =
        r.p2.iter()
            .map(|row| (row.lib.name(), Some(row.lib), &row.rate))
            .chain([(
                "*floor: SET, redis-rs, 64 tasks on one connection*",
                None,
                &r.floor.set,
            )]);
    for (name, lib, rate) in rows {
        let t = &rate.throughput;
        let (lo, hi) = rate.spread();
        let in_commands = match lib {
            Some(lib) => p2_server_us_per_cycle(r, lib),
            None => rate.counters.usec_per_call("set"),
        };
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {} | {} | {}, {} | {} - {} | {} | {} s, {} operations |",
            name,
            count(t.per_sec),
            times(t.per_sec / set),
            times(t.per_sec / set_rs),
            if lib == Some(Lib::Ours) {
                "-".to_owned()
            } else {
                times(ours2.throughput.per_sec / t.per_sec)
            },
            cpu_pair(t.client_cpu_us(), t.server_cpu_us(), in_commands),
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
    let _ = writeln!(
        w,
        "\nThe subjects ran interleaved: {} rounds, each one window of {} (after {} of warm-up) per subject, \
         the order rotating every round, and one `redis-benchmark -t set` run of {} requests per round.\n",
        r.config.p2_rounds,
        dur(r.config.p2_window.measure.as_secs_f64() * 1e6),
        dur(r.config.p2_window.warmup.as_secs_f64() * 1e6),
        count((r.config.bench_set_n / r.config.p2_rounds) as f64)
    );

    for f in r.figures() {
        w.push_str(&f.section(r));
    }

    method(w, r);
    closing_note(w, r);
    md
}

/// Things a PASS alone would hide, from the figures.
fn notes(w: &mut String, r: &Results) {
    let notes: Vec<String> = r.figures().iter().flat_map(|f| f.notes(r)).collect();
    if notes.is_empty() {
        return;
    }
    let _ = writeln!(w, "### Notes\n");
    for note in notes {
        let _ = writeln!(w, "- {note}\n");
    }
}

/// The closing note: every figure as a ratio from this run, and what changed on the hot
/// path with the figure that justified it.
fn closing_note(w: &mut String, r: &Results) {
    let _ = writeln!(
        w,
        "## Closing note
"
    );
    let _ = writeln!(
        w,
        "Every figure as a ratio, all from this run (lock-runtime ÷ peer; below 1 is better for times, \
         above 1 for rates):\n"
    );
    let _ = writeln!(
        w,
        "| Figure | ÷ rslock 0.10 | ÷ redlock 2.0 | other |\n|---|---|---|---|"
    );
    let ratio = |ours: f64, f: &dyn Fn(Lib) -> f64| {
        [Lib::Rslock, Lib::Redlock].map(|l| format!("{:.3}", ours / f(l)))
    };
    let p1 = r.p1(Lib::Ours).cycle.mean;
    let [a, b] = ratio(p1, &|l| r.p1(l).cycle.mean);
    let _ = writeln!(
        w,
        "| P1 time per cycle | {a} | {b} | {} × PING RTT |",
        sig3(p1 / r.rtt())
    );
    let p2 = r.p2(Lib::Ours).throughput.per_sec;
    let [a, b] = ratio(p2, &|l| r.p2(l).throughput.per_sec);
    let (set, set_name) = r.set_floor();
    let _ = writeln!(
        w,
        "| P2 cycles per second | {a} | {b} | {} × {set_name} |",
        sig3(p2 / set)
    );
    for [figure, a, b, other] in r.figures().iter().flat_map(|f| f.ratios(r)) {
        let _ = writeln!(w, "| {figure} | {a} | {b} | {other} |");
    }
    let _ = writeln!(w);
    let p6 = r.p6.row(Lib::Ours);
    let _ = writeln!(
        w,
        "What changed on the hot path, and the figure behind each change:\n\n\
         - **Acquire is one plain `SET NX PX`.** The PTTL that was pipelined with it is asked only when the \
         lock is busy: after the answer for a caller that will not wait, and inside a small script for a \
         waiter's retries. P1 above lists the commands per cycle (`SET` and the release script only, as \
         rslock). Before: `EVALSHA 1.00, PTTL 1.00, SET 1.00` per cycle, 1.07 × rslock's time in P1 and \
         0.91 × its rate in P2 (BENCHMARKS.md of b8d3118).\n\
         - **The release still publishes unconditionally.** Measured apart (redis-benchmark, `EVAL` of the \
         release script, 100,000 calls, two runs each, same server version): a `PUBLISH` to a channel with \
         no subscribers costs 0.15-0.17 µs of server time per release (`INFO commandstats`), against about \
         70 µs of server CPU per P1 cycle; gating it on `PUBSUB NUMSUB` costs 0.10-0.12 µs for the check \
         itself and the script was no faster as a whole (3.65-4.20 µs against 3.38-3.91 µs per call). A \
         waiters counter would add writes to every wait. Not changed.\n\
         - **One wake per release per client, FIFO.** A release wakes the first of a client's waiters, not \
         all of them, and later waiters of that client queue behind it without an attempt or a SUBSCRIBE. \
         P6: {} top-level commands per hand-off with {} clients × {} tasks (before: each release woke every \
         waiter, one attempt each).\n\
         - **Clients take turns hearing of releases.** Redis announces a release to a channel's \
         subscribers in the order they subscribed, and the first to hear wins; every 4 hand-offs its \
         waiters take, a client re-subscribes and hears last. Before it, a 3 s P6 run gave one client of \
         four 727 of 1,465 acquisitions (Jain 0.67-0.75, p99 2.0 ms); the table above has the figures \
         with it.\n\
         - **Polling while subscribed uses the backoff's longest step.** The 5 ms ramp cost about 5 busy \
         attempts per acquisition in P6 (EVALSHA 12.4 per hand-off in a first P6 run, 5.7 after).\n",
        sig3(p6.commands_per_handoff()),
        r.p6.config.clients,
        r.p6.config.tasks_per_client
    );
}

/// The "what bounds it" paragraph of every missed goal, from the measured figures.
fn misses(w: &mut String, goals: &[Goal]) {
    let missed: Vec<&Goal> = goals.iter().filter(|g| !g.pass).collect();
    if missed.is_empty() {
        let _ = writeln!(w, "Every goal is met in this run.\n");
        return;
    }
    let _ = writeln!(w, "### Missed goals, and what bounds them\n");
    for g in missed {
        let _ = writeln!(w, "- {}\n", g.bound);
    }
}

/// Why lock-runtime is behind `peer` on P1, P2 or P3, from the figures.
fn peers_miss(r: &Results, figure: &str, peer: Lib) -> String {
    match figure {
        "P1" => {
            let (o, p) = (r.p1(Lib::Ours), r.p1(peer));
            let slower = paired_losses(&o.block_means, &p.block_means, true);
            format!(
                "**P1: behind {}**, {} against {} per cycle ({}), slower in {} of {} interleaved \
                 rounds. Both send {} and {} round trips. Per cycle, client CPU {} against {}; server CPU {} \
                 against {}, of which executing commands {} against {}. lock-runtime sends {}; {} sends {}.",
                peer.name(),
                dur(o.cycle.mean),
                dur(p.cycle.mean),
                times(o.cycle.mean / p.cycle.mean),
                slower,
                o.block_means.len(),
                sig3(o.round_trips_per_cycle()),
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
        "P2" => {
            let (o, p) = (r.p2(Lib::Ours), r.p2(peer));
            let (ot, pt) = (&o.throughput, &p.throughput);
            let slower = paired_losses(&o.round_rates, &p.round_rates, false);
            format!(
                "**P2: behind {}**, {} against {} cycles/s ({}), slower in {} of {} interleaved rounds. \
                 Per cycle, client CPU {} against {}; server CPU {} against {}, of which executing \
                 commands {} against {}; redis-server was busy {} against {} of a core.",
                peer.name(),
                count(ot.per_sec),
                count(pt.per_sec),
                times(ot.per_sec / pt.per_sec),
                slower,
                o.round_rates.len(),
                dur(ot.client_cpu_us()),
                dur(pt.client_cpu_us()),
                dur(ot.server_cpu_us()),
                dur(pt.server_cpu_us()),
                dur(p2_server_us_per_cycle(r, Lib::Ours)),
                dur(p2_server_us_per_cycle(r, peer)),
                sig3(ot.cpu.server / ot.secs),
                sig3(pt.cpu.server / pt.secs),
            )
        }
        _ => unreachable!("P1 and P2 only"),
    }
}

/// Server time per P2 cycle in top-level commands, microseconds: the server time per
/// top-level command under P2's load, times the round trips per cycle from P1.
fn p2_server_us_per_cycle(r: &Results, lib: Lib) -> f64 {
    let accounting = &r.p1(lib).accounting;
    let counters = &r.p2(lib).counters;
    let calls = counters.top_level_calls(accounting).max(1.0);
    counters.top_level_usec(accounting) / calls * accounting.per_cycle()
}

/// `41.0 µs / 20.1 µs (6.2 µs)`.
fn cpu_pair(client_us: f64, server_us: f64, in_commands_us: f64) -> String {
    format!(
        "{} / {} ({})",
        dur(client_us),
        dur(server_us),
        dur(in_commands_us)
    )
}

fn p1_miss(r: &Results) -> String {
    let rtt = r.rtt();
    let p1 = r.p1(Lib::Ours);
    let bare = &r.floor.bare.cycle;
    let server_ours = p1.server_us_per_cycle();
    let server_bare = r.floor.bare.server_us_per_cycle();
    let client_ours = p1.client_cpu_us();
    let client_bare = r.floor.bare.client_cpu_us();
    let headroom = P1_MAX_RTT * rtt - bare.mean;
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
        "**P1: {} per cycle = {} RTT.** lock-runtime sends {} round trips per cycle ({}). The protocol's \
         minimum, `SET NX PX` then the compare-and-delete script sent bare through redis-rs on the same kind \
         of connection, takes {} = {} RTT, {floor_note}. lock-runtime takes {} more per cycle than that. \
         Its commands cost the server {} of execution per cycle against {} for the bare pair (`INFO \
         commandstats`), and the client process spends {} of CPU per cycle against {} for the bare pair: \
         lock-runtime's own work per acquire and release (token, lease, renewal scheduler, futures) and the \
         task wake-ups it causes.",
        dur(p1.cycle.mean),
        times(p1.cycle.mean / rtt),
        sig3(p1.round_trips_per_cycle()),
        p1.accounting.described(),
        dur(bare.mean),
        times(bare.mean / rtt),
        dur(p1.cycle.mean - bare.mean),
        dur(server_ours),
        dur(server_bare),
        dur(client_ours),
        dur(client_bare),
    )
}

fn p2_miss(r: &Results) -> String {
    let p2 = r.p2(Lib::Ours);
    let t = &p2.throughput;
    let (set, set_name) = r.set_floor();
    let per_cycle = r.p1(Lib::Ours).round_trips_per_cycle();
    let cpus = r.machine.parallelism as f64;
    let used = (t.cpu.client + t.cpu.server) / t.secs;
    let cpu_per_cycle = t.client_cpu_us() + t.server_cpu_us();
    let saturated = if used >= 0.85 * cpus {
        format!(
            "Together they used {} of the machine's {} CPUs, so the run is CPU-bound: at {} of CPU per cycle, \
             {} CPUs allow about {} cycles/s.",
            sig3(used),
            r.machine.parallelism,
            dur(cpu_per_cycle),
            r.machine.parallelism,
            count(cpus * 1e6 / cpu_per_cycle)
        )
    } else {
        format!(
            "Together they used {} of the machine's {} CPUs, so CPU alone does not bound it; the rest is \
             waiting (round trips, task hand-offs).",
            sig3(used),
            r.machine.parallelism
        )
    };
    let peer = |lib: Lib| {
        let t = &r.p2(lib).throughput;
        format!(
            "{} {} / {}",
            lib.name(),
            dur(t.client_cpu_us()),
            dur(t.server_cpu_us())
        )
    };
    format!(
        "**P2: {} cycles/s = {} {set_name}.** A cycle is {} round trips, so even at the SET rate the ceiling \
         would be {} ×. During the timed window the bench process used {} CPU ({} per cycle) and redis-server \
         {} CPU ({} per cycle, {} of it executing the commands). {saturated} For comparison, CPU per \
         cycle (client / server): {}, {}; a plain SET from redis-rs costs {} / {}, and one from \
         redis-benchmark costs the server {}.",
        count(t.per_sec),
        times(t.per_sec / set),
        sig3(per_cycle),
        sig3(1.0 / per_cycle),
        sig3(t.cpu.client / t.secs),
        dur(t.client_cpu_us()),
        sig3(t.cpu.server / t.secs),
        dur(t.server_cpu_us()),
        dur(p2_server_us_per_cycle(r, Lib::Ours)),
        peer(Lib::Rslock),
        peer(Lib::Redlock),
        dur(r.floor.set.throughput.client_cpu_us()),
        dur(r.floor.set.throughput.server_cpu_us()),
        r.floor
            .bench_set
            .as_ref()
            .map_or("(not measured)".to_owned(), |b| dur(b.server_cpu_us)),
    )
}

fn method(w: &mut String, r: &Results) {
    let c = &r.config;
    let _ = writeln!(w, "## Method\n");
    let _ = writeln!(
        w,
        "- **Timing.** `std::time::Instant` (monotonic). Every measurement is preceded by untimed warm-up \
         (P1, PING and the bare floor: {} cycles; P2: {} of load per round; P3: {} hand-offs; P5: one block \
         of each form). Percentiles are nearest-rank on the sorted samples; sample counts are in each table. \
         Figures that are divided by each other are taken interleaved (P1 with its floors, P2 with its floors, \
         the P5 forms): short blocks in rotating order, pooled, so that the machine's changing load hits all \
         of them alike. Between measurements the server is `FLUSHALL`ed.\n\
         - **Counting.** Server command counts and server time come from `CONFIG RESETSTAT` before and \
         `INFO commandstats` after each timed block (the probe's own `INFO`/`CONFIG` are left out). Those \
         counts include the commands a script runs inside the server, so commands and round trips are counted \
         apart, in untimed passes of each workload ({} cycles, {} P3 rounds). Under `MONITOR`, the \
         top-level commands show apart from those scripts run (`[0 lua]`). In a second pass without it, \
         `INFO stats` `total_writes_processed` counts the server's replies: one per request, or per \
         pipelined batch of requests read together, whatever the client's write pattern. Round trips \
         per cycle are those writes per cycle; a new TCP connection's handshake is not in them (see the \
         connections column). CPU time is `utime + stime` of this process (the clients) and of redis-server \
         from `/proc/<pid>/stat`, over each timed block; at 10 ms per tick it is coarse for short blocks.",
        count(c.p1_warmup as f64),
        dur(c.p2_window.warmup.as_secs_f64() * 1e6),
        c.p3.warmup,
        c.accounting_cycles,
        c.p3.accounting
    );
    let _ = writeln!(
        w,
        "- **Floor.** Our PINGs: one task, one `PING` at a time on a redis-rs `ConnectionManager`. The bare \
         protocol cycle: `SET key token NX PX 10000`, then the compare-and-delete script of PROTOCOL.md \
         (EVALSHA), on the same kind of connection, with no lock library. redis-benchmark runs as a subprocess \
         against the same server."
    );
    let _ = writeln!(
        w,
        "- **Locks.** TTL {} in P1-P3 and P5, so nothing expires while measured. lock-runtime runs with its \
         defaults (watchdog on, no fencing, default backoff); every measurement uses fresh clients.",
        dur(TTL.as_secs_f64() * 1e6)
    );
    let _ = writeln!(
        w,
        "- **P1.** One task acquires and releases one key on one client, {} rounds × {} cycles; time per \
         cycle is the mean. The goal divides it by our PING p50, taken in the same rounds.",
        c.p1_rounds,
        count(c.p1_block as f64)
    );
    let _ = writeln!(
        w,
        "- **P2.** {P2_TASKS} tasks on one client (for redlock: {P2_TASKS} OS threads sharing one `RedLock`), \
         each looping acquire + release over its own share of {P2_KEYS_TEXT} keys (task t owns keys t, t+{P2_TASKS}, \
         ...), so no two tasks contend and no retry pauses are involved. Completed cycles are counted over {} \
         windows of {}, each after {} of warm-up. The floor is `redis-benchmark -t set -c {BENCH_SET_CLIENTS} \
         -n {} -q` against the same server, one run per round, {} requests in all.",
        c.p2_rounds,
        dur(c.p2_window.measure.as_secs_f64() * 1e6),
        dur(c.p2_window.warmup.as_secs_f64() * 1e6),
        count((c.bench_set_n / c.p2_rounds) as f64),
        count(c.bench_set_n as f64)
    );
    for bullet in r.figures().iter().filter_map(|f| f.method(r)) {
        let _ = writeln!(w, "{bullet}");
    }
    let _ = writeln!(w, "{}", crate::peers::method());
    let _ = writeln!(
        w,
        "Figures as numbers: `{RESULTS_FILE}`. The bench's source: `bench/src/`.\n"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_count_text_matches() {
        assert_eq!(P2_KEYS_TEXT, count(P2_KEYS as f64));
    }
}
