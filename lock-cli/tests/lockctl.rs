//! `lockctl` as an operator runs it: the real binary against real `redis-server` processes
//! (one server with a password, and a cluster), with locks held by the library.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use lock_runtime::{LockClient, LockError, LostReason};
use lock_tests::{RedisCluster, RedisServer};

/// A password with the characters that break naive URL handling.
const PASSWORD: &str = "p#ss,w@rd";
const PASSWORD_IN_URL: &str = "p%23ss%2Cw%40rd";

fn server_with_operator() -> RedisServer {
    RedisServer::builder()
        .arg("--user")
        .arg("operator")
        .args(["on", &format!(">{PASSWORD}"), "~*", "&*", "+@all"])
        .start()
        .unwrap()
}

fn operator_url(server: &RedisServer) -> String {
    format!(
        "redis://operator:{PASSWORD_IN_URL}@127.0.0.1:{}/",
        server.port()
    )
}

/// Runs `lockctl` with `args`, the URL in LOCKCTL_URL (as the docs advise for passwords),
/// and `stdin` fed to it.
fn lockctl(url: Option<&str>, args: &[&str], stdin: &str) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lockctl"));
    cmd.args(args)
        .env_remove("LOCKCTL_URL")
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(url) = url {
        cmd.env("LOCKCTL_URL", url);
    }
    let mut child = cmd.spawn().expect("run lockctl");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Nothing lockctl prints may carry the password, raw or as it is encoded in the URL.
