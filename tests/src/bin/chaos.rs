//! The chaos driver: runs each fault scenario against real `redis-server` processes and
//! `chaos-worker` processes, checks the recorded history, and prints (or writes) the table
//! published as `RELIABILITY.md`.
//!
//! ```text
//! chaos [--quick] [--out RELIABILITY.md] [SCENARIO...]
//! ```
//!
//! `SCENARIO` filters by row id (`0`, `1`, `2a`, `3`, `5b`, ...) or prefix (`2`, `5`).
//! `--quick` runs each scenario briefly and only judges safety (overlaps), never speed; the
//! exit status is non-zero when a judged guarantee did not hold.
//!
//! Use `scripts/chaos`, which builds the binaries first.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use lock_tests::history::{Entry, History, Recorder, Report, now_ns};
use lock_tests::proxy::{Fault, FaultProxy};
use lock_tests::{RedisCluster, RedisServer, SENTINEL_SERVICE, SentinelGroup, redis_server_binary};

/// The lock TTL of every scenario: short enough to keep runs brief, long enough that a
/// debug build on a busy 2-core machine renews in time.
const TTL: Duration = Duration::from_millis(500);
/// How long a worker's section holds the lock: longer than a TTL, so renewals are needed,
/// and a fault in its first 150 ms always lands mid-hold.
const HOLD: (Duration, Duration) = (Duration::from_millis(700), Duration::from_millis(1000));
/// Slack allowed in the timing figures of scenarios 3 to 5.
const MARGIN: Duration = Duration::from_millis(100);
const WORKERS: usize = 3;
const KEYS: usize = 2;
const TASKS: usize = 2;
/// Warm-up before the first fault: workers connected and contending.
const WARM_UP: Duration = Duration::from_millis(800);

type Fallible<T> = Result<T, String>;

fn ms(d: Duration) -> String {
    if d == Duration::MAX {
        "never".to_owned()
    } else if d < Duration::from_millis(10) {
        format!("{:.1} ms", d.as_secs_f64() * 1e3)
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// One guarantee judged in one row.
struct Check {
    what: String,
    held: bool,
    /// Safety checks (overlaps) are judged in `--quick` mode too; the others only in full runs.
    safety: bool,
}

/// One row of the table.
struct Row {
    id: &'static str,
    scenario: String,
    report: Option<Report>,
    figures: Vec<String>,
    checks: Vec<Check>,
}

impl Row {
    fn new(id: &'static str, scenario: impl Into<String>) -> Row {
        Row {
            id,
            scenario: scenario.into(),
            report: None,
            figures: Vec::new(),
            checks: Vec::new(),
        }
    }

    fn check(&mut self, what: impl Into<String>, held: bool, safety: bool) {
        self.checks.push(Check {
            what: what.into(),
            held,
            safety,
        });
    }

    fn figure(&mut self, text: impl Into<String>) {
        self.figures.push(text.into());
    }

    /// Whether every judged check held (`quick`: only the safety checks are judged).
    fn held(&self, quick: bool) -> bool {
        self.checks.iter().all(|c| c.held || !self.judges(c, quick))
    }

    /// A quick run judges only safety.
    fn judges(&self, check: &Check, quick: bool) -> bool {
        check.safety || !quick
    }

    fn verdict(&self, quick: bool) -> String {
        if self.held(quick) {
            "**held**".to_owned()
        } else {
            let failed: Vec<&str> = self
                .checks
                .iter()
                .filter(|c| !c.held && self.judges(c, quick))
                .map(|c| c.what.as_str())
                .collect();
            format!("**NOT HELD**: {}", failed.join("; "))
        }
    }
}

/// A worker process and the proxy between it and the lock server.
struct Worker {
    name: String,
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    /// The proxy between the worker and `lock_server`; none when the rig's workers go
    /// straight to a Sentinel group or a cluster.
    proxy: Option<FaultProxy>,
    history: PathBuf,
}

impl Worker {
    fn proxy(&self) -> &FaultProxy {
        self.proxy
            .as_ref()
            .expect("a worker of a rig with proxies (not Sentinel or Cluster)")
    }
}

/// Servers, proxies, workers and history files of one scenario run.
struct Rig {
    // Workers before servers: they are killed first on drop.
    workers: Vec<Worker>,
    lock_server: RedisServer,
    register: RedisServer,
    driver: Recorder,
    driver_log: PathBuf,
    dir: tempfile::TempDir,
    worker_bin: PathBuf,
    spawned: usize,
    /// How many keys the workers contend on.
    keys: usize,
    /// For a quorum run: the nodes, each behind one proxy that every worker goes through, so
    /// that a fault on it partitions that node from everyone.
    quorum: Vec<(FaultProxy, RedisServer)>,
    /// The lock TTL the workers use.
    ttl: Duration,
    /// For a Sentinel or Cluster run: the workers' `--url` and mode flags, instead of a proxy
    /// to `lock_server` (which such a run leaves unused).
    direct: Option<Vec<String>>,
}

impl Rig {
    fn new(server_args: &[&str]) -> Fallible<Rig> {
        let lock_server = RedisServer::builder()
            .args(server_args)
            .start()
            .map_err(|e| format!("lock server: {e}"))?;
        let register = RedisServer::start().map_err(|e| format!("register server: {e}"))?;
        // CHAOS_KEEP=1 keeps every scenario's histories and worker logs for inspection.
        let dir = tempfile::Builder::new()
            .prefix("chaos-")
            .disable_cleanup(std::env::var_os("CHAOS_KEEP").is_some())
            .tempdir()
            .map_err(|e| e.to_string())?;
        if std::env::var_os("CHAOS_KEEP").is_some() {
            eprintln!("chaos: histories kept in {}", dir.path().display());
        }
        let driver_log = dir.path().join("driver.log");
        let driver = Recorder::create(&driver_log).map_err(|e| e.to_string())?;
        let worker_bin = std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("chaos-worker");
        if !worker_bin.exists() {
            return Err(format!(
                "{} is missing: build it with `cargo build -p lock-tests --bins` (scripts/chaos does)",
                worker_bin.display()
            ));
        }
        Ok(Rig {
            workers: Vec::new(),
            lock_server,
            register,
            driver,
            driver_log,
            dir,
            worker_bin,
            spawned: 0,
            keys: KEYS,
            quorum: Vec::new(),
            ttl: TTL,
            direct: None,
        })
    }

    /// Turns the rig into a quorum rig of `n` nodes: workers spawned from now on lock on all
    /// of them, each through its node's proxy.
    fn with_quorum(mut self, n: usize) -> Fallible<Rig> {
        for i in 0..n {
            let server = RedisServer::start().map_err(|e| format!("quorum node {i}: {e}"))?;
            let proxy = FaultProxy::start(server.addr()).map_err(|e| e.to_string())?;
            self.quorum.push((proxy, server));
        }
        Ok(self)
    }

    /// Starts one more worker, behind a proxy of its own, for `duration`.
    fn spawn(
        &mut self,
        duration: Duration,
        hold: (Duration, Duration),
        extra: &[&str],
    ) -> Fallible<()> {
        let name = format!("w{}", self.spawned);
        self.spawned += 1;
        let (proxy, target) = match &self.direct {
            Some(target) => (None, target.clone()),
            None => {
                let proxy =
                    FaultProxy::start(self.lock_server.addr()).map_err(|e| e.to_string())?;
                let url = if self.quorum.is_empty() {
                    proxy.url()
                } else {
                    let urls: Vec<String> = self.quorum.iter().map(|(p, _)| p.url()).collect();
                    urls.join(",")
                };
                (Some(proxy), vec!["--url".to_owned(), url])
            }
        };
        let history = self.dir.path().join(format!("{name}.log"));
        let mut child = Command::new(&self.worker_bin)
            .args(["--name", &name])
            .args(&target)
            .args(["--register", &self.register.url()])
            .arg("--history")
            .arg(&history)
            .args([
                "--keys",
                &self.keys.to_string(),
                "--tasks",
                &TASKS.to_string(),
            ])
            .args(["--ttl-ms", &self.ttl.as_millis().to_string()])
            .args([
                "--hold-ms",
                &format!("{},{}", hold.0.as_millis(), hold.1.as_millis()),
            ])
            .args(["--duration-ms", &duration.as_millis().to_string()])
            .args(extra)
            .stdin(Stdio::piped())
            .stderr(
                std::fs::File::create(self.dir.path().join(format!("{name}.stderr")))
                    .map_err(|e| e.to_string())?,
            )
            .spawn()
            .map_err(|e| format!("{}: {e}", self.worker_bin.display()))?;
        let stdin = child.stdin.take();
        self.workers.push(Worker {
            name,
            child: Some(child),
            stdin,
            proxy,
            history,
        });
        Ok(())
    }

    fn spawn_many(&mut self, n: usize, duration: Duration, extra: &[&str]) -> Fallible<()> {
        for _ in 0..n {
            self.spawn(duration, HOLD, extra)?;
        }
        Ok(())
    }

    fn record(&self, entry: &Entry) {
        if let Err(e) = self.driver.record(entry) {
            eprintln!("chaos: cannot write the driver's history: {e}");
        }
    }

    fn mark(&self, name: &str) -> u64 {
        let at = now_ns();
        self.record(&Entry::Mark {
            name: name.into(),
            at,
        });
        at
    }

    fn worker(&self, name: &str) -> &Worker {
        self.workers
            .iter()
            .find(|w| w.name == name)
            .expect("a worker of this rig")
    }

    fn worker_mut(&mut self, name: &str) -> &mut Worker {
        self.workers
            .iter_mut()
            .find(|w| w.name == name)
            .expect("a worker of this rig")
    }

    /// Waits until a live worker is inside a section it entered between `min` and `max`
    /// ago, and names it: the moment to hit a holder mid-hold.
    fn wait_for_holder(&mut self, min: Duration, max: Duration) -> Fallible<String> {
        // Generous: on a loaded 2-core CI machine, workers restarting after the previous
        // fault can take seconds to get back into a section.
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let now = now_ns();
            for w in &mut self.workers {
                let alive = w
                    .child
                    .as_mut()
                    .is_some_and(|c| matches!(c.try_wait(), Ok(None)));
                if !alive {
                    continue;
                }
                let Ok(h) = History::read([&w.history]) else {
                    continue;
                };
                let inside = h.sections().into_iter().any(|s| {
                    s.leave.is_none()
                        && now >= s.enter + min.as_nanos() as u64
                        && now <= s.enter + max.as_nanos() as u64
                });
                if inside {
                    return Ok(w.name.clone());
                }
            }
            sleep(Duration::from_millis(5));
        }
        Err("no worker entered a critical section within 30 s".into())
    }

    /// SIGKILLs a worker; its open sections end at the `down` line written just before.
    fn kill(&mut self, name: &str) {
        let at = now_ns();
        self.record(&Entry::Down {
            worker: name.into(),
            at,
            keys: None,
        });
        let w = self.worker_mut(name);
        if let Some(mut child) = w.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Asks a worker to shut down (a line on its stdin), and waits for it to exit.
    fn shut_down(&mut self, name: &str) -> Fallible<()> {
        let w = self.worker_mut(name);
        if let Some(mut stdin) = w.stdin.take() {
            let _ = stdin.write_all(b"stop\n");
        }
        let Some(mut child) = w.child.take() else {
            return Ok(());
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return Ok(()),
                Ok(None) if Instant::now() < deadline => sleep(Duration::from_millis(5)),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("worker {name} did not shut down within 10 s"));
                }
            }
        }
    }

    /// Waits for every worker to finish its run; kills (and records) any that overstays.
    fn finish(&mut self, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        let mut problems = Vec::new();
        let names: Vec<String> = self.workers.iter().map(|w| w.name.clone()).collect();
        for name in names {
            let w = self.worker_mut(&name);
            let Some(child) = w.child.as_mut() else {
                continue;
            };
            let status = loop {
                match child.try_wait() {
                    Ok(Some(status)) => break Some(status),
                    Ok(None) if Instant::now() < deadline => sleep(Duration::from_millis(10)),
                    _ => break None,
                }
            };
            match status {
                Some(s) if s.success() => {
                    w.child = None;
                }
                Some(s) => {
                    w.child = None;
                    problems.push(format!("worker {name} exited with {s}"));
                }
                None => {
                    self.kill(&name);
                    problems.push(format!("worker {name} overstayed and was killed"));
                }
            }
        }
        problems
    }

    fn history(&self) -> Fallible<History> {
        let mut paths: Vec<&Path> = self.workers.iter().map(|w| w.history.as_path()).collect();
        paths.push(&self.driver_log);
        History::read(paths).map_err(|e| e.to_string())
    }

    /// Finishes the run and checks its history; records the overlap verdict on `row`.
    fn conclude(
        &mut self,
        row: &mut Row,
        within: Duration,
        overlaps_allowed: bool,
    ) -> Fallible<History> {
        for problem in self.finish(within) {
            row.figure(problem);
        }
        let history = self.history()?;
        let report = history.check();
        if !overlaps_allowed {
            row.check("0 overlaps", report.overlaps.is_empty(), true);
        }
        if report.sections == 0 {
            row.check("some critical sections ran", false, true);
        }
        eprintln!("chaos {}: {report}", row.id);
        if !report.overlaps.is_empty() {
            row.figure(fencing_verdict(&history, &report));
        }
        if !report.handovers.is_empty() {
            row.figure(format!(
                "{} handovers measured (a key held by a worker that went down, with another \
                 worker waiting)",
                report.handovers.len()
            ));
        }
        if let Some(margin) = loss_margin(&history) {
            row.figure(margin);
        }
        row.report = Some(report);
        Ok(history)
    }
}

