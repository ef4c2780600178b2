//! Runs every example binary, on a private redis-server, on a server named by `REDIS_URL`
//! and on the in-memory fallback, and checks what it reports: not just its exit status, but
//! the outcome it prints (each order settled once, no tick run twice, the stale write
//! rejected).
//!
//! The Redis runs need `redis-server` (`scripts/test` installs it); without it they are
//! skipped with a message, and the in-memory runs still run.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use lock_tests::RedisServer;

const QUICKSTART: &str = env!("CARGO_BIN_EXE_quickstart");
const ORDER_SERVICE: &str = env!("CARGO_BIN_EXE_order_service");
const SCHEDULED_JOB: &str = env!("CARGO_BIN_EXE_scheduled_job");
const FENCING: &str = env!("CARGO_BIN_EXE_fencing");

/// No example run may take longer than this.
const TIMEOUT: Duration = Duration::from_secs(60);

/// Which lock server an example run should find.
enum Backend<'a> {
    /// No `REDIS_URL`: it starts its own redis-server.
    Private,
    /// `REDIS_URL` pointing at this server.
    Url(&'a RedisServer),
    /// `REDIS_SERVER=/nonexistent`: no redis-server to start, so the in-memory fallback.
    Memory,
}

impl Backend<'_> {
    fn configure(&self, command: &mut Command) {
        // REDIS_SERVER is left as it is for the private server (it may name valkey-server).
        command.env_remove("REDIS_URL");
        match self {
            Backend::Private => {}
            Backend::Url(server) => {
                command.env("REDIS_URL", server.url());
            }
            Backend::Memory => {
                command.env("REDIS_SERVER", "/nonexistent/redis-server");
            }
        }
    }

    /// The `lock server:` line the example must print.
    fn expected_line(&self) -> String {
        match self {
            Backend::Private => "lock server: private redis-server on 127.0.0.1:".to_owned(),
            Backend::Url(server) => format!("lock server: REDIS_URL={}", server.url()),
            Backend::Memory => "lock server: in-memory (this process only)".to_owned(),
        }
    }
}

/// `true` if the Redis runs can go ahead; otherwise says why they are skipped.
fn have_redis() -> bool {
    let ok = lock_tests::redis_server_available();
    if !ok {
        eprintln!("skipping: redis-server is not installed (scripts/test installs it)");
    }
    ok
}

struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Panics with the whole output, for failures that need it.
    fn fail(&self, why: &str) -> ! {
        panic!(
            "{why}\n--- status: {}\n--- stdout:\n{}\n--- stderr:\n{}",
            self.status, self.stdout, self.stderr
        )
    }

    fn check(&self, ok: bool, why: &str) {
        if !ok {
            self.fail(why);
        }
    }

    /// The rest of the first line that starts with `prefix`, trimmed.
    fn value(&self, prefix: &str) -> &str {
        self.stdout
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .map(str::trim)
            .unwrap_or_else(|| self.fail(&format!("no line starting with {prefix:?}")))
    }

    /// The first whitespace-separated word after `prefix`, parsed as a number.
    fn number(&self, prefix: &str) -> u64 {
        let value = self.value(prefix);
        value
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| self.fail(&format!("{prefix:?} is followed by {value:?}")))
    }

    /// The sum of a metric's samples (every label set) in Prometheus text lines, here or in
    /// a scrape; `None` if the metric has no line.
    fn metric(&self, name: &str) -> Option<f64> {
        metric_in(&self.stdout, name)
    }

    fn has_line(&self, start: &str) -> bool {
        self.stdout.lines().any(|l| l.starts_with(start))
    }

    fn expect_backend(&self, backend: &Backend) {
        let line = backend.expected_line();
        self.check(
            self.stdout
                .lines()
                .next()
                .is_some_and(|l| l.starts_with(&line)),
            &format!("the first line should start with {line:?}"),
        );
        let notice = self.stdout.lines().any(|l| l.starts_with("notice: "));
        match backend {
            Backend::Memory => self.check(
                notice && self.stdout.contains("REDIS_URL=redis://"),
                "in-memory mode needs a notice that says how to use Redis",
            ),
            _ => self.check(!notice, "no fallback notice expected"),
        }
    }
}

