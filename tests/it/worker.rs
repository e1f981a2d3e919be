//! Workers launching real runner tasks: webhook → queue → worker → fake GitHub (which
//! checks every call) → moto's ECS (through a fault-injecting proxy where a test needs one).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common;
use common::drain_workers as drain;
use common::fake_github::{Endpoint, Failure, FakeGitHub};
use common::moto_ecs::MotoEcs;
use common::moto_ecs::faults::{FARGATE_NO_CAPACITY, FaultyEcs};
use common::*;
use dockhand::config::Settings;
use dockhand::domain::JobId;
use dockhand::store::LaunchState;
use dockhand::worker::outcome::{Deferral, Outcome, Settled};
use dockhand::worker::{Step, Worker};
use rstest::rstest;

use common::gated_queue::GatedQueue;
use common::process::eventually;
use common::stores::{Backend, TestStore};

mod apps;
mod cluster_change;
mod dead_letter;
mod history;
mod logs;
mod leftovers;
mod lifecycle;
mod owed;
mod redelivery;
mod waits;

const APP_ID: u64 = 4242;

/// Everything one launch test needs, each part fresh and named for this test.
struct Env {
    app: TestApp,
    github: FakeGitHub,
    ecs: MotoEcs,
    proxy: FaultyEcs,
    settings: Settings,
    /// Keeps the store (and the embedded queue's directory) for the test's lifetime.
    _store: TestStore,
}

enum QueueChoice {
    Embedded,
    Sqs,
}

impl Env {
    /// An ingress on `queue` with a fresh store of `backend`, the fake GitHub, and moto's
    /// ECS behind a fault-injecting proxy; short leases and backoffs so that retries and
    /// take-overs happen within a test.
    async fn new(queue: QueueChoice, backend: Backend) -> Self {
        Self::with(queue, backend, |_| {}).await
    }

    /// Like [`Env::new`], with the settings adjusted before anything starts.
    async fn with(
        queue: QueueChoice,
        backend: Backend,
        adjust: impl FnOnce(&mut Settings),
    ) -> Self {
        Self::with_apps(queue, backend, &[APP_ID], adjust).await
    }

    /// Like [`Env::with`], dockhand acting as the GitHub Apps `apps`.
    async fn with_apps(
        queue: QueueChoice,
        backend: Backend,
        apps: &[u64],
        adjust: impl FnOnce(&mut Settings),
    ) -> Self {
        let mut store = TestStore::new(backend).await;
        let github = FakeGitHub::start_apps(apps).await;
        let ecs = MotoEcs::setup().await;
        let proxy = FaultyEcs::start().await;
        let mut settings = match queue {
            QueueChoice::Embedded => embedded_settings(store.dir()),
            QueueChoice::Sqs => sqs_settings().await,
        };
        settings.queue.embedded.visibility_timeout = Duration::from_secs(1);
        settings.aws = proxy.aws_settings();
        settings.github = github.settings();
        settings.store = store.settings.clone();
        settings.worker.lease = Duration::from_secs(1);
        settings.worker.backoff_base = Duration::from_millis(100);
        settings.worker.backoff_max = Duration::from_millis(400);
        settings.pools[0].ecs = Some(ecs.launch_settings());
        adjust(&mut settings);
        let app = spawn_app(settings.clone()).await;
        Self {
            app,
            github,
            ecs,
            proxy,
            settings,
            _store: store,
        }
    }

    async fn worker(&self) -> Worker {
        dockhand::startup::build_worker(&self.settings, self.app.queue.clone())
            .await
            .expect("building a worker")
    }

    /// Delivers `job` to a worker that dies in RunTask: after sending it on to ECS if
    /// `forward`, before it if not. The held RunTask stays held until
    /// `proxy.release_run_task()`: that worker never hears back.
    async fn crash_in_run_task(&self, job: u64, forward: bool) {
        self.proxy.hold_run_task(forward);
        self.app.deliver(Delivery::signed(queued_job(job))).await;
        let a = self.worker().await;
        let crashed = tokio::spawn(async move { a.process_next().await });
        self.proxy.wait_for_held_run_task().await;
        crashed.abort();
        let _ = crashed.await;
    }
}

