//! The floor the lock figures are divided by: what the server and the connection cost
//! with no lock logic at all.
//!
//! - our own timed `PING`s on a redis-rs `ConnectionManager`, the connection type
//!   lock-runtime uses, one task, one at a time;
//! - plain `SET`s from many tasks on one `ConnectionManager`;
//! - `redis-benchmark` (package redis-tools), run as a subprocess against the same server,
//!   when it is installed: `-t ping_mbulk -c 1` for the round trip, `-t set -c 50` for
//!   throughput.

use std::fmt::Write as _;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;

use crate::figures::p2::{BENCH_SET_CLIENTS, TASKS};
use crate::figures::{Figure, TsvLine};
use crate::format::{count, dur, header, sig3, times};
use crate::stats::Summary;
use crate::workload::{Throughput, Window, throughput, time_cycles};
use crate::{Res, Results};

/// The floor's section of the report. Its figures are taken in P1's rounds (the PINGs and
/// the bare cycle) and P2's (the SETs), interleaved with what they are compared with, and
/// kept there ([`crate::figures::p1::P1`], [`crate::figures::p2::P2`]).
pub struct Floor;

impl Figure for Floor {
    fn section(&self, r: &Results) -> String {
        let (p1, p2) = (&r.p1, &r.p2);
        let mut w = String::new();
        let _ = writeln!(w, "### Floor\n");
        header(&mut w, "| Figure | Value | Samples |");
        let ping = &p1.ping.cycle;
        let _ = writeln!(
            w,
            "| PING round trip, redis-rs `ConnectionManager`, one task | p50 {}, mean {}, p99 {} | {} |",
            dur(ping.p50),
            dur(ping.mean),
            dur(ping.p99),
            count(ping.n as f64)
        );
        let _ = writeln!(
            w,
            "{}",
            p1.bench_ping.as_ref().map_or(
                "| PING round trip, redis-benchmark | not installed | - |".to_owned(),
                |bp| format!(
                    "| PING round trip, `redis-benchmark -t ping_mbulk -c 1` | p50 {}, mean {} | {} requests |",
                    dur(bp.p50_us),
                    dur(bp.avg_us),
                    count(bp.n as f64)
                )
            )
        );
        let bare = &p1.bare;
        let _ = writeln!(
            w,
            "| Bare protocol cycle: `SET NX PX` + compare-and-delete script through redis-rs, no lock library | mean {} ({} RTT), p50 {}; CPU per cycle: client {}, server {} | {} cycles |",
            dur(bare.cycle.mean),
            times(bare.cycle.mean / r.rtt()),
            dur(bare.cycle.p50),
            dur(bare.client_cpu_us()),
            dur(bare.server_cpu_us()),
            count(bare.cycle.n as f64)
        );
        let _ = writeln!(
            w,
            "{}",
            match (&p2.bench_set, &p2.bench_set_counters) {
                (Some(bs), Some(c)) => format!(
                    "| SET throughput, `redis-benchmark -t set -c {} -n {} -q` | {} req/s; server CPU {} per SET ({} in the command itself) | {} requests |",
                    bs.clients,
                    bs.n,
                    count(bs.rps),
                    dur(bs.server_cpu_us),
                    dur(c.usec_per_call("set")),
                    count(bs.n as f64)
                ),
                _ => "| SET throughput, redis-benchmark | not installed | - |".to_owned(),
            }
        );
        let set = &p2.set.throughput;
        let _ = writeln!(
            w,
            "| SET throughput, redis-rs, {TASKS} tasks on one `ConnectionManager` | {} req/s; CPU per SET: client {}, server {} ({} in the command itself) | {} s |\n",
            count(set.per_sec),
            dur(set.client_cpu_us()),
            dur(set.server_cpu_us()),
            dur(p2.set.counters.usec_per_call("set")),
            sig3(set.secs)
        );
        let _ = writeln!(
            w,
            "`redis-benchmark -c {BENCH_SET_CLIENTS}` keeps one request in flight per connection (no \
             `-P`), so its SET rate is bound by its own round trips and its share of the CPUs; redis-rs \
             pipelines the requests of {TASKS} tasks on one connection, the harder floor. The P2 goal is \
             stated against redis-benchmark, and the tables show both.\n"
        );
        w
    }

    fn method(&self, _r: &Results) -> Option<String> {
        Some(
            "- **Floor.** Our PINGs: one task, one `PING` at a time on a redis-rs `ConnectionManager`. \
             The bare protocol cycle: `SET key token NX PX 10000`, then the compare-and-delete script of \
             PROTOCOL.md (EVALSHA), on the same kind of connection, with no lock library. \
             redis-benchmark runs as a subprocess against the same server."
                .to_owned(),
        )
    }

