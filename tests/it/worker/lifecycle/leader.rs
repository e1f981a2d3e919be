//! One reconciler leads at a time, by a lease in the store; when the leader dies another
//! takes over within one lease period.

use std::time::{Duration, Instant};

use super::*;
use crate::common::stores::Backend;
use crate::worker::QueueChoice;
use dockhand::lifecycle::ROLE;
use rstest::rstest;
use tokio_util::sync::CancellationToken;

/// Waits up to `within` for a live leader other than `not`; answers it and how long it
/// took.
async fn leader_other_than(
    store: &Store,
    not: Option<&str>,
    within: Duration,
) -> (String, Duration) {
    let started = Instant::now();
    loop {
        if let Some(leader) = store.leader(ROLE).await.unwrap()
            && Some(leader.as_str()) != not
        {
            return (leader, started.elapsed());
        }
        assert!(
            started.elapsed() < within,
            "no new leader within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_one_leads_and_the_other_takes_over_when_it_dies(#[case] backend: Backend) {
    let env = Env::with(QueueChoice::Embedded, backend, with_lifecycle).await;
    let (a, b) = (env.worker().await, env.worker().await);
    let (ra, rb) = (reconciler(&a, lifecycle()), reconciler(&b, lifecycle()));
    let (stop_a, stop_b) = (CancellationToken::new(), CancellationToken::new());
    let running_a = ra.spawn(stop_a.clone());
    let running_b = rb.spawn(stop_b.clone());
    let store = a.store();
    let (first, _) = leader_other_than(store, None, Duration::from_secs(5)).await;
    assert!(first == ra.owner() || first == rb.owner(), "{first}");
    // It stays the leader: the other never takes a live lease.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(
            store.leader(ROLE).await.unwrap().as_deref(),
            Some(first.as_str())
        );
    }
    // The leader dies without a word (no resignation): the other leads within a lease.
    let (dead, survivor) = if first == ra.owner() {
        (running_a, rb.owner())
    } else {
        (running_b, ra.owner())
    };
    dead.abort();
    let (second, took) = leader_other_than(store, Some(&first), Duration::from_secs(5)).await;
    assert_eq!(second, survivor);
    let lease = lifecycle().leader_lease;
    assert!(
        took <= lease + lease / 2,
        "took over after {took:?}, lease {lease:?}"
    );
    // A leader that stops cleanly gives the lease up at once.
    stop_a.cancel();
    stop_b.cancel();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(store.leader(ROLE).await.unwrap(), None);
}
