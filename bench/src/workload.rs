//! The workloads that several figures share, written once over a small lock interface that
//! each library implements: timed cycles on one task (P1, P5, the quorum figure, the
//! floor) and closed-loop throughput from many tasks (P2 and its SET floor). Synchronous
//! twins serve redlock, which has no async API. Workloads of one figure live in its module.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::Res;
use crate::probe::Cpu;
use crate::stats::{Samples, Summary};

/// TTL of every lock in P1-P3: long enough that nothing expires while measured.
pub const TTL: Duration = Duration::from_secs(10);

/// An async lock library, as the workloads use it.
pub trait AsyncLocker: Clone + Send + Sync + 'static {
    /// What a successful acquire hands back.
    type Guard: Send + 'static;

    /// One acquire of a free key, with the library's default retry settings.
    fn acquire(&self, key: String) -> impl Future<Output = Res<Self::Guard>> + Send;

    /// Acquire, waiting as long as it takes for a held key to be released.
    fn acquire_waiting(&self, key: String) -> impl Future<Output = Res<Self::Guard>> + Send;

    /// Gives the lock back.
    fn release(&self, guard: Self::Guard) -> impl Future<Output = Res<()>> + Send;
}

/// A synchronous lock library, as the workloads use it.
pub trait SyncLocker: Send + Sync {
    /// What a successful acquire hands back (it may borrow the locker).
    type Guard<'a>
    where
        Self: 'a;

    /// One acquire of a free key, with the library's default retry settings.
    fn acquire(&self, key: &str) -> Res<Self::Guard<'_>>;

    /// Acquire, waiting as long as it takes for a held key to be released.
    fn acquire_waiting(&self, key: &str) -> Res<Self::Guard<'_>>;

    /// Gives the lock back.
    fn release(&self, guard: Self::Guard<'_>) -> Res<()>;
}

/// Times `n` calls of `op` one after the other, after `warmup` untimed calls.
pub async fn time_cycles<F, Fut>(warmup: usize, n: usize, mut op: F) -> Res<Summary>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Res<()>>,
{
    for _ in 0..warmup {
        op().await?;
    }
    let mut samples = Samples::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        op().await?;
        samples.push(start.elapsed());
    }
    Ok(samples.sorted())
}

/// [`time_cycles`] for blocking code.
pub fn time_cycles_sync(warmup: usize, n: usize, mut op: impl FnMut() -> Res<()>) -> Res<Summary> {
    for _ in 0..warmup {
        op()?;
    }
    let mut samples = Samples::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        op()?;
        samples.push(start.elapsed());
    }
    Ok(samples.sorted())
}

/// Acquire + release of one key, `n` times on one task.
pub async fn uncontended<L: AsyncLocker>(
    locker: &L,
    key: &str,
    warmup: usize,
    n: usize,
) -> Res<Summary> {
    time_cycles(warmup, n, || async {
        let guard = locker.acquire(key.to_owned()).await?;
        locker.release(guard).await
    })
    .await
}

/// [`uncontended`] for a synchronous library.
pub fn uncontended_sync<L: SyncLocker>(
    locker: &L,
    key: &str,
    warmup: usize,
    n: usize,
) -> Res<Summary> {
    time_cycles_sync(warmup, n, || {
        let guard = locker.acquire(key)?;
        locker.release(guard)
    })
}

/// How long a closed-loop throughput run lasts.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// Untimed, to let connections, scripts and the allocator settle.
    pub warmup: Duration,
    /// Timed.
    pub measure: Duration,
}

/// What a closed-loop run completed in its timed window.
#[derive(Debug, Clone, Default)]
pub struct Throughput {
    /// Completed operations per second.
    pub per_sec: f64,
    /// Operations completed in the timed window.
    pub ops: u64,
    /// Length of the timed window, in seconds.
    pub secs: f64,
    /// Operations that failed (over the whole run), and the first failure.
    pub errors: u64,
    /// The first error's message, if any.
    pub first_error: Option<String>,
    /// CPU time used during the timed window.
    pub cpu: Cpu,
}

impl Throughput {
    /// Client CPU per completed operation, microseconds.
    pub fn client_cpu_us(&self) -> f64 {
        self.cpu.client * 1e6 / self.ops.max(1) as f64
    }