/// Runs an example to completion (or kills it after `TIMEOUT`).
fn exec(bin: &str, args: &[&str], backend: &Backend) -> Run {
    let mut command = Command::new(bin);
    command.args(args);
    backend.configure(&mut command);
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {bin}: {e}"));
    let stdout = read_all(child.stdout.take().unwrap());
    let stderr = read_all(child.stderr.take().unwrap());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{bin} {args:?} still running after {TIMEOUT:?}; stdout so far:\n{}",
                stdout.join().unwrap()
            );
        }
        thread::sleep(Duration::from_millis(20));
    };
    Run {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

fn read_all(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut out = String::new();
        let _ = pipe.read_to_string(&mut out);
        out
    })
}

// ---- quickstart ----

fn check_quickstart(backend: Backend) {
    let run = exec(QUICKSTART, &[], &backend);
    run.expect_backend(&backend);
    run.check(run.status.success(), "quickstart should exit 0");

    // The table: order, settled by, times settled, refused (Busy), found already settled.
    let rows: BTreeMap<u64, Vec<String>> = run
        .stdout
        .lines()
        .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .filter(|w| w.len() == 5 && w[1].starts_with("task-"))
        .filter_map(|w| Some((w[0].parse().ok()?, w)))
        .collect();
    run.check(
        rows.keys().copied().eq(1..=5),
        "the table should have one row per order 1..=5",
    );
    let mut calls = 0;
    for (order, row) in &rows {
        run.check(
            row[2] == "1" && !row[1].contains(','),
            &format!("order {order} should be settled exactly once: {row:?}"),
        );
        calls += row[2..]
            .iter()
            .map(|n| n.parse::<u64>().unwrap())
            .sum::<u64>();
    }
    run.check(
        calls == 20,
        "settled + refused + found-settled should add up to the 20 calls",
    );
    run.check(
        run.stdout.matches("  settled it").count() == 5,
        "exactly five calls should report `settled it`",
    );
    run.check(
        run.has_line("OK: each of the 5 orders was settled exactly once"),
        "missing the OK line",
    );
    run.check(!run.stdout.contains("ERROR"), "no call should fail");
}

#[test]
fn quickstart_settles_each_order_once_on_redis() {
    if have_redis() {
        check_quickstart(Backend::Private);
    }
}

#[test]
fn quickstart_settles_each_order_once_in_memory() {
    check_quickstart(Backend::Memory);
}

// ---- order_service ----

/// The sum of metric `name`'s samples (every label set) in the Prometheus text `text`,
/// indented or not; `None` if it has no sample line.
fn metric_in(text: &str, name: &str) -> Option<f64> {
    let samples: Vec<f64> = text
        .lines()
        .map(str::trim_start)
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .map(|l| {
            let value = l.rsplit(' ').next().unwrap_or_default();
            value
                .parse()
                .unwrap_or_else(|_| panic!("not a sample line: {l:?}"))
        })
        .collect();
    (!samples.is_empty()).then(|| samples.iter().sum())
}

