//! An attempt that stops half-way keeps what it did on record until its clean-up is
//! confirmed: the next attempt adopts its task, or removes its registration, and never
//! launches beside it or leaves it behind.

use std::time::Duration;

use super::{Env, QueueChoice, next, spot_then_fargate};
use crate::common::fake_github::{Endpoint, Failure};
use crate::common::moto_ecs::faults::FARGATE_NO_CAPACITY;
use crate::common::process::eventually;
use crate::common::stores::Backend;
use crate::common::*;
use dockhand::domain::JobId;
use dockhand::store::LaunchState;
use dockhand::worker::Step;
use dockhand::worker::outcome::{Deferral, Outcome, Settled};
use rstest::rstest;

/// Makes the store refuse to record any task ARN for a job, as an unavailable database
/// would, until [`allow_task_arns`].
async fn refuse_task_arns(env: &Env, backend: Backend) {
    let db = sqlx::AnyPool::connect(&env._store.settings.url)
        .await
        .unwrap();
    let statements: &[&str] = match backend {
        Backend::Sqlite => &[
            "CREATE TRIGGER refuse_task_arn BEFORE UPDATE OF task_arn ON jobs
              WHEN NEW.task_arn IS NOT NULL
              BEGIN SELECT RAISE(ABORT, 'injected: the store is unavailable'); END",
        ],
        Backend::Postgres => &[
            "CREATE FUNCTION refuse_task_arn() RETURNS trigger AS $$
              BEGIN RAISE EXCEPTION 'injected: the store is unavailable'; END $$
              LANGUAGE plpgsql",
            "CREATE TRIGGER refuse_task_arn BEFORE UPDATE ON jobs FOR EACH ROW
              WHEN (NEW.task_arn IS NOT NULL) EXECUTE FUNCTION refuse_task_arn()",
        ],
    };
    for statement in statements {
        sqlx::raw_sql(sqlx::AssertSqlSafe(*statement))
            .execute(&db)
            .await
            .unwrap();
    }
}

