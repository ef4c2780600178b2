//! What the server counted, what this process uses, and what machine this is.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::OnceLock;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use lock_tests::RedisServer;

use crate::Res;

/// A synchronous side connection to the benchmark's server, for counters and cleanup.
/// It is never used while something is being timed.
pub struct Probe {
    con: redis::Connection,
}

/// Server counters since the last `CONFIG RESETSTAT`.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    /// `INFO commandstats`: calls per command name (`evalsha`, `set`, `config|resetstat`..).
    pub calls: BTreeMap<String, u64>,
    /// `INFO commandstats`: server CPU time per command name, in microseconds.
    pub usec: BTreeMap<String, u64>,
    /// `INFO stats` `total_connections_received`.
    pub connections: u64,
    /// `INFO stats` `total_writes_processed`: write events to client sockets, one per reply
    /// to a request or to a pipelined batch of requests read together: a round trip.
    pub writes: u64,
}

impl Counters {
    /// Adds another period's counts to these.
    pub fn add(&mut self, other: &Counters) {
        for (name, calls) in &other.calls {
            *self.calls.entry(name.clone()).or_insert(0) += calls;
        }
        for (name, usec) in &other.usec {
            *self.usec.entry(name.clone()).or_insert(0) += usec;
        }
        self.connections += other.connections;
        self.writes += other.writes;
    }

    /// Calls of `name` (lower case, as Redis names it).
    pub fn get(&self, name: &str) -> u64 {
        self.calls.get(name).copied().unwrap_or(0)
    }

    /// Mean server time per call of `name`, in microseconds.
    pub fn usec_per_call(&self, name: &str) -> f64 {
        self.usec.get(name).copied().unwrap_or(0) as f64 / self.get(name).max(1) as f64
    }

    /// Calls of top-level commands, given which share of each command was top-level.
    pub fn top_level_calls(&self, accounting: &Accounting) -> f64 {
        top_level(&self.calls, accounting)
    }

    /// Server time in the clients' top-level commands, in microseconds. A script's own
    /// time already includes the commands it calls, which Redis also counts on their own;
    /// `accounting` says which share of each command's calls was top-level.
    pub fn top_level_usec(&self, accounting: &Accounting) -> f64 {
        top_level(&self.usec, accounting)
    }

    /// Script calls: `EVALSHA` plus `EVAL`.
    pub fn script_calls(&self) -> u64 {
        self.get("evalsha") + self.get("eval")
    }

    /// A short account of the client commands, e.g. `evalsha 20000, set 1`.
    pub fn breakdown(&self) -> String {
        named(
            self.calls
                .iter()
                .filter(|(name, _)| is_client_command(name))
                .map(|(name, calls)| (name, calls.to_string())),
        )
    }
}

/// The sum of `values` over the clients' commands, each weighted by its top-level share.
fn top_level(values: &BTreeMap<String, u64>, accounting: &Accounting) -> f64 {
    values
        .iter()
        .filter(|(name, _)| is_client_command(name))
        .map(|(name, v)| *v as f64 * accounting.top_level_share(name))
        .sum()
}

/// What untimed passes of a workload cost the server: the commands `MONITOR` saw, the
/// top-level ones apart from those a script ran inside the server (`[0 lua]`, which `INFO
/// commandstats` cannot tell apart); and, from a second pass without `MONITOR` (whose own
/// output would count), the write events and connections `INFO stats` counted. The server
/// writes once per reply to a request or to a pipelined batch read together, so its writes
/// are the round trips.
#[derive(Debug, Clone, Default)]
pub struct Accounting {
    /// Cycles (or rounds) the pass ran.
    pub cycles: usize,
    /// Top-level commands by name.
    pub top: BTreeMap<String, u64>,
    /// Commands run by scripts, by name.
    pub inner: BTreeMap<String, u64>,
    /// Server write events during the second pass, the probe's own left out.
    pub writes: u64,
    /// Connections accepted during the second pass.
    pub connections: u64,
}

impl Accounting {
    /// Round trips per cycle: the server's writes (a new TCP connection's handshake is not
    /// in them).
    pub fn round_trips_per_cycle(&self) -> f64 {
        self.writes as f64 / self.cycles.max(1) as f64
    }

    /// Top-level commands per cycle.
    pub fn per_cycle(&self) -> f64 {
        self.top.values().sum::<u64>() as f64 / self.cycles.max(1) as f64
    }

    /// Top-level commands per cycle by name, e.g. `EVALSHA 2`.
    pub fn breakdown(&self) -> String {
        per_cycle_breakdown(&self.top, self.cycles)
    }