fn check_order_service(backend: Backend) {
    let (requests, orders) = (300, 15);
    let run = exec(
        ORDER_SERVICE,
        &["--requests", "300", "--orders", "15"],
        &backend,
    );
    run.expect_backend(&backend);
    run.check(run.status.success(), "order_service should exit 0");
    run.check(run.number("requests:") == requests, "all requests reported");
    let settled = run.number("201 settled:");
    let already = run.number("200 already settled:");
    let busy = run.number("409 busy:");
    run.check(
        settled == orders,
        "each order settled by exactly one request",
    );
    run.check(
        settled + already + busy == requests,
        "every request answered 201, 200 or 409",
    );
    run.check(run.number("503 lost:") == 0, "no lock lost");
    run.check(run.number("other/failed:") == 0, "no failed request");
    run.check(
        run.number("double settlements:") == 0,
        "no double settlement",
    );
    let source = if matches!(backend, Backend::Memory) {
        "settlements read back from the in-process store: 15 settlements of 15 orders; 15 orders settled exactly once"
    } else {
        "settlements read back from Redis: 15 settlements of 15 orders; 15 orders settled exactly once"
    };
    run.check(run.has_line(source), "the check reads the shared state");
    let p50: f64 = run
        .value("latency p50:")
        .trim_end_matches(" ms")
        .parse()
        .unwrap();
    let p99: f64 = run
        .value("latency p99:")
        .trim_end_matches(" ms")
        .parse()
        .unwrap();
    run.check(p99 > 0.0 && p50 <= p99, "plausible latencies");
    if busy > 0 {
        let body = run.value("a 409 body:");
        run.check(
            body.contains(r#""error":"busy""#)
                && body.contains(r#""key":"lock-examples:order_service:"#)
                && body.contains(":order:"),
            "a 409 body names the lock key",
        );
    }
    run.check(
        run.has_line("OK: no order was settled twice"),
        "missing the OK line",
    );
    run.check(
        run.has_line("replicas closed:       every lock released (LockClient::close)"),
        "the replicas shut down through close()",
    );
    // The lock metrics it scraped from its own GET /metrics after the run, which must tell
    // the same story as the HTTP answers.
    run.check(
        run.has_line("lock metrics from GET http://127.0.0.1:"),
        "the metrics scrape is printed",
    );
    let metric = |name: &str| {
        run.metric(name)
            .unwrap_or_else(|| run.fail(&format!("no {name} in the scrape")))
    };
    let acquired = settled + already;
    run.check(
        metric("distributed_lock_acquire_attempts_total") == requests as f64,
        "one acquire attempt per request",
    );
    run.check(
        metric("distributed_lock_acquired_total") == acquired as f64,
        "a lock acquired for each 201 and 200",
    );
    run.check(
        metric("distributed_lock_busy_total") == busy as f64,
        "a busy count for each 409",
    );
    run.check(
        metric("distributed_lock_wait_seconds_count") == acquired as f64
            && metric("distributed_lock_hold_seconds_count") == acquired as f64,
        "a wait and a hold sample per acquisition",
    );
    run.check(
        metric("distributed_lock_held") == 0.0,
        "no lock held after close()",
    );
    run.check(
        run.metric("distributed_lock_lost_total").is_none(),
        "no lock lost",
    );
}

#[test]
fn order_service_settles_each_order_once_on_redis() {
    if have_redis() {
        check_order_service(Backend::Private);
    }
}

#[test]
fn order_service_settles_each_order_once_on_redis_url() {
    if have_redis() {
        let server = RedisServer::start().unwrap();
        check_order_service(Backend::Url(&server));
    }
}

#[test]
fn order_service_settles_each_order_once_in_memory() {
    check_order_service(Backend::Memory);
}

/// The check is not vacuous: without the lock, it catches the double settlements.
#[test]
fn order_service_without_the_lock_is_caught_settling_twice() {
    let run = exec(ORDER_SERVICE, &["--unlocked"], &Backend::Memory);
    run.check(!run.status.success(), "--unlocked should fail its check");
    run.check(run.number("409 busy:") == 0, "no lock, so no 409");
    run.check(
        run.number("double settlements:") > 0,
        "double settlements should be found",
    );
    run.check(
        run.has_line("FAILED: ") && !run.has_line("OK: "),
        "a FAILED line and no OK line",
    );
}

/// A `--port` replica: reads lines until it says where it listens.
struct ServiceProcess {
    child: Child,
    addr: String,
    /// Its stdout, line by line, read by a thread so that it never blocks on a full pipe.
    lines: mpsc::Receiver<String>,
}

impl ServiceProcess {
    fn start(server: &RedisServer, name: &str) -> ServiceProcess {
        let child = Command::new(ORDER_SERVICE)
            .args(["--port", "0", "--name", name])
            .env("REDIS_URL", server.url())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        // From here on, Drop kills and reaps it, whatever happens.
        let (tx, rx) = mpsc::channel();
        let mut process = ServiceProcess {
            child,
            addr: String::new(),
            lines: rx,
        };
        let stdout = BufReader::new(process.child.stdout.take().unwrap());
        thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seen = String::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match process.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = line
                        .strip_prefix(&format!("{name} listening on http://"))
                        .map(str::to_owned)
                    {
                        process.addr = addr;
                        return process;
                    }
                    seen.push_str(&line);
                    seen.push('\n');
                }
                Err(_) => panic!("{name} did not say where it listens; it printed:\n{seen}"),
            }
        }
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request over a fresh connection: (status, body).
fn http(addr: &str, method: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Two separately started processes (`--port`) share the lock through one Redis.
#[test]
fn order_service_processes_started_separately_share_the_lock() {
    if !have_redis() {
        return;
    }
    let server = RedisServer::start().unwrap();
    let a = ServiceProcess::start(&server, "proc-a");
    let b = ServiceProcess::start(&server, "proc-b");
    let orders = 1..=3u64;
    let requests: Vec<_> = orders
        .clone()
        .flat_map(|order| {
            [a.addr.clone(), b.addr.clone()]
                .into_iter()
                .flat_map(move |addr| (0..8).map(move |_| (order, addr.clone())))
        })
        .map(|(order, addr)| {
            thread::spawn(move || {
                (
                    order,
                    http(&addr, "POST", &format!("/orders/{order}/settle")),
                )
            })
        })
        .collect();
    let mut settled = BTreeMap::<u64, Vec<String>>::new();
    for request in requests {
        let (order, (status, body)) = request.join().unwrap();
        match status {
            201 => settled.entry(order).or_default().push(body),
            200 => assert!(body.contains("already_settled"), "{body}"),
            409 => assert!(
                body.contains(&format!(":order:{order}\"")),
                "a 409 names the key: {body}"
            ),
            other => panic!("unexpected status {other}: {body}"),
        }
    }
    for order in orders {
        let wins = settled.get(&order).map_or(0, Vec::len);
        assert_eq!(
            wins, 1,
            "order {order}: exactly one 201 across both processes, got {settled:?}"
        );
        let (status, body) = http(&a.addr, "GET", &format!("/orders/{order}"));
        assert_eq!(status, 200, "{body}");
        assert!(body.contains(r#""settlements":1"#), "{body}");
    }
}

/// A `--port` replica serves its lock metrics at `GET /metrics`, for Prometheus to scrape.
#[test]
fn order_service_serves_lock_metrics_for_prometheus() {
    if !have_redis() {
        return;
    }
    let server = RedisServer::start().unwrap();
    let service = ServiceProcess::start(&server, "proc-metrics");
    let (status, body) = http(&service.addr, "POST", "/orders/5/settle");
    assert_eq!(status, 201, "{body}");
    let (status, body) = http(&service.addr, "POST", "/orders/5/settle");
    assert_eq!(status, 200, "{body}");
    let (status, scrape) = http(&service.addr, "GET", "/metrics");
    assert_eq!(status, 200, "{scrape}");
    let ns = r#"{namespace="lock-examples:order_service"}"#;
    for line in [
        "# TYPE distributed_lock_acquired_total counter".to_owned(),
        "# TYPE distributed_lock_held gauge".to_owned(),
        "# TYPE distributed_lock_wait_seconds histogram".to_owned(),
        "# HELP distributed_lock_acquired_total Locks taken.".to_owned(),
        format!("distributed_lock_acquire_attempts_total{ns} 2"),
        format!("distributed_lock_acquired_total{ns} 2"),
        format!("distributed_lock_held{ns} 0"),
        format!("distributed_lock_wait_seconds_count{ns} 2"),
        format!("distributed_lock_hold_seconds_count{ns} 2"),
    ] {
        assert!(
            scrape.lines().any(|l| l == line),
            "no line {line:?} in the scrape:\n{scrape}"
        );
    }
    assert!(
        scrape.contains(r#"distributed_lock_wait_seconds_bucket{namespace="lock-examples:order_service",le="+Inf"} 2"#),
        "histograms have buckets:\n{scrape}"
    );
    let hold = metric_in(&scrape, "distributed_lock_hold_seconds_sum").unwrap();
    // Each settlement holds the lock for its 20 ms charge, at least; the 200 for less.
    assert!((0.02..60.0).contains(&hold), "hold time sum {hold}");
    assert_eq!(metric_in(&scrape, "distributed_lock_busy_total"), None);
}

#[test]
fn order_service_releases_its_locks_on_sigterm() {
    if !have_redis() {
        return;
    }
    let server = RedisServer::start().unwrap();
    let mut service = ServiceProcess::start(&server, "proc-term");
    let (status, body) = http(&service.addr, "POST", "/orders/1/settle");
    assert_eq!(status, 201, "{body}");
    let killed = Command::new("kill")
        .args(["-TERM", &service.child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.starts_with("stopped")) {
        let left = deadline.saturating_duration_since(Instant::now());
        match service.lines.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => panic!("no shutdown report after SIGTERM; it printed {seen:?}"),
        }
    }
    assert!(
        seen.iter().any(|l| l == "stopped; locks released"),
        "graceful shutdown should close the lock client: {seen:?}"
    );
    let exit = service.child.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
    let mut raw = server.connection().unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("lock-examples:order_service:order:*")
        .query(&mut raw)
        .unwrap();
    assert!(keys.is_empty(), "locks left after shutdown: {keys:?}");
}

// ---- scheduled_job ----

fn check_scheduled_job(backend: Backend, ticks: u64) {
    let run = exec(SCHEDULED_JOB, &["--ticks", &ticks.to_string()], &backend);
    run.expect_backend(&backend);
    run.check(run.status.success(), "scheduled_job should exit 0");
    // Timeline rows: tick, second, one cell per replica (`RAN (+n ms)`, `busy (+n ms)`).
    let rows: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| {
            let mut w = l.split_whitespace();
            w.next().is_some_and(|t| t.parse::<u64>().is_ok())
                && w.next().is_some_and(|s| s.len() == 8 && s.contains(':'))
        })
        .collect();
    run.check(rows.len() as u64 == ticks, "one timeline row per tick");
    for row in &rows {
        run.check(
            row.matches("RAN").count() == 1,
            &format!("exactly one replica ran each tick: {row:?}"),
        );
        run.check(!row.contains("ERROR"), "no job attempt failed");
    }
    let expected: Vec<String> = (1..=ticks).map(|t| format!("{t}x1")).collect();
    let source = if matches!(backend, Backend::Memory) {
        "the in-process store"
    } else {
        "Redis"
    };
    run.check(
        run.value(&format!("runs read back from {source} (tick x runs):")) == expected.join(" "),
        "every tick recorded exactly one run",
    );
    run.check(
        run.has_line(&format!(
            "OK: {ticks} ticks, each ran exactly once; no tick ran twice"
        )),
        "missing the OK line",
    );
}

#[test]
fn scheduled_job_runs_each_tick_once_on_redis() {
    if have_redis() {
        check_scheduled_job(Backend::Private, 3);
    }
}

#[test]
fn scheduled_job_runs_each_tick_once_in_memory() {
    check_scheduled_job(Backend::Memory, 2);
}

// ---- fencing ----

fn check_fencing(backend: Backend) {
    let run = exec(FENCING, &[], &backend);
    run.expect_backend(&backend);
    run.check(run.status.success(), "fencing should exit 0");
    let tokens = run.value("fencing tokens:");
    let parsed: Vec<u64> = tokens
        .split(',')
        .filter_map(|part| part.rsplit(' ').next()?.parse().ok())
        .collect();
    run.check(parsed.len() == 2, "two tokens");
    let (old, new) = (parsed[0], parsed[1]);
    run.check(new > old, "client-2's token is higher");
    run.check(
        run.stdout.contains(&format!(
            "client-2 writes \"report v2\" with token {new}: ACCEPTED"
        )),
        "client-2's write is accepted",
    );
    run.check(
        run.stdout.contains(&format!(
            "storage: REJECTED client-1's write: token {old} < {new}"
        )),
        "client-1's stale write is rejected",
    );
    run.check(
        run.value("storage holds:")
            .starts_with(&format!("\"report v2, by client-2\" (token {new})")),
        "the storage keeps client-2's report",
    );
    run.check(
        run.stdout
            .contains("client-1 releases: lock `lock-examples:fencing:report` is not held"),
        "client-1's late release finds the lock gone",
    );
    run.check(
        run.has_line("OK: the stale write from client-1 was rejected"),
        "missing the OK line",
    );
}

#[test]
fn fencing_rejects_the_stale_write_on_redis() {
    if have_redis() {
        check_fencing(Backend::Private);
    }
}

#[test]
fn fencing_rejects_the_stale_write_in_memory() {
    check_fencing(Backend::Memory);
}

// ---- arguments ----

#[test]
fn bad_arguments_are_refused_with_the_usage() {
    let run = exec(SCHEDULED_JOB, &["--ticks", "many"], &Backend::Memory);
    run.check(run.status.code() == Some(2), "exit status 2");
    run.check(
        run.stderr.contains("--ticks") && run.stderr.contains("usage: scheduled_job"),
        "the error names the argument and shows the usage",
    );
    let run = exec(QUICKSTART, &["--help"], &Backend::Memory);
    run.check(
        run.status.success() && run.stdout.starts_with("usage: quickstart"),
        "--help prints the usage",
    );
}
