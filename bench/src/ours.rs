//! lock-runtime on the shared workloads, plus what only it has: many held locks under the
//! watchdog (P4) and the `#[distributed_lock]` attribute (P5).

use std::thread;
use std::time::{Duration, Instant};

use lock_runtime::{LockClient, LockError, LockGuard, distributed_lock};
use tokio::runtime::Runtime;
use tokio::task::JoinSet;

use crate::Res;
use crate::probe::{Counters, Probe, rss_bytes};
use crate::stats::median;
use crate::workload::{AsyncLocker, TTL};

/// How long a P3 waiter may wait before giving up: far longer than any hand-off.
const WAIT: Duration = Duration::from_secs(60);

/// lock-runtime as an [`AsyncLocker`]: `lock(key).ttl(10s)` with its defaults (watchdog
/// on, no fencing, default backoff), and `.wait(60s)` for waiting.
#[derive(Clone, Debug)]
pub struct Ours {
    client: LockClient,
}

impl Ours {
    /// A fresh client (its own connection) to `url`.
    pub async fn connect(url: &str) -> Res<Ours> {
        Ok(Ours {
            client: LockClient::connect(url).await?,
        })
    }

    /// Wraps a client already connected (e.g. to a quorum).
    pub fn from_client(client: LockClient) -> Ours {
        Ours { client }
    }

    /// The client.
    pub fn client(&self) -> &LockClient {
        &self.client
    }
}

impl AsyncLocker for Ours {
    type Guard = LockGuard;

    async fn acquire(&self, key: String) -> Res<LockGuard> {
        Ok(self.client.lock(key).ttl(TTL).acquire().await?)
    }

    async fn acquire_waiting(&self, key: String) -> Res<LockGuard> {
        Ok(self.client.lock(key).ttl(TTL).wait(WAIT).acquire().await?)
    }

    async fn release(&self, guard: LockGuard) -> Res<()> {
        Ok(guard.release().await?)
    }
}

/// P4's shape.
#[derive(Debug, Clone, Copy)]
pub struct HeldLocksConfig {
    /// Locks held at once, on one client.
    pub locks: usize,
    /// Their TTL; the watchdog renews every `ttl / 3`.
    pub ttl: Duration,
    /// How long they are held, after acquiring, before the counting starts: time for the
    /// first renewals to go out, after which renewal times have settled into their rhythm.
    pub settle: Duration,
    /// How long they are held while the server counts commands.
    pub hold: Duration,
}

/// P4's figures.
#[derive(Debug, Clone)]
pub struct HeldLocks {
    /// The configuration measured.
    pub config: HeldLocksConfig,
    /// Seconds to acquire all of them (32 tasks, one client).
    pub acquire_secs: f64,
    /// VmRSS before acquiring, after acquiring, and at the end of the hold, in bytes.
    pub rss: [u64; 3],
    /// VmRSS read once per renewal period while the locks were held, in bytes.
    pub rss_by_period: Vec<u64>,
    /// Live heap bytes (counted by the bench's allocator from just before acquiring):
    /// after acquiring, and at the end of the hold.
    pub heap: [i64; 2],
    /// Live heap bytes once per renewal period while the locks were held.
    pub heap_by_period: Vec<i64>,
    /// What the server counted during the hold.
    pub counters: Counters,
    /// The counted window, from `CONFIG RESETSTAT` to `INFO commandstats`.
    pub window: Duration,
    /// Locks the watchdog declared lost during the hold (should be 0).
    pub lost: usize,
}

impl HeldLocks {
    /// The renewal period: the watchdog renews every `ttl / 3`.
    pub fn period(&self) -> Duration {
        self.config.ttl / 3
    }

    /// Renewal ticks in the counted window.
    pub fn ticks(&self) -> f64 {
        self.window.as_secs_f64() / self.period().as_secs_f64()
    }

    /// Renewal commands (script calls) the server saw per tick.
    pub fn renewals_per_tick(&self) -> f64 {
        self.counters.script_calls() as f64 / self.ticks()
    }

    /// Round trips per 100 held locks per renewal tick (each script call is one request
    /// and one reply).
    pub fn round_trips_per_100_per_tick(&self) -> f64 {
        self.renewals_per_tick() / (self.config.locks as f64 / 100.0)
    }

    /// RSS growth per held lock, from before acquiring to after acquiring, in bytes.
    pub fn rss_per_lock(&self) -> f64 {
        self.rss[1].saturating_sub(self.rss[0]) as f64 / self.config.locks as f64
    }

