//! Warm pools: idle runners the reconciler keeps ready for the next job, counted with the
//! jobs' own runners, on a schedule, within `max_runners`, and never launched twice for
//! one slot whatever crashes.

use chrono::{TimeZone, Utc};
use serde_json::json;

use super::*;
use crate::common::fake_github::Endpoint;
use crate::common::stores::Backend;
use crate::worker::QueueChoice;
use crate::worker::owed::event_on;
use dockhand::config::WarmSchedule;
use dockhand::store::RunnerState;
use rstest::rstest;

const POOL: &str = "linux-x64";

/// The lifecycle settings, and the default pool keeping `min_idle` warm runners on
/// octo-org (where the test jobs come from).
pub(super) fn warm(min_idle: u32) -> impl FnOnce(&mut Settings) {
    move |s| {
        with_lifecycle(s);
        s.pools[0].min_idle = min_idle;
        s.pools[0].warm_target = Some("octo-org".into());
    }
}

/// An [`Env`] whose fake GitHub has the App installed on octo-org as the test webhooks
/// say (installation 99), so the warm runners' lookup and the jobs agree.
pub(super) async fn warm_env(backend: Backend, adjust: impl FnOnce(&mut Settings)) -> Env {
    let env = Env::with(QueueChoice::Embedded, backend, adjust).await;
    env.github.install_on("octo-org", 99);
    env
}

/// Warm runners in the store, oldest first.
pub(super) async fn warm_runners(store: &Store) -> Vec<RunnerRecord> {
    let runners = store.runners().await.unwrap();
    runners
        .into_iter()
        .filter(|r| r.for_job_id.is_none())
        .collect()
}