    /// Server CPU per completed operation, microseconds.
    pub fn server_cpu_us(&self) -> f64 {
        self.cpu.server * 1e6 / self.ops.max(1) as f64
    }
}

/// Shared counters of a closed-loop run.
#[derive(Default)]
struct Tally {
    done: AtomicU64,
    errors: AtomicU64,
    first_error: Mutex<Option<String>>,
    stop: AtomicBool,
}

impl Tally {
    fn record(&self, result: Res<()>) {
        match result {
            Ok(()) => {
                self.done.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
                first.get_or_insert_with(|| e.to_string());
            }
        }
    }

    fn result(&self, ops: u64, secs: f64, cpu: Cpu) -> Throughput {
        Throughput {
            cpu,
            per_sec: ops as f64 / secs,
            ops,
            secs,
            errors: self.errors.load(Ordering::Relaxed),
            first_error: self
                .first_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }
}

/// Runs `op(task, iteration)` in a loop on each of `tasks` tasks and counts completions in
/// the timed part of `window`.
pub async fn throughput<F, Fut>(tasks: usize, window: Window, op: F) -> Res<Throughput>
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Res<()>> + Send + 'static,
{
    let tally = Arc::new(Tally::default());
    let op = Arc::new(op);
    let mut set = JoinSet::new();
    for task in 0..tasks {
        let (tally, op) = (Arc::clone(&tally), Arc::clone(&op));
        set.spawn(async move {
            let mut i = 0;
            while !tally.stop.load(Ordering::Relaxed) {
                tally.record(op(task, i).await);
                i += 1;
            }
        });
    }
    tokio::time::sleep(window.warmup).await;
    let (c0, t0, cpu0) = (
        tally.done.load(Ordering::Relaxed),
        Instant::now(),
        Cpu::now(),
    );
    tokio::time::sleep(window.measure).await;
    let (c1, t1, cpu1) = (
        tally.done.load(Ordering::Relaxed),
        Instant::now(),
        Cpu::now(),
    );
    tally.stop.store(true, Ordering::Relaxed);
    while let Some(joined) = set.join_next().await {
        joined?;
    }
    Ok(tally.result(c1 - c0, (t1 - t0).as_secs_f64(), cpu1.since(cpu0)))
}

/// [`throughput`] on `threads` dedicated OS threads, for blocking code.
pub fn throughput_sync<F>(threads: usize, window: Window, op: F) -> Res<Throughput>
where
    F: Fn(usize, u64) -> Res<()> + Sync,
{
    let tally = Tally::default();
    let (tally, op) = (&tally, &op);
    thread::scope(|s| {
        for task in 0..threads {
            s.spawn(move || {
                let mut i = 0;
                while !tally.stop.load(Ordering::Relaxed) {
                    tally.record(op(task, i));
                    i += 1;
                }
            });
        }
        thread::sleep(window.warmup);
        let (c0, t0, cpu0) = (
            tally.done.load(Ordering::Relaxed),
            Instant::now(),
            Cpu::now(),
        );
        thread::sleep(window.measure);
        let (c1, t1, cpu1) = (
            tally.done.load(Ordering::Relaxed),
            Instant::now(),
            Cpu::now(),
        );
        tally.stop.store(true, Ordering::Relaxed);
        Ok(tally.result(c1 - c0, (t1 - t0).as_secs_f64(), cpu1.since(cpu0)))
    })
}

/// The keys of P2: `keys` names split round-robin over `tasks` tasks, so that task `t`
/// owns keys `t, t + tasks, t + 2 * tasks, ...` and no two tasks ever contend.
pub fn partition_keys(prefix: &str, tasks: usize, keys: usize) -> Arc<Vec<Vec<String>>> {
    let mut owned = vec![Vec::new(); tasks];
    for k in 0..keys {
        owned[k % tasks].push(format!("{prefix}:{k}"));
    }
    Arc::new(owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_split_without_overlap() {
        let keys = partition_keys("k", 64, 1000);
        assert_eq!(keys.len(), 64);
        assert_eq!(keys.iter().map(Vec::len).sum::<usize>(), 1000);
        assert!(keys.iter().all(|k| k.len() >= 15));
        let mut all: Vec<&String> = keys.iter().flatten().collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 1000);
    }
}
