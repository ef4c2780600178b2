use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::{HarnessError, redis_server_binary};

/// The port a system-wide Redis usually listens on. The harness never uses it, so that tests
/// can neither read nor wipe a developer's real data.
pub const FORBIDDEN_PORT: u16 = 6379;

/// Default time a server gets to answer `PING` after it is spawned.
pub const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(5);

/// How often startup polls the server and the process.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Fresh ports tried by `start` when the chosen one is taken between probing and binding.
const START_ATTEMPTS: u32 = 5;
/// How long `restart` keeps trying to re-bind the same port.
const REBIND_WINDOW: Duration = Duration::from_secs(3);
const REBIND_INTERVAL: Duration = Duration::from_millis(100);
/// How long `stop` waits after SIGTERM before it falls back to SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Timeouts of the connections handed out by `connection`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Per-probe connect timeout while waiting for startup.
const PROBE_TIMEOUT: Duration = Duration::from_millis(250);
const LOG_TAIL_LINES: usize = 30;

const LOG_FILE: &str = "redis.log";
const STDIO_FILE: &str = "redis.stdio.log";
const SENTINEL_FILE: &str = "sentinel.conf";

/// Options that the harness sets itself and that the builder refuses to override.
const RESERVED_ARGS: &[&str] = &["--port", "--bind", "--dir", "--logfile", "--daemonize"];

/// A `redis-server` process owned by a test: its own loopback port, its own temporary working
/// directory, no persistence.
///
/// The process is killed and reaped, and the directory removed, when the value is dropped, so
/// a test can neither leave a server running nor leave files behind, even when it panics.
///
/// ```
/// use lock_tests::RedisServer;
///
/// let server = RedisServer::start()?;
/// let mut con = server.connection()?;
/// let pong: String = redis::cmd("PING").query(&mut con)?;
/// assert_eq!(pong, "PONG");
/// assert_ne!(server.port(), 6379);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    paused: bool,
    port: u16,
    binary: PathBuf,
    extra_args: Vec<OsString>,
    startup_timeout: Duration,
    /// Whether this process is a Sentinel, configured by `sentinel.conf` in its directory.
    sentinel: bool,
    // Declared last so that it is removed after the process is gone.
    dir: TempDir,
}

/// Configures a [`RedisServer`] before starting it; see [`RedisServer::builder`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `.start()` is called"]
pub struct RedisServerBuilder {
    args: Vec<OsString>,
    startup_timeout: Duration,
    sentinel_config: Option<String>,
}

impl Default for RedisServerBuilder {
    fn default() -> Self {
        Self {
            args: Vec::new(),
            startup_timeout: DEFAULT_STARTUP_TIMEOUT,
            sentinel_config: None,
        }
    }
}