async fn allow_task_arns(env: &Env, backend: Backend) {
    let db = sqlx::AnyPool::connect(&env._store.settings.url)
        .await
        .unwrap();
    let drop = match backend {
        Backend::Sqlite => "DROP TRIGGER refuse_task_arn",
        Backend::Postgres => "DROP TRIGGER refuse_task_arn ON jobs",
    };
    sqlx::raw_sql(drop).execute(&db).await.unwrap();
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_whose_arn_could_not_be_recorded_is_adopted_not_launched_again(
    #[case] backend: Backend,
) {
    let env = Env::new(QueueChoice::Embedded, backend).await;
    let worker = env.worker().await;
    refuse_task_arns(&env, backend).await;
    env.app.deliver(Delivery::signed(queued_job(1401))).await;
    let settled = next(&worker).await;
    assert!(
        matches!(settled, Settled::Deferred(Deferral::Error(_))),
        "{settled:?}"
    );
    assert_eq!(env.ecs.task_arns().await.len(), 1, "RunTask succeeded");

    allow_task_arns(&env, backend).await;
    let settled = drain_workers(&[&worker]).await;
    assert_eq!(count_done(&settled, Outcome::Adopted), 1, "{settled:?}");
    assert_eq!(env.ecs.task_arns().await.len(), 1, "no second task");
    assert_eq!(env.github.count(Endpoint::JitConfig), 1);
    assert_eq!(env.github.count(Endpoint::DeleteRunner), 0);
    let job = worker.store().job(JobId(1401)).await.unwrap().unwrap();
    assert_eq!(job.launch, LaunchState::Adopted);
    assert_eq!(job.task_arn, Some(env.ecs.task_arns().await[0].clone()));
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_task_that_never_answered_keeps_its_registration_and_its_task_is_adopted(
    #[case] backend: Backend,
) {
    let env = Env::with(QueueChoice::Embedded, backend, |s| {
        s.aws.operation_timeout = Duration::from_secs(2)
    })
    .await;
    let worker = env.worker().await;
    // ECS starts the task, but its answer never comes: the call times out.
    env.proxy.hold_run_task(true);
    env.app.deliver(Delivery::signed(queued_job(1402))).await;
    let settled = next(&worker).await;
    assert!(
        matches!(settled, Settled::Deferred(Deferral::Error(_))),
        "{settled:?}"
    );
    assert_eq!(
        env.github.count(Endpoint::DeleteRunner),
        0,
        "the task may exist: its registration stays"
    );

    let settled = drain_workers(&[&worker]).await;
    assert_eq!(count_done(&settled, Outcome::Adopted), 1, "{settled:?}");
    assert_eq!(env.ecs.task_arns().await.len(), 1);
    assert_eq!(env.github.count(Endpoint::JitConfig), 1);
    assert_eq!(env.github.runners().len(), 1);
    env.proxy.release_run_task();
}

/// Found by the chaos soak (issue 13): RunTask started the task but its answer was lost;
/// before the retry, the task came up, its runner took another job, ran it and left, so
/// neither ECS (no live task) nor GitHub (no registration) shows it any more. The store
/// saw the runner run a job: the launch happened, and a second would be one runner too many.
#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launch_whose_runner_already_ran_a_job_is_not_launched_again(#[case] backend: Backend) {
    let env = Env::with(QueueChoice::Embedded, backend, |s| {
        s.aws.operation_timeout = Duration::from_secs(2);
        // The retry comes back only after the runner's events are processed.
        s.worker.backoff_base = Duration::from_secs(5);
        s.worker.backoff_max = Duration::from_secs(5);
    })
    .await;
    let worker = env.worker().await;
    env.proxy.hold_run_task(true);
    env.app.deliver(Delivery::signed(queued_job(1406))).await;
    let settled = next(&worker).await;
    assert!(
        matches!(settled, Settled::Deferred(Deferral::Error(_))),
        "{settled:?}"
    );
    let runner = env.github.runners().remove(0);
    // Its runner takes job 1407 (GitHub gives any queued job to any idle runner), runs it,
    // and leaves; its task exits.
    for action in ["in_progress", "completed"] {
        let body = super::owed::event_on(action, 1407, Some(&runner.name));
        env.app.deliver(Delivery::signed(body)).await;
        assert_eq!(next(&worker).await, Settled::Done(Outcome::Tracked));
    }
    env.github.forget_runner(runner.id);
    let arns = env.ecs.task_arns().await;
    assert_eq!(arns.len(), 1, "RunTask started the task");
    env.ecs
        .client
        .stop_task()
        .cluster(&env.ecs.cluster)
        .task(&arns[0])
        .send()
        .await
        .unwrap();

    let settled = drain_workers(&[&worker]).await;
    assert_eq!(count_done(&settled, Outcome::Adopted), 1, "{settled:?}");
    assert_eq!(
        env.github.count(Endpoint::JitConfig),
        1,
        "no second registration"
    );
    assert_eq!(env.ecs.task_arns().await.len(), 1, "no second task");
    let job = worker.store().job(JobId(1406)).await.unwrap().unwrap();
    assert_eq!(job.launch, LaunchState::Adopted);
    assert_eq!(job.runner_name.as_deref(), Some(runner.name.as_str()));
    // The runner ran its job and left: it holds none of the pool's `max_runners` slots.
    let store = worker.store();
    assert_eq!(store.live_runners("linux-x64").await.unwrap(), 0);
    let record = store.runners().await.unwrap().remove(0);
    assert_eq!(
        (record.state, record.ran_job_id),
        (dockhand::store::RunnerState::Finished, Some(JobId(1407)))
    );
    env.proxy.release_run_task();
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_take_over_whose_task_lookup_failed_keeps_the_evidence_and_removes_it_next_time(
    #[case] backend: Backend,
) {
    let env = Env::new(QueueChoice::Embedded, backend).await;
    // Worker A registers a runner, then dies in RunTask (which never reaches ECS).
    env.crash_in_run_task(1403, false).await;

    // B takes over once A's lease has expired (it may first find it held, by a few ms),
    // but ECS fails the lookup for A's task.
    env.proxy.fail_list_tasks(true);
    let b = env.worker().await;
    let settled = loop {
        match next(&b).await {
            Settled::Deferred(Deferral::Held(_)) => continue,
            other => break other,
        }
    };
    assert!(
        matches!(settled, Settled::Deferred(Deferral::Error(_))),
        "{settled:?}"
    );
    assert_eq!(
        env.github.runners().len(),
        1,
        "A's registration is still there"
    );

    env.proxy.fail_list_tasks(false);
    let settled = drain_workers(&[&b]).await;
    assert_eq!(count_done(&settled, Outcome::Launched), 1, "{settled:?}");
    let runners = env.github.runners();
    assert_eq!(
        runners.len(),
        1,
        "A's registration was removed: {runners:?}"
    );
    assert_eq!(runners[0].name, "dh-linux-x64-1403-3");
    assert_eq!(env.ecs.task_arns().await.len(), 1);
    env.proxy.release_run_task();
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_whose_jit_answer_timed_out_is_removed_by_the_next_attempt(
    #[case] backend: Backend,
) {
    let env = Env::with(QueueChoice::Embedded, backend, |s| {
        s.github.request_timeout = Duration::from_secs(1)
    })
    .await;
    let worker = env.worker().await;
    // GitHub registers the runner, but answers after the call gave up.
    env.github
        .set_delay(Endpoint::JitConfig, Duration::from_secs(2));
    env.app.deliver(Delivery::signed(queued_job(1404))).await;
    let settled = next(&worker).await;
    assert!(
        matches!(settled, Settled::Deferred(Deferral::Error(_))),
        "{settled:?}"
    );

    env.github.set_delay(Endpoint::JitConfig, Duration::ZERO);
    let settled = drain_workers(&[&worker]).await;
    assert_eq!(count_done(&settled, Outcome::Launched), 1, "{settled:?}");
    let runners = env.github.runners();
    assert_eq!(
        runners.len(),
        1,
        "the first registration was removed: {runners:?}"
    );
    assert_eq!(runners[0].name, "dh-linux-x64-1404-2");
    assert_eq!(env.ecs.task_arns().await.len(), 1);
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_that_could_not_be_deleted_is_removed_by_the_next_attempt(
    #[case] backend: Backend,
) {
    let env = Env::with(QueueChoice::Embedded, backend, spot_then_fargate).await;
    let worker = env.worker().await;
    env.proxy
        .fail_run_task_on("FARGATE_SPOT", FARGATE_NO_CAPACITY);
    env.proxy.fail_run_task_on("FARGATE", FARGATE_NO_CAPACITY);
    env.github
        .fail_next(Endpoint::DeleteRunner, Failure::Status(502));
    env.app.deliver(Delivery::signed(queued_job(1405))).await;
    assert_eq!(next(&worker).await, Settled::Deferred(Deferral::Capacity));
    assert_eq!(env.github.runners().len(), 1, "its deletion failed");

    env.proxy.clear_faults();
    let settled = drain_workers(&[&worker]).await;
    assert_eq!(count_done(&settled, Outcome::Launched), 1, "{settled:?}");
    let runners = env.github.runners();
    assert_eq!(
        runners.len(),
        1,
        "the first registration was removed: {runners:?}"
    );
    assert_eq!(runners[0].name, "dh-linux-x64-1405-2");
    assert_eq!(env.ecs.task_arns().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visibility_change_that_hangs_does_not_let_the_lease_lapse() {
    let env = Env::new(QueueChoice::Embedded, Backend::Sqlite).await;
    env.github
        .set_delay(Endpoint::JitConfig, Duration::from_secs(3));
    let queue = crate::common::gated_queue::GatedQueue::new(env.app.queue.clone());
    let a = dockhand::startup::build_worker(&env.settings, std::sync::Arc::new(queue.clone()))
        .await
        .unwrap();
    env.app.deliver(Delivery::signed(queued_job(1701))).await;
    let launching = tokio::spawn(async move { a.process_next().await.unwrap() });
    eventually("the JIT call", Duration::from_secs(10), || async {
        (env.github.count(Endpoint::JitConfig) == 1).then_some(())
    })
    .await;
    // A's heartbeat sends a visibility change that hangs (a slow queue) for twice the lease.
    queue.arm();
    queue.wait_until_holding().await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Another worker sees the job (its message, visible again, and a redelivery): A's lease
    // is alive, so it waits.
    env.app.deliver(Delivery::signed(queued_job(1701))).await;
    let b = env.worker().await;
    let Step::Processed(settled) = b.process_next().await.unwrap() else {
        panic!("B received nothing")
    };
    assert!(
        settled
            .iter()
            .all(|s| matches!(s, Settled::Deferred(Deferral::Held(_)))),
        "{settled:?}"
    );

    queue.open();
    assert_eq!(
        launching.await.unwrap(),
        Step::Processed(vec![Settled::Done(Outcome::Launched)])
    );
    assert_eq!(env.github.count(Endpoint::JitConfig), 1);
    assert_eq!(env.ecs.task_arns().await.len(), 1);
}
