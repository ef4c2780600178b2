//! P3: contended hand-off between two clients on one key. Everything about the figure is
//! here: the workload, its goals, its table, its CDF plot.
//!
//! **Workload.** Two clients (two connections). Per sample the holder acquires, tells the
//! waiter to start a waiting acquire, holds for [`hold_time`], releases, and notes when its
//! release returned; the waiter notes when its acquire returned, releases, and reports. The
//! sample is the difference. The libraries run one after the other (their figures are
//! orders of magnitude apart), each followed by an untimed pass that counts its commands.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::thread;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::{Figure, Goal, Ratios, TsvLine, ahead_goal, ratio_row};
use crate::format::{count, dur, dur_of, header, sig3, times};
use crate::measure::Bench;
use crate::peers::{Ours, Redlock, Rslock};
use crate::plots::{self, CdfSeries};
use crate::probe::{Accounting, account};
use crate::stats::{Samples, Summary, signed_us};
use crate::workload::{AsyncLocker, SyncLocker};
use crate::{Lib, Res, Results, step};

/// The CDF plot.
pub const CDF_FILE: &str = "p3_handoff_cdf.svg";
/// Goal: p50 hand-off, at most this many PING round trips.
const MAX_RTT: f64 = 5.0;
/// How long before the holder's release the waiter must have started for a sample to count.
const MIN_WAITER_HEAD_START: Duration = Duration::from_millis(1);

/// P3's shape.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Discarded hand-offs before the samples.
    pub warmup: usize,
    /// Samples per library.
    pub samples: usize,
    /// Untimed rounds run under `MONITOR` to count commands.
    pub accounting: usize,
}

/// The full run.
pub const FULL: Config = Config {
    warmup: 20,
    samples: 2_000,
    accounting: 20,
};

/// The quick run.
pub const QUICK: Config = Config {
    warmup: 2,
    samples: 12,
    accounting: 3,
};

/// Hand-off samples, in microseconds: from the holder's release returning to the waiter's
/// acquire returning.
#[derive(Debug, Clone)]
pub struct Handoff {
    /// The latencies.
    pub latency: Summary,
    /// Samples thrown away because the waiter had not started at least
    /// [`MIN_WAITER_HEAD_START`] before the release (it might not have been waiting yet).
    pub discarded: usize,
}

/// One library's P3.
#[derive(Debug, Clone)]
pub struct Row {
    /// Which library.
    pub lib: Lib,
    /// The hand-off latencies.
    pub handoff: Handoff,
    /// Commands per round, from an untimed pass under `MONITOR`.
    pub accounting: Accounting,
}

/// P3 for every library.
#[derive(Debug, Clone)]
pub struct P3 {
    /// The shape measured.
    pub config: Config,
    /// Ours, rslock, redlock.
    pub rows: Vec<Row>,
}

impl P3 {
    /// The row of `lib`.
    pub fn row(&self, lib: Lib) -> &Row {
        self.rows
            .iter()
            .find(|r| r.lib == lib)
            .expect("every library is measured")
    }

    /// The p50 hand-off of `lib`, microseconds.
    pub fn p50(&self, lib: Lib) -> f64 {
        self.row(lib).handoff.latency.p50
    }
}

/// How long the holder keeps the lock in sample `i`: 2 to 11 ms, cycling, the same sequence
/// for every library, so that waiters are caught at different points of their retry loops.
pub fn hold_time(i: usize) -> Duration {
    Duration::from_millis(2 + (i * 7 % 10) as u64)
}

/// What the waiter reports for one sample: when it started waiting, when it got the lock.
type WaiterReport = Res<(Instant, Instant)>;

/// The samples of one run, as the rounds come in.
struct Sampler {
    warmup: usize,
    samples: Samples,
    discarded: usize,
}

impl Sampler {
    fn new(warmup: usize, n: usize) -> Sampler {
        Sampler {
            warmup,
            samples: Samples::with_capacity(n),
            discarded: 0,
        }
    }

