//! The per-client renewal scheduler: many locks, few round trips, and loss detection that
//! keeps its bound when renewals are batched.

mod common;

use std::time::Duration;

use common::{Fixture, assert_lost_within_a_period, run_until_lost};
use tokio::time::Instant;

/// Script calls the server has run since the last `CONFIG RESETSTAT`.
fn script_calls(con: &mut dyn redis::ConnectionLike) -> u64 {
    let info: String = redis::cmd("INFO").arg("commandstats").query(con).unwrap();
    info.lines()
        .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
        .filter_map(|l| {
            l.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_renewal_keeps_1000_locks_alive_for_three_ttls() {
    const LOCKS: usize = 1000;
    let ttl = Duration::from_millis(900);
    let fx = Fixture::redis();
    let client = fx.client().await;
    let mut guards = Vec::with_capacity(LOCKS);
    for i in 0..LOCKS {
        guards.push(
            client
                .lock(format!("many:{i}"))
                .ttl(ttl)
                .acquire()
                .await
                .unwrap(),
        );
    }
    let mut raw = fx.raw();
    // Let the renewal times converge, then count one window of 3 × TTL.
    tokio::time::sleep(ttl).await;
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query(&mut raw)
        .unwrap();
    tokio::time::sleep(ttl * 3).await;
    let calls = script_calls(&mut raw);
    eprintln!("{calls} renewal calls for {LOCKS} locks over 3 TTLs");

    for (i, guard) in guards.iter().enumerate() {
        assert!(!guard.is_lost(), "lock {i} was declared lost");
    }
    let alive: usize = redis::cmd("DBSIZE").query(&mut raw).unwrap();
    assert_eq!(alive, LOCKS, "every key is still there after 3 × TTL");
    let ttls: Vec<i64> = {
        let mut pipe = redis::pipe();
        for i in 0..LOCKS {
            pipe.cmd("PTTL").arg(format!("many:{i}"));
        }
        pipe.query(&mut raw).unwrap()
    };
    assert!(
        ttls.iter().all(|&t| t > 0),
        "every key still has a live TTL"
    );

    // Unbatched, 1,000 locks renewed every ttl/3 for 3 × TTL would be 9,000 calls; batched,
    // ~10 calls a tick. Allow plenty for the ticks before the times line up.
    let ticks = 9;
    assert!(
        calls <= (ticks * LOCKS / 100 * 3) as u64,
        "{calls} renewal calls for {LOCKS} locks over {ticks} ticks"
    );
    assert!(
        calls >= (ticks * LOCKS / 100 / 2) as u64,
        "renewals happened: {calls}"
    );

    for guard in guards {
        guard.release().await.unwrap();
    }
    let left: usize = redis::cmd("DBSIZE").query(&mut raw).unwrap();
    assert_eq!(left, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loss_is_detected_within_a_period_among_many_batched_locks() {
    let ttl = Duration::from_millis(600);
    let fx = Fixture::redis();
    let client = fx.client().await;
    let mut others = Vec::new();
    for i in 0..300 {
        others.push(
            client
                .lock(format!("crowd:{i}"))
                .ttl(ttl)
                .acquire()
                .await
                .unwrap(),
        );
    }
    let task = tokio::spawn(run_until_lost(client.clone(), "crowd:victim", ttl));
    tokio::time::sleep(ttl).await;
    let _: () = redis::cmd("DEL")
        .arg("crowd:victim")
        .query(&mut fx.raw())
        .unwrap();
    let deleted_at = Instant::now();
    let (out, returned_at) = task.await.unwrap();
    assert_lost_within_a_period(&out, deleted_at, returned_at, ttl);
    // The crowd is unaffected.
    assert!(others.iter().all(|g| !g.is_lost()));
    for guard in others {
        guard.release().await.unwrap();
    }
}
