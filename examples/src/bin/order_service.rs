//! # order_service: an HTTP service whose replicas settle each order exactly once
//!
//! A real HTTP service on axum. `POST /orders/{id}/settle` is handled by
//! `#[distributed_lock(key = "order:<id>", ttl = "10s")] async fn settle(..)`, which reads
//! the order from the shared state, "charges the card" (a 20 ms await), and records the
//! settlement. The answers:
//!
//! | status | when | body |
//! |---|---|---|
//! | `201 Created` | this request settled the order | `{"order":7,"status":"settled","by":"replica-a"}` |
//! | `200 OK` | the order was settled before | `{"order":7,"status":"already_settled","by":"replica-b"}` |
//! | `409 Conflict` | `LockError::Busy`: another request holds the order's lock | `{"error":"busy","key":"…:order:7",…}` |
//! | `503 Service Unavailable` | `LockError::Lost`: the lock was lost mid-settlement | `{"error":"lost","key":…}` |
//!
//! `GET /orders/{id}` shows who settled an order and how many times. `GET /metrics` serves
//! the lock metrics (lock-runtime's `metrics` feature) in the Prometheus text format:
//! attempts, acquisitions, busy answers, losses, renewal failures, wait/hold/hand-off
//! histograms and the locks held now, labelled by namespace (see `lock_runtime::metrics`).
//!
//! With no arguments it starts TWO replicas on two ports, each with its own connections to
//! one lock server, fires several hundred concurrent settle requests at them through a real
//! HTTP client (every order gets requests on both replicas), then reads the settlements back
//! from the shared state (Redis, when there is Redis) and checks that no order was settled
//! twice. It reports the requests, the 201/200/409/503 counts and the p50/p99 latency, and
//! exits non-zero on a double (or missing) settlement. Last, it prints the lock metrics
//! it scraped from `GET /metrics` (one recorder per process, so both replicas' locks).
//!
//! Run it:
//!
//! ```text
//! cargo run -p lock-examples --bin order_service
//! cargo run -p lock-examples --bin order_service -- --requests 1000 --orders 50
//! cargo run -p lock-examples --bin order_service -- --unlocked   # no lock: watch it fail
//! ```
//!
//! Or start the replicas yourself, sharing one Redis, and send requests with curl:
//!
//! ```text
//! REDIS_URL=redis://127.0.0.1:6379/ cargo run -p lock-examples --bin order_service -- --port 3000
//! REDIS_URL=redis://127.0.0.1:6379/ cargo run -p lock-examples --bin order_service -- --port 3001
//! curl -i -X POST http://127.0.0.1:3000/orders/7/settle
//! curl http://127.0.0.1:3000/metrics
//! ```

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use lock_examples::{Args, LockServer, ServerKind, SharedState, Stopwatch, run_id};
use lock_runtime::{LockClient, LockError, distributed_lock};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

const USAGE: &str = "\
usage: order_service [--requests N] [--orders N] [--unlocked]
       order_service --port PORT [--name NAME] [--unlocked]

Without --port: starts two replicas, fires N concurrent POST /orders/{id}/settle requests
(default 400) over the given number of orders (default 20), and checks that no order was
settled twice. With --port: serves one replica on 127.0.0.1:PORT (0 picks a free port) until
Ctrl-C. --unlocked runs the handler without the lock, to show what goes wrong.
REDIS_URL=redis://host:port/ picks the lock server.";

/// How many requests the load generator keeps in flight at once.
const IN_FLIGHT: usize = 100;
/// How long "charging the card" takes, with the lock held.
const CHARGE_TIME: Duration = Duration::from_millis(20);

/// The Redis keys of the shared state, under one namespace.
#[derive(Clone)]
struct Keys {
    /// Hash: order id -> the replica that settled it.
    orders: String,
    /// Hash: order id -> how many times it was settled (must never exceed 1).
    settlements: String,
    /// List: `"<order id> <replica>"` for every settlement, in order.
    log: String,
}

impl Keys {
    fn new(namespace: &str) -> Keys {
        Keys {
            orders: format!("{namespace}:orders"),
            settlements: format!("{namespace}:settlements"),
            log: format!("{namespace}:log"),
        }
    }