/// Whether the fencing tokens of overlapping holders would have protected the storage: the
/// holder that entered second must carry the higher token, so that the register refuses the
/// stale holder's late writes.
fn fencing_verdict(history: &History, report: &Report) -> String {
    let sections = history.sections();
    let fence_of = |holder: &str| {
        sections
            .iter()
            .find(|s| s.holder == holder)
            .and_then(|s| s.fence)
    };
    let (mut ordered, mut equal, mut inverted) = (0, 0, 0);
    for o in &report.overlaps {
        match (fence_of(&o.first), fence_of(&o.second)) {
            (Some(first), Some(second)) if second > first => ordered += 1,
            (Some(first), Some(second)) if second == first => equal += 1,
            (Some(_), Some(_)) => inverted += 1,
            _ => {}
        }
    }
    if ordered + equal + inverted == 0 {
        return "no fencing tokens".to_owned();
    }
    // The register accepts a token equal to the highest, since a holder writes its own twice.
    let same = if equal > 0 {
        format!(
            "in {equal}, the same token (the counter was lost with the lock), so it accepts \
             both holders' writes; "
        )
    } else {
        String::new()
    };
    let first = &report.overlaps[0];
    format!(
        "fencing: in {ordered} of {n} overlaps the later holder had the higher token, so the \
         register refuses the stale holder's late writes; {same}in {inverted}, the lower one, \
         so it refuses the new holder's instead. First overlap: {} entered `{}` while {} was \
         inside, for {}",
        first.second,
        first.key,
        first.first,
        ms(first.length),
        n = report.overlaps.len(),
    )
}

/// How long before the next holder's entry the bodies cancelled by a loss had left: the
/// safety margin the watchdog kept (negative: they overlapped).
fn loss_margin(history: &History) -> Option<String> {
    let sections = history.sections();
    let mut smallest: Option<i128> = None;
    for entry in &history.entries {
        let Entry::Lost { holder, key, .. } = entry else {
            continue;
        };
        let Some(lost) = sections.iter().find(|s| &s.holder == holder) else {
            continue;
        };
        let Some(left) = lost.leave else { continue };
        let next = sections
            .iter()
            .filter(|s| &s.key == key && &s.holder != holder && s.enter >= lost.enter)
            .map(|s| s.enter)
            .min();
        if let Some(next) = next {
            let margin = i128::from(next) - i128::from(left);
            smallest = Some(smallest.map_or(margin, |m| m.min(margin)));
        }
    }
    let margin = smallest?;
    Some(if margin >= 0 {
        format!(
            "bodies cancelled by a loss had left at least {} before the next holder entered",
            ms(Duration::from_nanos(margin as u64))
        )
    } else {
        format!(
            "a body cancelled by a loss left {} after the next holder entered",
            ms(Duration::from_nanos(margin.unsigned_abs() as u64))
        )
    })
}

