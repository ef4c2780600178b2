//! Self-test of the `lock_tests` harness against real `redis-server` processes.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use lock_tests::{FORBIDDEN_PORT, HarnessError, RedisServer};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

fn ping(con: &mut redis::Connection) -> redis::RedisResult<String> {
    redis::cmd("PING").query(con)
}

fn set(con: &mut redis::Connection, key: &str, value: &str) -> redis::RedisResult<()> {
    redis::cmd("SET").arg(key).arg(value).exec(con)
}

fn get(con: &mut redis::Connection, key: &str) -> redis::RedisResult<Option<String>> {
    redis::cmd("GET").arg(key).query(con)
}

fn config_get(con: &mut redis::Connection, name: &str) -> redis::RedisResult<String> {
    let pair: Vec<String> = redis::cmd("CONFIG").arg("GET").arg(name).query(con)?;
    Ok(pair.get(1).cloned().unwrap_or_default())
}

/// True while `pid` names a process, including an unreaped zombie; false once it is reaped.
fn process_exists(pid: u32) -> bool {
    let pid = libc::pid_t::try_from(pid).expect("pid fits in pid_t");
    // SAFETY: kill(2) with signal 0 only checks that the process exists.
    if unsafe { libc::kill(pid, 0) } == 0 {
        return true;
    }
    std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

fn canonical(path: &Path) -> PathBuf {
    path.canonicalize()
        .unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

#[test]
fn started_server_answers_ping_and_stores_data_without_persistence() -> Result {
    let mut server = RedisServer::start()?;
    let port = server.port();
    assert_ne!(port, FORBIDDEN_PORT);
    assert_ne!(port, 6379);
    assert_eq!(server.url(), format!("redis://127.0.0.1:{port}/"));
    assert_eq!(server.addr().to_string(), format!("127.0.0.1:{port}"));
    assert!(server.is_running());
    assert!(!server.is_paused());
    let pid = server.pid().expect("a running server has a pid");
    assert!(process_exists(pid));

    let mut con = server.connection()?;
    assert_eq!(ping(&mut con)?, "PONG");
    set(&mut con, "greeting", "hello")?;
    assert_eq!(get(&mut con, "greeting")?.as_deref(), Some("hello"));

    // It really is the process we spawned, configured as promised.
    let info: String = redis::cmd("INFO").arg("server").query(&mut con)?;
    assert!(info.contains(&format!("process_id:{pid}")), "{info}");
    assert!(info.contains(&format!("tcp_port:{port}")), "{info}");
    assert_eq!(config_get(&mut con, "save")?, "");
    assert_eq!(config_get(&mut con, "appendonly")?, "no");
    assert_eq!(config_get(&mut con, "bind")?, "127.0.0.1");
    assert_eq!(
        canonical(Path::new(&config_get(&mut con, "dir")?)),
        canonical(server.dir())
    );
    assert!(server.dir().join("redis.log").is_file());
    assert!(server.log_tail(50).contains("Ready to accept connections"));
    Ok(())
}

#[test]
fn the_async_client_reaches_the_same_server() -> Result {
    let server = RedisServer::start()?;
    let mut con = server.connection()?;
    set(&mut con, "k", "from-sync")?;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = server.client()?;
    let value: Option<String> = rt.block_on(async {
        let mut con = client.get_multiplexed_async_connection().await?;
        redis::cmd("GET").arg("k").query_async(&mut con).await
    })?;
    assert_eq!(value.as_deref(), Some("from-sync"));
    Ok(())
}

#[test]
fn stop_then_restart_keeps_the_port_and_loses_the_data() -> Result {
    let mut server = RedisServer::start()?;
    let port = server.port();
    let old_pid = server.pid().unwrap();
    set(&mut server.connection()?, "key", "value")?;

    server.stop();
    assert!(!server.is_running());
    assert_eq!(server.pid(), None);
    assert!(!process_exists(old_pid), "stop must reap the process");
    assert!(
        server.connection().is_err(),
        "a stopped server accepts nothing"
    );
    server.stop(); // stopping twice is harmless

    server.restart()?;
    assert_eq!(server.port(), port);
    assert!(server.is_running());
    assert_ne!(server.pid(), Some(old_pid));
    let mut con = server.connection()?;
    assert_eq!(ping(&mut con)?, "PONG");
    assert_eq!(get(&mut con, "key")?, None, "nothing may be persisted");
    assert_eq!(redis::cmd("DBSIZE").query::<u64>(&mut con)?, 0);
    assert!(!server.dir().join("dump.rdb").exists());
    assert!(!server.dir().join("appendonlydir").exists());
    Ok(())
}

#[test]
fn restart_of_a_running_server_stops_it_first() -> Result {
    let mut server = RedisServer::start()?;
    let port = server.port();
    let old_pid = server.pid().unwrap();
    set(&mut server.connection()?, "key", "value")?;

    server.restart()?;
    assert!(!process_exists(old_pid));
    assert_eq!(server.port(), port);
    assert_eq!(get(&mut server.connection()?, "key")?, None);
    Ok(())
}

#[test]
fn kill_makes_connections_fail_and_restart_recovers() -> Result {
    let mut server = RedisServer::start()?;
    let pid = server.pid().unwrap();
    let mut con = server.connection()?;
    assert_eq!(ping(&mut con)?, "PONG");

    server.kill();
    assert!(!server.is_running());
    assert!(!process_exists(pid), "kill must reap the process");
    assert!(ping(&mut con).is_err(), "the old connection must fail");
    let Err(err) = server.connection() else {
        panic!("a killed server must refuse connections");
    };
    assert!(matches!(err, HarnessError::Redis(_)), "{err}");

    server.restart()?;
    assert_eq!(ping(&mut server.connection()?)?, "PONG");
    Ok(())
}

#[test]
fn pause_makes_requests_time_out_and_resume_recovers() -> Result {
    let mut server = RedisServer::start()?;
    let mut con = server.connection()?;
    set(&mut con, "key", "before-pause")?;
    con.set_read_timeout(Some(Duration::from_millis(300)))?;

    server.pause()?;
    assert!(server.is_paused());
    assert!(server.is_running(), "a paused server is still alive");
    let started = Instant::now();
    let err = ping(&mut con).expect_err("a paused server must not answer");
    assert!(err.is_timeout(), "expected a timeout, got {err}");
    assert!(started.elapsed() >= Duration::from_millis(250));

    server.resume()?;
    assert!(!server.is_paused());
    // The old connection is out of step (the late PONG is still in flight): use a new one.
    let mut con = server.connection()?;
    assert_eq!(ping(&mut con)?, "PONG");
    assert_eq!(get(&mut con, "key")?.as_deref(), Some("before-pause"));
    Ok(())
}

#[test]
fn pausing_or_resuming_a_stopped_server_is_an_error() -> Result {
    let mut server = RedisServer::start()?;
    server.stop();
    assert!(matches!(server.pause(), Err(HarnessError::NotRunning)));
    assert!(matches!(server.resume(), Err(HarnessError::NotRunning)));
    Ok(())
}

#[test]
fn stop_of_a_paused_server_still_terminates_it() -> Result {
    let mut server = RedisServer::start()?;
    let pid = server.pid().unwrap();
    server.pause()?;
    let started = Instant::now();
    server.stop();
    assert!(!process_exists(pid));
    // SIGCONT first, so SIGTERM is handled at once rather than after the SIGKILL fallback.
    assert!(started.elapsed() < Duration::from_secs(4));
    Ok(())
}

#[test]
fn drop_leaves_no_process_and_no_temp_dir() -> Result {
    for paused in [false, true] {
        let mut server = RedisServer::start()?;
        let pid = server.pid().unwrap();
        let dir = server.dir().to_path_buf();
        assert!(dir.is_dir());
        if paused {
            server.pause()?;
        }
        drop(server);
        assert!(
            !process_exists(pid),
            "pid {pid} survived drop (paused: {paused})"
        );
        if cfg!(target_os = "linux") {
            assert!(!Path::new(&format!("/proc/{pid}")).exists());
        }
        assert!(!dir.exists(), "{dir:?} survived drop (paused: {paused})");
    }
    Ok(())
}

#[test]
fn is_running_notices_a_server_that_shut_itself_down() -> Result {
    let mut server = RedisServer::start()?;
    let pid = server.pid().unwrap();
    // The server closes the connection instead of replying, so the result is an error.
    let _ = redis::cmd("SHUTDOWN")
        .arg("NOSAVE")
        .exec(&mut server.connection()?);
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.is_running() {
        assert!(
            Instant::now() < deadline,
            "server still running after SHUTDOWN"
        );
        thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(server.pid(), None);
    assert!(
        !process_exists(pid),
        "is_running must reap the exited process"
    );
    Ok(())
}

#[test]
fn two_servers_get_different_ports_and_separate_data() -> Result {
    let a = RedisServer::start()?;
    let b = RedisServer::start()?;
    assert_ne!(a.port(), b.port());
    assert_ne!(a.dir(), b.dir());
    for port in [a.port(), b.port()] {
        assert_ne!(port, 6379);
    }
    set(&mut a.connection()?, "owner", "a")?;
    set(&mut b.connection()?, "owner", "b")?;
    assert_eq!(get(&mut a.connection()?, "owner")?.as_deref(), Some("a"));
    assert_eq!(get(&mut b.connection()?, "owner")?.as_deref(), Some("b"));
    Ok(())
}

#[test]
fn builder_args_reach_the_server_and_survive_restart() -> Result {
    let mut server = RedisServer::builder()
        .arg("--maxmemory")
        .arg("10mb")
        .args(["--maxmemory-policy", "noeviction"])
        .start()?;
    let expected = (10 * 1024 * 1024).to_string();
    assert_eq!(
        config_get(&mut server.connection()?, "maxmemory")?,
        expected
    );
    server.restart()?;
    let mut con = server.connection()?;
    assert_eq!(config_get(&mut con, "maxmemory")?, expected);
    assert_eq!(config_get(&mut con, "maxmemory-policy")?, "noeviction");
    Ok(())
}

#[test]
fn builder_refuses_to_override_the_port_or_other_managed_options() {
    for arg in [
        "--port",
        "--PORT",
        "--bind",
        "--dir",
        "--logfile",
        "--daemonize",
    ] {
        let err = RedisServer::builder()
            .arg(arg)
            .arg("6379")
            .start()
            .expect_err(arg);
        assert!(
            matches!(&err, HarnessError::ReservedArg { arg: a } if a == arg),
            "{arg}: {err}"
        );
    }
}

#[test]
fn a_server_that_fails_to_start_reports_its_log() {
    let err = RedisServer::builder()
        .arg("--maxmemory")
        .arg("not-a-size")
        .start()
        .expect_err("an invalid config must not start");
    let HarnessError::Exited { port, ref log, .. } = err else {
        panic!("expected Exited, got {err}");
    };
    assert_ne!(port, 6379);
    assert!(log.contains("not-a-size"), "{log}");
    // Debug shows the same text, so `.unwrap()` in a test prints something useful.
    assert!(format!("{err:?}").contains("FATAL CONFIG"), "{err:?}");
}

#[test]
fn restart_waits_for_the_port_to_become_free() -> Result {
    let mut server = RedisServer::start()?;
    let port = server.port();
    server.stop();

    let squatter = TcpListener::bind(("127.0.0.1", port))?;
    let release = thread::spawn(move || {
        thread::sleep(Duration::from_millis(600));
        drop(squatter);
    });
    let started = Instant::now();
    server.restart()?;
    release.join().unwrap();
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert_eq!(server.port(), port);
    assert_eq!(ping(&mut server.connection()?)?, "PONG");
    Ok(())
}

#[test]
fn restart_gives_up_when_the_port_stays_taken() -> Result {
    let mut server = RedisServer::start()?;
    let port = server.port();
    server.stop();

    let _squatter = TcpListener::bind(("127.0.0.1", port))?;
    let started = Instant::now();
    let err = server.restart().expect_err("the port is taken");
    assert!(
        matches!(err, HarnessError::PortInUse { port: p, .. } if p == port),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(!server.is_running());
    Ok(())
}

#[test]
fn not_installed_error_says_how_to_install() {
    assert_eq!(
        HarnessError::NotInstalled.to_string(),
        "redis-server was not found on PATH. Install it with `sudo apt-get install -y redis-server` \
         (Debian/Ubuntu) or `brew install redis` (macOS), or run `scripts/test`, which installs it; \
         set REDIS_SERVER=/path/to/redis-server to use another binary."
    );
    assert!(lock_tests::redis_server_available());
}
