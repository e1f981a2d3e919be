//! Several GitHub Apps (issue 18): registrations spread over the Apps by the budget each
//! has left, clean-up by the App that registered, limits answered all the same honoured,
//! and each App's webhook for one job still launching one runner.

use std::time::Duration;

use super::{Env, QueueChoice, next, spot_then_fargate};
use crate::common::drain_workers as drain;
use crate::common::fake_github::{Endpoint, Failure, Recorded};
use crate::common::moto_ecs::faults::FARGATE_NO_CAPACITY;
use crate::common::stores::Backend;
use crate::common::*;
use dockhand::store::LaunchState;
use dockhand::synthetic::{SyntheticJob, workflow_job_payload};
use dockhand::worker::outcome::{Deferral, Outcome, Settled};
use dockhand::worker::{Step, Worker};

const APP_A: u64 = 4242;
const APP_B: u64 = 4343;

/// The Apps of the JIT configs the fake received, in order (refused ones included).
fn jit_apps(env: &Env) -> Vec<u64> {
    env.github
        .requests_to(Endpoint::JitConfig)
        .iter()
        .map(|r: &Recorded| r.app.expect("an authenticated call"))
        .collect()
}

/// `job`'s queued webhook as App `installation` sends it.
fn queued_as(job: u64, installation: u64) -> Vec<u8> {
    workflow_job_payload(&SyntheticJob {
        job_id: job,
        labels: vec!["self-hosted".into(), "linux".into()],
        installation_id: Some(installation),
        ..SyntheticJob::default()
    })
    .to_string()
    .into_bytes()
}

/// Two Apps, with a secondary limit so generous that each App's points are always back to
/// full by the next job: the choice then turns on the hourly limit and on which App went
/// last, as in steady, light load.
async fn two_apps(adjust: impl FnOnce(&mut dockhand::config::Settings)) -> Env {
    Env::with_apps(
        QueueChoice::Embedded,
        Backend::Sqlite,
        &[APP_A, APP_B],
        |s| {
            s.github.limits.points_per_minute = 600_000;
            adjust(s);
        },
    )
    .await
}