impl RedisServerBuilder {
    /// Appends one command-line argument, passed to `redis-server` after the harness's own
    /// (`--port`, `--bind 127.0.0.1`, `--dir`, `--logfile`, `--daemonize no`, `--save ""`,
    /// `--appendonly no`).
    ///
    /// A later option wins in Redis, so this can re-enable persistence, for example. The options
    /// the harness depends on (`--port`, `--bind`, `--dir`, `--logfile`, `--daemonize`) are
    /// refused by [`start`](Self::start) with [`HarnessError::ReservedArg`].
    ///
    /// ```
    /// let server = lock_tests::RedisServer::builder()
    ///     .arg("--maxmemory")
    ///     .arg("10mb")
    ///     .start()?;
    /// # Ok::<(), lock_tests::HarnessError>(())
    /// ```
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Appends several command-line arguments; see [`arg`](Self::arg).
    pub fn args<I>(mut self, args: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Runs the process as a Sentinel (`redis-server <file> --sentinel`) with this
    /// configuration. The file is written to the server's directory once; Sentinel rewrites
    /// it as it learns the topology, and [`restart`](RedisServer::restart) keeps it.
    pub fn sentinel_config(mut self, config: impl Into<String>) -> Self {
        self.sentinel_config = Some(config.into());
        self
    }

    /// Sets how long the server gets to answer `PING` after each spawn
    /// (default [`DEFAULT_STARTUP_TIMEOUT`]). Also used by [`RedisServer::restart`].
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// Starts the server and waits until it answers `PING`.
    ///
    /// A free port is chosen by binding `127.0.0.1:0`. If another process grabs it before
    /// `redis-server` binds it, a new port is tried, a few times.
    ///
    /// # Errors
    ///
    /// [`HarnessError::NotInstalled`] or [`HarnessError::InvalidBinary`] when there is no binary
    /// to run; [`HarnessError::ReservedArg`] for an argument the harness manages;
    /// [`HarnessError::Exited`] or [`HarnessError::StartupTimeout`] (with the log tail) when
    /// the server does not come up; [`HarnessError::PortInUse`] when every port tried was taken.
    pub fn start(self) -> Result<RedisServer, HarnessError> {
        if let Some(arg) = self.args.iter().find(|a| is_reserved(a)) {
            return Err(HarnessError::ReservedArg {
                arg: arg.to_string_lossy().into_owned(),
            });
        }
        let binary = redis_server_binary()?;
        let dir = tempfile::Builder::new()
            .prefix("lock-tests-redis-")
            .tempdir()
            .map_err(HarnessError::TempDir)?;

        let mut server = RedisServer {
            child: None,
            paused: false,
            port: 0,
            binary,
            extra_args: self.args,
            startup_timeout: self.startup_timeout,
            sentinel: self.sentinel_config.is_some(),
            dir,
        };
        if let Some(config) = &self.sentinel_config {
            fs::write(server.dir().join(SENTINEL_FILE), config).map_err(HarnessError::TempDir)?;
        }
        let mut last_log = String::new();
        for _ in 0..START_ATTEMPTS {
            server.port = free_port()?;
            match server.launch() {
                Ok(child) => {
                    server.child = Some(child);
                    return Ok(server);
                }
                Err(Launch::PortTaken { log }) => last_log = log,
                Err(Launch::Failed(err)) => return Err(err),
            }
        }
        Err(HarnessError::PortInUse {
            port: server.port,
            attempts: START_ATTEMPTS,
            log: last_log,
        })
    }
}

fn is_reserved(arg: &OsString) -> bool {
    let arg = arg.to_string_lossy().to_ascii_lowercase();
    RESERVED_ARGS.contains(&arg.as_str())
}

/// Why one spawn attempt did not give a running server.
enum Launch {
    /// Something else holds the port: worth retrying.
    PortTaken { log: String },
    /// Anything else: retrying would not help.
    Failed(HarnessError),
}

impl RedisServer {
    /// Starts a server with the default configuration; see [`RedisServerBuilder::start`].
    ///
    /// # Errors
    ///
    /// As for [`RedisServerBuilder::start`]. [`HarnessError::NotInstalled`] explains how to
    /// install `redis-server`.
    pub fn start() -> Result<Self, HarnessError> {
        Self::builder().start()
    }

    /// Returns a builder for a server with extra configuration.
    pub fn builder() -> RedisServerBuilder {
        RedisServerBuilder::default()
    }

    /// The TCP port the server listens on, on 127.0.0.1. Stays the same across
    /// [`restart`](Self::restart); never 6379.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's address, `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The server's URL, `redis://127.0.0.1:PORT/`, for `redis::Client::open` or the lock
    /// runtime's own client.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// A `redis::Client` for this server, to open async connections from tokio code.
    ///
    /// # Errors
    ///
    /// Only if redis-rs rejects the URL, which does not happen for the URLs built here.
    pub fn client(&self) -> Result<redis::Client, HarnessError> {
        Ok(redis::Client::open(self.url())?)
    }