    /// Script-run commands per cycle by name, e.g. `GET 1, DEL 1`.
    pub fn inner_breakdown(&self) -> String {
        per_cycle_breakdown(&self.inner, self.cycles)
    }

    /// Top-level commands per cycle and, apart, those scripts ran:
    /// `EVALSHA 1.00, SET 1.00; in scripts: DEL 1.00, GET 1.00`.
    pub fn described(&self) -> String {
        if self.inner.is_empty() {
            self.breakdown()
        } else {
            format!(
                "{}; in scripts: {}",
                self.breakdown(),
                self.inner_breakdown()
            )
        }
    }

    /// Which share of the calls of `name` were top-level (1 if it was not seen at all).
    pub fn top_level_share(&self, name: &str) -> f64 {
        let top = self.top.get(name).copied().unwrap_or(0) as f64;
        let inner = self.inner.get(name).copied().unwrap_or(0) as f64;
        if top + inner == 0.0 {
            1.0
        } else {
            top / (top + inner)
        }
    }
}

fn per_cycle_breakdown(calls: &BTreeMap<String, u64>, cycles: usize) -> String {
    let per_cycle = |n: &u64| crate::format::sig3(*n as f64 / cycles.max(1) as f64);
    named(calls.iter().map(|(name, n)| (name, per_cycle(n))))
}

/// `EVALSHA 2, SET 1`: each command's name, upper-cased, with its figure; `none` if none.
pub fn named<'a>(parts: impl Iterator<Item = (&'a String, String)>) -> String {
    let parts: Vec<String> = parts
        .map(|(name, figure)| format!("{} {figure}", name.to_uppercase()))
        .collect();
    if parts.is_empty() {
        "none".to_owned()
    } else {
        parts.join(", ")
    }
}

/// The marker `ECHO`ed to tell the monitor thread that a pass is over.
const MONITOR_END: &str = "lock-bench-monitor-end";

/// What the monitor thread hands back: top-level and script-run commands by name.
pub type Seen = (BTreeMap<String, u64>, BTreeMap<String, u64>);

/// Writes the server makes to the probe between `CONFIG RESETSTAT` and the `INFO stats`
/// that reads the counters: the replies to `CONFIG RESETSTAT` and `INFO commandstats`.
const PROBE_WRITES: u64 = 2;

/// Runs `pass` (a workload of `cycles` cycles) twice, untimed: once to count round trips and
/// connections, once under `MONITOR` to see the commands.
pub fn account(
    probe: &mut Probe,
    port: u16,
    cycles: usize,
    mut pass: impl FnMut() -> Res<()>,
) -> Res<Accounting> {
    probe.reset()?;
    pass()?;
    let counters = probe.counters()?;
    let monitor = Monitor::start(port)?;
    pass()?;
    let (top, inner) = monitor.finish(probe)?;
    Ok(Accounting {
        cycles,
        top,
        inner,
        writes: counters.writes.saturating_sub(PROBE_WRITES),
        connections: counters.connections,
    })
}

/// A `MONITOR` connection, read by a thread of its own, while an accounting pass runs.
pub struct Monitor {
    reader: JoinHandle<Res<Seen>>,
}

impl Monitor {
    /// Connects to the server at 127.0.0.1:`port` and starts monitoring: every command the
    /// server runs from now on is seen.
    pub fn start(port: u16) -> Res<Monitor> {
        let mut stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        stream.write_all(b"MONITOR\r\n")?;
        let mut reader = BufReader::new(stream);
        let mut ok = String::new();
        reader.read_line(&mut ok)?;
        if ok.trim_end() != "+OK" {
            return Err(format!("MONITOR answered {ok:?}").into());
        }
        let reader = thread::spawn(move || {
            let (mut top, mut inner) = (BTreeMap::new(), BTreeMap::new());
            let mut line = Vec::new();
            loop {
                line.clear();
                if reader.read_until(b'\n', &mut line)? == 0 {
                    return Err("the MONITOR connection closed".into());
                }
                let line = String::from_utf8_lossy(&line);
                let Some((source, name)) = parse_monitor_line(&line) else {
                    continue;
                };
                if name == "echo" && line.contains(MONITOR_END) {
                    return Ok((top, inner));
                }
                if !is_client_command(&name) || name == "flushall" {
                    continue;
                }
                let seen = if source == "lua" {
                    &mut inner
                } else {
                    &mut top
                };
                *seen.entry(name).or_insert(0) += 1;
            }
        });
        Ok(Monitor { reader })
    }

