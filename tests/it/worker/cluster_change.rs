//! A pool's cluster changes (a reload, or a restart with a new file) while a launch into the
//! old one is interrupted: the take-over looks for the task where it was launched.

use super::*;
use crate::common::moto_ecs::create_cluster;

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_launched_before_its_pool_moved_to_another_cluster_is_adopted_from_the_first(
    #[case] backend: Backend,
) {
    let env = Env::new(QueueChoice::Embedded, backend).await;
    env.proxy.hold_run_task(true);
    env.app.deliver(Delivery::signed(queued_job(558))).await;

    // Worker A launches into the pool's cluster and is killed inside RunTask.
    let a = env.worker().await;
    let crashed = tokio::spawn(async move { a.process_next().await });
    env.proxy.wait_for_held_run_task().await;
    crashed.abort();
    let _ = crashed.await;
    let tasks = env.ecs.task_arns().await;
    assert_eq!(tasks.len(), 1, "the task reached ECS");

    // Worker B serves the same pool, now in another cluster.
    let other = create_cluster(&env.ecs.client).await;
    let mut moved = env.settings.clone();
    moved.pools[0].ecs.as_mut().unwrap().cluster = other.clone();
    let b = dockhand::startup::build_worker(&moved, env.app.queue.clone())
        .await
        .expect("building a worker");
    let outcomes = drain(&[&b]).await;

    assert!(
        outcomes.contains(&Settled::Done(Outcome::Adopted)),
        "{outcomes:?}"
    );
    let looked_in: Vec<_> = env
        .proxy
        .calls()
        .into_iter()
        .filter(|c| c.operation == "ListTasks")
        .map(|c| {
            c.request["cluster"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_eq!(looked_in, [env.ecs.cluster.as_str()]);
    assert_eq!(env.ecs.task_arns().await, tasks, "no second task");
    let in_other = env
        .ecs
        .client
        .list_tasks()
        .cluster(&other)
        .send()
        .await
        .unwrap()
        .task_arns
        .unwrap_or_default();
    assert!(in_other.is_empty(), "{in_other:?}");
    assert_eq!(env.github.count(Endpoint::JitConfig), 1);
    let runners = env.github.runners();
    assert_eq!(runners.len(), 1);
    assert_eq!(
        runners[0].name, "dh-linux-x64-558-1",
        "the task's runner is kept"
    );
    let job = b.store().job(JobId(558)).await.unwrap().unwrap();
    assert_eq!(job.launch, LaunchState::Adopted);
    assert_eq!(job.task_arn.as_deref(), Some(tasks[0].as_str()));
    assert_eq!(job.cluster.as_deref(), Some(env.ecs.cluster.as_str()));
    env.proxy.release_run_task();
}
