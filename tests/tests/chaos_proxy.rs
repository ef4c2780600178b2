//! The fault proxy of the chaos rig: each fault does what it says to a real Redis connection.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use lock_tests::RedisServer;
use lock_tests::proxy::{Fault, FaultProxy};

fn setup() -> (RedisServer, FaultProxy) {
    let server = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    let proxy = FaultProxy::start(server.addr()).unwrap();
    (server, proxy)
}

fn connect(proxy: &FaultProxy) -> redis::RedisResult<redis::Connection> {
    let con = redis::Client::open(proxy.url())?
        .get_connection_with_timeout(Duration::from_millis(500))?;
    con.set_read_timeout(Some(Duration::from_millis(300)))?;
    Ok(con)
}

fn ping(con: &mut redis::Connection) -> redis::RedisResult<String> {
    redis::cmd("PING").query(con)
}

#[test]
fn pass_forwards_both_ways() {
    let (_server, proxy) = setup();
    let mut con = connect(&proxy).unwrap();
    assert_eq!(ping(&mut con).unwrap(), "PONG");
    assert_eq!(proxy.fault(), Fault::Pass);
}

#[test]
fn latency_delays_each_round_trip_by_the_given_amount() {
    let (_server, proxy) = setup();
    let mut con = connect(&proxy).unwrap();
    proxy.set(Fault::Latency(Duration::from_millis(120)));
    let start = Instant::now();
    assert_eq!(ping(&mut con).unwrap(), "PONG");
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(120), "{took:?}");
    proxy.set(Fault::Pass);
    let start = Instant::now();
    ping(&mut con).unwrap();
    assert!(start.elapsed() < Duration::from_millis(100));
}

#[test]
fn blackhole_holds_bytes_until_lifted_then_delivers_them() {
    let (_server, proxy) = setup();
    let mut con = connect(&proxy).unwrap();
    proxy.set(Fault::Blackhole);
    let mut cmd = redis::cmd("INCR");
    cmd.arg("held");
    assert!(
        cmd.query::<i64>(&mut con).is_err(),
        "answered through a blackhole"
    );
    // The connection is still open, and the held command reaches the server once lifted.
    proxy.set(Fault::Pass);
    std::thread::sleep(Duration::from_millis(100));
    let mut fresh = connect(&proxy).unwrap();
    let n: i64 = redis::cmd("GET").arg("held").query(&mut fresh).unwrap();
    assert_eq!(n, 1);
}

#[test]
fn reset_closes_open_connections_and_new_ones_until_lifted() {
    let (_server, proxy) = setup();
    let mut con = connect(&proxy).unwrap();
    ping(&mut con).unwrap();
    proxy.set(Fault::Reset);
    assert!(ping(&mut con).is_err());
    assert!(connect(&proxy).and_then(|mut c| ping(&mut c)).is_err());
    proxy.set(Fault::Pass);
    let mut con = connect(&proxy).unwrap();
    assert_eq!(ping(&mut con).unwrap(), "PONG");
}

#[test]
fn refuse_closes_the_port_but_keeps_open_connections() {
    let (_server, proxy) = setup();
    let mut open = connect(&proxy).unwrap();
    proxy.set(Fault::Refuse);
    std::thread::sleep(Duration::from_millis(50));
    let err = TcpStream::connect(proxy.addr()).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    assert_eq!(ping(&mut open).unwrap(), "PONG");
    proxy.set(Fault::Pass);
    std::thread::sleep(Duration::from_millis(50));
    let mut con = connect(&proxy).unwrap();
    assert_eq!(ping(&mut con).unwrap(), "PONG");
}

#[test]
fn only_loopback_upstreams_are_accepted() {
    let err = FaultProxy::start("10.1.2.3:7000".parse().unwrap()).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}