struct Plan {
    quick: bool,
}

impl Plan {
    fn rounds(&self) -> usize {
        if self.quick { 1 } else { 8 }
    }
}

/// 0. The negative control: the same workers with the lock turned off must overlap.
fn control(plan: &Plan) -> Fallible<Row> {
    let mut row = Row::new(
        "0",
        "Negative control: the same workers with the lock turned off (`--no-lock`)",
    );
    let mut rig = Rig::new(&[])?;
    let duration = if plan.quick { 1_500 } else { 4_000 };
    for _ in 0..WORKERS {
        rig.spawn(
            Duration::from_millis(duration),
            (Duration::from_millis(20), Duration::from_millis(80)),
            &["--no-lock"],
        )?;
    }
    rig.conclude(&mut row, Duration::from_secs(10), true)?;
    let overlaps = row.report.as_ref().map_or(0, |r| r.overlaps.len());
    row.check(
        "the checker sees overlaps (it can see what it rules out)",
        overlaps > 0,
        true,
    );
    Ok(row)
}

/// 1. A holder's connection to Redis is blackholed mid-hold.
fn partition(plan: &Plan, id: &'static str, fault: Fault) -> Fallible<Row> {
    let what = match fault {
        Fault::Blackhole => "Partition (blackhole: connections open, bytes held)",
        Fault::Reset => "Connections reset, and new ones closed at once,",
        _ => "Fault",
    };
    let mut row = Row::new(
        id,
        format!(
            "{what} between the holder and Redis mid-hold, for 2 × TTL; TTL {}",
            ms(TTL)
        ),
    );
    let mut rig = Rig::new(&[])?;
    let round = 3 * TTL + Duration::from_millis(1_200);
    let duration = WARM_UP + round * plan.rounds() as u32 + Duration::from_secs(1);
    rig.spawn_many(WORKERS, duration, &[])?;
    sleep(WARM_UP);
    let mut cut = Vec::new();
    for _ in 0..plan.rounds() {
        let holder = rig.wait_for_holder(Duration::from_millis(20), Duration::from_millis(150))?;
        let at = now_ns();
        rig.record(&Entry::Down {
            worker: holder.clone(),
            at,
            keys: None,
        });
        rig.worker(&holder).proxy().set(fault);
        rig.mark(&format!("cut-{holder}"));
        sleep(2 * TTL);
        rig.worker(&holder).proxy().set(Fault::Pass);
        rig.mark(&format!("heal-{holder}"));
        cut.push((holder, at));
        sleep(TTL);
    }
    let history = rig.conclude(&mut row, duration + Duration::from_secs(10), false)?;
    // Every holder cut off must have been told: a `lost` line after the cut.
    let told = cut.iter().all(|(holder, at)| {
        history.entries.iter().any(|e| {
            matches!(e, Entry::Lost { holder: h, at: t, .. }
                if h.split('/').next() == Some(holder.as_str()) && t >= at)
        })
    });
    row.check(
        "the cut-off holder's body was cancelled with `Lost`",
        told,
        false,
    );
    let report = row.report.as_ref().expect("concluded");
    let handover = report.longest_handover();
    row.check(
        "a waiting worker took over",
        handover != Some(Duration::MAX),
        false,
    );
    row.figure(format!(
        "{} cuts; a waiting worker entered at most {} after the cut",
        cut.len(),
        handover.map_or("– (no waiter)".to_owned(), ms)
    ));
    Ok(row)
}

/// 1c. The lock server stalls (SIGSTOP) mid-hold: every client is cut off at once.
fn stall(plan: &Plan) -> Fallible<Row> {
    let mut row = Row::new(
        "1c",
        format!(
            "Redis stalled (SIGSTOP) mid-hold for 2 × TTL, then resumed (SIGCONT); TTL {}",
            ms(TTL)
        ),
    );
    let mut rig = Rig::new(&[])?;
    let round = 3 * TTL + Duration::from_millis(1_200);
    let duration = WARM_UP + round * plan.rounds() as u32 + Duration::from_secs(1);
    rig.spawn_many(WORKERS, duration, &[])?;
    sleep(WARM_UP);
    for _ in 0..plan.rounds() {
        rig.wait_for_holder(Duration::from_millis(20), Duration::from_millis(150))?;
        rig.mark("server-stop");
        let paused = rig.lock_server.pause();
        sleep(2 * TTL);
        let resumed = rig.lock_server.resume();
        rig.mark("server-cont");
        paused
            .and(resumed)
            .map_err(|e| format!("SIGSTOP/SIGCONT: {e}"))?;
        sleep(TTL + Duration::from_millis(700));
    }
    rig.conclude(&mut row, duration + Duration::from_secs(10), false)?;
    let report = row.report.as_ref().expect("concluded");
    row.check(
        "the holders' bodies were cancelled with `Lost`",
        report.losses > 0,
        false,
    );
    Ok(row)
}

/// 2. Added round-trip latency on every client (a, b), or past the deadline on the holder (c).
fn latency(plan: &Plan, id: &'static str, rtt: Duration, expect_loss: bool) -> Fallible<Row> {
    let what = if expect_loss {
        format!(
            "Latency spike past the lease deadline: round trip +{} on the holder only; TTL {}",
            ms(rtt),
            ms(TTL)
        )
    } else {
        format!(
            "Latency spike: round trip +{} on every client ({} ttl/3); TTL {}",
            ms(rtt),
            if rtt < TTL / 3 { "below" } else { "above" },
            ms(TTL)
        )
    };
    let mut row = Row::new(id, what);
    let mut rig = Rig::new(&[])?;
    let spike = if expect_loss {
        2 * TTL
    } else if plan.quick {
        Duration::from_millis(2_000)
    } else {
        Duration::from_millis(6_000)
    };
    let rounds = if expect_loss { plan.rounds() } else { 1 };
    let round = spike + Duration::from_millis(1_200);
    let duration = WARM_UP + round * rounds as u32 + Duration::from_secs(1);
    rig.spawn_many(WORKERS, duration, &[])?;
    sleep(WARM_UP);
    for _ in 0..rounds {
        let targets: Vec<String> = if expect_loss {
            vec![rig.wait_for_holder(Duration::from_millis(20), Duration::from_millis(150))?]
        } else {
            rig.workers.iter().map(|w| w.name.clone()).collect()
        };
        rig.mark("spike");
        for t in &targets {
            rig.worker(t).proxy().set(Fault::Latency(rtt));
        }
        sleep(spike);
        for t in &targets {
            rig.worker(t).proxy().set(Fault::Pass);
        }
        rig.mark("calm");
        sleep(Duration::from_millis(1_200));
    }
    rig.conclude(&mut row, duration + Duration::from_secs(10), false)?;
    let report = row.report.as_ref().expect("concluded");
    if expect_loss {
        row.check(
            "the lock was lost (and the body cancelled)",
            report.losses > 0,
            false,
        );
    } else {
        row.check(
            "no loss: renewals late but in time",
            report.losses == 0,
            false,
        );
    }
    Ok(row)
}

/// 3. The holder process is killed with SIGKILL.
fn kill_holder(plan: &Plan) -> Fallible<Row> {
    let mut row = Row::new(
        "3",
        format!(
            "Holder process killed with SIGKILL mid-hold; TTL {}",
            ms(TTL)
        ),
    );
    let mut rig = Rig::new(&[])?;
    // One key: every other task waits for it, so the handover is always measured.
    rig.keys = 1;
    let round = TTL + Duration::from_millis(1_000);
    // With one key, finding a holder just after its entry takes up to a hold: allow for it.
    let duration = WARM_UP + (round + HOLD.1) * plan.rounds() as u32 + Duration::from_secs(1);
    let ends = Instant::now() + duration;
    rig.spawn_many(WORKERS, duration, &[])?;
    sleep(WARM_UP);
    for _ in 0..plan.rounds() {
        if Instant::now() + round + Duration::from_secs(1) > ends {
            break; // the workers are about to finish
        }
        let holder = rig.wait_for_holder(Duration::from_millis(20), Duration::from_millis(150))?;
        rig.kill(&holder);
        // A replacement keeps the contention up, and ends with the others.
        rig.spawn(ends.saturating_duration_since(Instant::now()), HOLD, &[])?;
        sleep(round);
    }
    rig.conclude(&mut row, duration + Duration::from_secs(10), false)?;
    let report = row.report.as_ref().expect("concluded");
    let handover = report.longest_handover().unwrap_or(Duration::MAX);
    row.check(
        format!("next holder in within TTL + {}", ms(MARGIN)),
        handover <= TTL + MARGIN,
        false,
    );
    Ok(row)
}