    /// RSS growth per held lock, from before acquiring to the end of the hold, in bytes.
    pub fn rss_per_lock_after_hold(&self) -> f64 {
        self.rss[2].saturating_sub(self.rss[0]) as f64 / self.config.locks as f64
    }

    /// Live heap bytes per held lock after acquiring, and at the end of the hold.
    pub fn heap_per_lock(&self) -> (f64, f64) {
        let n = self.config.locks as f64;
        (self.heap[0] as f64 / n, self.heap[1] as f64 / n)
    }

    /// Renewal periods from acquiring to the end of the hold.
    pub fn periods_held(&self) -> f64 {
        (self.config.settle + self.window).as_secs_f64() / self.period().as_secs_f64()
    }
}

/// Tasks that acquire (and later release) P4's locks.
const P4_TASKS: usize = 32;

/// P4: `config.locks` locks held on one fresh client while the server counts the
/// watchdog's renewals. Meant to run first in the process, so that the RSS growth is not
/// absorbed by memory freed by earlier measurements.
pub fn held_locks(
    rt: &Runtime,
    probe: &mut Probe,
    url: &str,
    config: HeldLocksConfig,
) -> Res<HeldLocks> {
    let client = rt.block_on(LockClient::connect(url))?;
    // Warm-up: loads the scripts (`extend` sends the renewal script) and lets the runtime
    // and the connection grow their buffers.
    rt.block_on(async {
        for i in 0..200 {
            let guard = client
                .lock(format!("bench:p4:warmup:{i}"))
                .ttl(config.ttl)
                .acquire()
                .await?;
            guard.extend(config.ttl).await?;
            guard.release().await?;
        }
        Ok::<_, lock_runtime::LockError>(())
    })?;

    let rss_before = rss_bytes()?;
    crate::alloc::counting(true);
    let heap_before = crate::alloc::live();
    let started = Instant::now();
    let guards = rt.block_on(acquire_many(&client, config))?;
    let acquire_secs = started.elapsed().as_secs_f64();
    let rss_acquired = rss_bytes()?;
    let heap_acquired = crate::alloc::live() - heap_before;

    // Renewals run on the runtime's worker threads while this thread sleeps; VmRSS is read
    // once per renewal period on the way.
    let period = config.ttl / 3;
    let mut rss_by_period = Vec::new();
    let mut heap_by_period = Vec::new();
    let settle_until = Instant::now() + config.settle;
    let mut read = |rss: &mut Vec<u64>| -> Res<()> {
        rss.push(rss_bytes()?);
        heap_by_period.push(crate::alloc::live() - heap_before);
        Ok(())
    };
    sleep_reading(settle_until, period, &mut || read(&mut rss_by_period))?;
    probe.reset()?;
    let counted_from = Instant::now();
    sleep_reading(counted_from + config.hold, period, &mut || {
        read(&mut rss_by_period)
    })?;
    let counters = probe.counters()?;
    let window = counted_from.elapsed();
    let rss_held = rss_bytes()?;
    let heap_held = crate::alloc::live() - heap_before;
    crate::alloc::counting(false);
    let lost = guards.iter().flatten().filter(|g| g.is_lost()).count();

    rt.block_on(release_all(guards))?;
    Ok(HeldLocks {
        config,
        acquire_secs,
        rss: [rss_before, rss_acquired, rss_held],
        rss_by_period,
        heap: [heap_acquired, heap_held],
        heap_by_period,
        counters,
        window,
        lost,
    })
}

/// Sleeps until `until`, calling `read` every `period` on the way.
fn sleep_reading(until: Instant, period: Duration, read: &mut dyn FnMut() -> Res<()>) -> Res<()> {
    loop {
        let now = Instant::now();
        if now >= until {
            return Ok(());
        }
        thread::sleep(period.min(until - now));
        read()?;
    }
}

/// Acquires `bench:p4:0..locks` from [`P4_TASKS`] tasks; the guards come back in chunks.
async fn acquire_many(client: &LockClient, config: HeldLocksConfig) -> Res<Vec<Vec<LockGuard>>> {
    let mut set = JoinSet::new();
    for task in 0..P4_TASKS {
        let client = client.clone();
        set.spawn(async move {
            let mut held = Vec::with_capacity(config.locks / P4_TASKS + 1);
            for k in (task..config.locks).step_by(P4_TASKS) {
                held.push(
                    client
                        .lock(format!("bench:p4:{k}"))
                        .ttl(config.ttl)
                        .acquire()
                        .await?,
                );
            }
            Ok::<_, lock_runtime::LockError>(held)
        });
    }
    let mut all = Vec::with_capacity(P4_TASKS);
    while let Some(chunk) = set.join_next().await {
        all.push(chunk??);
    }
    Ok(all)
}