    /// Round `i`: the holder's release returned at `released`; the waiter reported.
    fn record(&mut self, i: usize, released: Instant, (started, acquired): (Instant, Instant)) {
        if i < self.warmup {
        } else if released.saturating_duration_since(started) < MIN_WAITER_HEAD_START {
            self.discarded += 1;
        } else {
            self.samples.push_us(signed_us(released, acquired));
        }
    }

    fn finish(self) -> Handoff {
        Handoff {
            latency: self.samples.sorted(),
            discarded: self.discarded,
        }
    }
}

/// P3 for an async library: `holder` and `waiter` are two clients (two connections). The
/// waiter releases before it reports, so the holder's next acquire finds the key free.
pub async fn handoff<L: AsyncLocker>(
    holder: L,
    waiter: L,
    key: &str,
    warmup: usize,
    n: usize,
) -> Res<Handoff> {
    let (start_tx, mut start_rx) = mpsc::channel::<()>(1);
    let (report_tx, mut report_rx) = mpsc::channel::<WaiterReport>(1);
    let waiter_task = {
        let key = key.to_owned();
        tokio::spawn(async move {
            while start_rx.recv().await.is_some() {
                let started = Instant::now();
                let report = async {
                    let guard = waiter.acquire_waiting(key.clone()).await?;
                    let acquired = Instant::now();
                    waiter.release(guard).await?;
                    Ok((started, acquired))
                }
                .await;
                if report_tx.send(report).await.is_err() {
                    return;
                }
            }
        })
    };
    let mut sampler = Sampler::new(warmup, n);
    for i in 0..warmup + n {
        let guard = holder.acquire(key.to_owned()).await?;
        start_tx
            .send(())
            .await
            .map_err(|_| "P3 waiter task ended")?;
        tokio::time::sleep(hold_time(i)).await;
        holder.release(guard).await?;
        let released = Instant::now();
        let report = report_rx.recv().await.ok_or("P3 waiter task ended")??;
        sampler.record(i, released, report);
    }
    drop(start_tx);
    waiter_task.await?;
    Ok(sampler.finish())
}

/// [`handoff`] for a synchronous library, on two dedicated threads.
pub fn handoff_sync<L: SyncLocker>(
    holder: &L,
    waiter: &L,
    key: &str,
    warmup: usize,
    n: usize,
) -> Res<Handoff> {
    let (start_tx, start_rx) = std_mpsc::channel::<()>();
    let (report_tx, report_rx) = std_mpsc::channel::<WaiterReport>();
    thread::scope(|s| {
        s.spawn(move || {
            while start_rx.recv().is_ok() {
                let started = Instant::now();
                let report = (|| {
                    let guard = waiter.acquire_waiting(key)?;
                    let acquired = Instant::now();
                    waiter.release(guard)?;
                    Ok((started, acquired))
                })();
                if report_tx.send(report).is_err() {
                    return;
                }
            }
        });
        let mut sampler = Sampler::new(warmup, n);
        for i in 0..warmup + n {
            let guard = holder.acquire(key)?;
            start_tx.send(()).map_err(|_| "P3 waiter thread ended")?;
            thread::sleep(hold_time(i));
            holder.release(guard)?;
            let released = Instant::now();
            let report = report_rx.recv().map_err(|_| "P3 waiter thread ended")??;
            sampler.record(i, released, report);
        }
        drop(start_tx);
        Ok(sampler.finish())
    })
}

