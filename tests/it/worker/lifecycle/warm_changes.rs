//! Warm pools changed while running: a config reload that lowers or raises `min_idle`,
//! and the orphan sweep over the pools' warm targets.

use serde_json::json;

use super::warm::{warm, warm_env, warm_runners};
use super::*;
use crate::common::stores::Backend;
use dockhand::pool::{LivePools, Pools};
use dockhand::store::RunnerState;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_lowers_min_idle_removes_the_surplus_after_idle_timeout() {
    let env = warm_env(Backend::Sqlite, warm(2)).await;
    let (updater, pools) = LivePools::new(Pools::from_settings(&env.settings.pools));
    let worker = dockhand::startup::build_worker_with(&env.settings, env.app.queue.clone(), pools)
        .await
        .expect("building a worker");
    let reconciler = reconciler(&worker, lifecycle());
    assert_eq!(pass(&reconciler).await.warmed, 2);

    // Down to 1: one runner is surplus, removed once idle past the idle timeout.
    let mut lowered = env.settings.pools.clone();
    lowered[0].min_idle = 1;
    updater.replace(Pools::from_settings(&lowered));
    let warm = warm_runners(worker.store()).await;
    for (runner, minutes) in warm.iter().zip([7, 6]) {
        env.proxy.patch_task(
            runner.task_arn.as_ref().unwrap(),
            json!({"startedAt": minutes_ago(minutes)}),
        );
    }
    let p = pass(&reconciler).await;
    assert_eq!((p.reaped, p.warmed), (1, 0), "{p:?}");
    // The oldest idle runner went; the other stays.
    let runners = env.github.runners();
    assert_eq!(runners.len(), 1);
    assert_eq!(runners[0].name, warm[1].runner_name);
    assert_eq!(
        pass(&reconciler).await,
        Pass {
            described: 1,
            ..Pass::default()
        }
    );

    // Up to 3: two more, in the free slots (slot 0's next generation, and slot 2).
    let mut raised = env.settings.pools.clone();
    raised[0].min_idle = 3;
    updater.replace(Pools::from_settings(&raised));
    assert_eq!(pass(&reconciler).await.warmed, 2);
    let mut names: Vec<String> = env.github.runners().into_iter().map(|r| r.name).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "dh-linux-x64-w0-2",
            "dh-linux-x64-w1-1",
            "dh-linux-x64-w2-1"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_orphan_sweep_covers_the_warm_target() {
    let env = warm_env(Backend::Sqlite, warm(1)).await;
    let worker = env.worker().await;
    // A warm registration the store no longer knows (its row pruned), on an org no recent
    // job came from.
    let org = dockhand::github::RunnerTarget::Org("octo-org".into());
    env.github.register_runner(&org, "dh-linux-x64-w5-3", false);
    let p = pass(&reconciler(&worker, lifecycle())).await;
    assert!(p.swept);
    assert_eq!(p.warmed, 1, "{p:?}");
    // The stale one is gone; the warm runner the pass launched stays.
    let names: Vec<String> = env.github.runners().into_iter().map(|r| r.name).collect();
    assert_eq!(names, ["dh-linux-x64-w0-1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_whose_warm_runners_keep_failing_to_start_pauses_its_fills() {
    let env = warm_env(Backend::Sqlite, warm(1)).await;
    let worker = env.worker().await;
    let reconciler = reconciler(&worker, lifecycle());
    assert_eq!(pass(&reconciler).await.warmed, 1);
    // The image cannot be pulled: each warm runner's task fails to start.
    for round in 1..=3 {
        let runner = warm_runners(worker.store())
            .await
            .into_iter()
            .find(|r| r.state == RunnerState::Launched)
            .expect("a warm runner on its way");
        let task = runner.task_arn.unwrap();
        stop_in_ecs(&env, &task, "CannotPullContainerError: pull image manifest").await;
        env.proxy
            .patch_task(&task, json!({"stopCode": "TaskFailedToStart"}));
        let p = pass(&reconciler).await;
        let again = usize::from(round < 3);
        assert_eq!((p.stopped, p.warmed), (1, again), "round {round}: {p:?}");
    }
    // Three failures: the fills pause; nothing more is launched, pass after pass.
    assert_eq!(pass(&reconciler).await.warmed, 0);
    assert_eq!(env.proxy.run_task_calls().len(), 3);
    assert_eq!(
        env.github
            .count(crate::common::fake_github::Endpoint::JitConfig),
        3
    );
    assert!(
        env.github.runners().is_empty(),
        "each failed runner's registration is removed"
    );
    let rendered = dockhand::metrics::install().render();
    assert_eq!(
        sample(
            &rendered,
            r#"dockhand_warm_launches_total{pool="linux-x64",outcome="paused"}"#
        ),
        Some(2.0)
    );
}
