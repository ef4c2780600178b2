//! Regression tests for the runtime's central promise, each named after the behaviour it
//! protects: the protected work stops before anyone else can hold the lock, and nothing stays
//! locked after the holder is gone. All against a real `redis-server` from the harness.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use lock_runtime::{Backoff, LockClient, LockError, LostReason};
use lock_tests::RedisServer;
use tokio::time::Instant;

fn server() -> RedisServer {
    RedisServer::start().unwrap_or_else(|e| panic!("{e}"))
}

async fn connect(server: &RedisServer) -> LockClient {
    LockClient::connect(&server.url()).await.expect("connect")
}

fn pttl(server: &RedisServer, key: &str) -> i64 {
    redis::cmd("PTTL")
        .arg(key)
        .query(&mut server.connection().unwrap())
        .unwrap()
}

/// Tries `SET key x NX PX 60000` from outside the library every 5 ms until `until`; returns
/// when it first succeeded, if it did.
async fn competitor(url: String, key: &'static str, until: Instant) -> Option<Instant> {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    while Instant::now() < until {
        let set: Option<String> = redis::cmd("SET")
            .arg(key)
            .arg("competitor")
            .arg("NX")
            .arg("PX")
            .arg(60_000)
            .query_async(&mut conn)
            .await
            .unwrap();
        if set.is_some() {
            return Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

/// Runs a 2.5 s body under a 1 s lock while a competitor probes the key; the lock must be
/// renewed throughout, so the competitor never gets in and `run` returns `Ok`. (Without
/// renewals the key would expire after 1 s; the TTL leaves a renewal 660 ms to get through,
/// which a loaded CI machine needs: at 300 ms this failed once under load.)
async fn assert_renewed_through_a_long_body(
    server: &RedisServer,
    client: &LockClient,
    key: &'static str,
) {
    let full: &'static str = match client.namespace() {
        Some(ns) => format!("{ns}:{key}").leak(),
        None => key,
    };
    let body = Duration::from_millis(2500);
    let probe = tokio::spawn(competitor(server.url(), full, Instant::now() + body));
    let out = client
        .lock(key)
        .ttl(Duration::from_secs(1))
        .run(tokio::time::sleep(body))
        .await;
    let stolen = probe.await.unwrap();
    assert!(
        stolen.is_none(),
        "a competitor took `{key}` while the body ran; run gave {out:?}"
    );
    assert!(out.is_ok(), "{out:?}");
}

// Defect 1: the scheduler parked forever once its only lease expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewals_continue_after_an_earlier_lease_expired() {
    let server = server();
    let client = connect(&server).await;
    let once = client
        .lock("first")
        .ttl(Duration::from_millis(150))
        .watchdog(false)
        .acquire()
        .await
        .unwrap();
    let reason = tokio::time::timeout(Duration::from_secs(2), once.lost())
        .await
        .expect("the unrenewed lease ends");
    assert_eq!(reason, LostReason::Expired);
    drop(once);
    // The same client, a clone and a namespace all share the scheduler.
    assert_renewed_through_a_long_body(&server, &client, "second").await;
    assert_renewed_through_a_long_body(&server, &client.clone(), "third").await;
    assert_renewed_through_a_long_body(&server, &client.with_namespace("ns"), "fourth").await;
}

// Defect 2: the scheduler lived on whichever runtime registered first.
#[test]
fn renewals_continue_when_the_first_runtime_is_no_longer_driven() {
    let server = server();
    // The connection's own runtime stays alive and driven throughout, as the contract asks.
    let conn_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let client = conn_rt.block_on(connect(&server));

    // A current-thread runtime takes the first lock, then is left alive but idle.
    let idle = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // It keeps a lease registered, so whatever it started stays parked there.
    let parked = idle.block_on(async {
        let g = client.lock("warm-up").acquire().await.unwrap();
        g.release().await.unwrap();
        client
            .lock("parked")
            .ttl(Duration::from_secs(30))
            .acquire()
            .await
            .unwrap()
    });

    let other = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    other.block_on(assert_renewed_through_a_long_body(
        &server,
        &client,
        "elsewhere",
    ));
    drop(parked);
    drop(idle);
    // And after the first runtime is gone altogether.
    other.block_on(assert_renewed_through_a_long_body(
        &server,
        &client,
        "after-drop",
    ));
}