/// Processes the next message that becomes visible, and what became of it.
pub(super) async fn next(worker: &Worker) -> Settled {
    eventually("a message to process", Duration::from_secs(20), || async {
        match worker.process_next().await.unwrap() {
            Step::Processed(mut settled) if settled.len() == 1 => settled.pop(),
            Step::Processed(settled) => panic!("one message at a time: {settled:?}"),
            Step::Empty => None,
        }
    })
    .await
}

/// What `dockhand requeue --job-id JOB` chooses, with the default requeue limit.
fn requeue_of(job: u64) -> dockhand::dlq::Selection {
    dockhand::dlq::Selection {
        filter: dockhand::dlq::Filter {
            job_ids: vec![job],
            ..Default::default()
        },
        all: false,
        max: None,
        max_requeues: 3,
        force: false,
    }
}

/// The message failed transiently once (deferred with an error), then launched.
fn assert_retried_once_then_launched(settled: &[Settled]) {
    assert!(
        matches!(
            settled,
            [
                Settled::Deferred(Deferral::Error(_)),
                Settled::Done(Outcome::Launched)
            ]
        ),
        "{settled:?}"
    );
}

/// The pool launches on FARGATE_SPOT, falling back to FARGATE.
fn spot_then_fargate(s: &mut Settings) {
    let ecs = s.pools[0].ecs.as_mut().unwrap();
    ecs.launch_type = None;
    ecs.capacity_providers = vec!["FARGATE_SPOT".into(), "FARGATE".into()];
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_queued_event_gives_one_jit_call_and_one_task_with_everything_in_place() {
    let env = Env::new(QueueChoice::Sqs, Backend::Postgres).await;
    let worker = env.worker().await;
    let (status, _) = env.app.deliver(Delivery::signed(queued_job(901))).await;
    assert_eq!(status, 202);

    assert_eq!(drain(&[&worker]).await, [Settled::Done(Outcome::Launched)]);

    // GitHub: one token mint, one runner-group lookup, one JIT call with the pool's settings.
    assert_eq!(env.github.count(Endpoint::InstallationToken), 1);
    let jit = env.github.requests_to(Endpoint::JitConfig);
    assert_eq!(jit.len(), 1);
    assert_eq!(
        jit[0].path,
        "/orgs/octo-org/actions/runners/generate-jitconfig"
    );
    let body = jit[0].body.clone().unwrap();
    assert_eq!(body["name"], "dh-linux-x64-901-1");
    assert_eq!(body["runner_group_id"], 1);
    assert_eq!(
        body["labels"],
        serde_json::json!(["self-hosted", "linux", "x64"])
    );
    assert_eq!(body["work_folder"], "_work");
    let runners = env.github.runners();
    assert_eq!(runners.len(), 1);

    // ECS: exactly one task, launched as configured, carrying the JIT config.
    let tasks = env.ecs.task_arns().await;
    assert_eq!(tasks.len(), 1);
    let task = env.ecs.describe(&tasks[0]).await;
    assert!(
        task.task_definition_arn()
            .unwrap()
            .contains(env.ecs.task_definition.split(':').next().unwrap())
    );
    assert_eq!(task.launch_type().map(|l| l.as_str()), Some("FARGATE"));
    assert_eq!(task.started_by(), Some("dockhand-job-901"));
    let tags: std::collections::HashMap<_, _> = task
        .tags()
        .iter()
        .map(|t| (t.key().unwrap().to_string(), t.value().unwrap().to_string()))
        .collect();
    assert_eq!(tags["dockhand:job-id"], "901");
    assert_eq!(tags["dockhand:pool"], "linux-x64");
    assert_eq!(tags["dockhand:runner"], "dh-linux-x64-901-1");
    assert_eq!(tags["team"], "ci");
    let overrides = task.overrides().unwrap().container_overrides();
    let runner = overrides
        .iter()
        .find(|o| o.name() == Some("runner"))
        .unwrap();
    let env_vars: std::collections::HashMap<_, _> = runner
        .environment()
        .iter()
        .map(|kv| (kv.name().unwrap(), kv.value().unwrap()))
        .collect();
    assert_eq!(
        env_vars["ACTIONS_RUNNER_INPUT_JITCONFIG"],
        runners[0].encoded_jit_config
    );
    let calls = env.proxy.run_task_calls();
    assert_eq!(calls.len(), 1);
    let network = &calls[0].request["networkConfiguration"]["awsvpcConfiguration"];
    assert_eq!(
        network["subnets"],
        serde_json::json!([env.ecs.network.subnet])
    );
    assert_eq!(
        network["securityGroups"],
        serde_json::json!([env.ecs.network.security_group])
    );

    // The store: launched, with the task ARN; the message is gone.
    let job = worker.store().job(JobId(901)).await.unwrap().unwrap();
    assert_eq!(job.launch, LaunchState::Launched);
    assert_eq!(job.task_arn.as_deref(), Some(tasks[0].as_str()));
    assert_eq!(job.runner_name.as_deref(), Some("dh-linux-x64-901-1"));
    assert_eq!(job.cluster.as_deref(), Some(env.ecs.cluster.as_str()));
    assert!(env.app.drain().await.is_empty());
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_deliveries_to_two_workers_launch_one_task(#[case] backend: Backend) {
    let env = Env::new(QueueChoice::Embedded, backend).await;
    let (a, b) = (env.worker().await, env.worker().await);
    let mut sends = tokio::task::JoinSet::new();
    for i in 0..20 {
        let (client, url) = (env.app.client.clone(), env.app.webhook_url.clone());
        sends.spawn(async move {
            // Half are GitHub redeliveries (same delivery id), half new deliveries.
            let delivery = if i % 2 == 0 {
                "same".to_string()
            } else {
                format!("d{i}")
            };
            signed_request(&client, &url, &delivery, queued_job(777))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        });
    }
    assert!(sends.join_all().await.iter().all(|s| *s == 202));

    let outcomes = drain(&[&a, &b]).await;

    assert_eq!(count_done(&outcomes, Outcome::Launched), 1, "{outcomes:?}");
    assert_eq!(
        count_done(&outcomes, Outcome::Duplicate),
        19,
        "{outcomes:?}"
    );
    assert_eq!(env.github.count(Endpoint::JitConfig), 1);
    assert_eq!(env.ecs.task_arns().await.len(), 1);
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_between_jit_and_run_task_leaves_one_task_and_no_orphan(
    #[case] backend: Backend,
) {
    let env = Env::new(QueueChoice::Embedded, backend).await;
    env.proxy.hold_run_task(false);
    env.app.deliver(Delivery::signed(queued_job(555))).await;

    // Worker A registers the runner, then hangs in RunTask; it is killed there.
    let a = env.worker().await;
    let crashed = tokio::spawn(async move { a.process_next().await });
    env.proxy.wait_for_held_run_task().await;
    crashed.abort();
    let _ = crashed.await;
    // The held RunTask stays held until the end: A must never hear back.
    assert_eq!(env.github.runners().len(), 1, "A registered a runner");

    // Worker B gets the message back once its visibility and A's lease expire.
    let b = env.worker().await;
    let outcomes = drain(&[&b]).await;
    assert!(
        outcomes.contains(&Settled::Done(Outcome::Launched)),
        "{outcomes:?}"
    );

    assert_eq!(env.ecs.task_arns().await.len(), 1);
    let runners = env.github.runners();
    assert_eq!(
        runners.len(),
        1,
        "A's registration was removed: {runners:?}"
    );
    assert_eq!(runners[0].name, "dh-linux-x64-555-2");
    let job = b.store().job(JobId(555)).await.unwrap().unwrap();
    assert_eq!(job.launch, LaunchState::Launched);
    assert_eq!(job.attempt, 2);
    env.proxy.release_run_task();
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_after_run_task_is_adopted_not_relaunched(#[case] backend: Backend) {
    let env = Env::new(QueueChoice::Embedded, backend).await;
    env.crash_in_run_task(556, true).await;
    // The held RunTask stays held until the end: A must never hear back.
    assert_eq!(env.ecs.task_arns().await.len(), 1, "the task reached ECS");

    let b = env.worker().await;
    let outcomes = drain(&[&b]).await;
    assert!(
        outcomes.contains(&Settled::Done(Outcome::Adopted)),
        "{outcomes:?}"
    );

    assert_eq!(env.ecs.task_arns().await.len(), 1);
    assert_eq!(
        env.github.count(Endpoint::JitConfig),
        1,
        "no second registration"
    );
    let runners = env.github.runners();
    assert_eq!(runners.len(), 1);
    assert_eq!(
        runners[0].name, "dh-linux-x64-556-1",
        "the task's runner is kept"
    );
    let job = b.store().job(JobId(556)).await.unwrap().unwrap();
    assert_eq!(job.launch, LaunchState::Adopted);
    assert!(job.task_arn.is_some());
    env.proxy.release_run_task();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivery_after_a_completed_launch_launches_nothing() {
    let env = Env::new(QueueChoice::Embedded, Backend::Sqlite).await;
    let worker = env.worker().await;
    env.app.deliver(Delivery::signed(queued_job(321))).await;
    assert_eq!(drain(&[&worker]).await, [Settled::Done(Outcome::Launched)]);
    // The same message again, as SQS redelivers one whose visibility expired.
    env.app.deliver(Delivery::signed(queued_job(321))).await;
    assert_eq!(drain(&[&worker]).await, [Settled::Done(Outcome::Duplicate)]);
    assert_eq!(env.ecs.task_arns().await.len(), 1);
    assert_eq!(env.github.count(Endpoint::JitConfig), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_github_500_then_success_launches_once() {
    let env = Env::new(QueueChoice::Embedded, Backend::Sqlite).await;
    env.github
        .fail_next(Endpoint::JitConfig, Failure::Status(500));
    let worker = env.worker().await;
    env.app.deliver(Delivery::signed(queued_job(322))).await;
    assert_retried_once_then_launched(&drain(&[&worker]).await);
    assert_eq!(env.github.count(Endpoint::JitConfig), 2);
    assert_eq!(env.github.runners().len(), 1);
    assert_eq!(env.ecs.task_arns().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_jit_call_is_deferred_until_the_reset_not_dead_lettered() {
    let env = Env::new(QueueChoice::Embedded, Backend::Sqlite).await;
    env.github.fail_next(
        Endpoint::JitConfig,
        Failure::RateLimited {
            reset_in: Duration::from_secs(2),
        },
    );
    let worker = env.worker().await;
    env.app.deliver(Delivery::signed(queued_job(323))).await;

    let step = worker.process_next().await.unwrap();
    assert!(
        matches!(&step, Step::Processed(s) if matches!(&s[..], [Settled::Deferred(Deferral::RateLimit(_))])),
        "{step:?}"
    );
    // Not before the reset: the message stays invisible.
    assert_eq!(worker.process_next().await.unwrap(), Step::Empty);
    let dlq = env.app.queue.dead_letter_queue().await.unwrap().unwrap();
    assert_eq!(dlq.approximate_depth().await.unwrap().total(), 0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(drain(&[&worker]).await, [Settled::Done(Outcome::Launched)]);
    assert_eq!(env.ecs.task_arns().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capacity_failure_on_fargate_spot_launches_on_fargate() {
    let env = Env::with(QueueChoice::Embedded, Backend::Sqlite, spot_then_fargate).await;
    env.proxy
        .fail_run_task_on("FARGATE_SPOT", FARGATE_NO_CAPACITY);
    let worker = env.worker().await;
    env.app.deliver(Delivery::signed(queued_job(324))).await;

    assert_eq!(drain(&[&worker]).await, [Settled::Done(Outcome::Launched)]);
    let providers: Vec<_> = env
        .proxy
        .run_task_calls()
        .into_iter()
        .map(|c| (c.capacity_provider.unwrap_or_default(), c.injected))
        .collect();
    assert_eq!(
        providers,
        [
            ("FARGATE_SPOT".to_string(), true),
            ("FARGATE".to_string(), false)
        ]
    );
    assert_eq!(env.ecs.task_arns().await.len(), 1);
    assert_eq!(env.github.runners().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_provider_out_of_capacity_the_job_is_deferred_and_its_runner_deleted() {
    let env = Env::with(QueueChoice::Embedded, Backend::Sqlite, spot_then_fargate).await;
    env.proxy
        .fail_run_task_on("FARGATE_SPOT", FARGATE_NO_CAPACITY);
    env.proxy.fail_run_task_on("FARGATE", FARGATE_NO_CAPACITY);
    let worker = env.worker().await;
    env.app.deliver(Delivery::signed(queued_job(325))).await;

    assert_eq!(
        worker.process_next().await.unwrap(),
        Step::Processed(vec![Settled::Deferred(Deferral::Capacity)])
    );
    assert!(env.ecs.task_arns().await.is_empty());
    assert_eq!(env.github.count(Endpoint::DeleteRunner), 1);
    assert!(env.github.runners().is_empty(), "no offline orphan is left");
    let job = worker.store().job(JobId(325)).await.unwrap().unwrap();
    assert_eq!(job.launch, LaunchState::Owed);
    let dlq = env.app.queue.dead_letter_queue().await.unwrap().unwrap();
    assert_eq!(dlq.approximate_depth().await.unwrap().total(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_in_flight_lands_before_the_deferral_so_the_deferral_has_the_last_word() {
    // With a 1s visibility timeout and lease, the heartbeat beats every 333ms.
    let env = Env::with(QueueChoice::Embedded, Backend::Sqlite, spot_then_fargate).await;
    // RunTask is throttled: an error, so the deferral is a visibility change (an expected
    // wait, such as no capacity, sends a fresh delayed copy instead).
    env.proxy.throttle_run_task();
    let queue = GatedQueue::new(env.app.queue.clone());
    let worker = dockhand::startup::build_worker(&env.settings, Arc::new(queue.clone()))
        .await
        .unwrap();
    env.app.deliver(Delivery::signed(queued_job(327))).await;

    // The launch hangs in RunTask while the heartbeat beats; then one beat hangs too.
    env.proxy.hold_run_task(false);
    let processing = tokio::spawn(async move { worker.process_next().await.unwrap() });
    env.proxy.wait_for_held_run_task().await;
    queue.arm();
    queue.wait_until_holding().await;
    let beats = queue.calls();

    // RunTask fails (throttled), the runner is deleted and the job deferred, all while
    // that beat is in flight. The deferral's own change must wait for the beat; give
    // it every chance not to.
    env.proxy.release_run_task();
    eventually(
        "the registration's removal",
        Duration::from_secs(30),
        || async { (env.github.count(Endpoint::DeleteRunner) == 1).then_some(()) },
    )
    .await;
    let deadline = Instant::now() + Duration::from_millis(500);
    while queue.calls() == beats && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    queue.open();
    let step = processing.await.unwrap();
    assert!(
        matches!(&step, Step::Processed(s) if matches!(&s[..], [Settled::Deferred(_)])),
        "{step:?}"
    );

    let landed = eventually("the held beat to land", Duration::from_secs(10), || async {
        let landed = queue.landed();
        landed.iter().any(|l| l.held).then_some(landed)
    })
    .await;
    let last = landed.last().unwrap();
    assert!(
        !last.held && last.call >= beats,
        "the deferral's visibility change lands last: {landed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_at_max_defers_and_launches_once_a_runner_completes() {
    let env = Env::with(QueueChoice::Embedded, Backend::Sqlite, |s| {
        s.pools[0].max_runners = 1
    })
    .await;
    let worker = env.worker().await;
    env.app.deliver(Delivery::signed(queued_job(1001))).await;
    assert_eq!(drain(&[&worker]).await, [Settled::Done(Outcome::Launched)]);

    env.app.deliver(Delivery::signed(queued_job(1002))).await;
    assert_eq!(
        worker.process_next().await.unwrap(),
        Step::Processed(vec![Settled::Deferred(Deferral::PoolFull)])
    );
    assert_eq!(env.ecs.task_arns().await.len(), 1);

    // The first job completes on its runner: capacity frees, the deferred job launches.
    let mut done = dockhand::synthetic::workflow_job_payload(&dockhand::synthetic::SyntheticJob {
        action: "completed".into(),
        job_id: 1001,
        ..Default::default()
    });
    done["workflow_job"]["runner_name"] = "dh-linux-x64-1001-1".into();
    env.app.deliver(Delivery::signed(done.to_string())).await;
    let outcomes = drain(&[&worker]).await;
    assert!(
        outcomes.contains(&Settled::Done(Outcome::Tracked))
            && outcomes.contains(&Settled::Done(Outcome::Launched)),
        "{outcomes:?}"
    );
    assert_eq!(env.ecs.task_arns().await.len(), 2);
    let job = worker.store().job(JobId(1002)).await.unwrap().unwrap();
    assert_eq!(job.launch, LaunchState::Launched);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_job_requeued_twice_is_launched_exactly_once() {
    let env = Env::new(QueueChoice::Sqs, Backend::Sqlite).await;
    let (a, b) = (env.worker().await, env.worker().await);
    // GitHub refuses the JIT call (the App lacks the runner permission): the job fails and
    // is dead-lettered.
    env.github
        .fail_next(Endpoint::JitConfig, Failure::Status(403));
    let (status, _) = env.app.deliver(Delivery::signed(queued_job(960))).await;
    assert_eq!(status, 202);
    let settled = drain(&[&a]).await;
    assert!(matches!(&settled[..], [Settled::Failed(_)]), "{settled:?}");
    let store = a.store();
    assert_eq!(
        store.job(JobId(960)).await.unwrap().unwrap().launch,
        LaunchState::Failed
    );
    let dlq = env.app.queue.dead_letter_queue().await.unwrap().unwrap();
    let selection = requeue_of(960);

    // The permission is granted. A first requeue dies between its send and its delete, leaving the
    // message on both queues; the operator runs it again, which moves the copy left behind.
    let plan = dockhand::dlq::plan(&*dlq, &selection).await.unwrap();
    assert_eq!(plan.chosen.len(), 1);
    env.app
        .queue
        .send(dockhand::dlq::requeued(&plan.chosen[0].message))
        .await
        .unwrap();
    plan.release(&*dlq).await;
    let plan = dockhand::dlq::plan(&*dlq, &selection).await.unwrap();
    assert_eq!(plan.chosen.len(), 1, "the copy the crash left behind");
    let summary = plan.execute(&env.app.queue, &dlq, None, |_, _| {}).await;
    assert_eq!((summary.moved, summary.failed), (1, 0));

    // Two requeued copies, two workers: one launch, one duplicate.
    let outcomes = drain(&[&a, &b]).await;
    assert_eq!(count_done(&outcomes, Outcome::Launched), 1, "{outcomes:?}");
    assert_eq!(count_done(&outcomes, Outcome::Duplicate), 1, "{outcomes:?}");
    assert_eq!(
        env.github.count(Endpoint::JitConfig),
        2,
        "the refused call, then one"
    );
    assert_eq!(env.ecs.task_arns().await.len(), 1);
    let job = store.job(JobId(960)).await.unwrap().unwrap();
    assert_eq!(job.launch, LaunchState::Launched);
    assert_eq!(job.attempt, 2);
    assert_eq!(job.runner_name.as_deref(), Some("dh-linux-x64-960-2"));
    assert!(common::drain(&*dlq).await.is_empty());
    assert!(env.app.drain().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloaded_launch_settings_apply_to_the_next_job_and_a_broken_config_changes_nothing() {
    use dockhand::config::ConfigSource;
    use dockhand::pool::{LivePools, Pools};
    use dockhand::reload::{Reloaded, Reloader};
    use dockhand::startup::Roles;

    let env = Env::new(QueueChoice::Embedded, Backend::Sqlite).await;
    // The running worker's configuration, as a file it re-reads. (Secrets are written
    // redacted; a reload only swaps pools, so the running ones stay in use.)
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dockhand.toml");
    let write = |settings: &Settings| {
        std::fs::write(&file, toml::to_string(settings).unwrap()).unwrap();
    };
    write(&env.settings);
    let (updater, pools) = LivePools::new(Pools::from_settings(&env.settings.pools));
    let worker = dockhand::startup::build_worker_with(&env.settings, env.app.queue.clone(), pools)
        .await
        .unwrap();
    let mut reloader = Reloader::new(
        ConfigSource::File(file.clone()),
        Roles::WORKER,
        false,
        env.settings.clone(),
        updater,
        tokio::sync::watch::channel(env.settings.lifecycle.clone()).0,
    );
    let launch = |job: u64| {
        let (app, worker) = (&env.app, &worker);
        async move {
            let (status, _) = app.deliver(Delivery::signed(queued_job(job))).await;
            assert_eq!(status, 202);
            assert_eq!(drain(&[worker]).await, [Settled::Done(Outcome::Launched)]);
        }
    };
    let task_definition_of = |job: u64| {
        let ecs = &env.ecs;
        async move {
            for arn in ecs.task_arns().await {
                let task = ecs.describe(&arn).await;
                if task.started_by() == Some(format!("dockhand-job-{job}").as_str()) {
                    return task.task_definition_arn().unwrap().to_string();
                }
            }
            panic!("no task for job {job}");
        }
    };
    let family = |task_definition: &str| task_definition.split(':').next().unwrap().to_string();

    launch(971).await;
    assert!(
        task_definition_of(971)
            .await
            .contains(&family(&env.ecs.task_definition))
    );
    assert_eq!(reloader.reload_once().await, Reloaded::Unchanged);

    // A new task definition for the pool: the next job launches with it.
    let second = common::moto_ecs::register_runner_task_definition(&env.ecs.client).await;
    let mut changed = env.settings.clone();
    changed.pools[0].ecs.as_mut().unwrap().task_definition = second.clone();
    write(&changed);
    assert_eq!(reloader.reload_once().await, Reloaded::Applied);
    launch(972).await;
    assert!(task_definition_of(972).await.contains(&family(&second)));

    // A worker needs [pool.ecs]; a config without it is refused, as is one that does not
    // parse, and jobs go on launching as before.
    let mut no_launch = changed.clone();
    no_launch.pools[0].ecs = None;
    write(&no_launch);
    assert_eq!(reloader.reload_once().await, Reloaded::Invalid);
    std::fs::write(&file, "[[pool]\n").unwrap();
    assert_eq!(reloader.reload_once().await, Reloaded::Invalid);
    std::fs::remove_file(&file).unwrap();
    assert_eq!(reloader.reload_once().await, Reloaded::Unreadable);
    launch(973).await;
    assert!(task_definition_of(973).await.contains(&family(&second)));
    assert_eq!(env.ecs.task_arns().await.len(), 3);
}

/// A queued job for the default pool, carrying `installation` as an App's webhook does, or
/// none as an organization's webhook does.
fn queued_job_of(job_id: u64, installation: Option<u64>) -> Vec<u8> {
    dockhand::synthetic::workflow_job_payload(&dockhand::synthetic::SyntheticJob {
        job_id,
        labels: vec!["self-hosted".into(), "linux".into()],
        installation_id: installation,
        ..Default::default()
    })
    .to_string()
    .into_bytes()
}

#[rstest]
#[case::the_event_names_no_installation(None)]
#[case::the_event_names_the_old_installation(Some(99))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_app_is_reinstalled_the_next_job_launches_through_the_new_installation(
    #[case] installation: Option<u64>,
) {
    use common::fake_github::Auth;

    let env = Env::new(QueueChoice::Embedded, Backend::Sqlite).await;
    let worker = env.worker().await;
    env.app
        .deliver(Delivery::signed(queued_job_of(981, installation)))
        .await;
    assert_eq!(drain(&[&worker]).await, [Settled::Done(Outcome::Launched)]);
    let old = env.github.requests_to(Endpoint::JitConfig)[0].auth.clone();
    let new = env.github.reinstall("octo-org");
    let seen = env.github.requests().len();

    env.app
        .deliver(Delivery::signed(queued_job_of(982, installation)))
        .await;
    assert_eq!(drain(&[&worker]).await, [Settled::Done(Outcome::Launched)]);

    let Auth::InstallationToken { installation: old } = old else {
        panic!("the first JIT call carried no installation token: {old:?}");
    };
    let app = Auth::AppJwt {
        iss: APP_ID.to_string(),
    };
    let jit = "/orgs/octo-org/actions/runners/generate-jitconfig";
    let calls: Vec<_> = env.github.requests()[seen..]
        .iter()
        .map(|r| (r.method.as_str().to_owned(), r.path.clone(), r.auth.clone()))
        .collect();
    let call =
        |method: &str, path: &str, auth: &Auth| (method.to_owned(), path.to_owned(), auth.clone());
    let mint = |id: u64| {
        call(
            "POST",
            &format!("/app/installations/{id}/access_tokens"),
            &app,
        )
    };
    assert_eq!(
        calls,
        [
            // The cached token was revoked with the old installation.
            call("POST", jit, &Auth::None),
            mint(old),
            call("GET", "/orgs/octo-org/installation", &app),
            mint(new),
            call("POST", jit, &Auth::InstallationToken { installation: new }),
        ]
    );
    assert_eq!(env.github.runners().len(), 2);
    assert_eq!(env.ecs.task_arns().await.len(), 2);
    let job = worker.store().job(JobId(982)).await.unwrap().unwrap();
    assert_eq!(job.launch, LaunchState::Launched);
}