/// 4. The holder shuts down gracefully (cancel its work, `close()`, runtime ends).
fn shutdown(plan: &Plan, id: &'static str, close: bool) -> Fallible<Row> {
    let what = if close {
        "Holder shuts down with `LockClient::close()` (which cancels its work), then its runtime ends"
            .to_owned()
    } else {
        "Holder's runtime shuts down without `close()`, its guards still alive (for comparison)"
            .to_owned()
    };
    let mut row = Row::new(id, what);
    let mut rig = Rig::new(&[])?;
    // One key: every other task waits for it, so the handover is always measured.
    rig.keys = 1;
    let round = TTL + Duration::from_millis(1_000);
    // With one key, finding a holder just after its entry takes up to a hold: allow for it.
    let duration = WARM_UP + (round + HOLD.1) * plan.rounds() as u32 + Duration::from_secs(1);
    let extra: &[&str] = if close { &["--close"] } else { &[] };
    let ends = Instant::now() + duration;
    rig.spawn_many(WORKERS, duration, extra)?;
    sleep(WARM_UP);
    for _ in 0..plan.rounds() {
        if Instant::now() + round + Duration::from_secs(1) > ends {
            break; // the workers are about to finish
        }
        let holder = rig.wait_for_holder(Duration::from_millis(20), Duration::from_millis(150))?;
        if let Err(e) = rig.shut_down(&holder) {
            row.figure(e);
        }
        // A replacement keeps the contention up, and ends with the others.
        rig.spawn(ends.saturating_duration_since(Instant::now()), HOLD, extra)?;
        sleep(round);
    }
    rig.conclude(&mut row, duration + Duration::from_secs(10), false)?;
    let report = row.report.as_ref().expect("concluded");
    let handover = report.longest_handover().unwrap_or(Duration::MAX);
    if close {
        row.check(
            format!("next holder in within {} of the shutdown order", ms(MARGIN)),
            handover <= MARGIN,
            false,
        );
    } else {
        row.figure("not a guarantee: shows what `close()` is for".to_owned());
    }
    Ok(row)
}

/// 5. The lock server is killed and restarted mid-hold.
fn restart(plan: &Plan, id: &'static str, persistent: bool) -> Fallible<Row> {
    let (args, what): (&[&str], &str) = if persistent {
        (
            &["--appendonly", "yes", "--appendfsync", "always"],
            "Redis killed (SIGKILL) and restarted mid-hold, with `appendonly yes`, `appendfsync always`",
        )
    } else {
        (
            &[],
            "Redis killed (SIGKILL) and restarted mid-hold, without persistence (overlap allowed)",
        )
    };
    let mut row = Row::new(id, format!("{what}; TTL {}", ms(TTL)));
    let mut rig = Rig::new(args)?;
    let round = TTL + Duration::from_millis(1_500);
    let duration = WARM_UP + round * plan.rounds() as u32 + Duration::from_secs(1);
    rig.spawn_many(WORKERS, duration, &[])?;
    sleep(WARM_UP);
    let mut ups = Vec::new();
    for _ in 0..plan.rounds() {
        rig.wait_for_holder(Duration::from_millis(20), Duration::from_millis(150))?;
        rig.mark("server-kill");
        rig.lock_server.kill();
        rig.lock_server
            .restart()
            .map_err(|e| format!("restart: {e}"))?;
        ups.push(rig.mark("server-up"));
        sleep(round);
    }
    let history = rig.conclude(&mut row, duration + Duration::from_secs(10), !persistent)?;
    let report = row.report.clone().expect("concluded");
    if persistent {
        row.check(
            "fencing counter never went backwards",
            report.fence_regressions == 0,
            true,
        );
    } else {
        row.figure(format!(
            "fencing counter went backwards {} times",
            report.fence_regressions
        ));
    }
    // How soon a holder noticed: the first `lost` after each restart.
    let mut slowest = Duration::ZERO;
    for up in &ups {
        let first_loss = history
            .entries
            .iter()
            .filter_map(|e| match e {
                Entry::Lost { at, .. } if at >= up => Some(*at),
                _ => None,
            })
            .min();
        let noticed = first_loss.map_or(Duration::MAX, |t| Duration::from_nanos(t - up));
        slowest = slowest.max(noticed);
    }
    if persistent {
        row.figure(format!(
            "{} losses after {} restarts",
            report.losses,
            ups.len()
        ));
    } else {
        row.check(
            format!("loss noticed within ttl/3 + {} of the restart", ms(MARGIN)),
            slowest <= TTL / 3 + MARGIN,
            false,
        );
        row.figure(format!(
            "loss noticed at most {} after the server was back",
            ms(slowest)
        ));
    }
    Ok(row)
}

/// 7. Quorum of five nodes: a minority partitioned from every client, then a majority.
fn quorum(plan: &Plan) -> Fallible<Row> {
    const NODES: usize = 5;
    let mut row = Row::new(
        "7",
        format!(
            "Quorum of {NODES} nodes: 2 partitioned (blackhole) from every client, then 3; \
             TTL {}, wait 800 ms",
            ms(TTL)
        ),
    );
    let mut rig = Rig::new(&[])?.with_quorum(NODES)?;
    let phase = if plan.quick {
        Duration::from_millis(2_500)
    } else {
        Duration::from_millis(6_000)
    };
    let settle = Duration::from_millis(1_500);
    let duration = WARM_UP + 2 * (phase + settle) + Duration::from_secs(1);
    rig.spawn_many(WORKERS, duration, &["--wait-ms", "800"])?;
    sleep(WARM_UP);
    let mut windows = Vec::new();
    for cut in [2, 3] {
        let from = rig.mark(&format!("partition-{cut}-of-{NODES}"));
        for (proxy, _) in &rig.quorum[..cut] {
            proxy.set(Fault::Blackhole);
        }
        sleep(phase);
        for (proxy, _) in &rig.quorum[..cut] {
            proxy.set(Fault::Pass);
        }
        let to = rig.mark("heal");
        windows.push((from, to));
        sleep(settle);
    }
    let history = rig.conclude(&mut row, duration + Duration::from_secs(10), false)?;
    // A section entered in a window: 100 ms of grace for an acquire answered just before.
    let grace = 100_000_000;
    let entered = |(from, to): (u64, u64)| {
        history
            .sections()
            .iter()
            .filter(|s| s.enter >= from + grace && s.enter < to)
            .count()
    };
    let no_quorum = |(from, to): (u64, u64)| {
        history
            .entries
            .iter()
            .filter(|e| {
                matches!(e, Entry::Fail { at, error, .. }
                    if error == "NoQuorum" && (from..to + grace).contains(at))
            })
            .count()
    };
    let (minority, majority) = (windows[0], windows[1]);
    let (in_minority, in_majority) = (entered(minority), entered(majority));
    row.check("minority cut: work continues", in_minority > 0, false);
    row.check(
        "majority cut: no work (no section entered)",
        in_majority == 0,
        true,
    );
    row.check(
        "majority cut: attempts fail with `NoQuorum`",
        no_quorum(majority) > 0,
        false,
    );
    row.figure(format!(
        "sections entered with 2 of {NODES} cut: {in_minority}; with 3 of {NODES} cut: \
         {in_majority}; `NoQuorum` failures with 3 cut: {}",
        no_quorum(majority)
    ));
    Ok(row)
}

/// Scenarios 6 and 8: a TTL longer than a failover takes (1 s before a silent primary counts
/// as down here, then an election), so that a holder lives through the failover and renews
/// on the new primary.
const FAILOVER_TTL: Duration = Duration::from_secs(10);
/// Holds longer than a failover, so that a holder whose lock the failover lost is still
/// inside when the next holder comes in (what an overlap takes), and narrow, so that a
/// section of 4.95 s is about to end: the moment to cut the replica off before the next
/// acquisition.
const FAILOVER_HOLD: (Duration, Duration) =
    (Duration::from_millis(5_000), Duration::from_millis(5_500));
