//! Fargate Spot: a runner interrupted before it took a job is replaced at once on the
//! pool's next capacity provider; a job interrupted while it ran is recorded, and re-run
//! where the pool says so (`reruns`). Checked on moto's ECS (the RunTask calls' capacity
//! providers), the fake GitHub and the store's history. The helpers serve `reruns` too.

use serde_json::json;

use super::events::stopped_by_event;
use super::*;
use crate::common::fake_github::Endpoint;
use crate::common::stores::Backend;
use crate::worker::QueueChoice;
use dockhand::store::{LaunchState, RunnerState};
use dockhand::synthetic::{SyntheticJob, workflow_job_payload};
use rstest::rstest;

pub(super) const REPO: &str = "octo-org/hello-world";

/// A pool on Fargate Spot first, then Fargate, that re-runs interrupted jobs.
pub(super) fn spot_pool(s: &mut Settings) {
    with_lifecycle(s);
    let ecs = s.pools[0].ecs.as_mut().unwrap();
    ecs.launch_type = None;
    ecs.capacity_providers = vec!["FARGATE_SPOT".into(), "FARGATE".into()];
    s.pools[0].rerun_interrupted = true;
}

/// A `workflow_job` delivery of `job` in attempt `attempt` of run `run`, on `runner`.
pub(super) fn job_in_run(
    action: &str,
    job: u64,
    run: u64,
    attempt: u64,
    runner: Option<&str>,
) -> Vec<u8> {
    let mut body = workflow_job_payload(&SyntheticJob {
        action: action.into(),
        job_id: job,
        run_id: run,
        labels: vec!["self-hosted".into(), "linux".into()],
        installation_id: Some(99),
        ..SyntheticJob::default()
    });
    body["workflow_job"]["run_attempt"] = attempt.into();
    if action == "completed" {
        body["workflow_job"]["conclusion"] = "failure".into();
    }
    if let Some(runner) = runner {
        body["workflow_job"]["runner_name"] = runner.into();
    }
    body.to_string().into_bytes()
}

/// The capacity provider of every RunTask call so far, in order.
pub(super) fn run_task_providers(env: &Env) -> Vec<String> {
    env.proxy
        .calls()
        .into_iter()
        .filter(|c| c.operation == "RunTask")
        .map(|c| c.capacity_provider.unwrap_or_default())
        .collect()
}

/// Launches `job` of run `run` and starts it on its runner, as GitHub would.
pub(super) async fn running(env: &Env, worker: &Worker, job: u64, run: u64) -> RunnerRecord {
    env.app
        .deliver(Delivery::signed(job_in_run("queued", job, run, 1, None)))
        .await;
    assert_eq!(next(worker).await, Settled::Done(Outcome::Launched));
    let runner = runner_of(worker.store(), job).await;
    env.app
        .deliver(Delivery::signed(job_in_run(
            "in_progress",
            job,
            run,
            1,
            Some(&runner.runner_name),
        )))
        .await;
    assert_eq!(next(worker).await, Settled::Done(Outcome::Tracked));
    runner
}

/// ECS's stop of a task Spot reclaimed.
pub(super) fn spot_stop() -> serde_json::Value {
    json!({
        "stopCode": "SpotInterruption",
        "stoppedReason": "Your Spot Task was interrupted.",
        "capacityProviderName": "FARGATE_SPOT",
        "exitCode": 143,
    })
}

/// How dockhand learns of an interruption in a test.
#[derive(Debug, Clone, Copy)]
pub(super) enum Seen {
    /// By the task event on the queue.
    Event,
    /// By a reconcile pass's DescribeTasks.
    Pass,
}

