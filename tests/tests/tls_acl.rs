//! TLS (with a private CA, and mutual TLS) and ACL users, against real servers.

use std::time::Duration;

use lock_runtime::{LockClient, LockError};
use lock_tests::{RedisServer, TlsServer};
use tokio::time::Instant;

/// How long a failing connect may take: the connect timeout it was given, plus slack.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
const CONNECT_BOUND: Duration = Duration::from_millis(1_800);

/// Acquire with fencing, wait and wake-up, renewal past the TTL, release: every operation.
async fn exercise_every_operation(client: &LockClient, other: &LockClient) {
    let ttl = Duration::from_millis(300);
    let first = client
        .lock("order:1")
        .ttl(ttl)
        .fencing(true)
        .acquire()
        .await
        .expect("acquire with fencing");
    let token = first.fencing_token().expect("a fencing token");
    // Renewal: held well past its TTL.
    tokio::time::sleep(ttl * 3).await;
    assert!(first.is_held().await.unwrap(), "renewed past its TTL");
    // Wait and wake-up: the waiter subscribes, and gets the lock as soon as it is released.
    let waiter = {
        let other = other.clone();
        tokio::spawn(async move {
            let guard = other
                .lock("order:1")
                .ttl(ttl)
                .fencing(true)
                .wait(Duration::from_secs(5))
                .acquire()
                .await;
            (guard, Instant::now())
        })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    first.release().await.expect("release");
    let released = Instant::now();
    let (second, got_at) = waiter.await.unwrap();
    let second = second.expect("the waiter gets the lock");
    assert!(
        got_at - released < Duration::from_millis(250),
        "woken {:?} after the release",
        got_at - released
    );
    assert!(second.fencing_token().unwrap() > token);
    second.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_the_private_ca_does_every_operation() {
    let tls = TlsServer::start().unwrap();
    let connect = || async {
        LockClient::builder(tls.url())
            .tls_root_ca_pem(tls.certs.ca_pem())
            .connect()
            .await
            .expect("TLS connect with the CA")
    };
    exercise_every_operation(&connect().await, &connect().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_without_the_ca_fails_promptly_naming_the_certificate() {
    let tls = TlsServer::start().unwrap();
    let started = Instant::now();
    let err = LockClient::builder(tls.url())
        .connect_timeout(CONNECT_TIMEOUT)
        .connect()
        .await
        .expect_err("the test CA is not among the system roots");
    assert!(
        started.elapsed() < CONNECT_BOUND,
        "took {:?}",
        started.elapsed()
    );
    let message = err.to_string();
    assert!(matches!(err, LockError::Tls { .. }), "{message}");
    assert!(message.contains("certificate"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_with_a_client_certificate_does_every_operation() {
    let tls = TlsServer::start_mtls().unwrap();
    let connect = || async {
        LockClient::builder(tls.url())
            .tls_root_ca_pem(tls.certs.ca_pem())
            .tls_client_cert_pem(tls.certs.client_cert_pem(), tls.certs.client_key_pem())
            .connect()
            .await
            .expect("mutual TLS connect")
    };
    exercise_every_operation(&connect().await, &connect().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_without_a_client_certificate_fails_promptly_and_clearly() {
    let tls = TlsServer::start_mtls().unwrap();
    let started = Instant::now();
    let err = LockClient::builder(tls.url())
        .tls_root_ca_pem(tls.certs.ca_pem())
        .connect_timeout(CONNECT_TIMEOUT)
        .response_timeout(CONNECT_TIMEOUT)
        .connect()
        .await
        .expect_err("the server requires a client certificate");
    assert!(
        started.elapsed() < CONNECT_BOUND,
        "took {:?}",
        started.elapsed()
    );
    let message = err.to_string();
    assert!(matches!(err, LockError::Tls { .. }), "{message}");
    assert!(message.to_lowercase().contains("certificate"), "{message}");
}

/// The lock-only ACL rule from the README (its "ACL users" section), for namespace `orders`.
const LOCK_ONLY_RULE: &[&str] = &[
    "on",
    ">s3cret-pw",
    "resetkeys",
    "~orders:*",
    "~{orders:*",
    "resetchannels",
    "&lock-released:orders:*",
    "&lock-released:{orders:*",
    "-@all",
    "+get",
    "+set",
    "+del",
    "+pttl",
    "+type",
    "+pexpire",
    "+incr",
    "+publish",
    "+evalsha",
    "+script|load",
    "+subscribe",
    "+unsubscribe",
    "+ping",
];

fn acl_server(rule: &[&str]) -> RedisServer {
    RedisServer::builder()
        .arg("--user")
        .arg("locker")
        .args(rule)
        .start()
        .unwrap()
}

fn user_url(server: &RedisServer, password: &str) -> String {
    format!("redis://locker:{password}@127.0.0.1:{}/", server.port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_lock_only_user_does_every_operation() {
    let server = acl_server(LOCK_ONLY_RULE);
    let connect = || async {
        LockClient::connect(&user_url(&server, "s3cret-pw"))
            .await
            .expect("connect as the lock-only user")
            .with_namespace("orders")
    };
    let (a, b) = (connect().await, connect().await);
    exercise_every_operation(&a, &b).await;
    // The closure form and an explicit extend, too.
    let out = a
        .lock("order:2")
        .ttl(Duration::from_millis(300))
        .run(async { tokio::time::sleep(Duration::from_millis(500)).await })
        .await;
    assert!(out.is_ok(), "{out:?}");
    let guard = a.lock("order:3").acquire().await.unwrap();
    guard.extend(Duration::from_secs(5)).await.unwrap();
    assert!(guard.remaining_ttl().await.unwrap() > Duration::from_secs(4));
    guard.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_another_namespace_is_refused_naming_the_key() {
    let server = acl_server(LOCK_ONLY_RULE);
    let client = LockClient::connect(&user_url(&server, "s3cret-pw"))
        .await
        .unwrap()
        .with_namespace("billing");
    let err = client.lock("invoice:7").acquire().await.unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, LockError::NoPermission { .. }), "{message}");
    assert!(message.contains("billing:invoice:7"), "{message}");
    assert!(message.to_lowercase().contains("permission"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_missing_command_is_named_in_the_error() {
    // The rule without `+incr`: fencing cannot work, and the error must say which command.
    let rule: Vec<&str> = LOCK_ONLY_RULE
        .iter()
        .copied()
        .filter(|r| *r != "+incr")
        .collect();
    let server = acl_server(&rule);
    let client = LockClient::connect(&user_url(&server, "s3cret-pw"))
        .await
        .unwrap()
        .with_namespace("orders");
    let err = client
        .lock("order:9")
        .fencing(true)
        .acquire()
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, LockError::NoPermission { .. }), "{message}");
    assert!(message.to_lowercase().contains("incr"), "{message}");
    // Nothing stays locked: the script failed before anything was written... or was undone.
    let mut raw = server.connection().unwrap();
    let exists: bool = redis::cmd("EXISTS")
        .arg("orders:order:9")
        .query(&mut raw)
        .unwrap();
    assert!(!exists, "a refused fenced acquire left the key behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_wrong_password_is_a_clear_error_that_hides_the_password() {
    let server = acl_server(LOCK_ONLY_RULE);
    let err = LockClient::connect(&user_url(&server, "not-the-pw-xyz"))
        .await
        .unwrap_err();
    let shown = format!("{err} / {err:?}");
    assert!(matches!(err, LockError::Auth { .. }), "{shown}");
    assert!(shown.contains("authentication"), "{shown}");
    assert!(
        !shown.contains("not-the-pw-xyz"),
        "the password leaked: {shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_the_service_already_holds_can_carry_the_locks() {
    let server = RedisServer::start().unwrap();
    let redis = redis::Client::open(server.url()).unwrap();
    let conn = redis::aio::ConnectionManager::new(redis.clone())
        .await
        .unwrap();
    let own = LockClient::from_connection_manager(conn, redis);
    let other = LockClient::connect(&server.url()).await.unwrap();
    exercise_every_operation(&own, &other).await;
}
