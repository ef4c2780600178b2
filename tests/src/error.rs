use std::fmt;
use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// Everything that can go wrong while starting or controlling a [`RedisServer`](crate::RedisServer).
///
/// `Debug` prints the same human-readable text as `Display` (plus the chain of causes), so
/// that `server.unwrap()` and `fn test() -> Result<(), HarnessError>` show the install hint
/// and the log tail rather than a struct dump.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum HarnessError {
    /// No `redis-server` binary was found on `PATH`, and `REDIS_SERVER` is not set.
    #[error(
        "redis-server was not found on PATH. Install it with `sudo apt-get install -y redis-server` (Debian/Ubuntu) or `brew install redis` (macOS), or run `scripts/test`, which installs it; set REDIS_SERVER=/path/to/redis-server to use another binary."
    )]
    NotInstalled,

    /// `REDIS_SERVER` is set, but does not name an executable file.
    #[error(
        "REDIS_SERVER is set to {path:?}, which is not an executable file (nor a program on PATH); point it at a redis-server binary or unset it"
    )]
    InvalidBinary {
        /// The value of `REDIS_SERVER`.
        path: PathBuf,
    },

    /// An extra argument given to the builder would override a setting the harness relies on.
    #[error(
        "the argument {arg:?} is managed by the harness (port, bind address, working dir, log file, daemonize) and cannot be overridden"
    )]
    ReservedArg {
        /// The offending argument.
        arg: String,
    },

    /// The temporary working directory could not be created.
    #[error("could not create a temporary directory for redis-server")]
    TempDir(#[source] io::Error),

    /// No free loopback port could be reserved.
    #[error("could not find a free port on 127.0.0.1")]
    NoFreePort(#[source] io::Error),

    /// The `redis-server` process could not be spawned.
    #[error("could not spawn {binary:?}")]
    Spawn {
        /// The binary that was run.
        binary: PathBuf,
        /// Why spawning failed.
        #[source]
        source: io::Error,
    },

    /// `redis-server` exited before it answered `PING`.
    #[error("redis-server on port {port} exited during startup ({status}); log tail:\n{log}")]
    Exited {
        /// The port it was asked to listen on.
        port: u16,
        /// How it exited.
        status: ExitStatus,
        /// The last lines of its log file and of its stdout/stderr.
        log: String,
    },

    /// `redis-server` did not answer `PING` within the startup timeout.
    #[error(
        "redis-server on port {port} did not answer PING within {timeout:?}; last error: {last_error}; log tail:\n{log}"
    )]
    StartupTimeout {
        /// The port it was asked to listen on.
        port: u16,
        /// The startup timeout that expired.
        timeout: Duration,
        /// The last connection or `PING` error seen.
        last_error: String,
        /// The last lines of its log file and of its stdout/stderr.
        log: String,
    },

    /// The port kept being taken by another process, even after retries.
    #[error(
        "port {port} stayed in use by another process after {attempts} attempts; log tail:\n{log}"
    )]
    PortInUse {
        /// The last port tried.
        port: u16,
        /// How many starts were attempted.
        attempts: u32,
        /// The last lines of its log file and of its stdout/stderr.
        log: String,
    },

    /// The operation needs a running server, but it was stopped or killed.
    #[error("redis-server is not running")]
    NotRunning,

    /// Sending a signal to the server or waiting for it failed.
    #[error("could not signal or reap redis-server (pid {pid})")]
    Process {
        /// The server's process id.
        pid: u32,
        /// The underlying OS error.
        #[source]
        source: io::Error,
    },

    /// A helper program (`openssl`, `redis-cli`) failed or is missing.
    #[error(
        "`{program}` failed: {detail}; install it with `sudo apt-get install -y {package}`, or run `scripts/test`, which installs it"
    )]
    Tool {
        /// The program that was run.
        program: &'static str,
        /// The Debian package that provides it.
        package: &'static str,
        /// Its exit status and output, or why it could not be run.
        detail: String,
    },

    /// A topology (Sentinel group, cluster) did not reach the expected state in time.
    #[error("{what} did not happen within {timeout:?}: {detail}")]
    NotReady {
        /// What was awaited.
        what: &'static str,
        /// How long the harness waited.
        timeout: Duration,
        /// The last state seen.
        detail: String,
    },

    /// A Redis command or connection failed.
    #[error("redis error")]
    Redis(#[from] redis::RedisError),
}

impl fmt::Debug for HarnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")?;
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            write!(f, "\n  caused by: {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}
