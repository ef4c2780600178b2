//! `lockctl`: the on-call engineer's view of the distributed locks: who holds what, since
//! when and for how much longer; a live view of one lock; and freeing a stuck one.
//!
//! It connects as the library does (one server, `rediss://`, a quorum, Sentinel, Cluster),
//! and prints URLs only with their passwords masked (through the library's errors).

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::{Parser, Subcommand};
use lock_runtime::{LockClient, LockError, LockInfo};

/// See who holds which distributed lock, watch one, and free a stuck one.
#[derive(Parser, Debug)]
#[command(name = "lockctl", version, about, long_about = None)]
struct Cli {
    /// Redis URL: `redis://[user:password@]host:port[/db]` or `rediss://...`. Repeat it for
    /// the nodes of a quorum or cluster, or the sentinels. Prefer LOCKCTL_URL for a URL with
    /// a password: the command line is visible to other users in `ps`.
    #[arg(long = "url", env = "LOCKCTL_URL", global = true)]
    urls: Vec<String>,
    /// The URLs are the seed nodes of a Redis Cluster.
    #[arg(long, global = true, conflicts_with_all = ["sentinel", "quorum"])]
    cluster: bool,
    /// The URLs are sentinels; the primary is the one monitored under this service name.
    #[arg(long, value_name = "SERVICE", global = true, conflicts_with = "quorum")]
    sentinel: Option<String>,
    /// The URLs are the independent masters of a quorum (Redlock).
    #[arg(long, global = true)]
    quorum: bool,
    /// Key prefix, as the services' `LockClient::with_namespace`.
    #[arg(long, global = true)]
    namespace: Option<String>,
    /// A CA certificate (PEM) to trust for `rediss://`, instead of the system's roots.
    #[arg(long, value_name = "FILE", global = true)]
    tls_ca: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List the locks held now whose keys match PATTERN (a Redis glob; default `*`).
    List {
        /// Which keys, e.g. `billing:invoice:*`.
        #[arg(default_value = "*")]
        pattern: String,
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show who holds KEY, since when, for how much longer, and its fencing counter.
    Show {
        /// The lock's key (the namespace, if given, goes in front).
        key: String,
        /// A JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Delete KEY whatever its holder, and wake its waiters. The holder is cancelled at its
    /// next renewal, but may still be working until then.
    Release {
        /// The lock's key.
        key: String,
        /// Required: this takes a lock away from its holder.
        #[arg(long)]
        force: bool,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Print each acquisition and release of KEY as it happens, until interrupted.
    Watch {
        /// The lock's key.
        key: String,
        /// How often to look, besides listening for release announcements.
        #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
        interval: Duration,
        /// Stop after this long (default: until Ctrl-C).
        #[arg(long, value_parser = humantime::parse_duration)]
        r#for: Option<Duration>,
    },
}

/// Errors of the tool itself; the library's carry their own advice.
enum Failure {
    Lock(LockError),
    Usage(String),
    /// Not an error of the tool: the answer is no (a free key, a declined confirmation).
    No(String),
}

impl From<LockError> for Failure {
    fn from(e: LockError) -> Self {
        Failure::Lock(e)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The library's warnings (a force release names the former holder) go to stderr;
    // RUST_LOG=debug shows more.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lockctl: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Lock(e)) => {
            eprintln!("lockctl: {e}");
            ExitCode::FAILURE
        }
        Err(Failure::Usage(msg)) => {
            eprintln!("lockctl: {msg}");
            ExitCode::from(2)
        }
        Err(Failure::No(msg)) => {
            eprintln!("lockctl: {msg}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let client = connect(&cli).await?;
    let client = match &cli.namespace {
        Some(ns) => client.with_namespace(ns),
        None => client,
    };
    let out = &mut std::io::stdout().lock();
    let result = match &cli.command {
        Command::List { pattern, json } => list(&client, pattern, *json, out).await,
        Command::Show { key, json } => show(&client, key, *json, out).await,
        Command::Release { key, force, yes } => release(&client, key, *force, *yes, out).await,
        Command::Watch {
            key,
            interval,
            r#for,
        } => watch(&cli, &client, key, *interval, *r#for, out).await,
    };
    client.close().await.ok();
    result
}

async fn connect(cli: &Cli) -> Result<LockClient, Failure> {
    let urls = cli.urls.clone();
    if urls.is_empty() {
        return Err(Failure::Usage(
            "no server given: pass --url redis://host:port/ or set LOCKCTL_URL".into(),
        ));
    }
    let builder = if cli.cluster {
        LockClient::cluster(urls)
    } else if let Some(service) = &cli.sentinel {
        LockClient::sentinel(service.clone(), urls)
    } else if cli.quorum {
        LockClient::quorum(urls)
    } else {
        match urls.as_slice() {
            [one] => LockClient::builder(one.clone()),
            _ => {
                return Err(Failure::Usage(format!(
                    "{} URLs given: add --quorum, --cluster or --sentinel SERVICE to say what they are",
                    urls.len()
                )));
            }
        }
    };
    let builder = match &cli.tls_ca {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| {
                Failure::Usage(format!("cannot read --tls-ca {}: {e}", path.display()))
            })?;
            builder.tls_root_ca_pem(pem)
        }
        None => builder,
    };
    Ok(builder.connect().await?)
}

async fn list(
    client: &LockClient,
    pattern: &str,
    json: bool,
    out: &mut impl Write,
) -> Result<(), Failure> {
    let now = SystemTime::now();
    let mut listing = client.list(pattern);
    if json {
        let all = listing.all().await?;
        let items: Vec<_> = all.iter().map(|i| to_json(i, now)).collect();
        writeln!(out, "{}", serde_json::Value::Array(items)).map_err(io)?;
        return Ok(());
    }
    let mut rows = Vec::new();
    while let Some(page) = listing.next_page().await? {
        rows.extend(page);
    }
    rows.sort_by(|a, b| a.key.cmp(&b.key));
    let table: Vec<[String; 5]> = rows
        .iter()
        .map(|i| {
            [
                i.key.clone(),
                i.holder.clone().unwrap_or_else(|| "-".into()),
                i.acquired_at.map_or("-".into(), |t| age(now, t)),
                i.ttl.map_or("no expiry".into(), short),
                i.fencing_counter.map_or("-".into(), |c| c.to_string()),
            ]
        })
        .collect();
    let header = ["KEY", "HOLDER", "HELD FOR", "TTL LEFT", "FENCE"].map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for row in &table {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&table) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        writeln!(out, "{}", line.join("  ").trim_end()).map_err(io)?;
    }
    writeln!(out, "{} lock(s) held", rows.len()).map_err(io)?;
    Ok(())
}

async fn show(
    client: &LockClient,
    key: &str,
    json: bool,
    out: &mut impl Write,
) -> Result<(), Failure> {
    let info = client.inspect(key).await?;
    let now = SystemTime::now();
    if json {
        writeln!(out, "{}", to_json(&info, now)).map_err(io)?;
    } else {
        describe(&info, now, out)?;
    }
    if !info.locked {
        return Err(Failure::No(format!(
            "`{}` is not locked (no such key)",
            info.full_key
        )));
    }
    Ok(())
}

fn describe(info: &LockInfo, now: SystemTime, out: &mut impl Write) -> Result<(), Failure> {
    let mut line = |k: &str, v: String| writeln!(out, "{k:<9} {v}").map_err(io);
    line("key", info.full_key.clone())?;
    line("locked", if info.locked { "yes" } else { "no" }.into())?;
    if info.locked {
        line(
            "holder",
            info.holder
                .clone()
                .unwrap_or_else(|| "(no label: its client sets none)".into()),
        )?;
        if let Some(at) = info.acquired_at {
            line(
                "acquired",
                format!(
                    "{} ({} ago)",
                    humantime::format_rfc3339_millis(at),
                    age(now, at)
                ),
            )?;
        }
        line(
            "ttl left",
            info.ttl
                .map_or("no expiry: not set by a lock".into(), short),
        )?;
    }
    if let Some(c) = info.fencing_counter {
        line("fence", format!("{c} (the last fencing token handed out)"))?;
    }
    Ok(())
}

async fn release(
    client: &LockClient,
    key: &str,
    force: bool,
    yes: bool,
    out: &mut impl Write,
) -> Result<(), Failure> {
    if !force {
        return Err(Failure::Usage(
            "release takes a lock away from its holder; say so with --force".into(),
        ));
    }
    let info = client.inspect(key).await?;
    if !info.locked {
        return Err(Failure::No(format!(
            "`{}` is not locked (no such key); nothing to release",
            info.full_key
        )));
    }
    if !yes {
        let holder = info.holder.as_deref().unwrap_or("an unlabelled holder");
        eprint!(
            "Force-release `{}`, held by {holder}{}? Its holder keeps working until its next \
             renewal. [y/N] ",
            info.full_key,
            info.ttl
                .map(|t| format!(" for {} more", short(t)))
                .unwrap_or_default()
        );
        std::io::stderr().flush().ok();
        let answer = tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).map(|_| line)
        })
        .await
        .map_err(|e| Failure::Usage(e.to_string()))?
        .map_err(io)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
            let hint = if std::io::stdin().is_terminal() {
                ""
            } else {
                " (stdin is not a terminal: pass --yes to skip the question)"
            };
            return Err(Failure::No(format!("not released{hint}")));
        }
    }
    match client.force_release(key).await? {
        Some(was) => {
            writeln!(
                out,
                "released `{}` (was held by {})",
                was.full_key,
                was.holder.as_deref().unwrap_or("an unlabelled holder")
            )
            .map_err(io)?;
            Ok(())
        }
        None => Err(Failure::No(format!(
            "`{}` was released by its holder meanwhile; nothing to do",
            info.full_key
        ))),
    }
}