fn assert_no_password(out: &Output) {
    let (stdout, stderr) = text(out);
    for secret in [PASSWORD, PASSWORD_IN_URL, "p#ss", "w@rd"] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "the password leaked:\nstdout: {stdout}\nstderr: {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_and_show_say_who_holds_what() {
    let server = server_with_operator();
    let url = operator_url(&server);
    let service = LockClient::builder(url.clone())
        .holder("billing@host-3")
        .connect()
        .await
        .unwrap();
    let a = service
        .lock("billing:invoice:42")
        .fencing(true)
        .acquire()
        .await
        .unwrap();
    let _b = service.lock("billing:invoice:43").acquire().await.unwrap();
    let plain = LockClient::connect(&url).await.unwrap();
    let _c = plain.lock("shipping:label:7").acquire().await.unwrap();

    let out = lockctl(Some(&url), &["list"], "");
    assert_no_password(&out);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    println!("$ lockctl list\n{stdout}"); // shown with --nocapture
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with("KEY") && lines[0].contains("HOLDER"),
        "{stdout}"
    );
    assert!(lines[1].starts_with("billing:invoice:42") && lines[1].contains("billing@host-3"));
    assert!(
        lines[1].contains(&a.fencing_token().unwrap().to_string()),
        "{stdout}"
    );
    assert!(
        lines[3].starts_with("shipping:label:7") && lines[3].contains(" - "),
        "{stdout}"
    );
    assert_eq!(lines.last(), Some(&"3 lock(s) held"));
    assert!(
        !stdout.contains(":fence"),
        "a fencing counter was listed: {stdout}"
    );

    // A pattern, a namespace, and JSON.
    let out = lockctl(
        Some(&url),
        &["list", "invoice:*", "--namespace", "billing", "--json"],
        "",
    );
    assert_no_password(&out);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let keys: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["invoice:42", "invoice:43"]);
    assert_eq!(json[0]["holder"], "billing@host-3");
    assert_eq!(json[0]["full_key"], "billing:invoice:42");
    assert!(json[0]["ttl_ms"].as_u64().unwrap() > 20_000);

    let out = lockctl(Some(&url), &["show", "billing:invoice:42"], "");
    assert_no_password(&out);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    for want in [
        "locked    yes",
        "holder    billing@host-3",
        "acquired ",
        "ttl left ",
        "fence ",
    ] {
        assert!(stdout.contains(want), "`{want}` missing from:\n{stdout}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_urls_missing_keys_and_wrong_passwords_are_clear_errors() {
    let server = server_with_operator();
    let url = operator_url(&server);

    // A key nobody holds.
    let out = lockctl(Some(&url), &["show", "no:such:lock"], "");
    assert_no_password(&out);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("`no:such:lock` is not locked"), "{stderr}");
    let out = lockctl(
        Some(&url),
        &["release", "no:such:lock", "--force", "--yes"],
        "",
    );
    assert!(!out.status.success());
    assert!(text(&out).1.contains("not locked"), "{:?}", text(&out));

    // A URL that does not parse, and one where nothing listens.
    let out = lockctl(Some("http://127.0.0.1/"), &["list"], "");
    assert!(!out.status.success());
    assert!(
        text(&out).1.contains("invalid Redis URL"),
        "{:?}",
        text(&out)
    );
    let nothing = format!("redis://operator:{PASSWORD_IN_URL}@127.0.0.1:1/");
    let out = lockctl(Some(&nothing), &["list"], "");
    assert_no_password(&out);
    assert!(!out.status.success());
    assert!(text(&out).1.contains("127.0.0.1:1"), "{:?}", text(&out));

    // A wrong password: the error says so, and shows no password, neither ours nor the
    // right one.
    let wrong = format!(
        "redis://operator:{PASSWORD_IN_URL}x@127.0.0.1:{}/",
        server.port()
    );
    let out = lockctl(Some(&wrong), &["list"], "");
    assert_no_password(&out);
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("authentication"), "{stderr}");
    assert!(stdout.is_empty());

    // No URL at all, and several without saying what they are: usage errors (exit 2).
    let out = lockctl(None, &["list"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("LOCKCTL_URL"), "{:?}", text(&out));
    let out = lockctl(
        None,
        &["--url", &server.url(), "--url", &server.url(), "list"],
        "",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("--quorum"), "{:?}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_needs_force_and_confirmation_and_the_holder_is_cancelled() {
    let server = server_with_operator();
    let url = operator_url(&server);
    let service = LockClient::builder(url.clone())
        .holder("wedged@host-1")
        .connect()
        .await
        .unwrap();
    let ttl = Duration::from_secs(3);
    let work = {
        let service = service.clone();
        tokio::spawn(async move {
            service
                .lock("nightly:report")
                .ttl(ttl)
                .run(std::future::pending::<()>())
                .await
        })
    };
    let operator = LockClient::connect(&url).await.unwrap();
    while !operator.inspect("nightly:report").await.unwrap().locked {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Without --force: refused, a usage error.
    let out = lockctl(Some(&url), &["release", "nightly:report"], "");
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    assert!(text(&out).1.contains("--force"));
    // With --force, the question is asked; "n" (or no answer) keeps the lock.
    for answer in ["n\n", ""] {
        let out = lockctl(
            Some(&url),
            &["release", "nightly:report", "--force"],
            answer,
        );
        assert_no_password(&out);
        let (_, stderr) = text(&out);
        assert!(!out.status.success(), "{stderr}");
        assert!(stderr.contains("held by wedged@host-1"), "{stderr}");
        assert!(stderr.contains("not released"), "{stderr}");
        assert!(operator.inspect("nightly:report").await.unwrap().locked);
    }
    // "y": released, and the holder's work is cancelled at its next renewal.
    let out = lockctl(Some(&url), &["release", "nightly:report", "--force"], "y\n");
    assert_no_password(&out);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("released `nightly:report` (was held by wedged@host-1)"),
        "{stdout}"
    );
    assert!(
        stderr.contains("force-released"),
        "the library's warning: {stderr}"
    );
    let out = tokio::time::timeout(ttl, work).await.unwrap().unwrap();
    assert!(
        matches!(
            out,
            Err(LockError::Lost {
                reason: LostReason::Taken,
                ..
            })
        ),
        "{out:?}"
    );

    // --yes skips the question.
    let _again = service.lock("nightly:report").acquire().await.unwrap();
    let out = lockctl(
        Some(&url),
        &["release", "nightly:report", "--force", "--yes"],
        "",
    );
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(!operator.inspect("nightly:report").await.unwrap().locked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_prints_acquisitions_and_releases_as_they_happen() {
    use std::io::BufRead;
    let server = server_with_operator();
    let url = operator_url(&server);
    let service = LockClient::builder(url.clone())
        .holder("worker@host-5")
        .connect()
        .await
        .unwrap();
    // A long polling interval: quick hand-overs are seen through the release announcements.
    let mut child = Command::new(env!("CARGO_BIN_EXE_lockctl"))
        .args(["watch", "queue:drain", "--interval", "1s", "--for", "60s"])
        .env("LOCKCTL_URL", &url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen: Vec<String> = Vec::new();
    let mut wait_for = |what: &str, count: usize| {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while seen.iter().filter(|l| l.contains(what)).count() < count {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => seen.push(line),
                Err(_) => panic!("no {count} × `{what}` in:\n{}", seen.join("\n")),
            }
        }
        seen.clone()
    };
    // It starts by reporting the key free.
    let start = wait_for("  free", 1);
    assert!(
        start[0].contains("watching queue:drain (listening for releases"),
        "{start:?}"
    );
    // Two holders in a row, each released then taken again at once.
    for round in 1..=2 {
        let guard = service.lock("queue:drain").acquire().await.unwrap();
        tokio::task::block_in_place(|| wait_for("acquired by worker@host-5", round));
        guard.release().await.unwrap();
        tokio::task::block_in_place(|| wait_for("release announced", round));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    assert_no_password(&out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_it_lists_every_master_and_releases() {
    let cluster = RedisCluster::start().unwrap();
    let urls = cluster.urls();
    let service = LockClient::cluster(urls.clone())
        .holder("orders@host-2")
        .connect()
        .await
        .unwrap();
    // Enough keys to land on every master.
    let mut guards = Vec::new();
    for i in 0..30 {
        guards.push(service.lock(format!("order:{i}")).acquire().await.unwrap());
    }
    let mut args: Vec<&str> = Vec::new();
    for url in &urls {
        args.extend(["--url", url]);
    }
    args.push("--cluster");

    let out = lockctl(
        None,
        &[&args[..], &["list", "order:*", "--json"]].concat(),
        "",
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 30, "{stdout}");
    assert!(
        json.as_array()
            .unwrap()
            .iter()
            .all(|l| l["holder"] == "orders@host-2")
    );

    let out = lockctl(None, &[&args[..], &["show", "order:7"]].concat(), "");
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(text(&out).0.contains("holder    orders@host-2"));

    let out = lockctl(
        None,
        &[&args[..], &["release", "order:7", "--force", "--yes"]].concat(),
        "",
    );
    assert!(out.status.success(), "{:?}", text(&out));
    let info = service.inspect("order:7").await.unwrap();
    assert!(!info.locked);

    let out = lockctl(None, &[&args[..], &["show", "order:7"]].concat(), "");
    assert!(!out.status.success());
    assert!(text(&out).1.contains("not locked"));
}
