//! ECS task state change events, as EventBridge puts them on the jobs queue, drive the
//! lifecycle at once: a worker that receives one acts on it without waiting for a pass.
//! Duplicates and events out of order change nothing twice.

use serde_json::{Value, json};

use super::*;
use crate::common::fake_github::Endpoint;
use crate::common::stores::Backend;
use crate::worker::QueueChoice;
use crate::worker::owed::event_on;
use dockhand::queue::OutgoingMessage;
use dockhand::store::{LaunchState, RunnerState};
use dockhand::worker::Step;
use rstest::rstest;

/// An "ECS Task State Change" event for `task` as EventBridge delivers it to SQS: the
/// shape of the ECS documentation's example, the JIT config in the overrides included.
pub(super) fn task_event(env: &Env, task: &str, last_status: &str, stop: Option<Value>) -> Value {
    let now = Utc::now();
    let mut detail = json!({
        "clusterArn": format!("arn:aws:ecs:us-east-1:123456789012:cluster/{}", env.ecs.cluster),
        "taskArn": task,
        "lastStatus": last_status,
        "desiredStatus": if last_status == "STOPPED" { "STOPPED" } else { "RUNNING" },
        "createdAt": (now - chrono::TimeDelta::seconds(40)).to_rfc3339(),
        "startedAt": (now - chrono::TimeDelta::seconds(30)).to_rfc3339(),
        "startedBy": "dockhand-job-0",
        "launchType": "FARGATE",
        "containers": [{"name": "runner", "lastStatus": last_status}],
        "overrides": {"containerOverrides": [{"name": "runner", "environment": [
            {"name": "ACTIONS_RUNNER_INPUT_JITCONFIG", "value": "bm90LWEtcmVhbC1qaXQ="}
        ]}]},
        "version": if last_status == "STOPPED" { 5 } else { 3 },
    });
    if let Some(stop) = stop {
        for (key, value) in stop.as_object().unwrap() {
            if key == "exitCode" {
                detail["containers"][0]["exitCode"] = value.clone();
            } else {
                detail[key] = value.clone();
            }
        }
        detail["stoppedAt"] = now.to_rfc3339().into();
    }
    json!({
        "version": "0",
        "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": "ECS Task State Change",
        "source": "aws.ecs",
        "account": "123456789012",
        "time": now.to_rfc3339(),
        "region": "us-east-1",
        "resources": [task],
        "detail": detail,
    })
}

/// Puts a message on the jobs queue as EventBridge does: the event as the body, no
/// attributes.
pub(super) async fn put_event(env: &Env, event: &Value) {
    env.app
        .queue
        .send(OutgoingMessage {
            body: event.to_string(),
            attributes: Default::default(),
            delay: std::time::Duration::ZERO,
        })
        .await
        .expect("sending an event to the queue");
}

/// Puts the STOPPED event of `runner`'s task, stopped as `stop` says, on the queue, and
/// has `worker` handle it.
pub(super) async fn stopped_by_event(
    env: &Env,
    worker: &Worker,
    runner: &RunnerRecord,
    stop: Value,
) {
    let task = runner.task_arn.as_deref().expect("a launched runner");
    put_event(env, &task_event(env, task, "STOPPED", Some(stop))).await;
    handle_event(worker).await;
}

/// Handles the one message on the queue: an event.
pub(super) async fn handle_event(worker: &Worker) {
    assert_eq!(next(worker).await, Settled::Done(Outcome::TaskEvent));
}

async fn task_status(store: &Store, task: &str) -> Option<String> {
    store
        .live_runner_by_task(task)
        .await
        .unwrap()
        .and_then(|r| r.task_status)
}