    /// Opens a synchronous connection, to inspect or change data from a test.
    ///
    /// Connecting times out after 2 s, and each read or write after 5 s, so a test that talks
    /// to a stopped or [paused](Self::pause) server fails instead of hanging. Change this with
    /// `set_read_timeout`/`set_write_timeout` on the connection.
    ///
    /// # Errors
    ///
    /// [`HarnessError::Redis`] when the server does not accept the connection, for example
    /// because it is stopped, killed or paused.
    pub fn connection(&self) -> Result<redis::Connection, HarnessError> {
        let con = self
            .client()?
            .get_connection_with_timeout(CONNECT_TIMEOUT)?;
        con.set_read_timeout(Some(IO_TIMEOUT))?;
        con.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(con)
    }

    /// The process id of the running server, or `None` after [`stop`](Self::stop) or
    /// [`kill`](Self::kill). [`restart`](Self::restart) gives a new pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The server's temporary working directory, which also holds its log files. It is removed
    /// when the `RedisServer` is dropped.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The last `lines` lines of the server's log file, across restarts, for failure messages.
    /// Returns an empty string when the log cannot be read.
    pub fn log_tail(&self, lines: usize) -> String {
        read_tail(&self.dir.path().join(LOG_FILE), 0, lines)
    }

    /// Whether the server process is alive. A [paused](Self::pause) server counts as running.
    ///
    /// Takes `&mut self` because it reaps the process if it exited on its own (for example after
    /// a `SHUTDOWN` sent by the test).
    pub fn is_running(&mut self) -> bool {
        let Some(child) = self.child.as_mut() else {
            return false;
        };
        match child.try_wait() {
            Ok(None) => true,
            // Exited (and now reaped), or not our child any more: either way it is gone.
            Ok(Some(_)) | Err(_) => {
                self.child = None;
                self.paused = false;
                false
            }
        }
    }

    /// Whether the server is currently stopped by [`pause`](Self::pause).
    pub fn is_paused(&self) -> bool {
        self.child.is_some() && self.paused
    }