/// The time budget of one failover round: find the moment, fail over, let the sections
/// running across it end, bring the dead server back as a replica.
const FAILOVER_ROUND: Duration = Duration::from_secs(16);
/// As many keys as tasks: a task that finishes a section often finds a free key, so that
/// the acquisitions made while a replica is cut off are not all handovers (a handover's lost
/// release leaves the previous holder's key on the replica, which keeps the next holder out
/// until it expires).
const FAILOVER_KEYS: usize = WORKERS * TASKS;
/// How long the replica stays cut off waiting for an acquisition: under the 1 s after which
/// the sentinels (or the cluster) would count it down and refuse to promote it.
const CUT_WINDOW: Duration = Duration::from_millis(700);
/// How many times a round cuts the replica off, waiting for a lock granted on a free key
/// (or refused), before it kills the primary anyway.
const CUT_ATTEMPTS: usize = 4;
/// What a failover scenario waits for the promotion, and for the group to settle after.
const SETTLE: Duration = Duration::from_secs(30);

/// How a failover round kills the primary.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kill {
    /// SIGKILL while locks are held, the replica in sync (as it is on loopback).
    Plain,
    /// The replica falls behind first: SIGSTOPped and its link dropped by the primary, so
    /// that the next acquisition (granted, or refused by `wait_for_replicas`) never reaches
    /// it; then the primary is SIGKILLed and the replica resumed and promoted.
    Behind,
}

impl Kill {
    fn name(self) -> &'static str {
        match self {
            Kill::Plain => "plain",
            Kill::Behind => "replica-behind",
        }
    }
}

impl Plan {
    /// Quick runs one round, with the replica behind: the case `wait_for_replicas` is for.
    fn failover_rounds(&self) -> Vec<Kill> {
        if self.quick {
            vec![Kill::Behind]
        } else {
            vec![Kill::Plain, Kill::Behind, Kill::Plain, Kill::Behind]
        }
    }
}

/// One field of a server's `INFO replication`.
fn replication(server: &RedisServer, field: &str) -> Result<String, String> {
    let mut con = server.connection().map_err(|e| e.to_string())?;
    let info: String = redis::cmd("INFO")
        .arg("replication")
        .query(&mut con)
        .map_err(|e| e.to_string())?;
    let prefix = format!("{field}:");
    Ok(info
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or("")
        .trim()
        .to_owned())
}

/// Polls `check` every 50 ms until it passes, for at most `timeout`.
fn wait_for(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<(), String>,
) -> Fallible<()> {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() >= deadline => {
                return Err(format!("{what}: not within {} s: {e}", timeout.as_secs()));
            }
            Err(_) => sleep(Duration::from_millis(50)),
        }
    }
}

/// Cuts a replica off from `primary`, after the replica was SIGSTOPped: the primary drops
/// its link, so that nothing the primary accepts from now on reaches the replica (a stopped
/// replica's socket would still deliver what was sent before the link dropped).
fn drop_replica_links(primary: &RedisServer) -> Fallible<()> {
    let mut con = primary
        .connection()
        .map_err(|e| format!("the primary: {e}"))?;
    redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("replica")
        .exec(&mut con)
        .map_err(|e| format!("CLIENT KILL TYPE replica: {e}"))
}

/// What was acquired while a replica was cut off from its primary.
#[derive(Default, Clone, Copy)]
struct Cut {
    /// Times the replica was cut off, until something was acquired on a free key.
    attempts: usize,
    /// Locks granted on a key that was free on the replica too (its previous holder, if
    /// any, had left before the cut): the failover loses them and leaves the key free.
    fresh: usize,
    /// Locks granted as a handover: the previous holder's release is lost as well, so the
    /// replica still has the previous lock, which keeps everyone out until it expires.
    handovers: usize,
    /// Acquisitions refused with `NotReplicated` (`wait_for_replicas`).
    refused: usize,
}

impl Cut {
    fn add(&mut self, other: Cut) {
        self.attempts += other.attempts;
        self.fresh += other.fresh;
        self.handovers += other.handovers;
        self.refused += other.refused;
    }
}

/// Watches the acquisitions on `keys` answered from `since` on, for at most `window`:
/// returns as soon as one was granted on a free key or refused with `NotReplicated`.
fn watch_cut(rig: &Rig, since: u64, keys: &[String], window: Duration) -> Cut {
    let deadline = Instant::now() + window;
    loop {
        let mut cut = Cut {
            attempts: 1,
            ..Cut::default()
        };
        let paths: Vec<&Path> = rig.workers.iter().map(|w| w.history.as_path()).collect();
        if let Ok(h) = History::read(paths) {
            let sections = h.sections();
            for s in &sections {
                if s.enter < since || !keys.contains(&s.key) {
                    continue;
                }
                let previous = sections
                    .iter()
                    .filter(|p| p.key == s.key && p.enter < s.enter)
                    .max_by_key(|p| p.enter);
                match previous {
                    Some(p) if p.leave.is_none_or(|l| l >= since) => cut.handovers += 1,
                    _ => cut.fresh += 1,
                }
            }
            cut.refused = h
                .entries
                .iter()
                .filter(|e| {
                    matches!(e, Entry::Fail { key, at, error, .. }
                        if *at >= since && error == "NotReplicated" && keys.contains(key))
                })
                .count();
        }
        if cut.fresh + cut.refused > 0 || Instant::now() >= deadline {
            return cut;
        }
        sleep(Duration::from_millis(5));
    }
}

/// Whether `replica`'s link to its primary is up.
fn link_up(replica: &RedisServer) -> Result<(), String> {
    match replication(replica, "master_link_status")? {
        link if link == "up" => Ok(()),
        link => Err(format!("replica link {link}")),
    }
}

/// The key of the section `worker` entered last and has not left.
fn held_key(rig: &Rig, worker: &str) -> Option<String> {
    let h = History::read([&rig.worker(worker).history]).ok()?;
    h.sections()
        .into_iter()
        .filter(|s| s.leave.is_none())
        .max_by_key(|s| s.enter)
        .map(|s| s.key)
}

/// The lock keys the workers of `rig` use.
fn rig_keys(rig: &Rig) -> Vec<String> {
    (0..rig.keys).map(|i| format!("chaos:{i}")).collect()
}

/// Waits for the moment to kill: a section just entered (`Plain`), or one about to end, so
/// that a waiter is about to acquire. Returns the key it holds.
fn failover_moment(rig: &mut Rig, kind: Kill) -> Fallible<String> {
    let (min, max) = match kind {
        Kill::Plain => (Duration::from_millis(20), Duration::from_millis(150)),
        Kill::Behind => (
            FAILOVER_HOLD.0 - Duration::from_millis(50),
            FAILOVER_HOLD.0 + Duration::from_millis(200),
        ),
    };
    let holder = rig.wait_for_holder(min, max)?;
    Ok(held_key(rig, &holder).unwrap_or_else(|| "chaos:0".to_owned()))
}

/// One failover round, as recorded.
struct Failover {
    kind: Kill,
    killed_at: u64,
    /// `Behind`: what was acquired while the replica was cut off.
    cut: Cut,
    /// From the kill to the promotion, as the driver saw it.
    took: Duration,
}