/// What `watch` compares between looks.
#[derive(PartialEq, Eq, Clone)]
struct Seen {
    locked: bool,
    holder: Option<String>,
    acquired_at: Option<SystemTime>,
    fence: Option<u64>,
}

async fn watch(
    cli: &Cli,
    client: &LockClient,
    key: &str,
    interval: Duration,
    limit: Option<Duration>,
    out: &mut impl Write,
) -> Result<(), Failure> {
    if interval.is_zero() {
        return Err(Failure::Usage("--interval must be more than zero".into()));
    }
    let first = client.inspect(key).await?;
    let full_key = first.full_key.clone();
    // Release announcements, where the servers are plain ones we can subscribe to; on a
    // cluster or behind sentinels, polling alone.
    let mut announcements = if cli.cluster || cli.sentinel.is_some() || cli.tls_ca.is_some() {
        None
    } else {
        subscribe(&cli.urls, &full_key).await
    };
    let listening = if announcements.is_some() {
        "listening for releases and polling"
    } else {
        "polling"
    };
    writeln!(
        out,
        "{}  watching {full_key} ({listening} every {})",
        stamp(),
        short(interval)
    )
    .map_err(io)?;
    let mut seen = report(None, &first, out)?;
    let deadline = limit.map(|l| tokio::time::Instant::now() + l);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let announced = async {
            match announcements.as_mut() {
                Some(stream) => {
                    use futures_util::StreamExt;
                    stream.next().await
                }
                None => std::future::pending().await,
            }
        };
        let until_deadline = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            () = until_deadline => return Ok(()),
            msg = announced => {
                if msg.is_some() {
                    writeln!(out, "{}  release announced", stamp()).map_err(io)?;
                    // Whoever holds it at the next look acquired it since.
                    seen.locked = false;
                } else {
                    announcements = None;
                }
            }
            () = tokio::time::sleep(interval) => {}
        }
        let info = match client.inspect(key).await {
            Ok(info) => info,
            Err(e) => {
                writeln!(out, "{}  error: {e}", stamp()).map_err(io)?;
                continue;
            }
        };
        seen = report(Some(&seen), &info, out)?;
    }
}