    /// Stops the server gracefully and waits for it to exit: SIGCONT if it is paused, then
    /// SIGTERM (Redis shuts down without saving, since persistence is off), then SIGKILL if it
    /// has not exited within 5 s. Does nothing if it is not running.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id();
        if std::mem::take(&mut self.paused) {
            let _ = signal(pid, libc::SIGCONT);
        }
        if signal(pid, libc::SIGTERM).is_ok() {
            let deadline = Instant::now() + STOP_TIMEOUT;
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => return,
                    Ok(None) if Instant::now() < deadline => thread::sleep(POLL_INTERVAL),
                    _ => break,
                }
            }
        }
        reap(child);
    }

    /// Kills the server with SIGKILL, as a crash would, and reaps it. Clients see their
    /// connections reset. Does nothing if it is not running.
    pub fn kill(&mut self) {
        self.paused = false;
        if let Some(child) = self.child.take() {
            reap(child);
        }
    }

    /// Starts the server again on the same port, in the same directory, with the same
    /// arguments, and waits until it answers `PING`. A running server is [stopped](Self::stop)
    /// first. The data is gone, since nothing is persisted.
    ///
    /// If the port cannot be bound again at once, this keeps retrying for about 3 s.
    ///
    /// # Errors
    ///
    /// [`HarnessError::PortInUse`] when another process took the port meanwhile;
    /// [`HarnessError::Exited`] or [`HarnessError::StartupTimeout`] as for
    /// [`start`](Self::start).
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        self.stop();
        let deadline = Instant::now() + REBIND_WINDOW;
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.launch() {
                Ok(child) => {
                    self.child = Some(child);
                    return Ok(());
                }
                Err(Launch::PortTaken { log }) => {
                    if Instant::now() >= deadline {
                        return Err(HarnessError::PortInUse {
                            port: self.port,
                            attempts,
                            log,
                        });
                    }
                    thread::sleep(REBIND_INTERVAL);
                }
                Err(Launch::Failed(err)) => return Err(err),
            }
        }
    }

    /// Freezes the server with SIGSTOP, which simulates a hung server or a network partition:
    /// connections stay open and new ones are accepted by the kernel, but nothing is answered
    /// until [`resume`](Self::resume). On Linux this returns once the process is really
    /// stopped.
    ///
    /// # Errors
    ///
    /// [`HarnessError::NotRunning`] if the server is stopped; [`HarnessError::Process`] if the
    /// signal cannot be sent.
    pub fn pause(&mut self) -> Result<(), HarnessError> {
        if !self.is_running() {
            return Err(HarnessError::NotRunning);
        }
        let pid = self.pid().ok_or(HarnessError::NotRunning)?;
        signal(pid, libc::SIGSTOP).map_err(|source| HarnessError::Process { pid, source })?;
        self.paused = true;
        wait_until_stopped(pid);
        Ok(())
    }

    /// Lets a [paused](Self::pause) server run again with SIGCONT. Requests sent meanwhile are
    /// answered now. Does nothing to a server that is not paused.
    ///
    /// # Errors
    ///
    /// [`HarnessError::NotRunning`] if the server is stopped; [`HarnessError::Process`] if the
    /// signal cannot be sent.
    pub fn resume(&mut self) -> Result<(), HarnessError> {
        let pid = self.pid().ok_or(HarnessError::NotRunning)?;
        signal(pid, libc::SIGCONT).map_err(|source| HarnessError::Process { pid, source })?;
        self.paused = false;
        Ok(())
    }

    /// Spawns `redis-server` on `self.port` and waits until it answers `PING` and reports our
    /// child's pid (so a different server that happens to hold the port is not mistaken for it).
    fn launch(&self) -> Result<Child, Launch> {
        if self.port == FORBIDDEN_PORT || self.port == 0 {
            return Err(Launch::Failed(HarnessError::NoFreePort(io::Error::other(
                format!("refusing to run redis-server on port {}", self.port),
            ))));
        }
        let dir = self.dir.path();
        let log_path = dir.join(LOG_FILE);
        let stdio_path = dir.join(STDIO_FILE);
        // Only what this attempt writes is shown in errors: the files are appended to across
        // attempts and restarts.
        let log_start = file_len(&log_path);
        let stdio_start = file_len(&stdio_path);
        let tail = || {
            format_tail(&[
                (LOG_FILE, read_tail(&log_path, log_start, LOG_TAIL_LINES)),
                (
                    STDIO_FILE,
                    read_tail(&stdio_path, stdio_start, LOG_TAIL_LINES),
                ),
            ])
        };

        let spawn_err = |source| {
            Launch::Failed(HarnessError::Spawn {
                binary: self.binary.clone(),
                source,
            })
        };
        // stdout/stderr go to a file: errors printed before the log file is open (a bad
        // argument, for example) end up there.
        let stdio = File::options()
            .create(true)
            .append(true)
            .open(&stdio_path)
            .map_err(spawn_err)?;
        let mut command = Command::new(&self.binary);
        if self.sentinel {
            command.arg(dir.join(SENTINEL_FILE)).arg("--sentinel");
        }
        command
            .arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(dir)
            .arg("--logfile")
            .arg(&log_path)
            .args(["--daemonize", "no", "--save", "", "--appendonly", "no"])
            .args(&self.extra_args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(stdio.try_clone().map_err(spawn_err)?)
            .stderr(stdio);
        let mut child = command.spawn().map_err(spawn_err)?;

        let started = Instant::now();
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    let log = tail();
                    return Err(if log.contains("Address already in use") {
                        Launch::PortTaken { log }
                    } else {
                        Launch::Failed(HarnessError::Exited {
                            port: self.port,
                            status,
                            log,
                        })
                    });
                }
                Ok(None) => {}
                Err(source) => {
                    let pid = child.id();
                    reap(child);
                    return Err(Launch::Failed(HarnessError::Process { pid, source }));
                }
            }
            let last_error = match probe(self.addr()) {
                Ok(pid) if pid == child.id() => return Ok(child),
                Ok(_) => {
                    // Another server answers on this port, so ours cannot bind it.
                    reap(child);
                    return Err(Launch::PortTaken { log: tail() });
                }
                Err(err) => err,
            };
            if started.elapsed() >= self.startup_timeout {
                reap(child);
                return Err(Launch::Failed(HarnessError::StartupTimeout {
                    port: self.port,
                    timeout: self.startup_timeout,
                    last_error: last_error.to_string(),
                    log: tail(),
                }));
            }
            thread::sleep(POLL_INTERVAL);
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            if self.paused {
                let _ = signal(child.id(), libc::SIGCONT);
            }
            reap(child);
        }
        // `self.dir` is removed when the field is dropped, right after this.
    }
}