    fn describe(&self) -> String {
        format!("{}, {}, {}", self.orders, self.settlements, self.log)
    }
}

/// One replica of the service: its name, its own lock client and state connection.
struct Replica {
    name: String,
    locks: LockClient,
    state: SharedState,
    keys: Keys,
    /// Handle requests without the lock (to show what the check catches).
    unlocked: bool,
    /// Print a line per request (when serving on `--port`).
    verbose: bool,
}

/// What a settle request did.
enum Settlement {
    Settled,
    AlreadySettled { by: String },
}

/// Why a request failed; `LockError` converts into it, as `#[distributed_lock]` requires.
#[derive(Debug)]
enum ApiError {
    Lock(LockError),
    Store(redis::RedisError),
}

impl From<LockError> for ApiError {
    fn from(e: LockError) -> Self {
        ApiError::Lock(e)
    }
}

impl From<redis::RedisError> for ApiError {
    fn from(e: redis::RedisError) -> Self {
        ApiError::Store(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Lock(LockError::Busy { key, holder_ttl }) => {
                let retry_ms = holder_ttl.map_or(0, |t| t.as_millis());
                json(
                    StatusCode::CONFLICT,
                    format!(
                        r#"{{"error":"busy","key":{},"message":"order is being settled by another request; retry later","holder_ttl_ms":{retry_ms}}}"#,
                        quote(&key)
                    ),
                )
            }
            ApiError::Lock(e @ LockError::Lost { .. }) => json(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    r#"{{"error":"lost","key":{},"message":{}}}"#,
                    quote(e.key().unwrap_or_default()),
                    quote(&e.to_string())
                ),
            ),
            ApiError::Lock(e) => json(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!(r#"{{"error":"lock","message":{}}}"#, quote(&e.to_string())),
            ),
            ApiError::Store(e) => json(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!(r#"{{"error":"store","message":{}}}"#, quote(&e.to_string())),
            ),
        }
    }
}

fn json(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// A JSON string literal.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Settles order `id` under its lock: one request per order at a time, across replicas.
#[distributed_lock(key = "order:<id>", ttl = "10s", client = &replica.locks)]
async fn settle(replica: &Replica, id: u64) -> Result<Settlement, ApiError> {
    settle_unlocked(replica, id).await
}

/// The check-then-act the lock protects.
async fn settle_unlocked(replica: &Replica, id: u64) -> Result<Settlement, ApiError> {
    let field = id.to_string();
    let keys = &replica.keys;
    if let Some(by) = replica.state.hget(&keys.orders, &field).await? {
        return Ok(Settlement::AlreadySettled { by });
    }
    // Charge the card. Without the lock, every request that read "not settled" before the
    // first one wrote below would charge it again.
    tokio::time::sleep(CHARGE_TIME).await;
    replica.state.hincr(&keys.settlements, &field).await?;
    replica
        .state
        .rpush(&keys.log, &format!("{id} {}", replica.name))
        .await?;
    replica
        .state
        .hset(&keys.orders, &field, &replica.name)
        .await?;
    Ok(Settlement::Settled)
}

async fn settle_handler(
    State(replica): State<Arc<Replica>>,
    Path(id): Path<u64>,
) -> Result<Response, ApiError> {
    let result = if replica.unlocked {
        settle_unlocked(&replica, id).await
    } else {
        settle(&replica, id).await
    };
    if replica.verbose {
        let what = match &result {
            Ok(Settlement::Settled) => "201 settled".to_owned(),
            Ok(Settlement::AlreadySettled { by }) => format!("200 already settled by {by}"),
            Err(ApiError::Lock(e)) if e.is_busy() => "409 busy".to_owned(),
            Err(ApiError::Lock(e)) if e.is_lost() => "503 lost".to_owned(),
            Err(e) => format!("500 {e:?}"),
        };
        println!("{}: POST /orders/{id}/settle -> {what}", replica.name);
    }
    let (status, label, by) = match result? {
        Settlement::Settled => (StatusCode::CREATED, "settled", replica.name.clone()),
        Settlement::AlreadySettled { by } => (StatusCode::OK, "already_settled", by),
    };
    Ok(json(
        status,
        format!(r#"{{"order":{id},"status":"{label}","by":{}}}"#, quote(&by)),
    ))
}

async fn order_handler(
    State(replica): State<Arc<Replica>>,
    Path(id): Path<u64>,
) -> Result<Response, ApiError> {
    let field = id.to_string();
    let by = replica.state.hget(&replica.keys.orders, &field).await?;
    let count = replica
        .state
        .hget(&replica.keys.settlements, &field)
        .await?
        .unwrap_or_else(|| "0".to_owned());
    let status = match by {
        Some(_) => StatusCode::OK,
        None => StatusCode::NOT_FOUND,
    };
    let by = by.as_deref().map_or_else(|| "null".to_owned(), quote);
    Ok(json(
        status,
        format!(r#"{{"order":{id},"settled_by":{by},"settlements":{count}}}"#),
    ))
}

fn router(replica: Arc<Replica>, metrics: PrometheusHandle) -> Router {
    Router::new()
        .route("/orders/{id}/settle", post(settle_handler))
        .route("/orders/{id}", get(order_handler))
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    let content_type = "text/plain; version=0.0.4; charset=utf-8";
                    ([(header::CONTENT_TYPE, content_type)], metrics.render())
                }
            }),
        )
        .with_state(replica)
}

