//! P6: many waiters. Everything about this figure is here: the workload, how it is
//! counted, its goals, its table and its plots; `report.rs` only places them.
//!
//! **Workload.** 4 clients × 16 tasks contend for one key. Each task loops: a waiting
//! acquire, a brief hold, the release, then a short pause off the lock (think time, so that
//! a task that just released does not simply take the lock again on its own connection).
//! The libraries run interleaved: rounds of one window per library, the order rotating.
//!
//! **Counted.**
//! - A *hand-off* is acquisition `g + 1` following acquisition `g` (the lock serialises
//!   them, so a shared counter numbers them); its latency runs from `g`'s release returning
//!   to `g + 1`'s acquire returning, and can be negative, as in P3.
//! - Commands per hand-off: the server's `INFO commandstats` over the timed windows, top-level
//!   commands only (an untimed pass under `MONITOR` gives which share of each command was
//!   sent by a client rather than run by a script), divided by the hand-offs.
//! - Fairness: acquisitions per task over the timed windows, their min/max, and Jain's index
//!   `(Σx)² / (n Σx²)` (1 = perfectly even, 1/n = one task gets everything).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use plotters::prelude::*;
use tokio::task::JoinSet;

use super::{Figure, Goal, Ratios, TsvLine, peers_list, ratio_row};
use crate::format::{count, dur, dur_of, header, sig3, times};
use crate::measure::{Bench, rotated};
use crate::peers::{Ours, Redlock, Rslock};
use crate::plots::{self, CdfSeries};
use crate::probe::{Accounting, Counters, Monitor, is_client_command, named};
use crate::stats::{Samples, Summary, signed_us};
use crate::workload::{AsyncLocker, TTL};
use crate::{Lib, Res, Results, step};

/// Plot of acquisitions per task.
pub const FAIRNESS_FILE: &str = "p6_acquisitions_per_task.svg";
/// Plot of the hand-off CDF.
pub const CDF_FILE: &str = "p6_handoff_cdf.svg";

// Goals, from the issue.
/// Commands per hand-off, at most this many per client.
const MAX_COMMANDS_PER_CLIENT: f64 = 2.0;
/// p50 hand-off, at most this multiple of P3's p50.
const MAX_P50_OF_P3: f64 = 2.0;
/// Jain's fairness index, at least.
const MIN_JAIN: f64 = 0.9;

/// P6's shape.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Clients (connections).
    pub clients: usize,
    /// Tasks per client.
    pub tasks_per_client: usize,
    /// How long each acquisition is held.
    pub hold: Duration,
    /// Pause between a task's release and its next acquire.
    pub think: Duration,
    /// Rounds; each runs one window per library.
    pub rounds: usize,
    /// Untimed start of each window.
    pub warmup: Duration,
    /// Timed part of each window.
    pub measure: Duration,
    /// Length of the untimed pass under `MONITOR`, per library.
    pub accounting: Duration,
}

/// The full run.
pub const FULL: Config = Config {
    clients: 4,
    tasks_per_client: 16,
    hold: Duration::from_micros(500),
    think: Duration::from_millis(2),
    rounds: 4,
    warmup: Duration::from_millis(300),
    measure: Duration::from_millis(1_500),
    accounting: Duration::from_millis(500),
};

/// The quick run.
pub const QUICK: Config = Config {
    rounds: 1,
    warmup: Duration::from_millis(100),
    measure: Duration::from_millis(300),
    accounting: Duration::from_millis(150),
    ..FULL
};

impl Config {
    /// Tasks in all.
    pub fn tasks(&self) -> usize {
        self.clients * self.tasks_per_client
    }
}

/// One library's P6.
#[derive(Debug, Clone)]
pub struct Row {
    /// Which library.
    pub lib: Lib,
    /// Hand-off latencies, microseconds (signed).
    pub handoff: Summary,
    /// Hand-offs in the timed windows.
    pub handoffs: u64,
    /// Acquisitions per task in the timed windows, by task.
    pub per_task: Vec<u64>,
    /// What the server counted during the timed windows.
    pub counters: Counters,
    /// Top-level share of each command, from the `MONITOR` pass.
    pub accounting: Accounting,
    /// Total timed seconds.
    pub secs: f64,
}

