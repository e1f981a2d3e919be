//! A runner whose task stops before it takes a job: its job gets a new attempt, at most
//! `max_replacements` times, then goes to the dead-letter queue with the stop reason.

use serde_json::json;

use super::*;
use crate::common::fake_github::Endpoint;
use crate::common::stores::Backend;
use crate::worker::owed::event_on;
use crate::worker::{QueueChoice, requeue_of};
use dockhand::store::{LaunchState, RunnerState};
use rstest::rstest;

const PULL_FAILED: &str = "CannotPullContainerError: pull image manifest has been retried 5 time(s): failed to resolve ref ghcr.io/acme/runner:latest: not found";

/// The first line of `dockhand jobs show`.
async fn headline(store: &Store, job: u64) -> String {
    dockhand::inspect::JobStory::load(store, "the test store", JobId(job), Utc::now())
        .await
        .unwrap()
        .unwrap()
        .headline
}

/// Stops the job's current task as ECS does when its image cannot be pulled.
async fn dies_before_registering(env: &Env, task: &str) {
    stop_in_ecs(env, task, PULL_FAILED).await;
    env.proxy
        .patch_task(task, json!({"stopCode": "TaskFailedToStart"}));
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_stopped_before_registering_gets_exactly_one_replacement_and_the_job_runs(
    #[case] backend: Backend,
) {
    let env = Env::with(QueueChoice::Embedded, backend, with_lifecycle).await;
    let worker = env.worker().await;
    let reconciler = reconciler(&worker, lifecycle());
    let first = launched(&env, &worker, 2101).await;
    let first_task = first.task_arn.clone().unwrap();
    // A pass over a healthy runner does nothing.
    let quiet = pass(&reconciler).await;
    assert_eq!((quiet.described, quiet.replaced, quiet.reaped), (1, 0, 0));

    dies_before_registering(&env, &first_task).await;
    let p = pass(&reconciler).await;
    assert_eq!((p.stopped, p.replaced, p.dead_lettered), (1, 1, 0), "{p:?}");
    let store = worker.store();
    // The dead runner: stopped with what ECS said, its registration deleted.
    let dead = runner_of(store, 2101).await;
    assert_eq!(dead.state, RunnerState::Stopped);
    let deletes = env.github.requests_to(Endpoint::DeleteRunner);
    assert_eq!(deletes.len(), 1);
    assert!(
        deletes[0]
            .path
            .ends_with(&format!("/{}", dead.runner_id.unwrap()))
    );
    assert!(
        env.github
            .runners()
            .iter()
            .all(|r| r.name != dead.runner_name)
    );
    assert_eq!(
        store.launch_state(JobId(2101)).await.unwrap(),
        Some(LaunchState::Owed)
    );
    let owed = headline(store, 2101).await;
    assert!(
        owed.starts_with("owed a replacement runner since ")
            && owed.contains(" (replacement 1 of 3: CannotPullContainerError: "),
        "{owed}"
    );

    // The replacement goes through a worker like any launch: attempt 2, a new runner.
    assert_eq!(next(&worker).await, Settled::Done(Outcome::Launched));
    let relaunched = headline(store, 2101).await;
    assert!(
        relaunched.starts_with("launched runner dh-linux-x64-2101-2 on task ")
            && relaunched.contains(" (replacement 1 of 3: CannotPullContainerError: "),
        "{relaunched}"
    );
    let second = runner_of(store, 2101).await;
    assert_eq!(second.runner_name, "dh-linux-x64-2101-2");
    assert_eq!(env.proxy.run_task_calls().len(), 2);
    assert_eq!(
        status_in_ecs(&env, second.task_arn.as_ref().unwrap()).await,
        "RUNNING"
    );
    // Exactly one: the next pass finds nothing to do.
    let again = pass(&reconciler).await;
    assert_eq!((again.stopped, again.replaced), (0, 0), "{again:?}");

    // The job runs on its new runner.
    for action in ["in_progress", "completed"] {
        env.app
            .deliver(Delivery::signed(event_on(
                action,
                2101,
                Some(&second.runner_name),
            )))
            .await;
        assert_eq!(next(&worker).await, Settled::Done(Outcome::Tracked));
    }
    assert_eq!(
        kinds(store, 2101).await,
        [
            "received",
            "matched",
            "claimed",
            "registered",
            "launched",
            "task_stopped",
            "replaced",
            "claimed",
            "registered",
            "launched",
            "started",
            "completed"
        ]
    );
    let stopped = &entries(store, 2101, EventKind::TaskStopped).await[0];
    assert_eq!(stopped["stop_code"], "TaskFailedToStart");
    assert_eq!(stopped["stopped_reason"], PULL_FAILED);
    assert_eq!(stopped["task"], first_task.as_str());
    let replaced = &entries(store, 2101, EventKind::Replaced).await[0];
    assert_eq!(
        (&replaced["replacement"], &replaced["max"], &replaced["why"]),
        (&json!(1), &json!(3), &json!("task_stopped"))
    );
    // The worker's metrics are this process's (each test runs in its own).
    let rendered = dockhand::metrics::install().render();
    assert_eq!(
        sample(
            &rendered,
            r#"dockhand_jobs_replaced_total{pool="linux-x64",reason="task_stopped"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &rendered,
            r#"dockhand_runner_stops_total{pool="linux-x64",stop_code="TaskFailedToStart"}"#
        ),
        Some(1.0)
    );
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_dying_three_times_ends_dead_lettered_with_the_stop_reason(
    #[case] backend: Backend,
) {
    let env = Env::with(QueueChoice::Embedded, backend, with_lifecycle).await;
    let worker = env.worker().await;
    let settings = LifecycleSettings {
        max_replacements: 2,
        ..lifecycle()
    };
    let reconciler = reconciler(&worker, settings);
    let store = worker.store();
    launched(&env, &worker, 2201).await;
    for death in 1..=3 {
        let runner = runner_of(store, 2201).await;
        assert_eq!(runner.runner_name, format!("dh-linux-x64-2201-{death}"));
        dies_before_registering(&env, runner.task_arn.as_ref().unwrap()).await;
        let p = pass(&reconciler).await;
        if death < 3 {
            assert_eq!(
                (p.replaced, p.dead_lettered),
                (1, 0),
                "death {death}: {p:?}"
            );
            assert_eq!(next(&worker).await, Settled::Done(Outcome::Launched));
        } else {
            assert_eq!(
                (p.replaced, p.dead_lettered),
                (0, 1),
                "death {death}: {p:?}"
            );
        }
    }
    assert_eq!(
        store.launch_state(JobId(2201)).await.unwrap(),
        Some(LaunchState::Failed)
    );
    assert_eq!(env.proxy.run_task_calls().len(), 3);
    // `dlq list` shows the job, with the last stop reason.
    let dlq = env.app.queue.dead_letter_queue().await.unwrap().unwrap();
    let listing = dockhand::dlq::list(&*dlq, 10).await.unwrap();
    assert_eq!(listing.entries.len(), 1);
    let dead = &listing.entries[0];
    assert_eq!(dead.job_id, Some(2201));
    let reason = &dead.reason;
    assert!(
        reason.contains("went away 3 times") && reason.contains("CannotPullContainerError"),
        "{reason}"
    );
    let history = kinds(store, 2201).await;
    assert_eq!(history.iter().filter(|k| **k == "replaced").count(), 2);
    assert!(
        history.ends_with(&["task_stopped", "failed", "dead_lettered"]),
        "{history:?}"
    );

    // Once the image is fixed, `requeue` retries it: the count starts again.
    let plan = dockhand::dlq::plan(&*dlq, &requeue_of(2201)).await.unwrap();
    let summary = plan.execute(&env.app.queue, &dlq, None, |_, _| {}).await;
    assert_eq!((summary.moved, summary.failed), (1, 0));
    assert_eq!(next(&worker).await, Settled::Done(Outcome::Launched));
    assert_eq!(
        runner_of(store, 2201).await.runner_name,
        "dh-linux-x64-2201-4"
    );
    let p = pass(&reconciler).await;
    assert_eq!((p.stopped, p.replaced), (0, 0));
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_stuck_pending_is_stopped_and_replaced(#[case] backend: Backend) {
    let env = Env::with(QueueChoice::Embedded, backend, with_lifecycle).await;
    let worker = env.worker().await;
    let reconciler = reconciler(&worker, lifecycle());
    let runner = launched(&env, &worker, 2301).await;
    let task = runner.task_arn.clone().unwrap();
    // Pending for 9 minutes: within the 10-minute timeout, left alone.
    env.proxy.patch_task(
        &task,
        json!({"lastStatus": "PENDING", "createdAt": minutes_ago(9)}),
    );
    let p = pass(&reconciler).await;
    assert_eq!((p.reaped, p.replaced), (0, 0), "{p:?}");
    assert!(stop_calls(&env).is_empty());
    // Pending for 11 minutes: stopped, its registration removed, and the job replaced.
    env.proxy
        .patch_task(&task, json!({"createdAt": minutes_ago(11)}));
    let p = pass(&reconciler).await;
    assert_eq!((p.reaped, p.replaced), (1, 1), "{p:?}");
    let stops = stop_calls(&env);
    assert_eq!(stops.len(), 1);
    assert_eq!(stops[0].0, task);
    assert!(
        stops[0]
            .1
            .contains("still PENDING after lifecycle.pending_timeout (10m)"),
        "{}",
        stops[0].1
    );
    assert_eq!(status_in_ecs(&env, &task).await, "STOPPED");
    assert!(
        env.github
            .runners()
            .iter()
            .all(|r| r.name != runner.runner_name)
    );
    assert_eq!(next(&worker).await, Settled::Done(Outcome::Launched));
    let store = worker.store();
    assert_eq!(
        runner_of(store, 2301).await.runner_name,
        "dh-linux-x64-2301-2"
    );
    let history = kinds(store, 2301).await;
    assert!(
        history.ends_with(&[
            "reaped",
            "task_stopped",
            "replaced",
            "claimed",
            "registered",
            "launched"
        ]),
        "{history:?}"
    );
    let replaced = &entries(store, 2301, EventKind::Replaced).await[0];
    assert_eq!(replaced["why"], "pending_timeout");
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_runners_frees_its_slots_when_ghosts_are_found(#[case] backend: Backend) {
    let env = Env::with(QueueChoice::Embedded, backend, |s| {
        with_lifecycle(s);
        s.pools[0].max_runners = 1;
    })
    .await;
    let worker = env.worker().await;
    let reconciler = reconciler(&worker, lifecycle());
    let store = worker.store();
    let ghost = launched(&env, &worker, 2401).await;
    // Job 2401 is cancelled before its runner came up; then its task dies.
    env.app
        .deliver(Delivery::signed(event_on("completed", 2401, None)))
        .await;
    assert_eq!(next(&worker).await, Settled::Done(Outcome::Tracked));
    stop_in_ecs(
        &env,
        ghost.task_arn.as_ref().unwrap(),
        "Task failed ELB health checks",
    )
    .await;
    // The ghost still holds the pool's only slot: the next job waits.
    env.app.deliver(Delivery::signed(queued_job(2402))).await;
    assert!(matches!(next(&worker).await, Settled::Deferred(_)));
    assert_eq!(store.live_runners("linux-x64").await.unwrap(), 1);

    let p = pass(&reconciler).await;
    assert_eq!(
        (p.stopped, p.replaced),
        (1, 0),
        "a cancelled job is not replaced: {p:?}"
    );
    assert_eq!(store.live_runners("linux-x64").await.unwrap(), 0);
    assert_eq!(next(&worker).await, Settled::Done(Outcome::Launched));
    assert_eq!(runner_of(store, 2402).await.state, RunnerState::Launched);
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_dying_after_its_job_ran_elsewhere_is_still_replaced(#[case] backend: Backend) {
    let env = Env::with(QueueChoice::Embedded, backend, with_lifecycle).await;
    let worker = env.worker().await;
    let reconciler = reconciler(&worker, lifecycle());
    let store = worker.store();
    let a = launched(&env, &worker, 2501).await;
    let b = launched(&env, &worker, 2502).await;
    // GitHub gives job 2501 to 2502's runner; then 2501's own runner dies unused. Job 2502
    // now waits for a runner: the pool is one short, and 2501 still owes it one.
    env.app
        .deliver(Delivery::signed(event_on(
            "in_progress",
            2501,
            Some(&b.runner_name),
        )))
        .await;
    assert_eq!(next(&worker).await, Settled::Done(Outcome::Tracked));
    dies_before_registering(&env, a.task_arn.as_ref().unwrap()).await;
    let p = pass(&reconciler).await;
    assert_eq!((p.stopped, p.replaced), (1, 1), "{p:?}");
    assert_eq!(next(&worker).await, Settled::Done(Outcome::Launched));
    assert_eq!(
        runner_of(store, 2501).await.runner_name,
        "dh-linux-x64-2501-2"
    );
    // A job cancelled before any runner took it owes nothing: its dead runner is not
    // replaced.
    let c = launched(&env, &worker, 2503).await;
    env.app
        .deliver(Delivery::signed(event_on("completed", 2503, None)))
        .await;
    assert_eq!(next(&worker).await, Settled::Done(Outcome::Tracked));
    dies_before_registering(&env, c.task_arn.as_ref().unwrap()).await;
    let p = pass(&reconciler).await;
    assert_eq!((p.stopped, p.replaced), (1, 0), "{p:?}");
    assert_eq!(env.proxy.run_task_calls().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_registration_delete_neither_delays_the_replacement_nor_leaks_it() {
    let env = Env::with(QueueChoice::Embedded, Backend::Sqlite, with_lifecycle).await;
    let worker = env.worker().await;
    let reconciler = reconciler(&worker, lifecycle());
    let dead = launched(&env, &worker, 2601).await;
    // The first sweep (nothing to find) is out of the way.
    assert!(pass(&reconciler).await.swept);
    dies_before_registering(&env, dead.task_arn.as_ref().unwrap()).await;
    env.github.fail_next(
        Endpoint::DeleteRunner,
        crate::common::fake_github::Failure::Status(502),
    );
    let p = pass(&reconciler).await;
    assert_eq!((p.stopped, p.replaced), (1, 1), "{p:?}");
    assert!(
        env.github
            .runners()
            .iter()
            .any(|r| r.name == dead.runner_name)
    );
    assert_eq!(next(&worker).await, Settled::Done(Outcome::Launched));
    // The next sweep (a new reconciler sweeps on its first pass) removes the registration
    // the store shows done.
    let p = pass(&super::reconciler(&worker, lifecycle())).await;
    assert!(p.swept);
    assert!(
        env.github
            .runners()
            .iter()
            .all(|r| r.name != dead.runner_name)
    );
}
