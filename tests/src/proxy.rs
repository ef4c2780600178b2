//! A fault-injecting TCP proxy, to put between lock clients and a Redis server.
//!
//! [`FaultProxy`] listens on a free loopback port and forwards every connection to its
//! upstream. Its [`Fault`] can be switched at run time, from any thread:
//!
//! - [`Fault::Pass`]: bytes flow.
//! - [`Fault::Latency`]: every byte is delivered half the given round trip after it arrived,
//!   in each direction, order kept.
//! - [`Fault::Blackhole`]: connections stay open and new ones are accepted, but bytes are held.
//!   They are delivered when the fault is lifted, as TCP would retransmit them after a
//!   partition heals.
//! - [`Fault::Reset`]: every open connection is closed, and new ones are closed at once.
//! - [`Fault::Refuse`]: the listening socket is closed, so new connections are refused;
//!   open ones keep flowing. It is bound again on the same port when the fault is lifted.
//!
//! The proxy runs on a thread of its own with its own tokio runtime, so that a test or a
//! driver blocked in a synchronous call (a server restart, a `sleep`) never stalls it.
//!
//! ```
//! use lock_tests::RedisServer;
//! use lock_tests::proxy::{Fault, FaultProxy};
//!
//! let server = RedisServer::start()?;
//! let proxy = FaultProxy::start(server.addr())?;
//! let mut con = redis::Client::open(proxy.url())?.get_connection()?;
//! let pong: String = redis::cmd("PING").query(&mut con)?;
//! assert_eq!(pong, "PONG");
//! proxy.set(Fault::Reset);
//! assert!(redis::cmd("PING").query::<String>(&mut con).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::thread;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// What a [`FaultProxy`] does to the traffic it forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward everything at once.
    Pass,
    /// Add this much round-trip latency: each direction delays its bytes by half of it.
    Latency(Duration),
    /// Keep connections open but hold every byte until the fault changes.
    Blackhole,
    /// Close every connection, and close new ones at once.
    Reset,
    /// Refuse new connections (the port is closed); open connections keep flowing.
    Refuse,
}

/// The proxy's shared state: the fault, and how many resets were ordered, so that a
/// connection sees a `Reset` even if the fault changed again before it looked.
#[derive(Debug, Clone, Copy)]
struct State {
    fault: Fault,
    resets: u64,
    shutdown: bool,
}

/// How long the proxy keeps trying to bind its port again after [`Fault::Refuse`].
const REBIND_WINDOW: Duration = Duration::from_secs(3);
/// How long a new connection may take to reach the upstream.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A TCP proxy on `127.0.0.1` in front of one upstream, with a switchable [`Fault`].
///
/// Dropping it stops it and closes every connection.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    state: watch::Sender<State>,
    thread: Option<thread::JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts a proxy on a free loopback port, forwarding to `upstream`, in [`Fault::Pass`].
    ///
    /// # Errors
    ///
    /// When no port can be bound or the runtime thread cannot start. Also when `upstream`
    /// is not a loopback address: the rig only ever talks to this host.
    pub fn start(upstream: SocketAddr) -> io::Result<FaultProxy> {
        if !upstream.ip().is_loopback() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("the fault proxy only forwards to loopback addresses, not {upstream}"),
            ));
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let listener = runtime.block_on(TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))?;
        let addr = listener.local_addr()?;
        let (state, rx) = watch::channel(State {
            fault: Fault::Pass,
            resets: 0,
            shutdown: false,
        });
        let thread = thread::Builder::new()
            .name(format!("fault-proxy-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(serve(listener, addr, upstream, rx));
                // Dropping the runtime drops every connection task, closing its sockets.
            })?;
        Ok(FaultProxy {
            addr,
            upstream,
            state,
            thread: Some(thread),
        })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The upstream it forwards to.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// `redis://127.0.0.1:PORT/` for the proxy's port.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.addr.port())
    }

    /// Switches the fault; it applies at once to open connections and bytes in flight.
    pub fn set(&self, fault: Fault) {
        self.state.send_modify(|s| {
            s.fault = fault;
            if fault == Fault::Reset {
                s.resets += 1;
            }
        });
    }

    /// The current fault.
    pub fn fault(&self) -> Fault {
        self.state.borrow().fault
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.state.send_modify(|s| s.shutdown = true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(
    listener: TcpListener,
    addr: SocketAddr,
    upstream: SocketAddr,
    mut state: watch::Receiver<State>,
) {
    let mut listener = Some(listener);
    loop {
        let now = *state.borrow_and_update();
        if now.shutdown {
            return;
        }
        if now.fault == Fault::Refuse {
            listener = None;
        } else if listener.is_none() {
            listener = rebind(addr).await;
            if listener.is_none() {
                eprintln!("fault proxy: could not bind {addr} again; it stays closed");
            }
        }
        let accepted = match &listener {
            Some(l) => tokio::select! {
                accepted = l.accept() => Some(accepted),
                changed = state.changed() => {
                    if changed.is_err() { return; }
                    None
                }
            },
            None => {
                if state.changed().await.is_err() {
                    return;
                }
                None
            }
        };
        if let Some(Ok((client, _))) = accepted {
            tokio::spawn(connection(client, upstream, state.clone()));
        }
    }
}

async fn rebind(addr: SocketAddr) -> Option<TcpListener> {
    let deadline = Instant::now() + REBIND_WINDOW;
    loop {
        match TcpListener::bind(addr).await {
            Ok(l) => return Some(l),
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(_) => return None,
        }
    }
}

/// Forwards one connection until either side closes, or a reset is ordered.
async fn connection(client: TcpStream, upstream: SocketAddr, state: watch::Receiver<State>) {
    let epoch = {
        let s = state.borrow();
        if s.fault == Fault::Reset || s.shutdown {
            return; // dropping `client` closes it
        }
        s.resets
    };
    let server =
        match tokio::time::timeout(UPSTREAM_CONNECT_TIMEOUT, TcpStream::connect(upstream)).await {
            Ok(Ok(server)) => server,
            _ => return,
        };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let mut reset = state.clone();
    tokio::select! {
        () = async {
            tokio::join!(
                pump(client_read, server_write, state.clone()),
                pump(server_read, client_write, state.clone()),
            );
        } => {}
        _ = reset.wait_for(|s| s.resets != epoch || s.fault == Fault::Reset || s.shutdown) => {}
    }
}

/// Copies one direction, applying the fault to each chunk; closes the write side when the
/// read side ends and everything read has been delivered.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    state: watch::Receiver<State>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let read = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.send((Instant::now(), buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
    };
    let write = async move {
        let mut state = state;
        while let Some((arrived, bytes)) = rx.recv().await {
            if !deliverable(arrived, &mut state).await {
                return;
            }
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(read, write);
}

/// Waits until a chunk that arrived at `arrived` may be delivered under the current fault.
/// Returns false when the connection is to be closed instead.
async fn deliverable(arrived: Instant, state: &mut watch::Receiver<State>) -> bool {
    loop {
        let now = *state.borrow_and_update();
        if now.shutdown {
            return false;
        }
        match now.fault {
            Fault::Pass | Fault::Refuse => return true,
            Fault::Reset => return false,
            Fault::Latency(rtt) => {
                let due = arrived + rtt / 2;
                if Instant::now() >= due {
                    return true;
                }
                tokio::select! {
                    () = tokio::time::sleep_until(due) => return true,
                    changed = state.changed() => if changed.is_err() { return false },
                }
            }
            Fault::Blackhole => {
                if state.changed().await.is_err() {
                    return false;
                }
            }
        }
    }
}