impl Row {
    /// Top-level commands the server received per hand-off.
    pub fn commands_per_handoff(&self) -> f64 {
        self.counters.top_level_calls(&self.accounting) / self.handoffs.max(1) as f64
    }

    /// Jain's fairness index over the tasks' acquisitions.
    pub fn jain(&self) -> f64 {
        jain(&self.per_task)
    }

    /// Fewest and most acquisitions of any task.
    pub fn min_max(&self) -> (u64, u64) {
        (
            self.per_task.iter().copied().min().unwrap_or(0),
            self.per_task.iter().copied().max().unwrap_or(0),
        )
    }

    /// Acquisitions per client (task `t` runs on client `t % clients`).
    pub fn per_client(&self, clients: usize) -> Vec<u64> {
        let mut out = vec![0; clients];
        for (t, n) in self.per_task.iter().enumerate() {
            out[t % clients] += n;
        }
        out
    }

    /// Hand-offs per second.
    pub fn rate(&self) -> f64 {
        self.handoffs as f64 / self.secs.max(1e-9)
    }
}

/// Jain's fairness index: `(Σx)² / (n Σx²)`.
pub fn jain(xs: &[u64]) -> f64 {
    let sum: f64 = xs.iter().map(|&x| x as f64).sum();
    let squares: f64 = xs.iter().map(|&x| (x as f64).powi(2)).sum();
    if squares == 0.0 {
        return 0.0;
    }
    sum * sum / (xs.len() as f64 * squares)
}

/// P6 for every library.
#[derive(Debug, Clone)]
pub struct P6 {
    /// The shape measured.
    pub config: Config,
    /// Ours, rslock, redlock.
    pub rows: Vec<Row>,
}

/// What one window (or several, merged) recorded.
#[derive(Default)]
struct Recorded {
    /// The `MONITOR` started when the timed part began, if one was asked for.
    monitor: Option<Monitor>,
    handoff: Vec<f64>,
    handoffs: u64,
    per_task: Vec<u64>,
    secs: f64,
}

/// State shared by the tasks of one window.
struct Shared {
    /// Numbers the acquisitions, in the order the lock serialises them.
    seq: AtomicU64,
    measuring: AtomicBool,
    stop: AtomicBool,
    /// Per acquisition number: when its acquire returned, when its release returned, and
    /// whether it was in the timed part.
    log: Mutex<Vec<(Option<Instant>, Option<Instant>)>>,
    /// Per task: acquisitions in the timed part.
    per_task: Vec<AtomicU64>,
}