    fn tsv(&self, r: &Results) -> Vec<TsvLine> {
        let (p1, p2) = (&r.p1, &r.p2);
        let mut out = vec![
            ("floor.ping_rs.p50".into(), r.rtt(), "us"),
            ("floor.bare_scripts.mean".into(), p1.bare.cycle.mean, "us"),
            ("floor.set_rs.rps".into(), p2.set.throughput.per_sec, "1/s"),
        ];
        if let Some(bp) = &p1.bench_ping {
            out.push(("floor.ping_rb.p50".into(), bp.p50_us, "us"));
        }
        if let Some(bs) = &p2.bench_set {
            out.push(("floor.set_rb.rps".into(), bs.rps, "1/s"));
        }
        out
    }
}

/// Connects a `ConnectionManager` with redis-rs defaults.
pub async fn connection_manager(url: &str) -> Res<ConnectionManager> {
    let client = redis::Client::open(url)?;
    Ok(ConnectionManager::new(client).await?)
}

/// `n` sequential timed `PING`s on `conn`, after `warmup` untimed ones.
pub async fn ping(conn: &ConnectionManager, warmup: usize, n: usize) -> Res<Summary> {
    time_cycles(warmup, n, || {
        let mut conn = conn.clone();
        async move {
            let pong: String = redis::cmd("PING").query_async(&mut conn).await?;
            if pong != "PONG" {
                return Err(format!("PING answered {pong:?}").into());
            }
            Ok(())
        }
    })
    .await
}

/// Compare-and-delete, as PROTOCOL.md gives it.
const RELEASE_LUA: &str = r#"
if redis.call("get",KEYS[1]) == ARGV[1] then return redis.call("del",KEYS[1]) else return 0 end
"#;

/// The protocol's minimum, with no library at all: `SET key token NX PX ttl`, then the
/// compare-and-delete script (EVALSHA), sent straight through redis-rs on one
/// `ConnectionManager`. What a lock cycle cannot go below on this connection.
pub async fn bare_cycle(conn: &ConnectionManager, warmup: usize, n: usize) -> Res<Summary> {
    let release = redis::Script::new(RELEASE_LUA);
    let mut i = 0u64;
    time_cycles(warmup, n, || {
        let mut conn = conn.clone();
        i += 1;
        let token = format!("bench-token-{i}");
        let release = &release;
        async move {
            let set: Option<String> = redis::cmd("SET")
                .arg("bench:p1:bare")
                .arg(&token)
                .arg("NX")
                .arg("PX")
                .arg(10_000)
                .query_async(&mut conn)
                .await?;
            if set.as_deref() != Some("OK") {
                return Err(format!("bare SET NX answered {set:?}").into());
            }
            let deleted: i64 = release
                .key("bench:p1:bare")
                .arg(&token)
                .invoke_async(&mut conn)
                .await?;
            if deleted != 1 {
                return Err("bare release deleted nothing".into());
            }
            Ok(())
        }
    })
    .await
}

/// `SET <key> x` in a closed loop from `tasks` tasks sharing one `ConnectionManager`.
pub async fn set_throughput(
    conn: ConnectionManager,
    tasks: usize,
    keys: usize,
    window: Window,
) -> Res<Throughput> {
    let keys: Arc<Vec<String>> = Arc::new((0..keys).map(|k| format!("bench:floor:{k}")).collect());
    throughput(tasks, window, move |task, i| {
        let mut conn = conn.clone();
        let keys = Arc::clone(&keys);
        async move {
            let key = &keys[(task + i as usize * tasks) % keys.len()];
            redis::cmd("SET")
                .arg(key)
                .arg("x")
                .query_async::<()>(&mut conn)
                .await?;
            Ok(())
        }
    })
    .await
}

/// The `redis-benchmark` binary, if installed.
#[derive(Debug, Clone)]
pub struct RedisBenchmark {
    /// Its `--version` line.
    pub version: String,
}

/// `redis-benchmark -t ping_mbulk -c 1 --csv`: one client, one request at a time.
#[derive(Debug, Clone)]
pub struct BenchPing {
    /// Requests sent.
    pub n: usize,
    /// Median latency, in microseconds (redis-benchmark reports whole microseconds).
    pub p50_us: f64,
    /// Mean latency, in microseconds.
    pub avg_us: f64,
}

/// `redis-benchmark -t set -c <clients> -q`.
#[derive(Debug, Clone)]
pub struct BenchSet {
    /// Requests sent.
    pub n: usize,
    /// Connections.
    pub clients: usize,
    /// Requests per second.
    pub rps: f64,
    /// redis-server CPU per request, microseconds (connection setup included).
    pub server_cpu_us: f64,
}

/// Longest a redis-benchmark run may take before it is killed.
const BENCH_TIMEOUT: Duration = Duration::from_secs(120);

impl BenchPing {
    /// Several runs as one: the median of their medians, the mean of their means.
    pub fn combine(runs: &[BenchPing]) -> Option<BenchPing> {
        if runs.is_empty() {
            return None;
        }
        let n: usize = runs.iter().map(|r| r.n).sum();
        let p50s: Vec<f64> = runs.iter().map(|r| r.p50_us).collect();
        let avg_us = runs.iter().map(|r| r.avg_us * r.n as f64).sum::<f64>() / n as f64;
        Some(BenchPing {
            n,
            p50_us: crate::stats::median(&p50s),
            avg_us,
        })
    }
}

