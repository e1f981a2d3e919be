//! Missed webhooks come back, with the real ingress, queue, workers and reconciler
//! leadership: a delivery the ingress answered 503 (its queue down) is redelivered by the
//! leader's recovery loop and launches once; of two workers, only the leader reads the logs
//! and asks, and a new leader goes on from what the old one recorded.

use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::*;
use common::dying_sqs::DyingSqs;
use common::webhook_sink::WebhookSink;
use dockhand::config::{LifecycleSettings, RedeliverySettings};
use dockhand::lifecycle::{ROLE, Reconciler};

fn lifecycle() -> LifecycleSettings {
    LifecycleSettings {
        interval: Duration::from_millis(200),
        leader_lease: Duration::from_secs(1),
        ..LifecycleSettings::default()
    }
}

fn redelivery() -> RedeliverySettings {
    RedeliverySettings {
        interval: Duration::from_secs(1),
        per_second: 100.0,
        ..RedeliverySettings::default()
    }
}

fn reconciler(worker: &Worker) -> Reconciler {
    let (_, rx) = watch::channel(lifecycle());
    worker.reconciler(rx).expect("a worker that launches")
}

fn quick_points(s: &mut Settings) {
    // The recovery loop's calls yield to registrations until the App's points are full.
    s.github.limits.points_per_minute = 6_000_000;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_answered_503_while_the_queue_was_down_launches_once_after_recovery() {
    let sqs = DyingSqs::start(usize::MAX).await;
    let env = Env::with(QueueChoice::Sqs, Backend::Postgres, |s| {
        s.aws.sqs.endpoint_url = Some(sqs.url.clone());
        quick_points(s);
    })
    .await;
    env.github
        .set_webhook(APP_ID, &env.app.webhook_url, common::SECRET);

    // 1-2. The queue is unavailable: the ingress answers 503, and GitHub logs the failure.
    sqs.set_down(true);
    let (guid, status) = env.github.deliver(APP_ID, queued_job(951)).await;
    assert_eq!(status, 503);
    let log = env.github.delivery_log(APP_ID);
    assert_eq!((log.len(), log[0].status_code), (1, 503));

    // 3-4. The queue is back; the recovery loop asks GitHub to deliver the event again.
    sqs.set_down(false);
    let worker = env.worker().await;
    let recovery = reconciler(&worker).redeliver_with(redelivery());
    let pass = recovery.pass().await.unwrap();
    assert_eq!(pass.requested, 1);
    env.github.deliveries_settled().await;
    let log = env.github.delivery_log(APP_ID);
    assert_eq!(log.len(), 2);
    assert_eq!(
        (log[1].guid.as_str(), log[1].redelivery, log[1].status_code),
        (guid.as_str(), true, 202)
    );

    // 5. The job launches once.
    assert_eq!(drain(&[&worker]).await, [Settled::Done(Outcome::Launched)]);
    assert_eq!(env.github.count(Endpoint::JitConfig), 1);
    assert_eq!(env.ecs.task_arns().await.len(), 1);
    let job = worker.store().job(JobId(951)).await.unwrap().unwrap();
    assert_eq!(job.launch, LaunchState::Launched);

    // The event is recovered: no more redeliveries, and a second copy changes nothing.
    let after = recovery.pass().await.unwrap();
    assert_eq!((after.recovered, after.requested), (1, 0));
    assert_eq!(env.github.count(Endpoint::Redeliver), 1);
    env.github.deliver(APP_ID, queued_job(951)).await;
    assert_eq!(drain(&[&worker]).await, [Settled::Done(Outcome::Duplicate)]);
    assert_eq!(env.ecs.task_arns().await.len(), 1);
}

/// Waits up to 10 s for `check`.
async fn until(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_workers_only_the_leader_redelivers_and_a_new_leader_goes_on_from_its_record() {
    let env = Env::with(QueueChoice::Embedded, Backend::Postgres, |s| {
        s.lifecycle = lifecycle();
        quick_points(s);
    })
    .await;
    // Each worker talks to its own GitHub (the same App), so each one's calls are told
    // apart; both logs hold the same failed delivery, and both webhooks take redeliveries.
    let other = FakeGitHub::start(APP_ID).await;
    let sink = WebhookSink::start(503).await;
    for github in [&env.github, &other] {
        github.set_webhook(APP_ID, &sink.url, common::SECRET);
        github
            .deliver_as(APP_ID, "lost-guid", queued_job(961))
            .await;
    }
    sink.answer(202);
    let a = env.worker().await;
    let mut settings_b = env.settings.clone();
    settings_b.github.api_url = other.url.clone();
    let b = dockhand::startup::build_worker(&settings_b, env.app.queue.clone())
        .await
        .unwrap();
    let (ra, rb) = (reconciler(&a), reconciler(&b));
    ra.redeliver_with(redelivery());
    rb.redeliver_with(redelivery());
    let (stop_a, stop_b) = (CancellationToken::new(), CancellationToken::new());
    let running_a = ra.spawn(stop_a.clone());
    let running_b = rb.spawn(stop_b.clone());

    let store = a.store();
    let leader = eventually("a leader", Duration::from_secs(5), || async {
        store.leader(ROLE).await.unwrap()
    })
    .await;
    let a_leads = leader == ra.owner();
    let (leading, following) = if a_leads {
        (&env.github, &other)
    } else {
        (&other, &env.github)
    };
    until("the leader's redelivery", || {
        leading.count(Endpoint::Redeliver) == 1
    })
    .await;
    // Two more intervals: the leader reads its log again, and asks for nothing more.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert!(leading.count(Endpoint::HookDeliveries) >= 2);
    assert_eq!(leading.count(Endpoint::Redeliver), 1);
    assert_eq!(following.count(Endpoint::HookDeliveries), 0);
    assert_eq!(following.count(Endpoint::Redeliver), 0);
    assert_eq!(sink.received(), ["lost-guid"; 3]);

    // The leader dies: the other leads, reads its own log, and redelivers nothing, since
    // the store says the failure was redelivered already.
    let survivor = if a_leads {
        running_a.abort();
        rb.owner()
    } else {
        running_b.abort();
        ra.owner()
    };
    eventually("the survivor leads", Duration::from_secs(5), || async {
        (store.leader(ROLE).await.unwrap().as_deref() == Some(survivor)).then_some(())
    })
    .await;
    until("the new leader's read", || {
        following.count(Endpoint::HookDeliveries) >= 2
    })
    .await;
    assert_eq!(following.count(Endpoint::Redeliver), 0);
    assert_eq!(sink.received(), ["lost-guid"; 3]);
    stop_a.cancel();
    stop_b.cancel();
}