    /// Ends the pass (through `probe`, so that every command sent before is seen first) and
    /// returns the top-level and the script-run commands seen, by name.
    pub fn finish(self, probe: &mut Probe) -> Res<Seen> {
        redis::cmd("ECHO").arg(MONITOR_END).exec(&mut probe.con)?;
        let (top, inner) = self
            .reader
            .join()
            .map_err(|_| "the MONITOR thread panicked")??;
        Ok((top, inner))
    }
}

/// From `+1700000000.123456 [0 127.0.0.1:5555] "EVALSHA" "..."`, the source (`lua`, or the
/// client's address) and the lower-cased command name.
fn parse_monitor_line(line: &str) -> Option<(String, String)> {
    let open = line.find('[')?;
    let close = open + line[open..].find(']')?;
    let source = line[open + 1..close].split_whitespace().nth(1)?.to_owned();
    let rest = &line[close + 1..];
    let start = rest.find('"')? + 1;
    let len = rest[start..].find('"')?;
    Some((source, rest[start..start + len].to_ascii_lowercase()))
}

/// Whether a command counts as the clients': everything but the probe's `INFO` and `CONFIG`.
pub fn is_client_command(name: &str) -> bool {
    name != "info" && !name.starts_with("config")
}

impl Probe {
    /// Opens the side connection.
    pub fn new(server: &RedisServer) -> Res<Self> {
        Ok(Probe {
            con: server.connection()?,
        })
    }

    /// `CONFIG RESETSTAT`: zeroes command and connection counters.
    pub fn reset(&mut self) -> Res<()> {
        redis::cmd("CONFIG").arg("RESETSTAT").exec(&mut self.con)?;
        Ok(())
    }

    /// The counters since the last [`reset`](Probe::reset).
    pub fn counters(&mut self) -> Res<Counters> {
        let text: String = redis::cmd("INFO")
            .arg("commandstats")
            .query(&mut self.con)?;
        let (mut calls, mut usec) = (BTreeMap::new(), BTreeMap::new());
        for line in text.lines() {
            // cmdstat_evalsha:calls=10,usec=52,usec_per_call=5.20,rejected_calls=0,failed_calls=0
            let Some((name, fields)) = line
                .strip_prefix("cmdstat_")
                .and_then(|l| l.split_once(':'))
            else {
                continue;
            };
            let field = |key: &str| {
                fields
                    .split(',')
                    .find_map(|f| f.strip_prefix(key)?.strip_prefix('='))
                    .and_then(|v| v.parse::<u64>().ok())
                    .ok_or_else(|| format!("unexpected commandstats line: {line}"))
            };
            calls.insert(name.to_owned(), field("calls")?);
            usec.insert(name.to_owned(), field("usec")?);
        }
        let stats: String = redis::cmd("INFO").arg("stats").query(&mut self.con)?;
        let stat = |name: &str| {
            info_field(&stats, name)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("INFO stats has no {name}"))
        };
        Ok(Counters {
            calls,
            usec,
            connections: stat("total_connections_received")?,
            writes: stat("total_writes_processed")?,
        })
    }

    /// Removes every key, so that one measurement leaves nothing to the next.
    pub fn flush(&mut self) -> Res<()> {
        redis::cmd("FLUSHALL").exec(&mut self.con)?;
        Ok(())
    }

    /// The server's `redis_version`.
    pub fn redis_version(&mut self) -> Res<String> {
        let info: String = redis::cmd("INFO").arg("server").query(&mut self.con)?;
        Ok(info_field(&info, "redis_version")
            .unwrap_or("unknown")
            .to_owned())
    }
}

fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .map(str::trim)
}

/// The benchmark server's pid, for [`Cpu::now`].
pub static SERVER_PID: OnceLock<u32> = OnceLock::new();

/// CPU time (user + system, all threads) of this process and of the server, in seconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cpu {
    /// This process: the client under test (and the bench's own bookkeeping).
    pub client: f64,
    /// redis-server.
    pub server: f64,
}

impl Cpu {
    /// The CPU time used so far.
    pub fn now() -> Cpu {
        Cpu {
            client: cpu_seconds("self").unwrap_or(f64::NAN),
            server: SERVER_PID
                .get()
                .and_then(|pid| cpu_seconds(&pid.to_string()))
                .unwrap_or(f64::NAN),
        }
    }

    /// The sum of two spans.
    pub fn plus(self, other: Cpu) -> Cpu {
        Cpu {
            client: self.client + other.client,
            server: self.server + other.server,
        }
    }