/// Histogram buckets for the `_seconds` metrics, from half a millisecond (a hand-off on
/// loopback) to a minute (a long wait or hold); beyond that lands in `+Inf`.
const SECONDS_BUCKETS: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
];

/// Installs the process's Prometheus recorder; its handle renders `GET /metrics`. No
/// listener of its own: every replica's server serves the route.
fn install_metrics() -> Result<PrometheusHandle, String> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)
        .and_then(PrometheusBuilder::install_recorder)
        .map_err(|e| format!("cannot install the metrics recorder: {e}"))?;
    lock_runtime::metrics::describe();
    // The exporter's own upkeep task comes with its HTTP listener, which we leave out: drain
    // the histograms' raw samples here instead, so memory stays bounded under load.
    let upkeep = handle.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

/// Makes a replica with its own lock client and state connection.
async fn replica(
    server: &LockServer,
    name: String,
    namespace: &str,
    unlocked: bool,
    verbose: bool,
) -> Result<Replica, String> {
    let locks = server.client().await.map_err(|e| e.to_string())?;
    let state = server.state().await.map_err(|e| e.to_string())?;
    Ok(Replica {
        name,
        locks: locks.with_namespace(namespace),
        state,
        keys: Keys::new(namespace),
        unlocked,
        verbose,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = Args::from_env(USAGE);
    let parsed = (|| {
        let port = args.value::<u16>("--port")?;
        let name = args.value::<String>("--name")?;
        let requests = args.value::<usize>("--requests")?.unwrap_or(400);
        let orders = args.value::<u64>("--orders")?.unwrap_or(20).max(1);
        let unlocked = args.flag("--unlocked");
        Ok::<_, String>((port, name, requests, orders, unlocked))
    })();
    let (port, name, requests, orders, unlocked) = match parsed.and_then(|p| {
        args.finish()?;
        Ok(p)
    }) {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };

    let metrics = match install_metrics() {
        Ok(handle) => handle,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let server = LockServer::discover("order_service");
    if unlocked {
        println!(
            "WARNING: --unlocked: the handler runs WITHOUT the lock, to show what the check \
             below catches"
        );
    }
    let result = match port {
        Some(port) => serve_one(&server, port, name, unlocked, metrics).await,
        None => drive(&server, requests, orders, unlocked, metrics).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--port`: one replica, until Ctrl-C or SIGTERM.
async fn serve_one(
    server: &LockServer,
    port: u16,
    name: Option<String>,
    unlocked: bool,
    metrics: PrometheusHandle,
) -> Result<ExitCode, String> {
    // A fixed namespace, so that replicas started separately share their keys.
    let namespace = "lock-examples:order_service";
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let name = name.unwrap_or_else(|| format!("replica-{}", addr.port()));
    let replica = replica(server, name, namespace, unlocked, true).await?;
    println!("{}", replica.state.describe(&replica.keys.describe()));
    if server.kind() != ServerKind::RedisUrl {
        println!(
            "note: this lock server belongs to this process alone, so a replica started \
             separately will NOT share it; start every replica with the same \
             REDIS_URL=redis://... for that"
        );
    }
    println!(
        "{} listening on http://{addr}\n  try: curl -i -X POST http://{addr}/orders/7/settle\n       \
         curl -i http://{addr}/orders/7\n       curl http://{addr}/metrics\nCtrl-C stops it.",
        replica.name
    );
    let locks = replica.locks.clone();
    axum::serve(listener, router(Arc::new(replica), metrics))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| e.to_string())?;
    // Graceful shutdown: give back every lock this replica still holds (requests cut off
    // mid-settlement included) before the runtime ends, so the other replicas need not wait
    // out the TTL. Bounded by the client's timeout.
    match locks.close().await {
        Ok(()) => println!("stopped; locks released"),
        Err(e) => println!("stopped; a lock could not be released and will expire: {e}"),
    }
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("cannot listen for SIGTERM");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// `GET uri`: the body, if the answer is 200.
async fn get_text(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>,
    uri: &str,
) -> Result<String, String> {
    let request = hyper::Request::get(uri)
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    let response = client.request(request).await.map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let body = String::from_utf8_lossy(&body).into_owned();
    match status {
        StatusCode::OK => Ok(body),
        _ => Err(format!("GET {uri}: {status} {body}")),
    }
}

/// What the load generator saw.
#[derive(Default)]
struct Tally {
    settled: usize,
    already: usize,
    busy: usize,
    lost: usize,
    other: Vec<String>,
    latencies: Vec<Duration>,
    busy_sample: Option<String>,
}

/// The default: two replicas, a load generator, and the check.
async fn drive(
    server: &LockServer,
    requests: usize,
    orders: u64,
    unlocked: bool,
    metrics: PrometheusHandle,
) -> Result<ExitCode, String> {
    // A fresh namespace per run, so that earlier runs against the same Redis do not count.
    let namespace = format!("lock-examples:order_service:{}", run_id());
    let keys = Keys::new(&namespace);
    let mut urls = Vec::new();
    let mut replica_locks = Vec::new();
    for name in ["replica-a", "replica-b"] {
        let replica = replica(server, name.to_owned(), &namespace, unlocked, false).await?;
        if urls.is_empty() {
            println!("{}", replica.state.describe(&keys.describe()));
        }
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        let addr: SocketAddr = listener.local_addr().map_err(|e| e.to_string())?;
        println!("{name} listening on http://{addr}");
        replica_locks.push(replica.locks.clone());
        let app = router(Arc::new(replica), metrics.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        urls.push(format!("http://{addr}"));
    }
    println!(
        "\nfiring {requests} POST /orders/{{id}}/settle requests over {orders} orders, \
         spread over both replicas, up to {IN_FLIGHT} in flight\n"
    );

    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    let clock = Stopwatch::start();
    let calls: Vec<_> = (0..requests)
        .map(|i| {
            // Round after round over all orders, each round on the other replica: every
            // order gets requests on both.
            let order = i as u64 % orders + 1;
            let replica = (i / orders as usize) % urls.len();
            let uri = format!("{}/orders/{order}/settle", urls[replica]);
            let client = client.clone();
            let permits = Arc::clone(&permits);
            tokio::spawn(async move {
                let _permit = permits.acquire_owned().await.expect("semaphore closed");
                let started = Stopwatch::start();
                let request = hyper::Request::post(&uri)
                    .body(Empty::new())
                    .map_err(|e| e.to_string())?;
                let response = client.request(request).await.map_err(|e| e.to_string())?;
                let status = response.status();
                let body = response
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| e.to_string())?
                    .to_bytes();
                Ok::<_, String>((
                    status,
                    String::from_utf8_lossy(&body).into_owned(),
                    started.elapsed(),
                ))
            })
        })
        .collect();
    let mut tally = Tally::default();
    for call in calls {
        match call.await.map_err(|e| e.to_string())? {
            Ok((status, body, latency)) => {
                tally.latencies.push(latency);
                match status {
                    StatusCode::CREATED => tally.settled += 1,
                    StatusCode::OK => tally.already += 1,
                    StatusCode::CONFLICT => {
                        tally.busy += 1;
                        tally.busy_sample.get_or_insert(body);
                    }
                    StatusCode::SERVICE_UNAVAILABLE => tally.lost += 1,
                    _ => tally.other.push(format!("{status} {body}")),
                }
            }
            Err(e) => tally.other.push(e),
        }
    }
    let wall = clock.elapsed();

    tally.latencies.sort();
    let pct = |p: f64| {
        let v = &tally.latencies;
        if v.is_empty() {
            return 0.0;
        }
        let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
        v[rank.clamp(1, v.len()) - 1].as_secs_f64() * 1000.0
    };
    println!(
        "requests:              {requests} in {:.2}s",
        wall.as_secs_f64()
    );
    println!("201 settled:           {}", tally.settled);
    println!("200 already settled:   {}", tally.already);
    println!("409 busy:              {}", tally.busy);
    println!("503 lost:              {}", tally.lost);
    println!("other/failed:          {}", tally.other.len());
    println!("latency p50:           {:.1} ms", pct(50.0));
    println!("latency p99:           {:.1} ms", pct(99.0));
    if let Some(sample) = &tally.busy_sample {
        println!("a 409 body:            {sample}");
    }
    for other in tally.other.iter().take(5) {
        println!("unexpected:            {other}");
    }

    // Shut the replicas' lock clients down as a service would on SIGTERM.
    for locks in &replica_locks {
        locks
            .close()
            .await
            .map_err(|e| format!("close() could not release a lock: {e}"))?;
    }
    println!("replicas closed:       every lock released (LockClient::close)");

    // What a Prometheus server would scrape now, through the route it would use.
    let scrape = get_text(&client, &format!("{}/metrics", urls[0])).await?;
    println!(
        "\nlock metrics from GET {}/metrics (bucket lines left out):",
        urls[0]
    );
    for line in scrape.lines() {
        if line.starts_with("distributed_lock_") && !line.contains("_bucket{") {
            println!("  {line}");
        }
    }

    // The check, on a connection of its own, from the shared state the replicas wrote.
    let checker = server.state().await.map_err(|e| e.to_string())?;
    let counts = checker
        .hgetall(&keys.settlements)
        .await
        .map_err(|e| e.to_string())?;
    let log = checker.lrange(&keys.log).await.map_err(|e| e.to_string())?;
    let source = checker.location();
    let mut doubles = Vec::new();
    let mut never = Vec::new();
    for id in 1..=orders.min(requests as u64) {
        let count: u64 = counts
            .get(&id.to_string())
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        match count {
            0 => never.push(id),
            1 => {}
            n => {
                let mut by = std::collections::BTreeMap::<&str, usize>::new();
                for entry in &log {
                    if let Some((order, replica)) = entry.split_once(' ')
                        && order == id.to_string()
                    {
                        *by.entry(replica).or_default() += 1;
                    }
                }
                let by: Vec<String> = by.iter().map(|(r, n)| format!("{r} x{n}")).collect();
                doubles.push(format!(
                    "order {id} settled {n} times (by {})",
                    by.join(", ")
                ));
            }
        }
    }
    let settled_once = counts.values().filter(|c| c.as_str() == "1").count();
    println!(
        "\nsettlements read back from {source}: {} settlements of {} orders; {settled_once} \
         orders settled exactly once",
        log.len(),
        counts.len()
    );
    println!("double settlements:    {}", doubles.len());
    for double in doubles.iter().take(10) {
        println!("  {double}");
    }

    let mut failures = Vec::new();
    if !doubles.is_empty() {
        failures.push(format!(
            "{} orders were settled more than once",
            doubles.len()
        ));
    }
    if !never.is_empty() {
        failures.push(format!("orders never settled: {never:?}"));
    }
    if tally.settled != log.len() {
        failures.push(format!(
            "{} requests answered 201 but {} settlements were recorded",
            tally.settled,
            log.len()
        ));
    }
    if !tally.other.is_empty() {
        failures.push(format!(
            "{} requests failed or got an unexpected status",
            tally.other.len()
        ));
    }
    if failures.is_empty() {
        println!("OK: no order was settled twice; every order was settled exactly once");
        Ok(ExitCode::SUCCESS)
    } else {
        for failure in failures {
            println!("FAILED: {failure}");
        }
        Ok(ExitCode::FAILURE)
    }
}
