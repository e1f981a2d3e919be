//! The orphan sweep: registrations and tasks nobody accounts for, found by paging through
//! everything, and removed; what the store knows is live is left alone.

use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, LaunchType, NetworkConfiguration, Tag,
};
use serde_json::json;

use super::*;
use crate::common::fake_github::Endpoint;
use crate::common::stores::Backend;
use crate::worker::QueueChoice;
use dockhand::github::RunnerTarget;
use rstest::rstest;

/// More than one DescribeTasks batch, and more than one ListTasks page.
const ORPHAN_TASKS: usize = 105;

/// Starts a task in moto tagged as dockhand's, for a runner the store never heard of, as
/// a worker that crashed before recording anything (and whose store was since pruned)
/// would leave; ECS reports it created 20 minutes ago.
async fn orphan_task(env: &Env, name: &str) -> String {
    let network = AwsVpcConfiguration::builder()
        .subnets(&env.ecs.network.subnet)
        .security_groups(&env.ecs.network.security_group)
        .assign_public_ip(AssignPublicIp::Disabled)
        .build()
        .unwrap();
    let out = env
        .ecs
        .client
        .run_task()
        .cluster(&env.ecs.cluster)
        .task_definition(&env.ecs.task_definition)
        .launch_type(LaunchType::Fargate)
        .network_configuration(
            NetworkConfiguration::builder()
                .awsvpc_configuration(network)
                .build(),
        )
        .tags(Tag::builder().key("dockhand:runner").value(name).build())
        .tags(
            Tag::builder()
                .key("dockhand:pool")
                .value("linux-x64")
                .build(),
        )
        .send()
        .await
        .expect("RunTask on moto");
    let arn = out.tasks()[0].task_arn().unwrap().to_string();
    env.proxy
        .patch_task(&arn, json!({"createdAt": minutes_ago(20)}));
    arn
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphaned_registrations_and_tasks_are_cleaned_up_across_pages(#[case] backend: Backend) {
    let env = Env::with(QueueChoice::Embedded, backend, with_lifecycle).await;
    let worker = env.worker().await;
    let reconciler = reconciler(&worker, lifecycle());
    // A live runner, which stays; its task is young, and the store knows it.
    let live = launched(&env, &worker, 5101).await;
    env.proxy.patch_task(
        live.task_arn.as_ref().unwrap(),
        json!({"createdAt": minutes_ago(20)}),
    );
    // A finished job's runner whose task outlived it.
    let finished = launched(&env, &worker, 5102).await;
    for action in ["in_progress", "completed"] {
        env.app
            .deliver(Delivery::signed(crate::worker::owed::event_on(
                action,
                5102,
                Some(&finished.runner_name),
            )))
            .await;
        assert_eq!(next(&worker).await, Settled::Done(Outcome::Tracked));
    }
    env.proxy.patch_task(
        finished.task_arn.as_ref().unwrap(),
        json!({"createdAt": minutes_ago(20)}),
    );
    let mut orphans = Vec::new();
    for i in 0..ORPHAN_TASKS {
        orphans.push(orphan_task(&env, &format!("dh-linux-x64-{}-1", 90_000 + i)).await);
    }
    // A tagged task younger than the grace period: a launch may be recording it.
    let young = orphan_task(&env, "dh-linux-x64-99999-1").await;
    env.proxy
        .patch_task(&young, json!({"createdAt": minutes_ago(1)}));
    // Registrations: two stale ones of ours, offline; one busy; a stranger's.
    let org = RunnerTarget::Org("octo-org".into());
    env.github
        .register_runner(&org, "dh-linux-x64-88001-1", false);
    env.github
        .register_runner(&org, "dh-linux-x64-88002-3", false);
    env.github
        .register_runner(&org, "dh-linux-x64-88003-1", true);
    env.github
        .register_runner(&org, "someone-elses-runner", false);
    env.proxy.page_list_tasks(40);

    let p = pass(&reconciler).await;
    assert!(p.swept);
    // 105 orphans and the finished runner's task; two stale registrations and the
    // finished runner's (the fake GitHub, unlike GitHub, keeps it after its job).
    assert_eq!(p.reaped, ORPHAN_TASKS + 1 + 3, "{p:?}");
    // Tasks: every orphan and the finished runner's task stopped; the live and young kept.
    for arn in orphans.iter().chain([finished.task_arn.as_ref().unwrap()]) {
        assert_eq!(status_in_ecs(&env, arn).await, "STOPPED", "{arn}");
    }
    assert_eq!(
        status_in_ecs(&env, live.task_arn.as_ref().unwrap()).await,
        "RUNNING"
    );
    assert_eq!(status_in_ecs(&env, &young).await, "RUNNING");
    let calls = env.proxy.calls();
    let list_pages = calls
        .iter()
        .filter(|c| c.operation == "ListTasks" && c.request["desiredStatus"] == "RUNNING")
        .count();
    assert!(
        list_pages >= 3,
        "{} tasks at 40 a page: {list_pages} pages",
        ORPHAN_TASKS + 3
    );
    let describes: Vec<usize> = calls
        .iter()
        .filter(|c| c.operation == "DescribeTasks" && c.request["include"][0] == "TAGS")
        .map(|c| c.request["tasks"].as_array().unwrap().len())
        .collect();
    assert_eq!(describes, [100, ORPHAN_TASKS + 3 - 100]);
    assert!(
        calls.iter().all(|c| !c.injected),
        "no request broke ECS's rules"
    );
    // Registrations: the stale ones deleted; the live runner's, the busy one and the
    // stranger's kept.
    let names: Vec<String> = env.github.runners().into_iter().map(|r| r.name).collect();
    assert!(names.contains(&live.runner_name));
    assert!(names.contains(&"dh-linux-x64-88003-1".to_string()));
    assert!(names.contains(&"someone-elses-runner".to_string()));
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("dh-linux-x64-8800") && !n.ends_with("88003-1"))
    );
    assert!(!names.contains(&finished.runner_name));
    let lists = env.github.requests_to(Endpoint::ListRunners);
    assert!(
        lists
            .iter()
            .any(|r| r.path == "/orgs/octo-org/actions/runners"),
        "{lists:?}"
    );
    let rendered = dockhand::metrics::install().render();
    assert_eq!(
        sample(&rendered, r#"dockhand_orphans_found_total{kind="task"}"#),
        Some((ORPHAN_TASKS + 1) as f64)
    );
    assert_eq!(
        sample(
            &rendered,
            r#"dockhand_orphans_found_total{kind="registration"}"#
        ),
        Some(3.0)
    );
    let reaped = entries(worker.store(), 5102, EventKind::Reaped).await;
    assert_eq!(reaped[0]["reason"], "orphan");

    // The next sweep waits for the orphan interval.
    let p = pass(&reconciler).await;
    assert!(!p.swept);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_goes_on_past_an_organisation_the_app_was_removed_from() {
    let env = Env::with(QueueChoice::Embedded, Backend::Sqlite, with_lifecycle).await;
    let worker = env.worker().await;
    let reconciler = reconciler(&worker, lifecycle());
    // Recent jobs in two organisations; then the App is uninstalled from the first.
    launched(&env, &worker, 5201).await;
    let elsewhere = dockhand::synthetic::workflow_job_payload(&dockhand::synthetic::SyntheticJob {
        job_id: 5202,
        labels: vec!["self-hosted".into(), "linux".into()],
        repo: "acme/app".into(),
        installation_id: None,
        ..Default::default()
    });
    env.app
        .deliver(Delivery::signed(elsewhere.to_string().into_bytes()))
        .await;
    assert_eq!(next(&worker).await, Settled::Done(Outcome::Launched));
    env.github.uninstall("octo-org");
    let stale = env.github.register_runner(
        &RunnerTarget::Org("acme".into()),
        "dh-linux-x64-77001-1",
        false,
    );

    let p = reconciler
        .pass()
        .await
        .expect("a target GitHub no longer shows fails nothing");
    assert!(p.swept, "{p:?}");
    assert!(
        env.github.runners().iter().all(|r| r.id != stale),
        "acme's stale registration is deleted"
    );
}