#[rstest]
#[case::sqs_postgres(QueueChoice::Sqs, Backend::Postgres)]
#[case::embedded_sqlite(QueueChoice::Embedded, Backend::Sqlite)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_events_record_running_and_replace_a_stopped_runner_without_a_pass(
    #[case] queue: QueueChoice,
    #[case] backend: Backend,
) {
    let env = Env::with(queue, backend, with_lifecycle).await;
    let worker = env.worker().await;
    let reconciler = reconciler(&worker, lifecycle());
    let first = launched(&env, &worker, 4101).await;
    let task = first.task_arn.clone().unwrap();
    let store = worker.store();

    put_event(&env, &task_event(&env, &task, "RUNNING", None)).await;
    handle_event(&worker).await;
    assert_eq!(task_status(store, &task).await.as_deref(), Some("RUNNING"));

    let died = task_event(
        &env,
        &task,
        "STOPPED",
        Some(json!({
            "stopCode": "EssentialContainerExited",
            "stoppedReason": "Essential container in task exited",
            "exitCode": 1,
        })),
    );
    stop_in_ecs(&env, &task, "Essential container in task exited").await;
    put_event(&env, &died).await;
    handle_event(&worker).await;
    // No pass ran: the event alone stopped the runner and replaced it.
    assert_eq!(runner_of(store, 4101).await.state, RunnerState::Stopped);
    assert_eq!(
        store.launch_state(JobId(4101)).await.unwrap(),
        Some(LaunchState::Owed)
    );
    assert_eq!(env.github.count(Endpoint::DeleteRunner), 1);
    let stopped = entries(store, 4101, EventKind::TaskStopped).await;
    assert_eq!(stopped.len(), 1);
    assert_eq!(stopped[0]["exit_code"], 1);
    assert_eq!(stopped[0]["stop_code"], "EssentialContainerExited");
    // The replacement is the next message, and launches like any job.
    assert_eq!(next(&worker).await, Settled::Done(Outcome::Launched));
    let second = runner_of(store, 4101).await;
    assert_ne!(second.runner_name, first.runner_name);

    // The same stop again, and the RUNNING event arriving late: nothing changes twice.
    put_event(&env, &died).await;
    handle_event(&worker).await;
    put_event(&env, &task_event(&env, &task, "RUNNING", None)).await;
    handle_event(&worker).await;
    assert_eq!(entries(store, 4101, EventKind::TaskStopped).await.len(), 1);
    assert_eq!(entries(store, 4101, EventKind::Replaced).await.len(), 1);
    assert_eq!(env.github.count(Endpoint::DeleteRunner), 1);
    assert_eq!(runner_of(store, 4101).await.runner_name, second.runner_name);
    assert!(matches!(worker.process_next().await.unwrap(), Step::Empty));
    // Nor does the pass that comes after: the first runner is no longer live.
    let p = pass(&reconciler).await;
    assert_eq!((p.described, p.stopped, p.replaced), (1, 0, 0), "{p:?}");
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_event_finishes_a_busy_runner_and_its_job_is_not_replaced(#[case] backend: Backend) {
    let env = Env::with(QueueChoice::Embedded, backend, with_lifecycle).await;
    let worker = env.worker().await;
    let _reconciler = reconciler(&worker, lifecycle());
    let runner = launched(&env, &worker, 4201).await;
    let task = runner.task_arn.clone().unwrap();
    env.app
        .deliver(Delivery::signed(event_on(
            "in_progress",
            4201,
            Some(&runner.runner_name),
        )))
        .await;
    assert_eq!(next(&worker).await, Settled::Done(Outcome::Tracked));
    let lost = json!({
        "stopCode": "EssentialContainerExited",
        "stoppedReason": "Essential container in task exited",
        "exitCode": 137,
    });
    put_event(&env, &task_event(&env, &task, "STOPPED", Some(lost))).await;
    handle_event(&worker).await;
    let store = worker.store();
    assert_eq!(runner_of(store, 4201).await.state, RunnerState::Finished);
    assert_eq!(store.live_runners("linux-x64").await.unwrap(), 0);
    let history = kinds(store, 4201).await;
    assert!(
        history.ends_with(&["started", "task_stopped", "runner_lost"]),
        "{history:?}"
    );
    assert_eq!(
        store.launch_state(JobId(4201)).await.unwrap(),
        Some(LaunchState::Launched),
        "a job that ran is not launched again"
    );
    assert_eq!(env.github.count(Endpoint::DeleteRunner), 0);
    assert!(matches!(worker.process_next().await.unwrap(), Step::Empty));
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_for_no_runner_are_dropped_and_other_events_dead_lettered(#[case] backend: Backend) {
    let env = Env::with(QueueChoice::Embedded, backend, with_lifecycle).await;
    let worker = env.worker().await;
    let _reconciler = reconciler(&worker, lifecycle());
    // Another deployment's task, or one handled and forgotten: acknowledged, nothing done.
    let stranger = "arn:aws:ecs:us-east-1:123456789012:task/other/0123456789abcdef";
    put_event(&env, &task_event(&env, stranger, "STOPPED", None)).await;
    handle_event(&worker).await;
    assert!(env.github.requests().iter().all(|r| r.method != "DELETE"));
    // An event dockhand does not read is a configuration mistake: dead-lettered with why.
    let mut other = task_event(&env, stranger, "RUNNING", None);
    other["detail-type"] = "ECS Container Instance State Change".into();
    put_event(&env, &other).await;
    match next(&worker).await {
        Settled::Failed(reason) => assert!(
            reason.contains("ECS Container Instance State Change"),
            "{reason}"
        ),
        other => panic!("dead-lettered, not {other:?}"),
    }
    let dlq = env.app.queue.dead_letter_queue().await.unwrap().unwrap();
    let dead = crate::common::drain(&*dlq).await;
    let [message] = &dead[..] else {
        panic!("one dead-lettered message, got {}", dead.len());
    };
    assert_eq!(message.body, other.to_string(), "the event, as it came");
}