/// Sends PING, then returns the `process_id` the server reports.
fn probe(addr: SocketAddr) -> redis::RedisResult<u32> {
    let client = redis::Client::open(format!("redis://{addr}/"))?;
    let mut con = client.get_connection_with_timeout(PROBE_TIMEOUT)?;
    con.set_read_timeout(Some(PROBE_TIMEOUT))?;
    con.set_write_timeout(Some(PROBE_TIMEOUT))?;
    redis::cmd("PING").query::<String>(&mut con)?;
    let info: String = redis::cmd("INFO").arg("server").query(&mut con)?;
    info.lines()
        .find_map(|line| line.strip_prefix("process_id:"))
        .and_then(|pid| pid.trim().parse().ok())
        .ok_or_else(|| {
            redis::RedisError::from(io::Error::other("INFO server has no process_id field"))
        })
}

/// Picks a loopback port that is free right now by letting the kernel choose one; never
/// 6379. For a second port of a server (TLS) or for processes the harness starts itself.
///
/// # Errors
///
/// [`HarnessError::NoFreePort`] when no port can be bound.
pub fn free_port() -> Result<u16, HarnessError> {
    for _ in 0..10 {
        let listener =
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(HarnessError::NoFreePort)?;
        let port = listener
            .local_addr()
            .map_err(HarnessError::NoFreePort)?
            .port();
        if port != FORBIDDEN_PORT {
            return Ok(port);
        }
    }
    Err(HarnessError::NoFreePort(io::Error::other(
        "the kernel kept choosing port 6379",
    )))
}

/// SIGKILLs the child if it is still there and reaps it, so no zombie is left.
fn reap(mut child: Child) {
    // Errors mean it already exited; `wait` still reaps it.
    let _ = child.kill();
    let _ = child.wait();
}

/// Sends `sig` to `pid`.
///
/// Only ever called with the pid of a `Child` that has not been reaped yet, so the pid cannot
/// have been reused by an unrelated process.
fn signal(pid: u32, sig: libc::c_int) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "pid out of range"))?;
    // SAFETY: kill(2) only takes integers and touches none of our memory.
    if unsafe { libc::kill(pid, sig) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// SIGSTOP is delivered asynchronously; on Linux, wait (briefly) until the process state says
/// stopped, so that a request sent right after `pause` can never be answered.
fn wait_until_stopped(pid: u32) {
    if !cfg!(target_os = "linux") {
        return;
    }
    let stat = format!("/proc/{pid}/stat");
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline {
        let Ok(content) = fs::read_to_string(&stat) else {
            return;
        };
        // The state follows the command name, which is in parentheses and may contain spaces.
        let state = content
            .rfind(')')
            .and_then(|i| content[i + 1..].trim_start().chars().next());
        if matches!(state, Some('T' | 't') | None) {
            return;
        }
        thread::sleep(Duration::from_millis(1));
    }
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// The last `lines` lines of `path`, reading from byte `from`.
fn read_tail(path: &Path, from: u64, lines: usize) -> String {
    let mut content = Vec::new();
    let read = File::open(path).and_then(|mut file| {
        file.seek(SeekFrom::Start(from))?;
        file.read_to_end(&mut content)
    });
    if read.is_err() {
        return String::new();
    }
    let content = String::from_utf8_lossy(&content);
    let all: Vec<&str> = content.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn format_tail(parts: &[(&str, String)]) -> String {
    let shown: Vec<String> = parts
        .iter()
        .filter(|(_, text)| !text.trim().is_empty())
        .map(|(name, text)| format!("--- {name} ---\n{text}"))
        .collect();
    if shown.is_empty() {
        "(no log output)".to_owned()
    } else {
        shown.join("\n")
    }
}