impl Shared {
    fn new(tasks: usize) -> Shared {
        Shared {
            seq: AtomicU64::new(0),
            measuring: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            log: Mutex::new(Vec::with_capacity(1 << 16)),
            per_task: (0..tasks).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Notes acquisition `g`'s acquire (`release = false`) or release returning.
    fn note(&self, g: u64, release: bool, at: Instant) {
        if !self.measuring.load(Ordering::Relaxed) {
            return;
        }
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        let g = g as usize;
        if log.len() <= g {
            log.resize(g + 1, (None, None));
        }
        match release {
            false => log[g].0 = Some(at),
            true => log[g].1 = Some(at),
        }
    }

    fn acquired(&self, task: usize) -> u64 {
        let g = self.seq.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        if self.measuring.load(Ordering::Relaxed) {
            self.per_task[task].fetch_add(1, Ordering::Relaxed);
        }
        self.note(g, false, now);
        g
    }

    /// The samples: acquisition `g + 1`'s acquire minus `g`'s release, both timed.
    fn recorded(&self, secs: f64, monitor: Option<Monitor>) -> Recorded {
        let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        let mut handoff = Vec::new();
        for pair in log.windows(2) {
            if let ((_, Some(released)), (Some(acquired), _)) = (pair[0], pair[1]) {
                handoff.push(signed_us(released, acquired));
            }
        }
        Recorded {
            monitor,
            handoffs: handoff.len() as u64,
            handoff,
            per_task: self
                .per_task
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect(),
            secs,
        }
    }
}

/// How one window runs: untimed, then timed, with a `MONITOR` over the timed part if
/// `monitor` names the server's port.
#[derive(Debug, Clone, Copy)]
struct Span {
    warmup: Duration,
    measure: Duration,
    monitor: Option<u16>,
}

/// Runs one window of an async library: `lockers[c]` is client `c`.
async fn window_async<L: AsyncLocker>(
    lockers: &[L],
    key: &str,
    config: &Config,
    span: Span,
) -> Res<Recorded> {
    let shared = Arc::new(Shared::new(config.tasks()));
    let mut set = JoinSet::new();
    for task in 0..config.tasks() {
        let locker = lockers[task % config.clients].clone();
        let (shared, key, config) = (Arc::clone(&shared), key.to_owned(), *config);
        set.spawn(async move {
            while !shared.stop.load(Ordering::Relaxed) {
                let guard = locker.acquire_waiting(key.clone()).await?;
                let g = shared.acquired(task);
                tokio::time::sleep(config.hold).await;
                locker.release(guard).await?;
                shared.note(g, true, Instant::now());
                tokio::time::sleep(config.think).await;
            }
            Res::Ok(())
        });
    }
    tokio::time::sleep(span.warmup).await;
    let monitor = span.monitor.map(Monitor::start).transpose()?;
    shared.measuring.store(true, Ordering::Relaxed);
    let t0 = Instant::now();
    tokio::time::sleep(span.measure).await;
    shared.measuring.store(false, Ordering::Relaxed);
    let secs = t0.elapsed().as_secs_f64();
    shared.stop.store(true, Ordering::Relaxed);
    // Waiters of libraries that poll could take long to drain: stop them where they are.
    // A lock left held expires with its TTL; the next window uses another key.
    set.abort_all();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(result) => result?,
            Err(e) if e.is_cancelled() => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(shared.recorded(secs, monitor))
}

/// One window of redlock, on one OS thread per task. Waiting is redlock's own `acquire`
/// loop (repeat `lock` until it succeeds), written out so that it stops with the window.
fn window_redlock(lockers: &[Redlock], key: &str, config: &Config, span: Span) -> Res<Recorded> {
    let shared = Shared::new(config.tasks());
    let shared = &shared;
    thread::scope(|s| {
        for task in 0..config.tasks() {
            let locker = &lockers[task % config.clients];
            s.spawn(move || {
                while !shared.stop.load(Ordering::Relaxed) {
                    let Some(lock) = locker.lock_once(key) else {
                        continue;
                    };
                    let g = shared.acquired(task);
                    thread::sleep(config.hold);
                    locker.unlock(&lock);
                    shared.note(g, true, Instant::now());
                    thread::sleep(config.think);
                }
            });
        }
        thread::sleep(span.warmup);
        let monitor = span.monitor.map(Monitor::start).transpose()?;
        shared.measuring.store(true, Ordering::Relaxed);
        let t0 = Instant::now();
        thread::sleep(span.measure);
        shared.measuring.store(false, Ordering::Relaxed);
        let secs = t0.elapsed().as_secs_f64();
        shared.stop.store(true, Ordering::Relaxed);
        Ok(shared.recorded(secs, monitor))
    })
}

/// Measures P6 for every library, interleaved.
pub fn measure(b: &mut Bench, config: Config) -> Res<P6> {
    step("P6: many waiters, 4 clients × 16 tasks on one key");
    let (rt, probe, url, port) = (&b.rt, &mut b.probe, &b.server.url(), b.server.port());
    let libs = [Lib::Ours, Lib::Rslock, Lib::Redlock];
    let ours: Vec<Ours> = (0..config.clients)
        .map(|_| rt.block_on(Ours::connect(url)))
        .collect::<Res<_>>()?;
    let rslock: Vec<Rslock> = (0..config.clients).map(|_| Rslock::new(url)).collect();
    let redlock: Vec<Redlock> = (0..config.clients).map(|_| Redlock::new(url)).collect();
    // One window of `lib` on a fresh key.
    let mut windows = 0usize;
    let mut window = |lib: Lib, span: Span| {
        windows += 1;
        let key = format!("bench:p6:{}:{windows}", lib.id());
        match lib {
            Lib::Ours => rt.block_on(window_async(&ours, &key, &config, span)),
            Lib::Rslock => rt.block_on(window_async(&rslock, &key, &config, span)),
            Lib::Redlock => window_redlock(&redlock, &key, &config, span),
        }
    };
    let mut merged: Vec<(Recorded, Counters)> = libs
        .iter()
        .map(|_| {
            (
                Recorded {
                    per_task: vec![0; config.tasks()],
                    ..Recorded::default()
                },
                Counters::default(),
            )
        })
        .collect();
    for round in 0..config.rounds {
        for i in rotated(round, libs.len()) {
            probe.reset()?;
            let span = Span {
                warmup: config.warmup,
                measure: config.measure,
                monitor: None,
            };
            let rec = window(libs[i], span)?;
            let counters = probe.counters()?;
            let (into, into_counters) = &mut merged[i];
            into.handoff.extend(rec.handoff);
            into.handoffs += rec.handoffs;
            into.secs += rec.secs;
            for (a, b) in into.per_task.iter_mut().zip(rec.per_task) {
                *a += b;
            }
            into_counters.add(&counters);
        }
    }
    // Which commands were the clients' own and which ran in scripts: one short pass each.
    let mut rows = Vec::new();
    for (i, (rec, counters)) in merged.into_iter().enumerate() {
        let lib = libs[i];
        let span = Span {
            warmup: config.warmup,
            measure: config.accounting,
            monitor: Some(port),
        };
        let pass = window(lib, span)?;
        let monitor = pass.monitor.ok_or("P6: the MONITOR pass did not start")?;
        let (top, inner) = monitor.finish(probe)?;
        rows.push(Row {
            lib,
            handoff: Samples::from(rec.handoff).sorted(),
            handoffs: rec.handoffs,
            per_task: rec.per_task,
            counters,
            accounting: Accounting {
                cycles: 1,
                top,
                inner,
                ..Accounting::default()
            },
            secs: rec.secs,
        });
    }
    // Locks left held by stopped waiters expire by themselves; clear them for what follows.
    probe.flush()?;
    Ok(P6 { config, rows })
}

impl P6 {
    /// The row of `lib`.
    pub fn row(&self, lib: Lib) -> &Row {
        self.rows
            .iter()
            .find(|r| r.lib == lib)
            .expect("every library is measured")
    }

    /// Acquisitions per task, tasks sorted by it, one line per library.
    fn fairness_plot(&self, path: &Path) -> Res<()> {
        let tasks = self.config.tasks();
        let top = self
            .rows
            .iter()
            .flat_map(|r| r.per_task.iter().copied())
            .max()
            .unwrap_or(1)
            .max(1) as f64
            * 1.1;
        let root = SVGBackend::new(path, (900, 480)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!(
                    "P6: acquisitions per task ({} clients × {} tasks), tasks sorted",
                    self.config.clients, self.config.tasks_per_client
                ),
                ("sans-serif", 20),
            )
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..tasks as f64, 0f64..top)?;
        chart
            .configure_mesh()
            .x_desc("task, by acquisitions (fewest first)")
            .y_desc("acquisitions in the timed windows")
            .draw()?;
        for (i, r) in self.rows.iter().enumerate() {
            let color = plots::PALETTE[i % plots::PALETTE.len()];
            let mut sorted = r.per_task.clone();
            sorted.sort_unstable();
            let points = sorted
                .iter()
                .enumerate()
                .map(|(k, &n)| (k as f64 + 0.5, n as f64));
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))?
                .label(format!("{} (Jain {:.3})", r.lib.name(), r.jain()))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw()?;
        root.present()?;
        Ok(())
    }
}

