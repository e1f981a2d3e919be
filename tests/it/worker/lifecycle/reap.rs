//! Runners that outlive their purpose: idle beyond the jobs waiting for them, running past
//! their pool's max runtime; never one that GitHub says is running a job; and a dry run,
//! which only says what it would do.

use serde_json::json;

use super::*;
use crate::common::fake_github::Endpoint;
use crate::common::stores::Backend;
use crate::worker::QueueChoice;
use crate::worker::owed::event_on;
use dockhand::store::RunnerState;
use rstest::rstest;

/// Launches `job`, then GitHub cancels it before its runner took it: the runner idles.
async fn cancelled_after_launch(env: &Env, worker: &Worker, job: u64) -> RunnerRecord {
    let runner = launched(env, worker, job).await;
    env.app
        .deliver(Delivery::signed(event_on("completed", job, None)))
        .await;
    assert_eq!(next(worker).await, Settled::Done(Outcome::Tracked));
    runner
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runner_launched_for_a_cancelled_job_is_removed(#[case] backend: Backend) {
    let env = Env::with(QueueChoice::Embedded, backend, with_lifecycle).await;
    let worker = env.worker().await;
    let reconciler = reconciler(&worker, lifecycle());
    let runner = cancelled_after_launch(&env, &worker, 3101).await;
    let task = runner.task_arn.clone().unwrap();
    // Idle for 4 minutes: within the 5-minute idle timeout.
    env.proxy
        .patch_task(&task, json!({"startedAt": minutes_ago(4)}));
    let p = pass(&reconciler).await;
    assert_eq!(p.reaped, 0, "{p:?}");
    assert_eq!(env.github.count(Endpoint::DeleteRunner), 0);

    env.proxy
        .patch_task(&task, json!({"startedAt": minutes_ago(6)}));
    let p = pass(&reconciler).await;
    assert_eq!(p.reaped, 1, "{p:?}");
    // The registration first, then the task.
    let deletes = env.github.requests_to(Endpoint::DeleteRunner);
    assert_eq!(deletes.len(), 1);
    assert!(
        deletes[0]
            .path
            .ends_with(&format!("/{}", runner.runner_id.unwrap()))
    );
    assert!(env.github.runners().is_empty());
    let stops = stop_calls(&env);
    assert_eq!(stops.len(), 1);
    assert_eq!(stops[0].0, task);
    assert!(
        stops[0]
            .1
            .starts_with("dockhand: idle surplus runner, idle for 6m"),
        "{}",
        stops[0].1
    );
    assert_eq!(status_in_ecs(&env, &task).await, "STOPPED");
    let store = worker.store();
    assert_eq!(runner_of(store, 3101).await.state, RunnerState::Removed);
    assert_eq!(store.live_runners("linux-x64").await.unwrap(), 0);
    let reaped = &entries(store, 3101, EventKind::Reaped).await[0];
    assert_eq!(
        (&reaped["reason"], &reaped["runner"]),
        (&json!("idle"), &json!(runner.runner_name))
    );
    let rendered = dockhand::metrics::install().render();
    assert_eq!(
        sample(
            &rendered,
            r#"dockhand_runners_reaped_total{pool="linux-x64",reason="idle"}"#
        ),
        Some(1.0)
    );
    // Nothing left to do.
    let p = pass(&reconciler).await;
    assert_eq!((p.described, p.reaped), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_runner_a_waiting_job_needs_is_kept() {
    let env = Env::with(QueueChoice::Embedded, Backend::Sqlite, with_lifecycle).await;
    let worker = env.worker().await;
    let reconciler = reconciler(&worker, lifecycle());
    // Two idle runners for two jobs: one cancelled, one still queued. One is surplus.
    let a = cancelled_after_launch(&env, &worker, 3201).await;
    let b = launched(&env, &worker, 3202).await;
    for runner in [&a, &b] {
        env.proxy.patch_task(
            runner.task_arn.as_ref().unwrap(),
            json!({"startedAt": minutes_ago(30)}),
        );
    }
    let p = pass(&reconciler).await;
    assert_eq!(p.reaped, 1, "{p:?}");
    assert_eq!(env.github.runners().len(), 1);
    assert_eq!(worker.store().live_runners("linux-x64").await.unwrap(), 1);
    let p = pass(&reconciler).await;
    assert_eq!(p.reaped, 0, "the one left is owed to job 3202: {p:?}");
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_that_takes_a_job_just_before_removal_is_left_alone(#[case] backend: Backend) {
    let env = Env::with(QueueChoice::Embedded, backend, with_lifecycle).await;
    let worker = env.worker().await;
    let reconciler = reconciler(&worker, lifecycle());
    let runner = cancelled_after_launch(&env, &worker, 3301).await;
    let task = runner.task_arn.clone().unwrap();
    env.proxy
        .patch_task(&task, json!({"startedAt": minutes_ago(10)}));
    // It took another job a moment ago; no webhook has said so yet. The store thinks it
    // idle: only GitHub's refusal (422) tells.
    env.github.set_busy(runner.runner_id.unwrap().0, true);
    let p = pass(&reconciler).await;
    assert_eq!((p.reaped, p.refused), (0, 1), "{p:?}");
    assert_eq!(env.github.count(Endpoint::DeleteRunner), 1);
    assert_eq!(env.github.runners().len(), 1);
    assert!(
        stop_calls(&env).is_empty(),
        "a busy runner's task is never stopped"
    );
    assert_eq!(status_in_ecs(&env, &task).await, "RUNNING");
    let store = worker.store();
    assert_eq!(runner_of(store, 3301).await.state, RunnerState::Launched);
    assert_eq!(entries(store, 3301, EventKind::ReapRefused).await.len(), 1);
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_over_its_max_runtime_is_stopped(#[case] backend: Backend) {
    let env = Env::with(QueueChoice::Embedded, backend, with_lifecycle).await;
    let worker = env.worker().await;
    let reconciler = reconciler(&worker, lifecycle());
    let runner = launched(&env, &worker, 3401).await;
    let task = runner.task_arn.clone().unwrap();
    env.app
        .deliver(Delivery::signed(event_on(
            "in_progress",
            3401,
            Some(&runner.runner_name),
        )))
        .await;
    assert_eq!(next(&worker).await, Settled::Done(Outcome::Tracked));
    env.proxy
        .patch_task(&task, json!({"startedAt": minutes_ago(6 * 60)}));
    let p = pass(&reconciler).await;
    assert_eq!(p.reaped, 0, "6 h is within the default 6 h 15 min: {p:?}");
    env.proxy
        .patch_task(&task, json!({"startedAt": minutes_ago(6 * 60 + 16)}));
    let p = pass(&reconciler).await;
    assert_eq!(p.reaped, 1, "{p:?}");
    let stops = stop_calls(&env);
    assert_eq!(stops.len(), 1);
    assert!(
        stops[0].1.contains("max_runtime (6h 15m)"),
        "{}",
        stops[0].1
    );
    assert_eq!(status_in_ecs(&env, &task).await, "STOPPED");
    // The next pass sees it stopped: the busy runner is finished, no longer live, and the
    // job's history says why it failed.
    let p = pass(&reconciler).await;
    assert_eq!((p.stopped, p.replaced), (1, 0), "{p:?}");
    let store = worker.store();
    assert_eq!(runner_of(store, 3401).await.state, RunnerState::Finished);
    assert_eq!(store.live_runners("linux-x64").await.unwrap(), 0);
    let history = kinds(store, 3401).await;
    assert!(
        history.ends_with(&["started", "reaped", "task_stopped", "runner_lost"]),
        "{history:?}"
    );
    assert_eq!(
        entries(store, 3401, EventKind::Reaped).await[0]["reason"],
        "max_runtime"
    );
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_pass_changes_nothing(#[case] backend: Backend) {
    let env = Env::with(QueueChoice::Embedded, backend, with_lifecycle).await;
    let worker = env.worker().await;
    let settings = LifecycleSettings {
        dry_run: true,
        ..lifecycle()
    };
    let reconciler = reconciler(&worker, settings);
    // Two idle spares past their timeout, beside one job waiting (3502, whose task died
    // before registering): one of them is surplus.
    let idle = cancelled_after_launch(&env, &worker, 3501).await;
    env.proxy.patch_task(
        idle.task_arn.as_ref().unwrap(),
        json!({"startedAt": minutes_ago(30)}),
    );
    let other = cancelled_after_launch(&env, &worker, 3503).await;
    env.proxy.patch_task(
        other.task_arn.as_ref().unwrap(),
        json!({"startedAt": minutes_ago(20)}),
    );
    let dead = launched(&env, &worker, 3502).await;
    stop_in_ecs(
        &env,
        dead.task_arn.as_ref().unwrap(),
        "CannotPullContainerError",
    )
    .await;
    let store = worker.store();
    let runners_before = store.runners().await.unwrap();
    let jobs_before = store.jobs(&Default::default()).await.unwrap();
    let calls_before = env.github.requests().len();

    let p = pass(&reconciler).await;
    assert_eq!(
        (p.would, p.reaped, p.replaced, p.stopped),
        (2, 0, 0, 0),
        "{p:?}"
    );
    assert_eq!(store.runners().await.unwrap(), runners_before);
    assert_eq!(store.jobs(&Default::default()).await.unwrap(), jobs_before);
    assert!(stop_calls(&env).is_empty());
    let writes: Vec<_> = env.github.requests()[calls_before..]
        .iter()
        .filter(|r| r.method != "GET")
        .cloned()
        .collect();
    assert!(writes.is_empty(), "{writes:?}");
    assert!(env.app.drain().await.is_empty(), "no replacement was sent");
    assert_eq!(
        status_in_ecs(&env, idle.task_arn.as_ref().unwrap()).await,
        "RUNNING"
    );
    // What it would have done is on record.
    let would = &entries(store, 3501, EventKind::Would).await[0];
    assert_eq!(would["action"], "remove_runner");
    let would = &entries(store, 3502, EventKind::Would).await[0];
    assert_eq!(would["action"], "replace");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_runner_whose_task_exits_cleanly_finished_its_job_and_lost_nothing() {
    let env = Env::with(QueueChoice::Embedded, Backend::Sqlite, with_lifecycle).await;
    let worker = env.worker().await;
    let reconciler = reconciler(&worker, lifecycle());
    let runner = launched(&env, &worker, 3601).await;
    let task = runner.task_arn.clone().unwrap();
    env.app
        .deliver(Delivery::signed(event_on(
            "in_progress",
            3601,
            Some(&runner.runner_name),
        )))
        .await;
    assert_eq!(next(&worker).await, Settled::Done(Outcome::Tracked));
    // The job is done and the ephemeral runner's container exits 0, before the `completed`
    // webhook is processed.
    stop_in_ecs(&env, &task, "Essential container in task exited").await;
    env.proxy.patch_task(
        &task,
        json!({
            "stopCode": "EssentialContainerExited",
            "containers": [{"name": "runner", "lastStatus": "STOPPED", "exitCode": 0}],
        }),
    );
    let p = pass(&reconciler).await;
    assert_eq!((p.stopped, p.replaced), (1, 0), "{p:?}");
    let store = worker.store();
    assert_eq!(runner_of(store, 3601).await.state, RunnerState::Finished);
    assert!(entries(store, 3601, EventKind::RunnerLost).await.is_empty());
    assert_eq!(
        entries(store, 3601, EventKind::TaskStopped).await[0]["exit_code"],
        0
    );
    // Killed under its job (an out-of-memory exit), it did lose the job.
    let other = launched(&env, &worker, 3602).await;
    let task = other.task_arn.clone().unwrap();
    env.app
        .deliver(Delivery::signed(event_on(
            "in_progress",
            3602,
            Some(&other.runner_name),
        )))
        .await;
    assert_eq!(next(&worker).await, Settled::Done(Outcome::Tracked));
    stop_in_ecs(
        &env,
        &task,
        "OutOfMemoryError: Container killed due to memory usage",
    )
    .await;
    env.proxy.patch_task(
        &task,
        json!({
            "stopCode": "EssentialContainerExited",
            "containers": [{"name": "runner", "lastStatus": "STOPPED", "exitCode": 137}],
        }),
    );
    let p = pass(&reconciler).await;
    assert_eq!(p.stopped, 1, "{p:?}");
    let lost = &entries(store, 3602, EventKind::RunnerLost).await[0];
    assert_eq!(lost["exit_code"], 137);
}