/// The figures of failover rounds: how long they took, what the cut-off acquisitions
/// became, and which rounds the overlaps followed.
fn failover_figures(row: &mut Row, rounds: &[Failover]) {
    let slowest = rounds.iter().map(|r| r.took).max().unwrap_or_default();
    let plain = rounds.iter().filter(|r| r.kind == Kill::Plain).count();
    let behind: Vec<&Failover> = rounds.iter().filter(|r| r.kind == Kill::Behind).collect();
    let mut cut = Cut::default();
    for r in &behind {
        cut.add(r.cut);
    }
    if behind.is_empty() {
        row.figure(format!(
            "{} failovers, each done at most {} after it was asked for",
            rounds.len(),
            ms(slowest)
        ));
    } else {
        row.figure(format!(
            "{} failovers ({plain} plain, {} with the replica behind), each promoted at most \
             {} after the kill; while the replica was cut off ({} times, up to {} each): {} \
             locks granted on a free key and {} as a handover (both lost in the failover), {} \
             acquires refused with `NotReplicated`",
            rounds.len(),
            behind.len(),
            ms(slowest),
            cut.attempts,
            ms(CUT_WINDOW),
            cut.fresh,
            cut.handovers,
            cut.refused,
        ));
    }
    let Some(report) = &row.report else { return };
    if report.overlaps.is_empty() {
        return;
    }
    let (mut after_plain, mut after_behind) = (0, 0);
    for o in &report.overlaps {
        match rounds.iter().rev().find(|r| r.killed_at <= o.from) {
            Some(r) if r.kind == Kill::Plain => after_plain += 1,
            Some(_) => after_behind += 1,
            None => {}
        }
    }
    row.figure(format!(
        "overlaps after a plain kill: {after_plain}; after a kill with the replica behind: \
         {after_behind}"
    ));
}

/// The fencing counter across failovers: it lives beside the lock, so it survives exactly
/// when the lock does (judged when nothing is lost: `wait_for_replicas`, a coordinated
/// failover).
fn fence_figure(row: &mut Row, judged: bool) {
    let regressions = row.report.as_ref().map_or(0, |r| r.fence_regressions);
    if judged {
        row.check(
            "fencing counter never went backwards",
            regressions == 0,
            false,
        );
    } else {
        row.figure(format!(
            "fencing counter went backwards {regressions} times (lost with the locks)"
        ));
    }
}

/// How long `conclude` waits for workers that end at `ends`: until then, and 15 s more.
fn until(ends: Instant) -> Duration {
    ends.saturating_duration_since(Instant::now()) + Duration::from_secs(15)
}

/// Whether a round must kill now: the workers end soon, and the failover and the sections
/// running across it need them alive.
fn last_call(ends: Instant) -> bool {
    Instant::now() + Duration::from_secs(12) > ends
}

/// Sleeps until the sections that were running at `killed_at` have ended.
fn let_sections_end(killed_at: u64) {
    let until = killed_at + (FAILOVER_HOLD.1 + Duration::from_secs(1)).as_nanos() as u64;
    let now = now_ns();
    if until > now {
        sleep(Duration::from_nanos(until - now));
    }
}

/// Spawns the workers of a failover scenario; returns when they end.
fn spawn_failover_workers(rig: &mut Rig, rounds: usize) -> Fallible<Instant> {
    let duration = WARM_UP + FAILOVER_ROUND * rounds as u32 + Duration::from_secs(2);
    let ends = Instant::now() + duration;
    for _ in 0..WORKERS {
        rig.spawn(duration, FAILOVER_HOLD, &["--wait-ms", "30000"])?;
    }
    Ok(ends)
}

/// Whether every sentinel names the group's primary and sees its replica healthy, and the
/// replica's link is up.
fn sentinels_settled(group: &SentinelGroup) -> Result<(), String> {
    let link = replication(&group.replica, "master_link_status")?;
    if link != "up" {
        return Err(format!("replica link {link}"));
    }
    for sentinel in &group.sentinels {
        let mut con = sentinel.connection().map_err(|e| e.to_string())?;
        let (_, port): (String, u16) = redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(SENTINEL_SERVICE)
            .query(&mut con)
            .map_err(|e| e.to_string())?;
        if port != group.primary.port() {
            return Err(format!("sentinel {} names {port}", sentinel.port()));
        }
        let replicas: Vec<Vec<String>> = redis::cmd("SENTINEL")
            .arg("REPLICAS")
            .arg(SENTINEL_SERVICE)
            .query(&mut con)
            .map_err(|e| e.to_string())?;
        let field = |r: &[String], name: &str| {
            r.chunks(2)
                .find(|w| w.len() == 2 && w[0] == name)
                .map(|w| w[1].clone())
                .unwrap_or_default()
        };
        let healthy = replicas.iter().any(|r| {
            field(r, "port") == group.replica.port().to_string() && field(r, "flags") == "slave"
        });
        if !healthy {
            return Err(format!(
                "sentinel {} does not see the replica healthy yet",
                sentinel.port()
            ));
        }
    }
    Ok(())
}

/// 6. A Sentinel-managed primary SIGKILLed with locks held; the sentinels promote its replica.
fn sentinel_failover(plan: &Plan, id: &'static str, replicas: bool) -> Fallible<Row> {
    let mut row = Row::new(
        id,
        format!(
            "Sentinel failover: the primary SIGKILLed with locks held, its replica promoted \
             (half the rounds with the replica cut off first, so that an acquisition never \
             reaches it); {}; TTL {}, holds {}–{} ms",
            if replicas {
                "with `wait_for_replicas(1, 100 ms)`"
            } else {
                "without `wait_for_replicas` (overlap allowed)"
            },
            ms(FAILOVER_TTL),
            FAILOVER_HOLD.0.as_millis(),
            FAILOVER_HOLD.1.as_millis(),
        ),
    );
    // Declared before the rig: dropped after it, so the workers die first.
    let mut group = SentinelGroup::start().map_err(|e| format!("Sentinel group: {e}"))?;
    let mut rig = Rig::new(&[])?;
    rig.ttl = FAILOVER_TTL;
    rig.keys = FAILOVER_KEYS;
    let mut target = vec![
        "--url".to_owned(),
        group.sentinel_urls().join(","),
        "--sentinel".to_owned(),
        SENTINEL_SERVICE.to_owned(),
    ];
    if replicas {
        target.extend(["--replicas".to_owned(), "1,100".to_owned()]);
    }
    rig.direct = Some(target);
    let kinds = plan.failover_rounds();
    let ends = spawn_failover_workers(&mut rig, kinds.len())?;
    sleep(WARM_UP);
    let keys = rig_keys(&rig);
    let mut rounds = Vec::new();
    let last = kinds.len();
    for (round, kind) in kinds.into_iter().enumerate() {
        if Instant::now() + FAILOVER_ROUND > ends {
            row.figure(format!("a {} round skipped: out of time", kind.name()));
            break;
        }
        let mut cut = Cut::default();
        for attempt in 1..=CUT_ATTEMPTS {
            failover_moment(&mut rig, kind)?;
            if kind == Kill::Plain {
                break;
            }
            group
                .replica
                .pause()
                .map_err(|e| format!("pausing the replica: {e}"))?;
            drop_replica_links(&group.primary)?;
            let since = rig.mark("replica-cut");
            cut.add(watch_cut(&rig, since, &keys, CUT_WINDOW));
            if cut.fresh + cut.refused > 0 || attempt == CUT_ATTEMPTS || last_call(ends) {
                break;
            }
            // Nothing lost yet: let the replica catch up, and try again.
            group
                .replica
                .resume()
                .map_err(|e| format!("resuming the replica: {e}"))?;
            rig.mark("replica-back");
            wait_for("the replica to catch up", SETTLE, || {
                link_up(&group.replica)
            })?;
        }
        let killed_at = rig.mark(&format!("primary-kill-{}", kind.name()));
        group.primary.kill();
        if kind == Kill::Behind {
            group
                .replica
                .resume()
                .map_err(|e| format!("resuming the replica: {e}"))?;
        }
        group
            .wait_for_promotion(SETTLE)
            .map_err(|e| format!("promotion: {e}"))?;
        let promoted_at = rig.mark("promoted");
        rounds.push(Failover {
            kind,
            killed_at,
            cut,
            took: Duration::from_nanos(promoted_at - killed_at),
        });
        // From now on `primary` is the promoted server, `replica` the dead one.
        std::mem::swap(&mut group.primary, &mut group.replica);
        let_sections_end(killed_at);
        if round + 1 == last {
            break; // no next round to restore the group for
        }
        // The dead primary comes back, empty, as the new primary's replica.
        group
            .replica
            .restart()
            .map_err(|e| format!("restarting the old primary: {e}"))?;
        let mut con = group.replica.connection().map_err(|e| e.to_string())?;
        redis::cmd("REPLICAOF")
            .arg("127.0.0.1")
            .arg(group.primary.port())
            .exec(&mut con)
            .map_err(|e| format!("REPLICAOF: {e}"))?;
        wait_for("the Sentinel group to settle", SETTLE, || {
            sentinels_settled(&group)
        })?;
        rig.mark("settled");
    }
    rig.conclude(&mut row, until(ends), !replicas)?;
    fence_figure(&mut row, replicas);
    failover_figures(&mut row, &rounds);
    Ok(row)
}

