//! Jobs gone quiet: launched, and GitHub has said nothing for `verify_after`. GitHub is
//! asked; the store is healed from its answer, or the job gets a runner again.

use super::*;
use crate::common::fake_github::Endpoint;
use crate::common::stores::Backend;
use crate::worker::QueueChoice;
use dockhand::store::{GitHubState, LaunchState};
use rstest::rstest;

fn verify_soon() -> LifecycleSettings {
    LifecycleSettings {
        verify_after: std::time::Duration::from_secs(1),
        ..lifecycle()
    }
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_in_progress_webhook_was_lost_is_healed_from_github(#[case] backend: Backend) {
    let env = Env::with(QueueChoice::Embedded, backend, with_lifecycle).await;
    let worker = env.worker().await;
    let reconciler = reconciler(&worker, verify_soon());
    let runner = launched(&env, &worker, 4101).await;
    // GitHub started the job on its runner; the `in_progress` delivery never came.
    env.github.set_job(
        "octo-org/hello-world",
        4101,
        "in_progress",
        None,
        Some(&runner.runner_name),
    );
    let p = pass(&reconciler).await;
    assert_eq!(p.verified, 0, "not quiet for long enough yet: {p:?}");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let p = pass(&reconciler).await;
    assert_eq!((p.verified, p.healed, p.replaced), (1, 1, 0), "{p:?}");
    let asked = env.github.requests_to(Endpoint::WorkflowJob);
    assert_eq!(asked.len(), 1);
    assert_eq!(
        asked[0].path,
        "/repos/octo-org/hello-world/actions/jobs/4101"
    );
    let store = worker.store();
    let job = store.job(JobId(4101)).await.unwrap().unwrap();
    assert_eq!(job.github, GitHubState::InProgress);
    assert_eq!(job.ran_on.as_deref(), Some(runner.runner_name.as_str()));
    assert_eq!(
        runner_of(store, 4101).await.state,
        dockhand::store::RunnerState::Busy
    );
    let history = kinds(store, 4101).await;
    assert!(history.ends_with(&["started", "verified"]), "{history:?}");
    assert_eq!(
        entries(store, 4101, EventKind::Verified).await[0]["action"],
        "healed"
    );
    // A job that started is not asked about again.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let p = pass(&reconciler).await;
    assert_eq!(p.verified, 0, "{p:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_job_still_queued_with_no_runner_left_gets_a_replacement() {
    let env = Env::with(QueueChoice::Embedded, Backend::Sqlite, with_lifecycle).await;
    let worker = env.worker().await;
    let reconciler = reconciler(&worker, verify_soon());
    let runner = launched(&env, &worker, 4201).await;
    env.github
        .set_job("octo-org/hello-world", 4201, "queued", None, None);
    // Its runner came up and left without a word: ECS forgot the task, and GitHub the
    // registration (a runner that ran some job and was gone before any webhook said so).
    stop_in_ecs(
        &env,
        runner.task_arn.as_ref().unwrap(),
        "Essential container in task exited",
    )
    .await;
    env.proxy.patch_task(
        runner.task_arn.as_ref().unwrap(),
        serde_json::json!({"startedAt": minutes_ago(1), "stopCode": "EssentialContainerExited"}),
    );
    env.github.forget_runner(runner.runner_id.unwrap().0);
    let p = pass(&reconciler).await;
    assert_eq!(
        (p.stopped, p.replaced),
        (1, 0),
        "it may have run a job: not replaced yet: {p:?}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let p = pass(&reconciler).await;
    assert_eq!((p.verified, p.replaced), (1, 1), "{p:?}");
    let store = worker.store();
    assert_eq!(
        store.launch_state(JobId(4201)).await.unwrap(),
        Some(LaunchState::Owed)
    );
    assert_eq!(next(&worker).await, Settled::Done(Outcome::Launched));
    assert_eq!(
        runner_of(store, 4201).await.runner_name,
        "dh-linux-x64-4201-2"
    );
    let verified = &entries(store, 4201, EventKind::Verified).await[0];
    assert_eq!(
        (&verified["github"], &verified["action"]),
        (&"queued".into(), &"replaced".into())
    );
}
