//! Expected waits (a full pool, a pool this worker's config does not know yet) spend none
//! of a message's receives: only errors move it towards the dead-letter queue.

use std::time::Duration;

use super::{Env, QueueChoice, next};
use crate::common::fake_github::{Endpoint, Failure};
use crate::common::process::eventually;
use crate::common::stores::Backend;
use crate::common::*;
use dockhand::config::Settings;
use dockhand::domain::JobId;
use dockhand::pool::{LivePools, Pools};
use dockhand::queue::ATTR_DEAD_LETTER_REASON;
use dockhand::store::LaunchState;
use dockhand::worker::outcome::{Deferral, Outcome, Settled};
use dockhand::worker::{Step, Worker};

/// The embedded queue dead-letters a message on its fourth receive.
const MAX_RECEIVES: u32 = 3;

fn few_receives(s: &mut Settings) {
    s.queue.embedded.max_receives = MAX_RECEIVES;
}

async fn dead_letters(env: &Env) -> Vec<dockhand::queue::ReceivedMessage> {
    let dlq = env.app.queue.dead_letter_queue().await.unwrap().unwrap();
    drain(dlq.as_ref()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_full_for_longer_than_the_receive_limit_allows_never_dead_letters_its_job() {
    let env = Env::with(QueueChoice::Embedded, Backend::Sqlite, |s| {
        few_receives(s);
        s.pools[0].max_runners = 1;
    })
    .await;
    let worker = env.worker().await;
    env.app.deliver(Delivery::signed(queued_job(1501))).await;
    assert_eq!(next(&worker).await, Settled::Done(Outcome::Launched));

    env.app.deliver(Delivery::signed(queued_job(1502))).await;
    for _ in 0..3 * MAX_RECEIVES {
        assert_eq!(next(&worker).await, Settled::Deferred(Deferral::PoolFull));
    }
    // The first job completes on its runner: the slot frees and the waiting job launches.
    env.app
        .deliver(Delivery::signed(super::owed::event_on(
            "completed",
            1501,
            Some("dh-linux-x64-1501-1"),
        )))
        .await;
    let settled = drain_workers(&[&worker]).await;
    assert_eq!(count_done(&settled, Outcome::Launched), 1, "{settled:?}");
    assert_eq!(env.ecs.task_arns().await.len(), 2);
    assert_eq!(env.github.count(Endpoint::JitConfig), 2);
    assert!(dead_letters(&env).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_on_every_receive_still_dead_letters_after_the_limit() {
    let env = Env::with(QueueChoice::Embedded, Backend::Sqlite, few_receives).await;
    let worker = env.worker().await;
    for _ in 0..MAX_RECEIVES {
        env.github
            .fail_next(Endpoint::JitConfig, Failure::Status(503));
    }
    env.app.deliver(Delivery::signed(queued_job(1503))).await;
    for _ in 0..MAX_RECEIVES {
        let settled = next(&worker).await;
        assert!(
            matches!(settled, Settled::Deferred(Deferral::Error(_))),
            "{settled:?}"
        );
    }
    let dead = eventually("the dead letter", Duration::from_secs(20), || async {
        assert_eq!(worker.process_next().await.unwrap(), Step::Empty);
        let dead = dead_letters(&env).await;
        (!dead.is_empty()).then_some(dead)
    })
    .await;
    assert_eq!(dead.len(), 1);
    assert_eq!(
        dead[0].attributes[ATTR_DEAD_LETTER_REASON],
        format!("exceeded max receives ({MAX_RECEIVES})")
    );
    assert_eq!(env.ecs.task_arns().await.len(), 0);
}

/// Found by the chaos soak (issue 13): with 5% of GitHub and ECS calls failing, one job in
/// 10,000 failed five launches in a row and the single node dead-lettered it, 2 minutes
/// after it arrived, while the scale-out layout's SQS queue allows 20 receives. A run of
/// transient errors longer than five receives must not cost a job on the embedded queue's
/// defaults either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launch_failing_transiently_six_times_is_launched_on_the_default_receive_limit() {
    let env = Env::new(QueueChoice::Embedded, Backend::Sqlite).await;
    let worker = env.worker().await;
    const FAILURES: usize = 6;
    for _ in 0..FAILURES {
        env.github
            .fail_next(Endpoint::JitConfig, Failure::Status(502));
    }
    env.app.deliver(Delivery::signed(queued_job(1504))).await;
    for _ in 0..FAILURES {
        let settled = next(&worker).await;
        assert!(
            matches!(settled, Settled::Deferred(Deferral::Error(_))),
            "{settled:?}"
        );
    }
    assert_eq!(next(&worker).await, Settled::Done(Outcome::Launched));
    assert!(dead_letters(&env).await.is_empty());
    assert_eq!(env.ecs.task_arns().await.len(), 1);
}

/// A worker whose pools are `pools` (a config older than the ingress's).
async fn worker_with(env: &Env, pools: &LivePools) -> Worker {
    dockhand::startup::build_worker_with(&env.settings, env.app.queue.clone(), pools.clone())
        .await
        .unwrap()
}

fn reload_every_second(s: &mut Settings) {
    s.reload.interval = Duration::from_secs(1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_the_worker_learns_after_the_ingress_is_waited_for_then_launched() {
    let env = Env::with(QueueChoice::Embedded, Backend::Sqlite, reload_every_second).await;
    let (reload, pools) = LivePools::new(Pools::from_settings(&[]));
    let worker = worker_with(&env, &pools).await;
    env.app.deliver(Delivery::signed(queued_job(1601))).await;
    assert_eq!(
        next(&worker).await,
        Settled::Deferred(Deferral::UnknownPool("linux-x64".into()))
    );

    // The worker's reload catches up with the ingress's.
    reload.replace(Pools::from_settings(&env.settings.pools));
    let settled = drain_workers(&[&worker]).await;
    assert_eq!(settled, [Settled::Done(Outcome::Launched)]);
    assert_eq!(env.ecs.task_arns().await.len(), 1);
    assert!(dead_letters(&env).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_the_worker_never_learns_is_dead_lettered_with_its_reason_after_two_reloads() {
    let env = Env::with(QueueChoice::Embedded, Backend::Sqlite, |s| {
        reload_every_second(s);
        few_receives(s);
    })
    .await;
    let pools = LivePools::fixed(Pools::from_settings(&[]));
    let worker = worker_with(&env, &pools).await;
    env.app.deliver(Delivery::signed(queued_job(1602))).await;

    let settled = drain_workers(&[&worker]).await;
    let (failed, waits) = settled.split_last().unwrap();
    assert!(
        waits
            .iter()
            .all(|s| *s == Settled::Deferred(Deferral::UnknownPool("linux-x64".into()))),
        "{settled:?}"
    );
    assert!(
        matches!(failed, Settled::Failed(reason) if reason.contains("pool linux-x64")),
        "{settled:?}"
    );
    let dead = dead_letters(&env).await;
    assert_eq!(dead.len(), 1);
    let reason = &dead[0].attributes[ATTR_DEAD_LETTER_REASON];
    assert!(
        reason.starts_with(
            "the ingress matched pool linux-x64, which this worker's config has not had for"
        ),
        "{reason}"
    );
    assert_eq!(env.ecs.task_arns().await.len(), 0);
    assert_eq!(worker.store().job(JobId(1602)).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launched_job_whose_pool_is_gone_is_answered_duplicate_and_keeps_its_record() {
    let env = Env::new(QueueChoice::Embedded, Backend::Sqlite).await;
    let worker = env.worker().await;
    env.app.deliver(Delivery::signed(queued_job(1603))).await;
    assert_eq!(next(&worker).await, Settled::Done(Outcome::Launched));

    let pools = LivePools::fixed(Pools::from_settings(&[]));
    let behind = worker_with(&env, &pools).await;
    env.app.deliver(Delivery::signed(queued_job(1603))).await;
    assert_eq!(next(&behind).await, Settled::Done(Outcome::Duplicate));
    let job = worker.store().job(JobId(1603)).await.unwrap().unwrap();
    assert_eq!(job.launch, LaunchState::Launched);
    assert_eq!(job.pool.as_deref(), Some("linux-x64"));
}