// Defect 3: an acquire cancelled while its SET was in flight left the key locked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_acquire_leaves_nothing_locked() {
    let server = server();
    let client = connect(&server).await;
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(400)
        .arg("WRITE")
        .query(&mut server.connection().unwrap())
        .unwrap();
    let attempt = tokio::time::timeout(
        Duration::from_millis(50),
        client
            .lock("cancelled")
            .ttl(Duration::from_secs(30))
            .acquire(),
    )
    .await;
    assert!(attempt.is_err(), "the acquire should still be paused");
    // After the pause the SET lands, and the undo right behind it must remove it.
    tokio::time::sleep(Duration::from_millis(450)).await;
    let freed = common::eventually(Duration::from_millis(500), || async {
        pttl(&server, "cancelled") == -2
    })
    .await;
    assert!(
        freed.is_some(),
        "the cancelled acquire left `cancelled` locked, PTTL {}",
        pttl(&server, "cancelled")
    );
}

// Defect 5: `extend` on a guard already declared lost returned Ok.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extend_on_a_lost_guard_fails_without_sending() {
    let server = server();
    let client = connect(&server).await;
    let guard = client
        .lock("lost")
        .ttl(Duration::from_millis(300))
        .acquire()
        .await
        .unwrap();
    let mut raw = server.connection().unwrap();
    let _: () = redis::cmd("DEL").arg("lost").query(&mut raw).unwrap();
    tokio::time::timeout(Duration::from_secs(2), guard.lost())
        .await
        .expect("loss noticed");
    // The key holds our token again (as it may in the window between the local loss and the
    // server's expiry): an extend must still refuse, and send nothing.
    let _: () = redis::cmd("SET")
        .arg("lost")
        .arg(guard.token())
        .arg("PX")
        .arg(10_000)
        .query(&mut raw)
        .unwrap();
    let out = guard.extend(Duration::from_secs(60)).await;
    assert!(matches!(out, Err(LockError::NotHeld { .. })), "{out:?}");
    let left = pttl(&server, "lost");
    assert!(left <= 10_000, "extend reached the server: PTTL {left}");
    assert!(guard.is_lost());
}

// Defect 6: two sub-futures of one locked body both re-entered and interleaved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn re_entered_sections_of_one_body_never_run_at_once() {
    let server = server();
    let client = connect(&server).await;
    let inside = Arc::new(AtomicUsize::new(0));
    let overlapped = Arc::new(AtomicBool::new(false));
    let section = || {
        let (client, inside, overlapped) = (client.clone(), inside.clone(), overlapped.clone());
        async move {
            client
                .lock("shared")
                .wait(Duration::from_secs(5))
                .run(async {
                    if inside.fetch_add(1, Ordering::SeqCst) > 0 {
                        overlapped.store(true, Ordering::SeqCst);
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    inside.fetch_sub(1, Ordering::SeqCst);
                })
                .await
        }
    };
    let (a, b) = client
        .lock("shared")
        .run(async { tokio::join!(section(), section()) })
        .await
        .unwrap();
    a.unwrap();
    b.unwrap();
    assert!(
        !overlapped.load(Ordering::SeqCst),
        "re-entered sections overlapped"
    );

    // Without a wait, the second section is refused as busy, as another task would be.
    let (a, b) = client
        .lock("shared")
        .run(async {
            tokio::join!(
                client
                    .lock("shared")
                    .run(tokio::time::sleep(Duration::from_millis(50))),
                async {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    client.lock("shared").run(async {}).await
                }
            )
        })
        .await
        .unwrap();
    a.unwrap();
    assert!(matches!(b, Err(LockError::Busy { .. })), "{b:?}");
}

// Defect 6: a nested request asking for fencing under an unfenced lock ran without a token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nested_request_gets_the_fencing_it_asks_for_or_an_error() {
    let server = server();
    let client = connect(&server).await;
    let nested = client
        .lock("fenced")
        .run(async {
            client
                .lock("fenced")
                .fencing(true)
                .run(async { lock_runtime::current().and_then(|l| l.fencing_token()) })
                .await
        })
        .await
        .unwrap();
    match nested {
        Ok(token) => assert!(
            token.is_some(),
            "nested fencing request ran without a token"
        ),
        Err(e) => assert!(e.to_string().contains("fencing"), "{e}"),
    }
}

