//! Counting runners, not identities: GitHub gives a queued job to any idle runner whose
//! labels cover it, so a job that ran on another job's runner still owes that job a launch,
//! and only a job that finished without a runner, or ran on a runner dockhand did not
//! launch, owes none, even when that news arrives during its launch.

use std::time::Duration;

use super::{Env, QueueChoice};
use crate::common::fake_github::Endpoint;
use crate::common::process::eventually;
use crate::common::stores::Backend;
use crate::common::*;
use dockhand::domain::JobId;
use dockhand::store::{GitHubState, LaunchState};
use dockhand::worker::Step;
use dockhand::worker::outcome::{Deferral, Outcome, Settled};
use rstest::rstest;

/// A later event of a job of the default pool: `in_progress` or `completed` on `runner`, or
/// with no runner (`completed` then means cancelled while queued).
pub(super) fn event_on(action: &str, job_id: u64, runner: Option<&str>) -> Vec<u8> {
    let mut body: serde_json::Value =
        serde_json::from_slice(&job_body(action, job_id, &["self-hosted", "linux"])).unwrap();
    let job = &mut body["workflow_job"];
    match runner {
        Some(name) => job["runner_name"] = name.into(),
        None => {
            for key in [
                "runner_id",
                "runner_name",
                "runner_group_id",
                "runner_group_name",
            ] {
                job[key] = serde_json::Value::Null;
            }
            job["conclusion"] = "cancelled".into();
        }
    }
    body.to_string().into_bytes()
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_runner_another_job_took_still_gets_a_runner(#[case] backend: Backend) {
    let env = Env::with(QueueChoice::Embedded, backend, |s| {
        s.pools[0].max_runners = 1
    })
    .await;
    let worker = env.worker().await;
    // A and B are queued while the pool has room for one runner: A's launches, B waits.
    env.app.deliver(Delivery::signed(queued_job(1101))).await;
    assert_eq!(
        drain_workers(&[&worker]).await,
        [Settled::Done(Outcome::Launched)]
    );
    env.app.deliver(Delivery::signed(queued_job(1102))).await;
    assert_eq!(
        worker.process_next().await.unwrap(),
        Step::Processed(vec![Settled::Deferred(Deferral::PoolFull)])
    );

    // GitHub gives A's runner to B, which runs and completes on it. A is still queued.
    let a_runner = "dh-linux-x64-1101-1";
    for action in ["in_progress", "completed"] {
        env.app
            .deliver(Delivery::signed(event_on(action, 1102, Some(a_runner))))
            .await;
    }
    let settled = drain_workers(&[&worker]).await;
    assert_eq!(count_done(&settled, Outcome::Tracked), 2, "{settled:?}");
    assert_eq!(count_done(&settled, Outcome::Launched), 1, "{settled:?}");

    // B's launch was owed all along: its runner is the one A will get.
    assert_eq!(env.ecs.task_arns().await.len(), 2);
    assert_eq!(env.github.count(Endpoint::JitConfig), 2);
    let store = worker.store();
    let b = store.job(JobId(1102)).await.unwrap().unwrap();
    assert_eq!(b.launch, LaunchState::Launched);
    assert_eq!(b.github, GitHubState::Completed);
    assert_eq!(b.ran_on.as_deref(), Some(a_runner));
    assert_eq!(b.ran_on_dockhand, Some(true));
    let a = store.job(JobId(1101)).await.unwrap().unwrap();
    assert_eq!(a.launch, LaunchState::Launched);
    assert_eq!(a.github, GitHubState::Queued);
}

/// What GitHub says of a job while its runner is being registered.
#[derive(Debug, Clone, Copy)]
enum News {
    /// Cancelled before any runner took it.
    Cancelled,
    /// Running on a runner dockhand did not launch (a persistent one).
    TakenByAnotherTool,
}

#[rstest]
#[case::cancelled_sqlite(News::Cancelled, Backend::Sqlite)]
#[case::cancelled_postgres(News::Cancelled, Backend::Postgres)]
#[case::taken_by_another_tool_sqlite(News::TakenByAnotherTool, Backend::Sqlite)]
#[case::taken_by_another_tool_postgres(News::TakenByAnotherTool, Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_no_longer_owed_during_its_registration_leaves_no_registration_and_no_task(
    #[case] news: News,
    #[case] backend: Backend,
) {
    let env = Env::new(QueueChoice::Embedded, backend).await;
    env.github
        .set_delay(Endpoint::JitConfig, Duration::from_secs(2));
    let (launching, tracking) = (env.worker().await, env.worker().await);
    env.app.deliver(Delivery::signed(queued_job(1201))).await;
    let launch = tokio::spawn(async move { launching.process_next().await.unwrap() });
    eventually("the JIT call", Duration::from_secs(10), || async {
        (env.github.count(Endpoint::JitConfig) == 1).then_some(())
    })
    .await;

    // The news arrives, and another worker records it, while GitHub answers slowly.
    let body = match news {
        News::Cancelled => event_on("completed", 1201, None),
        News::TakenByAnotherTool => event_on("in_progress", 1201, Some("build-box-7")),
    };
    env.app.deliver(Delivery::signed(body)).await;
    assert_eq!(
        tracking.process_next().await.unwrap(),
        Step::Processed(vec![Settled::Done(Outcome::Tracked)])
    );

    assert_eq!(
        launch.await.unwrap(),
        Step::Processed(vec![Settled::Done(Outcome::Waived)])
    );
    assert!(
        env.github.runners().is_empty(),
        "the fresh registration was removed: {:?}",
        env.github.runners()
    );
    assert_eq!(env.ecs.task_arns().await.len(), 0);
    let job = tracking.store().job(JobId(1201)).await.unwrap().unwrap();
    assert_eq!(job.launch, LaunchState::Waived);
    assert_eq!(job.lease_owner, None);
    assert_eq!(job.runner_name, None, "nothing left on record to clean up");
    let runners = tracking.store().runners().await.unwrap();
    assert!(
        runners
            .iter()
            .all(|r| r.state == dockhand::store::RunnerState::Removed),
        "{runners:?}"
    );
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_taken_by_another_jobs_runner_during_its_registration_still_launches(
    #[case] backend: Backend,
) {
    let env = Env::new(QueueChoice::Embedded, backend).await;
    let (launching, tracking) = (env.worker().await, env.worker().await);
    env.app.deliver(Delivery::signed(queued_job(1300))).await;
    assert_eq!(
        drain_workers(&[&launching]).await,
        [Settled::Done(Outcome::Launched)]
    );

    env.github
        .set_delay(Endpoint::JitConfig, Duration::from_secs(2));
    env.app.deliver(Delivery::signed(queued_job(1301))).await;
    let launch = tokio::spawn(async move { launching.process_next().await.unwrap() });
    eventually("the second JIT call", Duration::from_secs(10), || async {
        (env.github.count(Endpoint::JitConfig) == 2).then_some(())
    })
    .await;
    // GitHub gives job 1301 the runner launched for job 1300, which now needs this launch.
    let other = "dh-linux-x64-1300-1";
    env.app
        .deliver(Delivery::signed(event_on("in_progress", 1301, Some(other))))
        .await;
    assert_eq!(
        tracking.process_next().await.unwrap(),
        Step::Processed(vec![Settled::Done(Outcome::Tracked)])
    );

    assert_eq!(
        launch.await.unwrap(),
        Step::Processed(vec![Settled::Done(Outcome::Launched)])
    );
    assert_eq!(env.ecs.task_arns().await.len(), 2);
    assert_eq!(env.github.runners().len(), 2);
    let job = tracking.store().job(JobId(1301)).await.unwrap().unwrap();
    assert_eq!(job.launch, LaunchState::Launched);
    assert_eq!(job.github, GitHubState::InProgress);
    assert_eq!(job.ran_on.as_deref(), Some(other));
    assert!(job.task_arn.is_some(), "the task is on the books");
}