impl Figure for P6 {
    fn goals(&self, r: &Results) -> Vec<Goal> {
        let p3_p50 = r.p3.p50(Lib::Ours);
        let ours = self.row(Lib::Ours);
        let c = &self.config;
        let cmds = ours.commands_per_handoff();
        let max_cmds = MAX_COMMANDS_PER_CLIENT * c.clients as f64;
        let p50 = ours.handoff.p50;
        let (lo, hi) = ours.min_max();
        vec![
            Goal {
                name: "P6 commands per hand-off",
                target: format!("≤ {MAX_COMMANDS_PER_CLIENT} × clients = {}", sig3(max_cmds)),
                measured: format!(
                    "{} ({}); {}",
                    sig3(cmds),
                    per_handoff_breakdown(ours),
                    peers_list(|l| sig3(self.row(l).commands_per_handoff()))
                ),
                pass: cmds <= max_cmds,
                bound: format!(
                    "**P6: {} commands per hand-off** against at most {}. Each release wakes one \
                     waiter on each of the {} clients; each woken waiter's attempt is one command, \
                     and only one of them wins. The rest is each acquisition's own first `SET` and \
                     retry after subscribing, and the release: {} per hand-off.",
                    sig3(cmds),
                    sig3(max_cmds),
                    c.clients,
                    per_handoff_breakdown(ours)
                ),
            },
            Goal {
                name: "P6 hand-off p50",
                target: format!("≤ {MAX_P50_OF_P3} × P3's p50 ({})", dur(p3_p50)),
                measured: format!(
                    "{} ({} × P3); p99 {}",
                    dur(p50),
                    sig3(p50 / p3_p50),
                    dur(ours.handoff.p99)
                ),
                pass: p50 <= MAX_P50_OF_P3 * p3_p50,
                bound: format!(
                    "**P6: hand-off p50 {}, {} × P3's {} ({} × RTT).** With {} tasks on {} clients \
                     and {} CPUs, the woken waiter's task must be scheduled among the others, and the \
                     winner of each release is the first of {} attempts to reach the server.",
                    dur(p50),
                    sig3(p50 / p3_p50),
                    dur(p3_p50),
                    sig3(p50 / r.rtt()),
                    c.tasks(),
                    c.clients,
                    r.machine.parallelism,
                    c.clients,
                ),
            },
            Goal {
                name: "P6 fairness (Jain's index)",
                target: format!("≥ {MIN_JAIN}"),
                measured: format!(
                    "{:.3} (acquisitions per task {lo} to {hi}); {}",
                    ours.jain(),
                    peers_list(|l| format!("{:.3}", self.row(l).jain()))
                ),
                pass: ours.jain() >= MIN_JAIN,
                bound: format!(
                    "**P6: Jain's index {:.3}.** Within a client waiters are served first come, \
                     first woken, and their counts are close; between clients, the first woken \
                     attempt to reach the server wins. Acquisitions per client: {:?}. Redis delivers \
                     a `PUBLISH` to a channel's subscribers in the order they subscribed, and a client \
                     re-subscribes (hears last) every few hand-offs it takes; what is left is the \
                     race between the clients that heard.",
                    ours.jain(),
                    ours.per_client(c.clients)
                ),
            },
        ]
    }