/// Scenario 8: a cluster master fails over with locks held, by a coordinated `CLUSTER
/// FAILOVER` on its replica (`manual`), or because it was SIGKILLed.
fn cluster_failover(plan: &Plan, id: &'static str, manual: bool) -> Fallible<Row> {
    let mut row = Row::new(
        id,
        if manual {
            format!(
                "Cluster master failover with locks held: `CLUSTER FAILOVER` on the replica of \
                 a holder's master (coordinated: the replica catches up before it takes over); \
                 3 masters, 3 replicas; TTL {}, holds {}–{} ms",
                ms(FAILOVER_TTL),
                FAILOVER_HOLD.0.as_millis(),
                FAILOVER_HOLD.1.as_millis(),
            )
        } else {
            format!(
                "Cluster master SIGKILLed with locks held, its replica promoted (half the rounds \
                 with the replica cut off first); no `wait_for_replicas` on a cluster (overlap \
                 allowed); TTL {}, holds {}–{} ms",
                ms(FAILOVER_TTL),
                FAILOVER_HOLD.0.as_millis(),
                FAILOVER_HOLD.1.as_millis(),
            )
        },
    );
    // Declared before the rig: dropped after it, so the workers die first.
    let mut cluster = RedisCluster::start().map_err(|e| format!("cluster: {e}"))?;
    let mut rig = Rig::new(&[])?;
    rig.ttl = FAILOVER_TTL;
    rig.keys = FAILOVER_KEYS;
    rig.direct = Some(vec![
        "--url".to_owned(),
        cluster.urls().join(","),
        "--cluster".to_owned(),
    ]);
    let kinds = if manual {
        vec![Kill::Plain; plan.failover_rounds().len()]
    } else {
        plan.failover_rounds()
    };
    let ends = spawn_failover_workers(&mut rig, kinds.len())?;
    sleep(WARM_UP);
    let keys = rig_keys(&rig);
    let mut rounds = Vec::new();
    let last = kinds.len();
    for (round, kind) in kinds.into_iter().enumerate() {
        if Instant::now() + FAILOVER_ROUND > ends {
            row.figure("a round skipped: out of time".to_owned());
            break;
        }
        let mut cut = Cut::default();
        let (mut victim, mut heir);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let key = failover_moment(&mut rig, kind)?;
            victim = cluster.primary_for(&key).map_err(|e| e.to_string())?;
            heir = cluster.replica_of(victim).map_err(|e| e.to_string())?;
            if kind == Kill::Plain {
                break;
            }
            let on_victim: Vec<String> = keys
                .iter()
                .filter(|k| cluster.primary_for(k).ok() == Some(victim))
                .cloned()
                .collect();
            cluster.nodes[heir]
                .pause()
                .map_err(|e| format!("pausing the replica: {e}"))?;
            drop_replica_links(&cluster.nodes[victim])?;
            let since = rig.mark("replica-cut");
            cut.add(watch_cut(&rig, since, &on_victim, CUT_WINDOW));
            if cut.fresh + cut.refused > 0 || attempt == CUT_ATTEMPTS || last_call(ends) {
                break;
            }
            // Nothing lost yet: let the replica catch up, and try again.
            cluster.nodes[heir]
                .resume()
                .map_err(|e| format!("resuming the replica: {e}"))?;
            rig.mark("replica-back");
            let replica = &cluster.nodes[heir];
            wait_for("the replica to catch up", SETTLE, || link_up(replica))?;
        }
        let killed_at;
        if manual {
            killed_at = rig.mark("cluster-failover");
            let mut con = cluster.nodes[heir]
                .connection()
                .map_err(|e| e.to_string())?;
            redis::cmd("CLUSTER")
                .arg("FAILOVER")
                .exec(&mut con)
                .map_err(|e| format!("CLUSTER FAILOVER: {e}"))?;
        } else {
            killed_at = rig.mark(&format!("master-kill-{}", kind.name()));
            cluster.nodes[victim].kill();
            if kind == Kill::Behind {
                cluster.nodes[heir]
                    .resume()
                    .map_err(|e| format!("resuming the replica: {e}"))?;
            }
        }
        cluster
            .wait_until_primary(heir, SETTLE)
            .map_err(|e| format!("promotion: {e}"))?;
        let promoted_at = rig.mark("promoted");
        rounds.push(Failover {
            kind,
            killed_at,
            cut,
            took: Duration::from_nanos(promoted_at - killed_at),
        });
        let_sections_end(killed_at);
        if round + 1 == last {
            break; // no next round to restore the cluster for
        }
        if !manual {
            // The dead master comes back, empty; the cluster makes it its heir's replica.
            cluster.nodes[victim]
                .restart()
                .map_err(|e| format!("restarting the old master: {e}"))?;
        }
        wait_for("the old master to replicate its heir", SETTLE, || {
            let link = replication(&cluster.nodes[victim], "master_link_status")?;
            if link == "up" {
                Ok(())
            } else {
                Err(format!("link {link}"))
            }
        })?;
        cluster
            .wait_until_ok(SETTLE)
            .map_err(|e| format!("cluster state: {e}"))?;
        rig.mark("settled");
    }
    rig.conclude(&mut row, until(ends), !manual)?;
    if manual {
        let losses = row.report.as_ref().map_or(0, |r| r.losses);
        row.check(
            "no lock lost (the failover lost nothing)",
            losses == 0,
            false,
        );
    }
    fence_figure(&mut row, manual);
    failover_figures(&mut row, &rounds);
    Ok(row)
}

fn selected(filters: &[String], id: &str) -> bool {
    filters.is_empty() || filters.iter().any(|f| id.starts_with(f.as_str()))
}

fn command_output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let os = command_output("uname", &["-srm"]).unwrap_or_else(|| "unknown OS".into());
    format!("{cpu}, {cores} cores, {os}")
}