    /// The CPU time used since `earlier`.
    pub fn since(self, earlier: Cpu) -> Cpu {
        Cpu {
            client: self.client - earlier.client,
            server: self.server - earlier.server,
        }
    }
}

/// `utime + stime` of `/proc/<pid>/stat`, in seconds. Linux reports them in clock ticks of
/// 1/100 s (`USER_HZ`), which is what this assumes.
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses: state is field 3, utime 14.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<u64>().ok();
    Some((ticks(11)? + ticks(12)?) as f64 / 100.0)
}

/// This process's resident set size, from `/proc/self/status` (`VmRSS`), in bytes.
pub fn rss_bytes() -> Res<u64> {
    let status = fs::read_to_string("/proc/self/status")?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or("no VmRSS line in /proc/self/status")?;
    Ok(kib * 1024)
}

/// The machine the figures were taken on.
#[derive(Debug, Clone)]
pub struct Machine {
    /// `model name` from `/proc/cpuinfo`.
    pub cpu: String,
    /// Logical CPUs listed in `/proc/cpuinfo`.
    pub cpus: usize,
    /// What the standard library says this process may use.
    pub parallelism: usize,
    /// `uname -sr`, or "unknown".
    pub kernel: String,
    /// The 1, 5 and 15 minute load averages, when the run started.
    pub load_at_start: String,
}

impl Machine {
    /// Reads `/proc/cpuinfo`, `/proc/loadavg` and `uname`.
    pub fn detect() -> Machine {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_else(|| "unknown".to_owned());
        let cpus = cpuinfo
            .lines()
            .filter(|l| l.starts_with("processor"))
            .count();
        let parallelism = std::thread::available_parallelism().map_or(1, |n| n.get());
        let kernel = Command::new("uname")
            .arg("-sr")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "unknown".to_owned());
        Machine {
            cpu,
            cpus,
            parallelism,
            kernel,
            load_at_start: load_average(),
        }
    }
}

/// The first three fields of `/proc/loadavg`.
pub fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// The 1-minute load average, if it can be read.
pub fn load_1min() -> Option<f64> {
    fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Which lock-runtime this binary was built from (commit, uncommitted changes, and a
/// fingerprint of the sources), recorded by build.rs.
pub fn source_revision() -> String {
    env!("LOCK_BENCH_SOURCE").to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_info_fields() {
        let info = "# Server\r\nredis_version:7.0.15\r\nprocess_id:1\r\n";
        assert_eq!(info_field(info, "redis_version"), Some("7.0.15"));
        assert_eq!(info_field(info, "redis"), None);
    }

    #[test]
    fn counts_client_commands_only() {
        let mut c = Counters::default();
        c.calls.insert("evalsha".into(), 10);
        c.calls.insert("eval".into(), 1);
        c.calls.insert("info".into(), 3);
        c.calls.insert("config|resetstat".into(), 1);
        assert_eq!(c.script_calls(), 11);
        assert_eq!(c.breakdown(), "EVAL 1, EVALSHA 10");
    }

    #[test]
    fn parses_monitor_lines() {
        assert_eq!(
            parse_monitor_line(
                "+1795300407.192889 [0 127.0.0.1:55142] \"EVALSHA\" \"ab\" \"1\"\r\n"
            ),
            Some(("127.0.0.1:55142".to_owned(), "evalsha".to_owned()))
        );
        assert_eq!(
            parse_monitor_line("+1795300407.192940 [0 lua] \"set\" \"a\" \"1\"\r\n"),
            Some(("lua".to_owned(), "set".to_owned()))
        );
        assert_eq!(parse_monitor_line("+OK\r\n"), None);
    }

    #[test]
    fn splits_server_time_by_top_level_share() {
        let mut c = Counters::default();
        c.usec.insert("evalsha".into(), 100);
        c.usec.insert("set".into(), 10);
        c.usec.insert("info".into(), 1000);
        let mut a = Accounting {
            cycles: 1,
            ..Accounting::default()
        };
        a.top.insert("evalsha".into(), 2);
        a.inner.insert("set".into(), 1);
        assert_eq!(c.top_level_usec(&a), 100.0);
        a.top.insert("set".into(), 1);
        assert_eq!(c.top_level_usec(&a), 105.0);
        assert_eq!(a.per_cycle(), 3.0);
    }

    #[test]
    fn reads_own_cpu_time() {
        let t = cpu_seconds("self").unwrap();
        assert!(t >= 0.0);
    }

    #[test]
    fn rss_is_positive() {
        assert!(rss_bytes().unwrap() > 0);
    }
}