/// Measures P3, one library after the other, each followed by an accounting pass.
pub fn measure(b: &mut Bench, config: Config) -> Res<P3> {
    let (rt, probe, url, port) = (&b.rt, &mut b.probe, b.server.url(), b.server.port());
    let mut rows = Vec::new();
    let mut measure = |lib: Lib, run: &mut dyn FnMut(usize, usize) -> Res<Handoff>| -> Res<()> {
        step(&format!("P3: hand-off, {}", lib.name()));
        run(config.warmup, 0)?;
        let handoff = run(0, config.samples)?;
        let rounds = config.accounting;
        let accounting = account(probe, port, rounds, || run(0, rounds).map(drop))?;
        probe.flush()?;
        rows.push(Row {
            lib,
            handoff,
            accounting,
        });
        Ok(())
    };
    let key = |lib: Lib| format!("bench:p3:{}", lib.id());
    let (a, b) = (
        rt.block_on(Ours::connect(&url))?,
        rt.block_on(Ours::connect(&url))?,
    );
    measure(Lib::Ours, &mut |w, n| {
        rt.block_on(handoff(a.clone(), b.clone(), &key(Lib::Ours), w, n))
    })?;
    let (a, b) = (Rslock::new(&url), Rslock::new(&url));
    measure(Lib::Rslock, &mut |w, n| {
        rt.block_on(handoff(a.clone(), b.clone(), &key(Lib::Rslock), w, n))
    })?;
    let (a, b) = (Redlock::new(&url), Redlock::new(&url));
    measure(Lib::Redlock, &mut |w, n| {
        handoff_sync(&a, &b, &key(Lib::Redlock), w, n)
    })?;
    Ok(P3 { config, rows })
}

/// How many samples are at or below zero.
fn non_positive(l: &Summary) -> usize {
    l.sorted_us.partition_point(|us| *us <= 0.0)
}

impl Figure for P3 {
    fn goals(&self, r: &Results) -> Vec<Goal> {
        let rtt = r.rtt();
        let ours = self.row(Lib::Ours);
        let p50 = ours.handoff.latency.p50;
        let woken = ["publish", "subscribe"].iter().any(|c| {
            ours.accounting.top.contains_key(*c) || ours.accounting.inner.contains_key(*c)
        });
        let how = if woken {
            "The release wakes the waiter (the server counted SUBSCRIBE/PUBLISH traffic in this run), \
             so the hand-off is the notification's trip to the waiter's client plus one acquire round \
             trip, plus the task wake-ups in between"
        } else {
            "No release notifications were seen (no SUBSCRIBE/PUBLISH in the server's counts): the \
             waiter polls, so the hand-off is the remainder of its backoff sleep when the release \
             lands, not round trips"
        };
        vec![
            Goal {
                name: "P3 contended hand-off p50",
                target: format!("≤ {MAX_RTT} × PING RTT"),
                measured: format!("{} (p50 {})", times(p50 / rtt), dur(p50)),
                pass: p50 / rtt <= MAX_RTT,
                bound: format!(
                    "**P3: hand-off p50 {} = {} RTT (p99 {}).** {how}. Per hand-off round: {} round \
                     trips; commands {}.",
                    dur(p50),
                    times(p50 / rtt),
                    dur(ours.handoff.latency.p99),
                    sig3(ours.accounting.round_trips_per_cycle()),
                    ours.accounting.described(),
                ),
            },
            ahead_goal(
                "P3 ahead of both peers",
                "lower p50 hand-off",
                p50,
                |l| self.p50(l),
                true,
                dur,
                |peer| {
                    let p = self.row(peer);
                    format!(
                        "**P3: behind {}**, p50 {} against {} ({} against {} RTT). Per hand-off \
                         round lock-runtime sends {} round trips ({}), {} sends {} ({}).",
                        peer.name(),
                        dur(p50),
                        dur(self.p50(peer)),
                        sig3(p50 / rtt),
                        sig3(self.p50(peer) / rtt),
                        sig3(ours.accounting.round_trips_per_cycle()),
                        ours.accounting.described(),
                        peer.name(),
                        sig3(p.accounting.round_trips_per_cycle()),
                        p.accounting.described(),
                    )
                },
            ),
        ]
    }