/// The names of the runners GitHub was asked to register, in order.
fn registered_names(env: &Env) -> Vec<String> {
    env.github
        .requests_to(Endpoint::JitConfig)
        .iter()
        .map(|r| {
            r.body.as_ref().unwrap()["name"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

/// RunTask calls that reached ECS, by `startedBy`.
fn started_by(env: &Env) -> Vec<String> {
    env.proxy
        .run_task_calls()
        .iter()
        .map(|c| {
            c.request["startedBy"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

/// GitHub gives `job` to `runner`: its `in_progress` webhook.
async fn runs_on(env: &Env, worker: &Worker, job: u64, runner: &str) {
    env.app
        .deliver(Delivery::signed(event_on("in_progress", job, Some(runner))))
        .await;
    assert_eq!(next(worker).await, Settled::Done(Outcome::Tracked));
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_fills_to_min_idle_and_no_further(#[case] backend: Backend) {
    let env = warm_env(backend, warm(2)).await;
    let worker = env.worker().await;
    let p = pass(&reconciler(&worker, lifecycle())).await;
    assert_eq!(p.warmed, 2, "{p:?}");
    assert_eq!(
        registered_names(&env),
        ["dh-linux-x64-w0-1", "dh-linux-x64-w1-1"]
    );
    // Registered on the warm target, with the pool's labels, as the App's installation.
    for jit in env.github.requests_to(Endpoint::JitConfig) {
        assert_eq!(
            jit.path,
            "/orgs/octo-org/actions/runners/generate-jitconfig"
        );
        assert_eq!(
            jit.body.as_ref().unwrap()["labels"],
            json!(env.settings.pools[0].labels)
        );
    }
    assert_eq!(
        started_by(&env),
        [
            "dockhand-warm-dh-linux-x64-w0-1",
            "dockhand-warm-dh-linux-x64-w1-1"
        ]
    );
    let store = worker.store();
    let warm = warm_runners(store).await;
    assert_eq!(warm.len(), 2);
    for runner in &warm {
        assert_eq!(runner.state, RunnerState::Launched);
        let task = env
            .ecs
            .describe(runner.task_arn.as_deref().expect("a task"))
            .await;
        assert_eq!(task.last_status(), Some("RUNNING"));
        let tags: std::collections::HashMap<_, _> = task
            .tags()
            .iter()
            .map(|t| (t.key().unwrap(), t.value().unwrap()))
            .collect();
        assert_eq!(
            tags.get("dockhand:runner"),
            Some(&runner.runner_name.as_str())
        );
        assert_eq!(
            tags.get("dockhand:job-id"),
            None,
            "a warm runner has no job"
        );
    }

    // Full: more passes, and a restarted reconciler, launch nothing more.
    let p = pass(&reconciler(&worker, lifecycle())).await;
    assert_eq!(p.warmed, 0, "{p:?}");
    let restarted = env.worker().await;
    let p = pass(&reconciler(&restarted, lifecycle())).await;
    assert_eq!(p.warmed, 0, "a restart must not fill again: {p:?}");
    assert_eq!(env.github.count(Endpoint::JitConfig), 2);
    assert_eq!(env.proxy.run_task_calls().len(), 2);
    assert_eq!(env.github.runners().len(), 2);

    // Both idle, as the gauges polled from the store say.
    worker.poll_gauges().await;
    let rendered = dockhand::metrics::install().render();
    assert_eq!(
        sample(&rendered, r#"dockhand_warm_target{pool="linux-x64"}"#),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &rendered,
            r#"dockhand_runners{pool="linux-x64",state="idle"}"#
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &rendered,
            r#"dockhand_warm_launches_total{pool="linux-x64",outcome="launched"}"#
        ),
        Some(2.0)
    );
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_runner_serves_a_job_and_the_jobs_own_runner_is_the_refill(
    #[case] backend: Backend,
) {
    let env = warm_env(backend, warm(1)).await;
    let worker = env.worker().await;
    let reconciler = reconciler(&worker, lifecycle());
    assert_eq!(pass(&reconciler).await.warmed, 1);
    let warm = warm_runners(worker.store()).await.remove(0);

    // A job comes: its own runner launches, and GitHub gives it the warm one at once.
    let own = launched(&env, &worker, 4101).await;
    runs_on(&env, &worker, 4101, &warm.runner_name).await;
    let p = pass(&reconciler).await;
    assert_eq!(p.warmed, 0, "the job's own runner restores the pool: {p:?}");
    let p = pass(&reconciler).await;
    assert_eq!(p.warmed, 0, "{p:?}");
    // Two runners in all: the warm one (busy) and the job's own (idle, the new warm one).
    assert_eq!(env.github.count(Endpoint::JitConfig), 2);
    assert_eq!(env.proxy.run_task_calls().len(), 2);
    let store = worker.store();
    let runners = store.runners().await.unwrap();
    let state = |name: &str| {
        runners
            .iter()
            .find(|r| r.runner_name == name)
            .unwrap()
            .state
    };
    assert_eq!(state(&warm.runner_name), RunnerState::Busy);
    assert_eq!(state(&own.runner_name), RunnerState::Launched);
    let started = &entries(store, 4101, EventKind::Started).await[0];
    assert_eq!(
        (
            &started["runner"],
            &started["warm"],
            &started["launched_for"]
        ),
        (&json!(warm.runner_name), &json!(true), &json!(null))
    );
    let job = store.job(JobId(4101)).await.unwrap().unwrap();
    let history = store.history(JobId(4101)).await.unwrap();
    let story = dockhand::inspect::headline::headline(Some(&job), &history, Utc::now()).unwrap();
    assert!(story.contains("a warm runner"), "{story}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_larger_than_min_idle_launches_one_runner_per_job() {
    let env = warm_env(Backend::Sqlite, warm(1)).await;
    let worker = env.worker().await;
    let reconciler = reconciler(&worker, lifecycle());
    assert_eq!(pass(&reconciler).await.warmed, 1);
    let warm = warm_runners(worker.store()).await.remove(0);
    let mut own = Vec::new();
    for job in 4201..=4203 {
        own.push(launched(&env, &worker, job).await);
    }
    // Queued, and the jobs' runners on their way: nothing to add.
    assert_eq!(pass(&reconciler).await.warmed, 0);
    // GitHub hands them out: the warm runner and the first two jobs' own runners.
    runs_on(&env, &worker, 4201, &warm.runner_name).await;
    runs_on(&env, &worker, 4202, &own[0].runner_name).await;
    runs_on(&env, &worker, 4203, &own[1].runner_name).await;
    assert_eq!(pass(&reconciler).await.warmed, 0);
    assert_eq!(env.proxy.run_task_calls().len(), 4, "one warm, one per job");
    assert_eq!(env.github.count(Endpoint::JitConfig), 4);
    let store = worker.store();
    assert_eq!(store.live_runners(POOL).await.unwrap(), 4);
    assert_eq!(
        runner_of(store, 4203).await.state,
        RunnerState::Launched,
        "the one left idle"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_runners_caps_warm_runners_too() {
    let env = warm_env(Backend::Sqlite, |s| {
        warm(3)(s);
        s.pools[0].max_runners = 3;
    })
    .await;
    let worker = env.worker().await;
    let reconciler = reconciler(&worker, lifecycle());
    let own = launched(&env, &worker, 4301).await;
    env.app
        .deliver(Delivery::signed(event_on(
            "in_progress",
            4301,
            Some(&own.runner_name),
        )))
        .await;
    assert_eq!(next(&worker).await, Settled::Done(Outcome::Tracked));
    let p = pass(&reconciler).await;
    assert_eq!(p.warmed, 2, "one runner is busy: room for two: {p:?}");
    assert_eq!(worker.store().live_runners(POOL).await.unwrap(), 3);
    assert_eq!(pass(&reconciler).await.warmed, 0);
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_switch_fills_then_drains(#[case] backend: Backend) {
    let env = warm_env(backend, |s| {
        warm(0)(s);
        s.pools[0].schedule = vec![WarmSchedule {
            cron: "* 8-18 * * Mon-Fri".into(),
            timezone: "Europe/Berlin".into(),
            min_idle: 2,
        }];
    })
    .await;
    let worker = env.worker().await;
    // Wednesday 2026-12-02: 10:00 in Berlin (09:00 UTC), then 20:00 (19:00 UTC).
    let skew_to = |at| at - Utc::now();
    let working = skew_to(Utc.with_ymd_and_hms(2026, 12, 2, 9, 0, 0).unwrap());
    let evening = skew_to(Utc.with_ymd_and_hms(2026, 12, 2, 19, 0, 0).unwrap());
    let by_day = reconciler(&worker, lifecycle()).with_clock_skew(working);
    let p = pass(&by_day).await;
    assert_eq!(p.warmed, 2, "{p:?}");
    let rendered = dockhand::metrics::install().render();
    assert_eq!(
        sample(&rendered, r#"dockhand_warm_target{pool="linux-x64"}"#),
        Some(2.0)
    );

    let by_night = reconciler(&worker, lifecycle()).with_clock_skew(evening);
    let warm = warm_runners(worker.store()).await;
    // Within the idle timeout (5 minutes) they stay; past it they go.
    for runner in &warm {
        env.proxy.patch_task(
            runner.task_arn.as_ref().unwrap(),
            json!({"startedAt": minutes_ago(3)}),
        );
    }
    let p = pass(&by_night).await;
    assert_eq!((p.warmed, p.reaped), (0, 0), "{p:?}");
    for runner in &warm {
        env.proxy.patch_task(
            runner.task_arn.as_ref().unwrap(),
            json!({"startedAt": minutes_ago(6)}),
        );
    }
    let p = pass(&by_night).await;
    assert_eq!((p.warmed, p.reaped), (0, 2), "{p:?}");
    assert!(env.github.runners().is_empty());
    for runner in &warm {
        let task = runner.task_arn.as_deref().unwrap();
        assert_eq!(status_in_ecs(&env, task).await, "STOPPED");
    }
    assert_eq!(worker.store().live_runners(POOL).await.unwrap(), 0);
    let rendered = dockhand::metrics::install().render();
    assert_eq!(
        sample(&rendered, r#"dockhand_warm_target{pool="linux-x64"}"#),
        Some(0.0)
    );
    // And by day again, the pool fills with each slot's next generation.
    let p = pass(&reconciler(&worker, lifecycle()).with_clock_skew(working)).await;
    assert_eq!(p.warmed, 2, "{p:?}");
    assert_eq!(
        registered_names(&env)[2..],
        ["dh-linux-x64-w0-2", "dh-linux-x64-w1-2"]
    );
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_fill_does_not_over_fill(#[case] backend: Backend) {
    let env = warm_env(backend, warm(2)).await;
    let worker = env.worker().await;
    // The leader dies in its first RunTask, after ECS started the task.
    env.proxy.hold_run_task(true);
    let crashed = {
        let reconciler = reconciler(&worker, lifecycle());
        tokio::spawn(async move { reconciler.pass().await })
    };
    env.proxy.wait_for_held_run_task().await;
    crashed.abort();
    let _ = crashed.await;
    env.proxy.release_run_task();
    assert_eq!(env.proxy.run_task_calls().len(), 1);

    // A new leader at once: both slots are on record, so nothing is launched.
    let restarted = env.worker().await;
    let reconciler = reconciler(&restarted, lifecycle());
    let p = pass(&reconciler).await;
    assert_eq!(p.warmed, 0, "{p:?}");
    assert_eq!(env.proxy.run_task_calls().len(), 1);

    // Two leases later: the first runner's task is found and adopted; the second was never
    // registered, so its slot is freed and filled with the next generation.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let p = pass(&reconciler).await;
    assert_eq!(p.warmed, 1, "{p:?}");
    assert_eq!(
        registered_names(&env),
        ["dh-linux-x64-w0-1", "dh-linux-x64-w1-2"]
    );
    assert_eq!(env.proxy.run_task_calls().len(), 2);
    let store = restarted.store();
    let warm = warm_runners(store).await;
    let live: Vec<_> = warm
        .iter()
        .filter(|r| r.state == RunnerState::Launched)
        .map(|r| r.runner_name.as_str())
        .collect();
    assert_eq!(live, ["dh-linux-x64-w0-1", "dh-linux-x64-w1-2"]);
    assert_eq!(store.live_runners(POOL).await.unwrap(), 2);
    assert_eq!(pass(&reconciler).await.warmed, 0);
    let rendered = dockhand::metrics::install().render();
    for (outcome, n) in [("resumed", 1.0), ("abandoned", 1.0)] {
        assert_eq!(
            sample(
                &rendered,
                &format!(r#"dockhand_warm_launches_total{{pool="linux-x64",outcome="{outcome}"}}"#)
            ),
            Some(n),
            "{outcome}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_runner_past_max_idle_age_is_replaced() {
    let env = warm_env(Backend::Sqlite, warm(1)).await;
    let worker = env.worker().await;
    let reconciler = reconciler(&worker, lifecycle());
    assert_eq!(pass(&reconciler).await.warmed, 1);
    let old = warm_runners(worker.store()).await.remove(0);
    let task = old.task_arn.clone().unwrap();
    // Idle 50 minutes: not surplus (the pool keeps one), within max_idle_age (1 h).
    env.proxy
        .patch_task(&task, json!({"startedAt": minutes_ago(50)}));
    let p = pass(&reconciler).await;
    assert_eq!((p.reaped, p.warmed), (0, 0), "{p:?}");

    env.proxy
        .patch_task(&task, json!({"startedAt": minutes_ago(61)}));
    let p = pass(&reconciler).await;
    assert_eq!((p.reaped, p.warmed), (1, 1), "{p:?}");
    assert_eq!(status_in_ecs(&env, &task).await, "STOPPED");
    let stops = stop_calls(&env);
    assert_eq!(stops.len(), 1);
    assert!(
        stops[0]
            .1
            .starts_with("dockhand: warm runner recycled, idle for 1h 1m"),
        "{}",
        stops[0].1
    );
    let runners = env.github.runners();
    assert_eq!(runners.len(), 1);
    assert_eq!(runners[0].name, "dh-linux-x64-w0-2");
    let rendered = dockhand::metrics::install().render();
    assert_eq!(
        sample(
            &rendered,
            r#"dockhand_runners_reaped_total{pool="linux-x64",reason="max_idle_age"}"#
        ),
        Some(1.0)
    );
}