fn server_version() -> String {
    redis_server_binary()
        .ok()
        .and_then(|bin| {
            let out = Command::new(bin).arg("--version").output().ok()?;
            Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn cell_report(row: &Row) -> [String; 5] {
    match &row.report {
        None => std::array::from_fn(|_| "–".to_owned()),
        Some(r) => [
            format!("{} ({} completed)", r.sections, r.completed),
            if r.overlaps.is_empty() {
                "0".to_owned()
            } else {
                format!("{} (longest {})", r.overlaps.len(), ms(r.longest_overlap))
            },
            r.losses.to_string(),
            r.longest_handover().map_or("–".to_owned(), ms),
            format!("{} of {}", r.rejected_writes, r.writes),
        ],
    }
}

fn table(rows: &[Row], quick: bool) -> String {
    let mut out = String::new();
    out.push_str(
        "| # | Scenario | Guarantees checked | Held? | Sections | Overlaps | Losses declared \
         | Longest handover | Fenced writes rejected | Other figures |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    for row in rows {
        let [sections, overlaps, losses, handover, rejected] = cell_report(row);
        let checks: Vec<&str> = row.checks.iter().map(|c| c.what.as_str()).collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            row.id,
            row.scenario,
            if checks.is_empty() {
                "–".to_owned()
            } else {
                checks.join("; ")
            },
            row.verdict(quick),
            sections,
            overlaps,
            losses,
            handover,
            rejected,
            if row.figures.is_empty() {
                "–".to_owned()
            } else {
                row.figures.join("; ")
            },
        );
    }
    out
}

fn document(rows: &[Row], took: Duration) -> String {
    let rev = command_output("git", &["rev-parse", "--short", "HEAD"])
        .unwrap_or_else(|| "unknown".into());
    let date = command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_default();
    let mut doc = String::new();
    let _ = write!(
        doc,
        "# Reliability under faults\n\n\
         What happens to `lock-runtime`'s locks when the network, the server or a client process \
         fails, measured the way [`BENCHMARKS.md`](BENCHMARKS.md) measures speed.\n\n\
         Regenerate this file with `scripts/chaos` (this run took {took_s} s). \
         `scripts/chaos --quick` runs every scenario briefly and is part of `scripts/test`, where \
         it judges safety (overlaps) only.\n\n\
         - Generated: {date}, lock-runtime at `{rev}`\n\
         - Machine: {machine}\n\
         - Server: {server}\n\n\
         ## How it is measured\n\n\
         - Each scenario starts its own `redis-server` for the locks, a second one for the fenced \
         register, and {WORKERS} worker processes (`chaos-worker`), each with {TASKS} tasks taking \
         locks on {KEYS} keys in a loop, TTL {ttl}, holding each for {h0}–{h1} ms, fencing on.\n\
         - Each worker reaches Redis through its own fault proxy (`lock_tests::proxy`), which can \
         pass, add latency, blackhole (connections open, bytes held), reset every connection, or \
         refuse new ones. Cruder faults: SIGKILL of a worker, SIGKILL and restart of the server.\n\
         - Each critical section writes an `enter` and a `leave` line to its worker's history \
         file, stamped with `CLOCK_MONOTONIC`, which every process on the host shares. A section \
         whose process was killed ends at its `down` line.\n\
         - Inside each section the worker writes its fencing token to a fenced register: a Lua \
         script that refuses a token lower than the highest it has seen.\n\
         - The checker (`lock_tests::history`) merges the files and reports overlaps between \
         different holders of one key, the longest overlap, the losses the library declared, \
         the longest time from a holder going down (killed, shut down, cut off) to the next \
         holder's entry, and the register's rejections. It is tested on hand-made histories \
         (`tests/tests/chaos_checker.rs`), and row 0 runs the workers with the lock turned off: \
         the rig must see overlaps there, or it could not see them anywhere.\n\n\
         ## Results\n\n",
        took_s = took.as_secs(),
        machine = machine(),
        server = server_version(),
        ttl = ms(TTL),
        h0 = HOLD.0.as_millis(),
        h1 = HOLD.1.as_millis(),
    );
    doc.push_str(&table(rows, false));
    let _ = write!(
        doc,
        "\n\"Longest handover\" runs from the moment a holder went down (the kill, the shutdown \
         order, the start of the partition) to the next holder's entry on a key it held. \
         \"Sections\" counts critical sections entered, with those that ran to their end.\n\n\
         ## Reading the rows\n\n\
         - Row 5a may overlap by design: a single server that loses its data cannot do better. \
         Its fencing counter is lost too, so tokens start again from 1. The register then \
         refuses the *new* holder's writes, not the stale one's: fencing with a counter kept on \
         the same non-persistent server does not order holders across a restart.\n\
         - Row 7 runs the quorum (Redlock) client on five servers, each behind one proxy that \
         every worker goes through, so a fault on it partitions that node from everyone. A \
         section entered more than 100 ms after the majority was cut would be work without a \
         quorum.\n\
         - Rows 6 and 8 fail over for real: a Sentinel group (a primary, a replica, three \
         sentinels; a primary silent for 1 s is down) and a cluster of three masters and three \
         replicas (node timeout 1 s), the workers connected straight to them, without proxies. \
         Their TTL is 10 s and their holds 5–5.5 s, longer than a failover takes, so that locks \
         are held across it and renewed on the new primary; they lock {FAILOVER_KEYS} keys, as \
         many as there are tasks, so that some acquisitions are of free keys. After a SIGKILL the dead server is \
         restarted, empty, as the new primary's replica before the next round.\n\
         - On loopback a plain SIGKILL loses nothing: replication is faster than the kill. The \
         \"replica behind\" rounds make a loss happen on purpose: the replica is SIGSTOPped \
         and the primary drops its link, until a lock is granted on a free key (or refused), \
         then the primary is killed and the replica, which never saw that lock, is promoted. \
         Without `wait_for_replicas` (6a, and 8b, since the cluster backend refuses it) that \
         lock is lost, and overlap is allowed: the row says whether one happened. A lock \
         granted as a handover in that window is lost together with its predecessor's \
         release, so the promoted replica still has the predecessor's lock, which keeps \
         everyone out until it expires. The fencing counter lives beside the lock and is lost \
         with it, so a holder after the failover can be given the lost holder's token again.\n\
         - Row 6b: with `wait_for_replicas(1, 100 ms)`, an acquire the replica does not confirm \
         is released and refused with `NotReplicated`, so every lock held when the primary \
         dies is on the replica: 0 overlaps, judged. Renewals are not waited for, so the \
         promoted replica has each lock's expiry as of its last replicated renewal: the \
         guarantee needs the failover to end within the TTL less a renewal period (6.7 s \
         here).\n\
         - Row 8a: `CLUSTER FAILOVER` on a replica is coordinated: the master stops writes \
         until the replica has caught up, then the replica takes over, so nothing is lost: \
         0 overlaps and no lock lost, judged.\n",
    );
    doc
}

fn main() -> ExitCode {
    let mut quick = false;
    let mut out: Option<PathBuf> = None;
    let mut filters = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--out" => match args.next() {
                Some(path) => out = Some(path.into()),
                None => {
                    eprintln!("chaos: --out needs a path");
                    return ExitCode::from(2);
                }
            },
            "-h" | "--help" => {
                eprintln!("usage: chaos [--quick] [--out FILE] [SCENARIO...]");
                return ExitCode::SUCCESS;
            }
            other if other.starts_with('-') => {
                eprintln!("chaos: unknown flag {other}");
                return ExitCode::from(2);
            }
            other => filters.push(other.to_owned()),
        }
    }
    let plan = Plan { quick };
    let started = Instant::now();
    type Scenario<'a> = (&'static str, Box<dyn Fn() -> Fallible<Row> + 'a>);
    let scenarios: Vec<Scenario> = vec![
        ("0", Box::new(|| control(&plan))),
        ("1", Box::new(|| partition(&plan, "1", Fault::Blackhole))),
        ("1b", Box::new(|| partition(&plan, "1b", Fault::Reset))),
        ("1c", Box::new(|| stall(&plan))),
        ("2a", Box::new(|| latency(&plan, "2a", TTL / 6, false))),
        ("2b", Box::new(|| latency(&plan, "2b", TTL * 2 / 5, false))),
        ("2c", Box::new(|| latency(&plan, "2c", TTL * 6 / 5, true))),
        ("3", Box::new(|| kill_holder(&plan))),
        ("4", Box::new(|| shutdown(&plan, "4", true))),
        ("4b", Box::new(|| shutdown(&plan, "4b", false))),
        ("5a", Box::new(|| restart(&plan, "5a", false))),
        ("5b", Box::new(|| restart(&plan, "5b", true))),
        ("6a", Box::new(|| sentinel_failover(&plan, "6a", false))),
        ("6b", Box::new(|| sentinel_failover(&plan, "6b", true))),
        ("7", Box::new(|| quorum(&plan))),
        ("8a", Box::new(|| cluster_failover(&plan, "8a", true))),
        ("8b", Box::new(|| cluster_failover(&plan, "8b", false))),
    ];
    let mut rows = Vec::new();
    for (id, run) in &scenarios {
        if !selected(&filters, id) {
            continue;
        }
        let t = Instant::now();
        let row = run().unwrap_or_else(|e| {
            let mut row = Row::new(id, "(the scenario could not run)");
            row.check(format!("rig error: {e}"), false, true);
            row
        });
        eprintln!(
            "chaos {id}: {} in {:.1} s",
            row.verdict(quick),
            t.elapsed().as_secs_f64()
        );
        rows.push(row);
    }
    rows.sort_by_key(|r| r.id);
    let took = started.elapsed();
    print!("{}", table(&rows, quick));
    let all_held = rows.iter().all(|r| r.held(quick));
    if let Some(out) = out {
        if let Err(e) = std::fs::write(&out, document(&rows, took)) {
            eprintln!("chaos: cannot write {}: {e}", out.display());
            return ExitCode::FAILURE;
        }
        eprintln!("chaos: wrote {}", out.display());
    }
    eprintln!(
        "chaos: {} in {:.0} s",
        if all_held {
            "every judged guarantee held"
        } else {
            "SOME GUARANTEES DID NOT HOLD"
        },
        took.as_secs_f64()
    );
    if all_held {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