/// Prints what changed since `before`; returns what is seen now.
fn report(before: Option<&Seen>, info: &LockInfo, out: &mut impl Write) -> Result<Seen, Failure> {
    let now = Seen {
        locked: info.locked,
        holder: info.holder.clone(),
        acquired_at: info.acquired_at,
        fence: info.fencing_counter,
    };
    if before == Some(&now) {
        return Ok(now);
    }
    let holder = info.holder.as_deref().unwrap_or("an unlabelled holder");
    let fence = info
        .fencing_counter
        .map(|c| format!(", fence {c}"))
        .unwrap_or_default();
    let ttl = info
        .ttl
        .map(|t| format!(", ttl {}", short(t)))
        .unwrap_or_default();
    let event = match (before.map(|b| b.locked), info.locked) {
        (Some(true), true) => format!("held by a new holder: {holder}{ttl}{fence}"),
        (Some(false), true) => format!("acquired by {holder}{ttl}{fence}"),
        (None, true) => format!("held by {holder}{ttl}{fence}"),
        (Some(true), false) => "released (free)".into(),
        (_, false) => format!("free{fence}"),
    };
    writeln!(out, "{}  {event}", stamp()).map_err(io)?;
    out.flush().map_err(io)?;
    Ok(now)
}

/// A stream of release announcements of `full_key` from every URL that accepts a
/// subscription, merged; `None` if none does.
async fn subscribe(
    urls: &[String],
    full_key: &str,
) -> Option<futures_util::stream::BoxStream<'static, ()>> {
    use futures_util::StreamExt;
    // The channel the library announces releases on (see PROTOCOL.md).
    let channel = format!("lock-released:{full_key}");
    let mut streams = Vec::new();
    for url in urls {
        let Ok(client) = redis::Client::open(url.as_str()) else {
            continue;
        };
        let Ok(Ok(mut pubsub)) =
            tokio::time::timeout(Duration::from_secs(2), client.get_async_pubsub()).await
        else {
            continue;
        };
        if pubsub.subscribe(&channel).await.is_ok() {
            streams.push(pubsub.into_on_message().map(|_| ()).boxed());
        }
    }
    (!streams.is_empty()).then(|| futures_util::stream::select_all(streams).boxed())
}

fn to_json(info: &LockInfo, now: SystemTime) -> serde_json::Value {
    serde_json::json!({
        "key": info.key,
        "full_key": info.full_key,
        "locked": info.locked,
        "holder": info.holder,
        "acquired_at": info.acquired_at.map(|t| humantime::format_rfc3339_millis(t).to_string()),
        "held_for_ms": info.acquired_at.and_then(|t| now.duration_since(t).ok()).map(|d| d.as_millis() as u64),
        "ttl_ms": info.ttl.map(|t| t.as_millis() as u64),
        "fencing_counter": info.fencing_counter,
    })
}

fn age(now: SystemTime, then: SystemTime) -> String {
    now.duration_since(then).map_or("just now".into(), short)
}

/// A duration to a tenth of a second (or whole seconds past a minute), for people.
fn short(d: Duration) -> String {
    if d >= Duration::from_secs(60) {
        humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

fn stamp() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

fn io(e: std::io::Error) -> Failure {
    Failure::Usage(format!("cannot write the output: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(short(Duration::from_millis(1234)), "1.2s");
        assert_eq!(short(Duration::from_secs(125)), "2m 5s");
    }
}