/// Releases P4's locks, one task per chunk.
async fn release_all(chunks: Vec<Vec<LockGuard>>) -> Res<()> {
    let mut set = JoinSet::new();
    for chunk in chunks {
        set.spawn(async move {
            for guard in chunk {
                guard.release().await?;
            }
            Ok::<_, lock_runtime::LockError>(())
        });
    }
    while let Some(done) = set.join_next().await {
        done??;
    }
    Ok(())
}

/// The attribute form of P5: an empty body under `#[distributed_lock]`.
#[distributed_lock(key = "bench:p5:{id}", ttl = "10s", client = client)]
async fn attributed(client: &LockClient, id: u64) -> Result<(), LockError> {
    Ok(())
}

/// What the attribute's expansion calls, written out: `LockRequest::run` on an empty body.
async fn run_form(client: &LockClient, id: u64) -> Result<(), LockError> {
    client
        .lock(format!("bench:p5:{id}"))
        .ttl(TTL)
        .run(async { Ok(()) })
        .await?
}

/// The same work by hand: build the key, acquire, (empty body), release.
async fn manual(client: &LockClient, id: u64) -> Result<(), LockError> {
    let guard = client
        .lock(format!("bench:p5:{id}"))
        .ttl(TTL)
        .acquire()
        .await?;
    guard.release().await
}

/// The forms P5 compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// `acquire()` + `release()`.
    Manual,
    /// `LockRequest::run`.
    Run,
    /// `#[distributed_lock]`.
    Attribute,
}

impl Form {
    const ALL: [Form; 3] = [Form::Manual, Form::Run, Form::Attribute];

    async fn cycle(self, client: &LockClient, id: u64) -> Result<(), LockError> {
        match self {
            Form::Manual => manual(client, id).await,
            Form::Run => run_form(client, id).await,
            Form::Attribute => attributed(client, id).await,
        }
    }
}

/// P5's figures.
#[derive(Debug, Clone)]
pub struct AttributeVsManual {
    /// Rounds; each times one block of each form, rotating which goes first.
    pub rounds: usize,
    /// Cycles per block.
    pub block: usize,
    /// Median over rounds of each form's mean cycle time, in microseconds, in
    /// [`Form::ALL`] order: manual, run, attribute.
    pub mean_us: [f64; 3],
    /// Median over rounds of attribute / manual.
    pub ratio: f64,
    /// Median over rounds of run / manual.
    pub run_ratio: f64,
}

impl AttributeVsManual {
    /// The median mean cycle time of `form`, microseconds.
    pub fn mean(&self, form: Form) -> f64 {
        let i = Form::ALL.iter().position(|f| *f == form).unwrap_or(0);
        self.mean_us[i]
    }
}

/// P5: P1-style uncontended cycles in each [`Form`], in blocks whose order rotates every
/// round, so that drift in the machine's load hits every form alike.
pub async fn attribute_vs_manual(
    client: &LockClient,
    rounds: usize,
    block: usize,
) -> Res<AttributeVsManual> {
    let id = 1;
    for form in Form::ALL {
        for _ in 0..block {
            form.cycle(client, id).await?;
        }
    }
    let mut per_form: [Vec<f64>; 3] = Default::default();
    let (mut ratios, mut run_ratios) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let mut us = [0.0; 3];
        for k in 0..Form::ALL.len() {
            let i = (round + k) % Form::ALL.len();
            let started = Instant::now();
            for _ in 0..block {
                Form::ALL[i].cycle(client, id).await?;
            }
            us[i] = started.elapsed().as_secs_f64() * 1e6 / block as f64;
        }
        for i in 0..us.len() {
            per_form[i].push(us[i]);
        }
        ratios.push(us[2] / us[0]);
        run_ratios.push(us[1] / us[0]);
    }
    Ok(AttributeVsManual {
        rounds,
        block,
        mean_us: per_form.map(|v| median(&v)),
        ratio: median(&ratios),
        run_ratio: median(&run_ratios),
    })
}