    fn section(&self, r: &Results) -> String {
        let mut w = String::new();
        let ours = self.p50(Lib::Ours);
        let _ = writeln!(w, "### P3: contended hand-off, two clients, one key\n");
        header(
            &mut w,
            "| Library | p50 | p99 | p999 | min | max | p50 ÷ PING p50 | lock-runtime p50 ÷ this p50 | round trips per round | commands per round | samples ≤ 0 | samples (discarded) |",
        );
        for row in &self.rows {
            let l = &row.handoff.latency;
            let below = non_positive(l);
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} ({}) |",
                row.lib.name(),
                dur(l.p50),
                dur(l.p99),
                dur(l.p999),
                dur(l.min),
                dur(l.max),
                times(l.p50 / r.rtt()),
                if row.lib == Lib::Ours {
                    "-".to_owned()
                } else {
                    times(ours / l.p50)
                },
                sig3(row.accounting.round_trips_per_cycle()),
                row.accounting.described(),
                if below == 0 {
                    "0".to_owned()
                } else {
                    format!(
                        "{below} ({} %)",
                        sig3(below as f64 * 100.0 / l.n.max(1) as f64)
                    )
                },
                count(l.n as f64),
                row.handoff.discarded
            );
        }
        let _ = writeln!(
            w,
            "\nA round is one hand-off: the holder's acquire and release and the waiter's whole wait, \
             acquire and release. Its commands show how each waiter waits. A sample is at or below zero \
             when the waiter's acquire returned before the holder's task resumed after its own release \
             reply (both replies leave the server together); the plot's log scale draws such samples at \
             1 µs.\n"
        );
        w
    }

    fn method(&self, _r: &Results) -> Option<String> {
        Some(format!(
            "- **P3.** Two clients (two connections) on one key. Per sample the holder acquires, tells \
             the waiter to start a waiting acquire, holds for 2-11 ms (the same cycling sequence for \
             every library), releases, and notes when its release returned; the waiter notes when its \
             acquire returned. The sample is the difference. A sample is discarded if the waiter \
             started less than {} before the release (it might not have been waiting yet). \
             lock-runtime waits with `.wait(60 s)`. A sample can come out negative: the holder's task \
             may be scheduled a little after its release reply arrives, and the waiter's acquire can \
             return first.",
            dur_of(MIN_WAITER_HEAD_START)
        ))
    }

    fn plots(&self, r: &Results, dir: &Path) -> Res<Vec<PathBuf>> {
        let series: Vec<CdfSeries<'_>> = self
            .rows
            .iter()
            .map(|row| {
                let l = &row.handoff.latency;
                let below = match non_positive(l) {
                    0 => String::new(),
                    k => format!("; {k} ≤ 0"),
                };
                CdfSeries {
                    name: format!("{} (p50 {}{below})", row.lib.name(), dur(l.p50)),
                    sorted_us: &l.sorted_us,
                }
            })
            .collect();
        let goal_us = MAX_RTT * r.rtt();
        let path = dir.join(CDF_FILE);
        plots::cdf(
            &path,
            "P3: contended hand-off, release returned -> waiter's acquire returned",
            &series,
            Some((
                goal_us / 1000.0,
                format!("goal: {MAX_RTT} × PING RTT = {}", dur(goal_us)),
            )),
        )?;
        Ok(vec![path])
    }

    fn tsv(&self, r: &Results) -> Vec<TsvLine> {
        let mut out = Vec::new();
        for row in &self.rows {
            let (id, l) = (row.lib.id(), &row.handoff.latency);
            out.push((format!("p3.{id}.p50"), l.p50, "us"));
            out.push((format!("p3.{id}.p99"), l.p99, "us"));
            out.push((format!("p3.{id}.p999"), l.p999, "us"));
            out.push((format!("p3.{id}.ratio_ping"), l.p50 / r.rtt(), "x"));
        }
        out
    }

    fn ratios(&self, r: &Results) -> Vec<Ratios> {
        let p50 = self.p50(Lib::Ours);
        vec![ratio_row(
            "P3 hand-off p50",
            p50,
            |l| self.p50(l),
            format!("{} × PING RTT", sig3(p50 / r.rtt())),
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hold_times_cover_2_to_11_ms() {
        let mut ms: Vec<u128> = (0..10).map(|i| hold_time(i).as_millis()).collect();
        ms.sort();
        assert_eq!(ms, (2..=11).collect::<Vec<u128>>());
    }
}