/// Processes messages until `n` have settled (deferred ones included), within 20 s.
async fn settle(worker: &Worker, n: usize) -> Vec<Settled> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut settled = Vec::new();
    while settled.len() < n {
        assert!(std::time::Instant::now() < deadline, "{settled:?}");
        match worker.process_next().await.unwrap() {
            Step::Processed(batch) => settled.extend(batch),
            Step::Empty => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    settled
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_alternate_between_two_apps_and_the_store_records_which() {
    let env = two_apps(|_| {}).await;
    let worker = env.worker().await;
    for job in 1801..=1804 {
        env.app.deliver(Delivery::signed(queued_job(job))).await;
        assert_eq!(next(&worker).await, Settled::Done(Outcome::Launched));
    }

    // Equal budgets: the App used longest ago goes next.
    assert_eq!(jit_apps(&env), [APP_A, APP_B, APP_A, APP_B]);
    assert_eq!(env.ecs.task_arns().await.len(), 4);
    let store = env._store.connect().await;
    let mut recorded: Vec<_> = store
        .runners()
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.for_job_id.unwrap().0, r.app_id))
        .collect();
    recorded.sort();
    assert_eq!(
        recorded,
        [
            (1801, Some(APP_A)),
            (1802, Some(APP_B)),
            (1803, Some(APP_A)),
            (1804, Some(APP_B))
        ]
    );
    // Each App acted as its own installation on the org, looked up once with its JWT.
    assert_eq!(
        env.github
            .requests_by_app(APP_A, Endpoint::Installation)
            .len(),
        1
    );
    assert_eq!(
        env.github
            .requests_by_app(APP_B, Endpoint::Installation)
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_is_removed_by_the_app_that_registered_it() {
    let env = two_apps(spot_then_fargate).await;
    let worker = env.worker().await;
    env.app.deliver(Delivery::signed(queued_job(1811))).await;
    assert_eq!(next(&worker).await, Settled::Done(Outcome::Launched));
    // The next registration goes to App B; no capacity anywhere removes it again.
    env.proxy
        .fail_run_task_on("FARGATE_SPOT", FARGATE_NO_CAPACITY);
    env.proxy.fail_run_task_on("FARGATE", FARGATE_NO_CAPACITY);
    env.app.deliver(Delivery::signed(queued_job(1812))).await;
    assert_eq!(next(&worker).await, Settled::Deferred(Deferral::Capacity));

    assert_eq!(jit_apps(&env), [APP_A, APP_B]);
    let deletes = env.github.requests_to(Endpoint::DeleteRunner);
    assert_eq!(deletes.len(), 1, "{deletes:?}");
    assert_eq!(deletes[0].app, Some(APP_B));
    assert_eq!(env.github.runners().len(), 1, "App A's runner stays");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_out_of_budget_is_passed_over_and_with_both_out_the_job_waits_undead() {
    let env = two_apps(|_| {}).await;
    let worker = env.worker().await;
    // App A's installation (7001) is down to 50 requests this hour, under the reserve of
    // 100 kept for clean-up: its next answer says so.
    env.github.set_rate_remaining(7001, 50);
    for job in 1821..=1823 {
        env.app.deliver(Delivery::signed(queued_job(job))).await;
        assert_eq!(next(&worker).await, Settled::Done(Outcome::Launched));
    }
    assert_eq!(jit_apps(&env), [APP_A, APP_B, APP_B]);

    // Now App B's installation (8001) is low too: both Apps are out until the hour resets.
    env.github.set_rate_remaining(8001, 50);
    env.app.deliver(Delivery::signed(queued_job(1824))).await;
    assert_eq!(next(&worker).await, Settled::Done(Outcome::Launched));
    env.app.deliver(Delivery::signed(queued_job(1825))).await;
    let settled = next(&worker).await;
    let Settled::Deferred(Deferral::RateLimit(wait)) = settled else {
        panic!("{settled:?}");
    };
    assert!(
        wait > Duration::from_secs(30 * 60),
        "until the reset: {wait:?}"
    );
    assert_eq!(jit_apps(&env).len(), 4, "no call was made for job 1825");
    // Deferred, not failed: nothing on the dead-letter queue, and the job still owed.
    let dlq = env.app.queue.dead_letter_queue().await.unwrap().unwrap();
    assert_eq!(dlq.approximate_depth().await.unwrap().total(), 0);
    let store = env._store.connect().await;
    let job = store
        .job(dockhand::domain::JobId(1825))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.launch, LaunchState::Owed, "{job:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secondary_limit_answered_anyway_sends_registrations_to_the_other_app() {
    let env = two_apps(|_| {}).await;
    env.github.fail_next_for(
        APP_A,
        Endpoint::JitConfig,
        Failure::SecondaryLimit(Duration::from_secs(60)),
    );
    let worker = env.worker().await;
    for job in 1831..=1833 {
        env.app.deliver(Delivery::signed(queued_job(job))).await;
        assert_eq!(next(&worker).await, Settled::Done(Outcome::Launched));
    }

    // A was refused once, and is not asked again within its minute.
    assert_eq!(jit_apps(&env), [APP_A, APP_B, APP_B, APP_B]);
    assert_eq!(env.ecs.task_arns().await.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_one_app_a_secondary_limit_defers_every_job_until_it_has_passed() {
    let env = Env::new(QueueChoice::Embedded, Backend::Sqlite).await;
    env.github.fail_next(
        Endpoint::JitConfig,
        Failure::SecondaryLimit(Duration::from_secs(60)),
    );
    let worker = env.worker().await;
    let mut waits = Vec::new();
    for job in [1841, 1842] {
        env.app.deliver(Delivery::signed(queued_job(job))).await;
        match &settle(&worker, 1).await[..] {
            [Settled::Deferred(Deferral::RateLimit(wait))] => waits.push(*wait),
            other => panic!("{other:?}"),
        }
    }
    assert!(
        waits.iter().all(|w| *w > Duration::from_secs(30)),
        "{waits:?}"
    );
    // The second job never reached GitHub.
    assert_eq!(env.github.count(Endpoint::JitConfig), 1);
    assert_eq!(worker.process_next().await.unwrap(), Step::Empty);
    let metrics = env.app.metrics().await;
    let answers = r#"dockhand_github_limit_answers_total{app="4242",kind="secondary"}"#;
    assert_eq!(sample(&metrics, answers), Some(1.0), "{metrics}");
    assert!(
        metrics.contains(r#"dockhand_github_budget_remaining{app="4242",limit="primary"}"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_apps_webhook_for_one_job_launches_one_runner() {
    let env = two_apps(|_| {}).await;
    let worker = env.worker().await;
    // philips-labs #5216: GitHub sends the job's webhook to each App, with its own
    // installation id.
    let (a, _) = env
        .app
        .deliver(Delivery::signed(queued_as(1851, 7001)))
        .await;
    let (b, _) = env
        .app
        .deliver(Delivery::signed(queued_as(1851, 8001)))
        .await;
    assert_eq!((a, b), (202, 202));

    let settled = drain(&[&worker]).await;
    // The second copy may find the first's lease held and wait for it.
    let launched = settled
        .iter()
        .filter(|s| **s == Settled::Done(Outcome::Launched))
        .count();
    assert_eq!(launched, 1, "{settled:?}");
    assert!(
        settled.iter().all(|s| matches!(
            s,
            Settled::Done(Outcome::Launched | Outcome::Duplicate)
                | Settled::Deferred(Deferral::Held(_))
        )),
        "{settled:?}"
    );
    assert_eq!(env.ecs.task_arns().await.len(), 1);
    assert_eq!(env.github.count(Endpoint::JitConfig), 1);
    assert_eq!(env.github.runners().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_attempt_removes_a_registration_left_behind_as_the_app_that_made_it() {
    let env = two_apps(spot_then_fargate).await;
    let worker = env.worker().await;
    env.app.deliver(Delivery::signed(queued_job(1861))).await;
    assert_eq!(next(&worker).await, Settled::Done(Outcome::Launched));
    // App B registers job 1862's runner; no capacity, and its deletion fails: it stays.
    env.proxy
        .fail_run_task_on("FARGATE_SPOT", FARGATE_NO_CAPACITY);
    env.proxy.fail_run_task_on("FARGATE", FARGATE_NO_CAPACITY);
    env.github
        .fail_next_for(APP_B, Endpoint::DeleteRunner, Failure::Status(502));
    env.app.deliver(Delivery::signed(queued_job(1862))).await;
    assert_eq!(next(&worker).await, Settled::Deferred(Deferral::Capacity));
    assert_eq!(env.github.runners().len(), 2);

    env.proxy.clear_faults();
    let settled = drain(&[&worker]).await;
    assert_eq!(settled, [Settled::Done(Outcome::Launched)]);
    let deletes: Vec<_> = env
        .github
        .requests_to(Endpoint::DeleteRunner)
        .iter()
        .map(|r| r.app)
        .collect();
    assert_eq!(deletes, [Some(APP_B), Some(APP_B)]);
    let names: Vec<_> = env.github.runners().into_iter().map(|r| r.name).collect();
    assert_eq!(names, ["dh-linux-x64-1861-1", "dh-linux-x64-1862-2"]);
}