    fn section(&self, r: &Results) -> String {
        let c = &self.config;
        let mut w = String::new();
        let _ = writeln!(
            w,
            "### P6: many waiters, {} clients × {} tasks, one key\n",
            c.clients, c.tasks_per_client
        );
        header(
            &mut w,
            "| Library | hand-offs per second | hand-off p50 | p99 | p50 ÷ PING p50 | commands per hand-off (top-level) | commands per hand-off, by name | acquisitions per task, min / max | Jain's index | acquisitions per client | hand-offs |",
        );
        for row in &self.rows {
            let (lo, hi) = row.min_max();
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} | {} | {} | {} | {lo} / {hi} | {:.3} | {} | {} |",
                row.lib.name(),
                count(row.rate()),
                dur(row.handoff.p50),
                dur(row.handoff.p99),
                times(row.handoff.p50 / r.rtt()),
                sig3(row.commands_per_handoff()),
                per_handoff_breakdown(row),
                row.jain(),
                row.per_client(c.clients)
                    .iter()
                    .map(|n| count(*n as f64))
                    .collect::<Vec<_>>()
                    .join(" / "),
                count(row.handoffs as f64),
            );
        }
        let _ = writeln!(
            w,
            "\n{} rounds, each one window per library ({} untimed, then {} timed), the order rotating. \
             Each task loops: waiting acquire (TTL {}), hold {}, release, pause {} off the lock. A \
             hand-off is from one acquisition's release returning to the next acquisition's acquire \
             returning. Commands are the server's `INFO commandstats` over the timed windows, top-level \
             only (a pass per library under `MONITOR`, {} after the same warm-up, tells them from the commands scripts run). \
             Stopped waiters are aborted at the end of a window; each window uses a fresh key.\n",
            c.rounds,
            dur_of(c.warmup),
            dur_of(c.measure),
            dur_of(TTL),
            dur_of(c.hold),
            dur_of(c.think),
            dur_of(c.accounting),
        );
        let dir = crate::report::PLOTS_DIR;
        let _ = writeln!(
            w,
            "![P6 acquisitions per task]({dir}/{FAIRNESS_FILE})\n\n![P6 hand-off CDF]({dir}/{CDF_FILE})\n",
        );
        w
    }

    fn plots(&self, _r: &Results, dir: &Path) -> Res<Vec<PathBuf>> {
        let cdf = dir.join(CDF_FILE);
        let series: Vec<CdfSeries<'_>> = self
            .rows
            .iter()
            .map(|r| CdfSeries {
                name: format!("{} (p50 {})", r.lib.name(), dur(r.handoff.p50)),
                sorted_us: &r.handoff.sorted_us,
            })
            .collect();
        plots::cdf(
            &cdf,
            "P6: hand-off among 64 waiters, release returned -> next acquire returned",
            &series,
            None,
        )?;
        let fairness = dir.join(FAIRNESS_FILE);
        self.fairness_plot(&fairness)?;
        Ok(vec![fairness, cdf])
    }

    fn tsv(&self, _r: &Results) -> Vec<TsvLine> {
        let mut out = Vec::new();
        for r in &self.rows {
            let id = r.lib.id();
            let (lo, hi) = r.min_max();
            let mut put = |name: &str, value: f64, unit| {
                out.push((format!("p6.{id}.{name}"), value, unit));
            };
            put("p50", r.handoff.p50, "us");
            put("p99", r.handoff.p99, "us");
            put("commands_per_handoff", r.commands_per_handoff(), "1");
            put("jain", r.jain(), "1");
            put("min_per_task", lo as f64, "1");
            put("max_per_task", hi as f64, "1");
            put("handoffs_per_sec", r.rate(), "1/s");
        }
        out
    }

    fn ratios(&self, r: &Results) -> Vec<Ratios> {
        let ours = self.row(Lib::Ours);
        let p3 = r.p3.p50(Lib::Ours);
        vec![
            ratio_row(
                "P6 hand-off p50",
                ours.handoff.p50,
                |l| self.row(l).handoff.p50,
                format!("{} × P3 p50", sig3(ours.handoff.p50 / p3)),
            ),
            ratio_row(
                "P6 commands per hand-off",
                ours.commands_per_handoff(),
                |l| self.row(l).commands_per_handoff(),
                format!(
                    "{} per client",
                    sig3(ours.commands_per_handoff() / self.config.clients as f64)
                ),
            ),
            ratio_row(
                "P6 Jain's index",
                ours.jain(),
                |l| self.row(l).jain(),
                format!("{:.3}", ours.jain()),
            ),
        ]
    }
}

/// Top-level commands per hand-off, by name.
fn per_handoff_breakdown(r: &Row) -> String {
    let handoffs = r.handoffs.max(1) as f64;
    let top = |name: &String, calls: &u64| *calls as f64 * r.accounting.top_level_share(name);
    named(
        r.counters
            .calls
            .iter()
            .filter(|(name, _)| is_client_command(name))
            .map(|(name, calls)| (name, top(name, calls) / handoffs))
            .filter(|(_, per)| *per >= 0.005)
            .map(|(name, per)| (name, sig3(per))),
    )
}

#[cfg(test)]
mod tests {
    use super::jain;

    #[test]
    fn jain_is_one_when_even_and_one_over_n_when_one_takes_all() {
        assert!((jain(&[5, 5, 5, 5]) - 1.0).abs() < 1e-12);
        assert!((jain(&[8, 0, 0, 0]) - 0.25).abs() < 1e-12);
    }
}