/// Spot reclaims `runner`'s task: stopped in ECS, then seen as `seen` says. Answers the
/// pass, if one ran.
pub(super) async fn interrupted(
    seen: Seen,
    env: &Env,
    worker: &Worker,
    reconciler: &Reconciler,
    runner: &RunnerRecord,
) -> Pass {
    let task = runner.task_arn.as_deref().expect("a launched runner");
    stop_in_ecs(env, task, "Your Spot Task was interrupted.").await;
    match seen {
        Seen::Event => {
            stopped_by_event(env, worker, runner, spot_stop()).await;
            Pass::default()
        }
        Seen::Pass => {
            env.proxy.patch_task(
                task,
                json!({"stopCode": "SpotInterruption", "capacityProviderName": "FARGATE_SPOT"}),
            );
            pass(reconciler).await
        }
    }
}

#[rstest]
#[case::event_sqlite(Seen::Event, Backend::Sqlite)]
#[case::event_postgres(Seen::Event, Backend::Postgres)]
#[case::pass_sqlite(Seen::Pass, Backend::Sqlite)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spot_interruption_before_the_job_is_replaced_on_fargate_not_fargate_spot(
    #[case] seen: Seen,
    #[case] backend: Backend,
) {
    let env = Env::with(QueueChoice::Embedded, backend, spot_pool).await;
    let worker = env.worker().await;
    let reconciler = reconciler(&worker, lifecycle());
    let first = launched(&env, &worker, 4301).await;
    assert_eq!(run_task_providers(&env), ["FARGATE_SPOT"]);

    let p = interrupted(seen, &env, &worker, &reconciler, &first).await;
    if let Seen::Pass = seen {
        assert_eq!((p.stopped, p.replaced), (1, 1), "{p:?}");
    }
    let store = worker.store();
    assert_eq!(runner_of(store, 4301).await.state, RunnerState::Stopped);
    let interrupted = entries(store, 4301, EventKind::Interrupted).await;
    assert_eq!(interrupted.len(), 1);
    assert_eq!(interrupted[0]["capacity_provider"], "FARGATE_SPOT");
    assert_eq!(interrupted[0]["had_job"], false);
    assert_eq!(
        store.launch_state(JobId(4301)).await.unwrap(),
        Some(LaunchState::Owed)
    );

    // The replacement skips the Spot capacity that just reclaimed a task.
    assert_eq!(next(&worker).await, Settled::Done(Outcome::Launched));
    assert_eq!(run_task_providers(&env), ["FARGATE_SPOT", "FARGATE"]);
    let second = runner_of(store, 4301).await;
    let launched = entries(store, 4301, EventKind::Launched).await;
    assert_eq!(launched.last().unwrap()["launched_on"], "FARGATE");
    assert_ne!(second.runner_name, first.runner_name);
    // Another job is not affected: it starts on Spot.
    launched_ok(&env, &worker, 4302).await;
    assert_eq!(
        run_task_providers(&env),
        ["FARGATE_SPOT", "FARGATE", "FARGATE_SPOT"]
    );
}

async fn launched_ok(env: &Env, worker: &Worker, job: u64) {
    env.app.deliver(Delivery::signed(queued_job(job))).await;
    assert_eq!(next(worker).await, Settled::Done(Outcome::Launched));
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_that_does_not_rerun_records_the_interruption_and_asks_nothing(
    #[case] backend: Backend,
) {
    let env = Env::with(QueueChoice::Embedded, backend, |s| {
        spot_pool(s);
        s.pools[0].rerun_interrupted = false;
    })
    .await;
    let worker = env.worker().await;
    let reconciler = reconciler(&worker, lifecycle());
    let runner = running(&env, &worker, 4601, 46010).await;
    stopped_by_event(&env, &worker, &runner, spot_stop()).await;
    env.github
        .set_job_in_run(REPO, 4601, 46010, 1, "completed", Some("failure"), None);
    env.github
        .set_run(REPO, 46010, "completed", Some("failure"), 1);
    pass(&reconciler).await;
    let store = worker.store();
    let interrupted = entries(store, 4601, EventKind::Interrupted).await;
    assert_eq!(interrupted.len(), 1);
    assert_eq!(interrupted[0]["rerun"], false);
    assert_eq!(env.github.count(Endpoint::RerunFailedJobs), 0);
    assert_eq!(env.github.count(Endpoint::WorkflowRun), 0);
}