impl BenchSet {
    /// Several runs as one: all requests over all their time.
    pub fn combine(runs: &[BenchSet]) -> Option<BenchSet> {
        let first = runs.first()?;
        let n: usize = runs.iter().map(|r| r.n).sum();
        let secs: f64 = runs.iter().map(|r| r.n as f64 / r.rps).sum();
        let server_cpu: f64 = runs.iter().map(|r| r.server_cpu_us * r.n as f64).sum();
        Some(BenchSet {
            n,
            clients: first.clients,
            rps: n as f64 / secs,
            server_cpu_us: server_cpu / n as f64,
        })
    }
}

impl RedisBenchmark {
    /// Finds `redis-benchmark` on `PATH`.
    pub fn find() -> Option<RedisBenchmark> {
        let out = Command::new("redis-benchmark")
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .ok()?;
        out.status.success().then(|| RedisBenchmark {
            version: String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        })
    }

    /// Round-trip latency with one connection.
    pub fn ping(&self, port: u16, n: usize) -> Res<BenchPing> {
        let out = run(
            &["-t", "ping_mbulk", "-c", "1", "-n", &n.to_string(), "--csv"],
            port,
        )?;
        let (avg_ms, p50_ms) = parse_csv_latency(&out, "PING_MBULK")
            .ok_or_else(|| format!("no PING_MBULK row in redis-benchmark output:\n{out}"))?;
        Ok(BenchPing {
            n,
            p50_us: p50_ms * 1000.0,
            avg_us: avg_ms * 1000.0,
        })
    }

    /// SET throughput with `clients` connections.
    pub fn set(&self, port: u16, n: usize, clients: usize) -> Res<BenchSet> {
        let out = run(
            &[
                "-t",
                "set",
                "-c",
                &clients.to_string(),
                "-n",
                &n.to_string(),
                "-q",
            ],
            port,
        )?;
        let rps = parse_quiet_rps(&out, "SET")
            .ok_or_else(|| format!("no SET figure in redis-benchmark output:\n{out}"))?;
        Ok(BenchSet {
            n,
            clients,
            rps,
            server_cpu_us: f64::NAN,
        })
    }
}

/// Runs redis-benchmark against 127.0.0.1:`port` and returns its stdout.
fn run(args: &[&str], port: u16) -> Res<String> {
    let mut child = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let deadline = Instant::now() + BENCH_TIMEOUT;
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("redis-benchmark {args:?} took over {BENCH_TIMEOUT:?}").into());
        }
        thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "redis-benchmark {args:?} failed ({}): {stderr}{stdout}",
            out.status
        )
        .into());
    }
    Ok(stdout)
}

/// From `--csv` output, the `(avg_latency_ms, p50_latency_ms)` of the row named `test`.
fn parse_csv_latency(out: &str, test: &str) -> Option<(f64, f64)> {
    let mut lines = out.lines().map(|l| {
        l.split(',')
            .map(|f| f.trim().trim_matches('"').to_owned())
            .collect::<Vec<_>>()
    });
    let header = lines.find(|h| h.first().is_some_and(|f| f == "test"))?;
    let col = |name: &str| header.iter().position(|h| h == name);
    let (avg, p50) = (col("avg_latency_ms")?, col("p50_latency_ms")?);
    let row = lines.find(|r| r.first().is_some_and(|f| f == test))?;
    Some((row.get(avg)?.parse().ok()?, row.get(p50)?.parse().ok()?))
}

/// From `-q` output (progress lines end in `\r`), the requests per second of `test`:
/// `SET: 36563.07 requests per second, p50=0.519 msec`.
fn parse_quiet_rps(out: &str, test: &str) -> Option<f64> {
    let prefix = format!("{test}: ");
    out.split(['\r', '\n'])
        .filter_map(|l| l.trim().strip_prefix(&prefix))
        .filter_map(|rest| rest.split_once(" requests per second"))
        .filter_map(|(rps, _)| rps.trim().parse().ok())
        .next_back()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_csv() {
        let out = "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n\
                   \"PING_MBULK\",\"36496.35\",\"0.031\",\"0.016\",\"0.023\",\"0.031\",\"0.063\",\"2.799\"\n";
        assert_eq!(parse_csv_latency(out, "PING_MBULK"), Some((0.031, 0.023)));
        assert_eq!(parse_csv_latency(out, "SET"), None);
    }

    #[test]
    fn parses_quiet() {
        let out = "SET: rps=0.0 (overall: nan) avg_msec=nan (overall: nan)\r\
                   SET: 12000.00 (overall: 11000.0) avg_msec=0.5\r\
                   SET: 36563.07 requests per second, p50=0.519 msec\n\n";
        assert_eq!(parse_quiet_rps(out, "SET"), Some(36563.07));
        assert_eq!(parse_quiet_rps(out, "GET"), None);
    }
}
