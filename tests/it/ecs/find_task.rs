//! Finding a job's task again after a crash, through a proxy that holds moto to ECS's
//! rules: ListTasks takes `startedBy` only as its sole filter, DescribeTasks at most 100
//! tasks a call, and ECS answers ListTasks in pages.

use super::*;

/// The ListTasks requests the proxy saw.
fn list_tasks_requests(proxy: &FaultyEcs) -> Vec<serde_json::Value> {
    proxy
        .calls()
        .into_iter()
        .filter(|c| c.operation == "ListTasks")
        .map(|c| c.request)
        .collect()
}

#[tokio::test]
async fn find_task_finds_the_live_task_by_started_by_and_ignores_stopped_ones() {
    let moto = MotoEcs::setup().await;
    let proxy = FaultyEcs::start().await;
    let ecs = moto.launch_settings();
    let job = Job::new();
    let launcher = launcher_through(&proxy).await;
    let first = launcher.run_task(&job.spec(&ecs)).await.unwrap();

    assert_eq!(
        launcher
            .find_task(&moto.cluster, &job.started_by)
            .await
            .unwrap(),
        Some(first.arn.clone())
    );
    assert_eq!(
        launcher
            .find_task(&moto.cluster, "dockhand/job/0")
            .await
            .unwrap(),
        None
    );

    launcher
        .stop_task(&moto.cluster, &first.arn, "job cancelled")
        .await
        .unwrap();
    let stopped = moto.describe(&first.arn.0).await;
    assert_eq!(stopped.last_status(), Some("STOPPED"));
    assert_eq!(stopped.stopped_reason(), Some("job cancelled"));
    assert_eq!(
        launcher
            .find_task(&moto.cluster, &job.started_by)
            .await
            .unwrap(),
        None
    );

    let second = launcher.run_task(&job.spec(&ecs)).await.unwrap();
    assert_eq!(
        launcher
            .find_task(&moto.cluster, &job.started_by)
            .await
            .unwrap(),
        Some(second.arn.clone())
    );
    assert_eq!(moto.task_arns().await.len(), 2);
}

#[tokio::test]
async fn find_task_sends_started_by_as_the_only_list_tasks_filter() {
    let moto = MotoEcs::setup().await;
    let proxy = FaultyEcs::start().await;
    let job = Job::new();
    let launcher = launcher_through(&proxy).await;
    let launched = launcher
        .run_task(&job.spec(&moto.launch_settings()))
        .await
        .unwrap();

    let found = launcher.find_task(&moto.cluster, &job.started_by).await;

    let requests = list_tasks_requests(&proxy);
    assert_eq!(
        requests,
        [serde_json::json!({"cluster": moto.cluster, "startedBy": job.started_by})],
        "cluster names where to look; startedBy is the one filter"
    );
    assert_eq!(found.unwrap(), Some(launched.arn));
}

#[tokio::test]
async fn find_task_reads_every_page_of_list_tasks() {
    let moto = MotoEcs::setup().await;
    let proxy = FaultyEcs::start().await;
    proxy.page_list_tasks(1);
    let job = Job::new();
    let launcher = launcher_through(&proxy).await;
    let ecs = moto.launch_settings();
    // The first page lists a stopped task (ECS lists one for a while); the live one is on
    // the second.
    let stopped = launcher.run_task(&job.spec(&ecs)).await.unwrap();
    launcher
        .stop_task(&moto.cluster, &stopped.arn, "spot interruption")
        .await
        .unwrap();
    let live = launcher.run_task(&job.spec(&ecs)).await.unwrap();

    let found = launcher
        .find_task(&moto.cluster, &job.started_by)
        .await
        .unwrap();

    assert_eq!(found, Some(live.arn));
    let tokens: Vec<_> = list_tasks_requests(&proxy)
        .iter()
        .map(|r| r["nextToken"].as_str().map(String::from))
        .collect();
    assert_eq!(tokens, [None, Some("1".to_string())]);
}

#[tokio::test]
async fn find_task_describes_at_most_100_tasks_a_call() {
    let moto = MotoEcs::setup().await;
    let proxy = FaultyEcs::start().await;
    let job = Job::new();
    let ecs = moto.launch_settings();
    // Straight to moto: the proxy would record every RunTask.
    let direct = launcher().await;
    let mut launched = Vec::new();
    for _ in 0..101 {
        launched.push(direct.run_task(&job.spec(&ecs)).await.unwrap().arn);
    }

    let found = launcher_through(&proxy)
        .await
        .find_task(&moto.cluster, &job.started_by)
        .await
        .unwrap();

    assert!(
        found.as_ref().is_some_and(|arn| launched.contains(arn)),
        "{found:?}"
    );
    let described: Vec<usize> = proxy
        .calls()
        .into_iter()
        .filter(|c| c.operation == "DescribeTasks")
        .map(|c| c.request["tasks"].as_array().map_or(0, Vec::len))
        .collect();
    assert_eq!(described, [100, 1]);
}