// Defect 7: a renewal built before an extend but sent after it undid the extend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extend_is_not_undone_by_a_renewal_in_flight() {
    let server = server();
    let client = connect(&server).await;
    for round in 0..40 {
        let guard = client
            .lock("extended")
            .ttl(Duration::from_millis(120))
            .acquire()
            .await
            .unwrap();
        // Land the extend at varying points of the renewal cycle (every 40 ms).
        tokio::time::sleep(Duration::from_millis(37 + round % 7)).await;
        guard.extend(Duration::from_secs(20)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
        let left = pttl(&server, "extended");
        assert!(
            left > 15_000,
            "round {round}: PTTL {left} ms after extend(20 s)"
        );
        assert!(
            guard.deadline() > Instant::now() + Duration::from_secs(15),
            "round {round}"
        );
        guard.release().await.unwrap();
    }
}

// API: a waiter retries transient errors within its wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_rides_out_a_server_stall_within_its_wait() {
    let mut server = server();
    let client = LockClient::builder(server.url())
        .connect_timeout(Duration::from_millis(200))
        .response_timeout(Duration::from_millis(200))
        .connect()
        .await
        .unwrap();
    let holder = client
        .lock("stall")
        .ttl(Duration::from_millis(500))
        .watchdog(false)
        .acquire()
        .await
        .unwrap();
    let waiter = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .lock("stall")
                .wait(Duration::from_secs(5))
                .backoff(Backoff::constant(Duration::from_millis(20)))
                .acquire()
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    server.pause().unwrap();
    tokio::time::sleep(Duration::from_millis(900)).await;
    server.resume().unwrap();
    let got = waiter.await.unwrap();
    assert!(
        got.is_ok(),
        "the waiter gave up on a transient error: {got:?}"
    );
    drop(holder);
}

// Defect 4: a guard dropped as its runtime shut down was never released.
#[test]
fn close_releases_a_lock_whose_background_release_never_ran() {
    let server = server();
    let main_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let client = main_rt.block_on(connect(&server));
    // A short-lived runtime drops a guard at its very end: the background release is
    // spawned, and dropped unpolled with the runtime.
    let ending = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    ending.block_on(async {
        let guard = client.lock("shutdown").acquire().await.unwrap();
        drop(guard);
    });
    drop(ending);
    assert!(
        pttl(&server, "shutdown") > 20_000,
        "the release ran after all"
    );
    main_rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(5), client.close())
            .await
            .expect("close is bounded")
            .unwrap();
    });
    assert_eq!(
        pttl(&server, "shutdown"),
        -2,
        "close left `shutdown` locked"
    );
}

/// A TCP proxy on a free loopback port that forwards to `target`, numbering connections in
/// the order they are accepted; each can be blackholed (held open, its bytes held back).
struct Proxy {
    port: u16,
    blackholed: Arc<std::sync::Mutex<Vec<Arc<AtomicBool>>>>,
}

impl Proxy {
    async fn start(target: std::net::SocketAddr) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let blackholed: Arc<std::sync::Mutex<Vec<Arc<AtomicBool>>>> = Arc::default();
        let conns = Arc::clone(&blackholed);
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let Ok(outbound) = tokio::net::TcpStream::connect(target).await else {
                    continue;
                };
                let hole = Arc::new(AtomicBool::new(false));
                conns.lock().unwrap().push(Arc::clone(&hole));
                let (ri, wi) = inbound.into_split();
                let (ro, wo) = outbound.into_split();
                tokio::spawn(pipe(ri, wo, Arc::clone(&hole)));
                tokio::spawn(pipe(ro, wi, hole));
            }
        });
        Proxy { port, blackholed }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn connections(&self) -> usize {
        self.blackholed.lock().unwrap().len()
    }

    fn blackhole(&self, connection: usize) {
        self.blackholed.lock().unwrap()[connection].store(true, Ordering::SeqCst);
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    hole: Arc<AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let Ok(n) = from.read(&mut buf).await else {
            return;
        };
        if n == 0 {
            return;
        }
        // Blackholed: the connection stays open and nothing more gets through, ever (the
        // test's runtime ends it).
        while hole.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

// Defect 9: a hung pub/sub connection was never replaced, and its waiters never woken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_subscriber_connection_is_replaced_and_waiters_still_wake() {
    let server = server();
    let proxy = Proxy::start(server.addr()).await;
    let client = LockClient::builder(proxy.url())
        .connect_timeout(Duration::from_millis(300))
        .response_timeout(Duration::from_millis(300))
        .connect()
        .await
        .unwrap();
    assert_eq!(proxy.connections(), 1, "the client's command connection");
    let holder = connect(&server).await;
    let first = holder
        .lock("k1")
        .ttl(Duration::from_secs(30))
        .acquire()
        .await
        .unwrap();
    let second = holder
        .lock("k2")
        .ttl(Duration::from_secs(30))
        .acquire()
        .await
        .unwrap();
    // Only a notification can wake these waiters in time: polling steps are 30 s, and the
    // holders' TTLs are 30 s.
    let wait = |key: &'static str| {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .lock(key)
                .wait(Duration::from_secs(20))
                .backoff(Backoff::constant(Duration::from_secs(30)))
                .acquire()
                .await
        })
    };
    let w1 = wait("k1");
    common::eventually(Duration::from_secs(2), || async {
        proxy.connections() == 2
    })
    .await
    .expect("the waiter opened the subscriber connection");
    tokio::time::sleep(Duration::from_millis(100)).await;
    proxy.blackhole(1);
    // A second waiter's SUBSCRIBE now hangs on the half-open connection: it must time out,
    // tear the connection down, and send every waiter to a new one.
    let w2 = wait("k2");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        proxy.connections() >= 3,
        "no new subscriber connection was opened"
    );
    let released_at = Instant::now();
    first.release().await.unwrap();
    second.release().await.unwrap();
    for (name, waiter) in [("k1", w1), ("k2", w2)] {
        let got = tokio::time::timeout(Duration::from_secs(2), waiter)
            .await
            .unwrap_or_else(|_| panic!("{name}: the waiter was not woken"))
            .unwrap();
        assert!(got.is_ok(), "{name}: {got:?}");
        assert!(released_at.elapsed() < Duration::from_secs(2), "{name}");
    }
}

// Found by the chaos rig (scenario 4): a waiter of the closing client whose SET landed just
// after close() released the key kept it for a whole TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_leaves_nothing_locked_by_its_own_waiters() {
    let server = server();
    for round in 0..20 {
        let client = connect(&server).await;
        let held = client.lock("closing").acquire().await.unwrap();
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                let client = client.clone();
                tokio::spawn(async move {
                    client
                        .lock("closing")
                        .wait(Duration::from_secs(5))
                        .backoff(Backoff::constant(Duration::from_millis(1)))
                        .acquire()
                        .await
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(20 + round)).await;
        client.close().await.unwrap();
        assert_eq!(
            pttl(&server, "closing"),
            -2,
            "round {round}: locked right after close"
        );
        for waiter in waiters {
            let out = tokio::time::timeout(Duration::from_secs(2), waiter)
                .await
                .expect("waiters end at close")
                .unwrap();
            assert!(
                matches!(out, Err(LockError::Closed { .. })),
                "round {round}: {out:?}"
            );
        }
        assert_eq!(
            pttl(&server, "closing"),
            -2,
            "round {round}: a late SET kept the key"
        );
        drop(held);
    }
}

// Found by the chaos rig (scenario 2b): each renewal attempt was capped at ttl/3, so a round
// trip longer than that lost every lock although the renewals arrived in time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_trip_longer_than_a_third_of_the_ttl_keeps_the_lock() {
    use lock_tests::proxy::{Fault, FaultProxy};
    let server = server();
    let upstream = server.addr();
    // The proxy runs its own runtime on a thread; start it outside this one.
    let proxy = tokio::task::spawn_blocking(move || FaultProxy::start(upstream))
        .await
        .unwrap()
        .unwrap();
    let client = LockClient::connect(&proxy.url()).await.unwrap();
    let ttl = Duration::from_millis(600);
    proxy.set(Fault::Latency(Duration::from_millis(250)));
    let out = client
        .lock("slow")
        .ttl(ttl)
        .run(tokio::time::sleep(3 * ttl))
        .await;
    assert!(
        out.is_ok(),
        "renewals 250 ms late (ttl/3 = 200 ms) lost the lock: {out:?}"
    );
}
