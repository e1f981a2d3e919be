//! "Why is my job still queued?": scripted job lives through the real ingress, worker, fake
//! GitHub and moto's ECS, each checked by the history the store wrote and the one line
//! `dockhand jobs show` opens with; and `--live` finding where GitHub and ECS disagree.

use chrono::Utc;

use super::owed::event_on;
use super::{Env, QueueChoice, next, requeue_of};
use crate::common::fake_github::{Endpoint, Failure};
use crate::common::stores::Backend;
use crate::common::*;
use dockhand::config::SecretResolver;
use dockhand::domain::JobId;
use dockhand::ecs::{Launcher, TaskArn};
use dockhand::github::GitHubApp;
use dockhand::inspect::{JobStory, LiveClients, render};
use dockhand::store::{EventKind, Store};
use dockhand::worker::outcome::{Deferral, Outcome, Settled};
use rstest::rstest;

async fn story(store: &Store, job: u64) -> JobStory {
    JobStory::load(store, "the test store", JobId(job), Utc::now())
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("the store does not know job {job}"))
}

fn kinds(story: &JobStory) -> Vec<&'static str> {
    story.history.iter().map(|e| e.kind.as_str()).collect()
}

fn entries(story: &JobStory, kind: EventKind) -> Vec<&serde_json::Value> {
    story
        .history
        .iter()
        .filter(|e| e.kind == kind)
        .map(|e| &e.detail)
        .collect()
}

/// Delivers GitHub's `in_progress` and `completed` for `job` on `runner`.
async fn runs(env: &Env, job: u64, runner: &str) {
    for action in ["in_progress", "completed"] {
        env.app
            .deliver(Delivery::signed(event_on(action, job, Some(runner))))
            .await;
    }
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_normal_launch_and_a_duplicate_tell_their_whole_story(#[case] backend: Backend) {
    let env = Env::new(QueueChoice::Embedded, backend).await;
    let worker = env.worker().await;
    env.app.deliver(Delivery::signed(queued_job(1501))).await;
    assert_eq!(next(&worker).await, Settled::Done(Outcome::Launched));
    let store = worker.store();
    let s = story(store, 1501).await;
    assert_eq!(
        kinds(&s),
        ["received", "matched", "claimed", "registered", "launched"]
    );
    let task = env.ecs.task_arns().await.pop().unwrap();
    let task_id = task.rsplit('/').next().unwrap();
    assert!(
        s.headline.starts_with(&format!(
            "launched runner dh-linux-x64-1501-1 on task …/{task_id} at "
        )) && s
            .headline
            .contains("; GitHub has not started the job yet ("),
        "{}",
        s.headline
    );
    let launched = entries(&s, EventKind::Launched)[0];
    assert_eq!(launched["task"], task.as_str());
    assert_eq!(launched["launched_on"], "FARGATE");
    let registered = entries(&s, EventKind::Registered)[0];
    assert_eq!(
        registered["runner_id"],
        env.github.runners()[0].id,
        "the id GitHub gave"
    );
    let received = entries(&s, EventKind::Received)[0];
    assert!(received["delivery"].is_string());
    // Each entry names the worker that wrote it.
    assert!(
        s.history
            .iter()
            .all(|e| e.process == s.history[2].process && e.process.contains('@')),
        "{:?}",
        s.history
    );

    // Another delivery of the same job: noted, nothing launched.
    env.app.deliver(Delivery::signed(queued_job(1501))).await;
    assert_eq!(next(&worker).await, Settled::Done(Outcome::Duplicate));
    for action in ["in_progress", "completed"] {
        let event = event_on(action, 1501, Some("dh-linux-x64-1501-1"));
        env.app.deliver(Delivery::signed(event)).await;
        assert_eq!(next(&worker).await, Settled::Done(Outcome::Tracked));
    }
    let s = story(store, 1501).await;
    assert_eq!(
        kinds(&s),
        [
            "received",
            "matched",
            "claimed",
            "registered",
            "launched",
            "duplicate",
            "started",
            "completed"
        ]
    );
    assert_eq!(entries(&s, EventKind::Duplicate)[0]["launch"], "launched");
    assert!(
        s.headline.starts_with("completed (success) at ")
            && s.headline
                .ends_with(" on runner dh-linux-x64-1501-1, launched for this job"),
        "{}",
        s.headline
    );
    let text = render::story(&s, Utc::now());
    assert!(
        text.starts_with(&format!("job 1501: {}\n", s.headline)),
        "{text}"
    );
    for line in [
        "started   ",
        "on runner dh-linux-x64-1501-1, launched for this job",
        "delivery ",
        "(launch already launched)",
    ] {
        assert!(text.contains(line), "{line:?} in\n{text}");
    }
    assert_eq!(env.ecs.task_arns().await.len(), 1);
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_for_a_full_pool_a_stolen_runner_and_a_cancellation_are_told_as_such(
    #[case] backend: Backend,
) {
    // Waits of a second or two, so that a deferred copy does not come back before the
    // next delivery.
    let env = Env::with(QueueChoice::Embedded, backend, |s| {
        s.pools[0].max_runners = 1;
        s.worker.backoff_base = std::time::Duration::from_secs(2);
        s.worker.backoff_max = std::time::Duration::from_secs(2);
    })
    .await;
    let worker = env.worker().await;
    let store = worker.store();
    // A launches; B waits for the full pool.
    env.app.deliver(Delivery::signed(queued_job(1601))).await;
    assert_eq!(next(&worker).await, Settled::Done(Outcome::Launched));
    env.app.deliver(Delivery::signed(queued_job(1602))).await;
    assert_eq!(next(&worker).await, Settled::Deferred(Deferral::PoolFull));
    let b = story(store, 1602).await;
    assert!(b.job.is_none(), "no row before a claim: {:?}", b.job);
    assert_eq!(kinds(&b), ["received", "matched", "deferred"]);
    let wait = entries(&b, EventKind::Deferred)[0];
    assert_eq!(
        (&wait["why"], &wait["live"], &wait["max"]),
        (&"pool_full".into(), &1.into(), &1.into())
    );
    assert!(
        b.headline
            .starts_with("waiting: pool linux-x64 is full (1 of 1) since ")
            && b.headline.contains(", deferred once; next try at "),
        "{}",
        b.headline
    );
    // C waits too.
    env.app.deliver(Delivery::signed(queued_job(1603))).await;
    assert_eq!(next(&worker).await, Settled::Deferred(Deferral::PoolFull));

    // C is cancelled while it waits; B takes A's runner and runs on it.
    env.app
        .deliver(Delivery::signed(event_on("completed", 1603, None)))
        .await;
    runs(&env, 1602, "dh-linux-x64-1601-1").await;
    let settled = drain_workers(&[&worker]).await;
    // B's launch (owed all along) happens once A's runner is finished; C's is waived.
    assert_eq!(count_done(&settled, Outcome::Launched), 1, "{settled:?}");
    assert_eq!(count_done(&settled, Outcome::Waived), 1, "{settled:?}");

    let c = story(store, 1603).await;
    let k = kinds(&c);
    assert_eq!(k[..3], ["received", "matched", "deferred"], "{k:?}");
    assert!(k.ends_with(&["cancelled", "waived"]), "{k:?}");
    assert!(
        c.headline.starts_with("cancelled on GitHub at ")
            && c.headline
                .ends_with(" before any runner took it (cancelled)"),
        "{}",
        c.headline
    );
    let b = story(store, 1602).await;
    assert!(
        b.headline.starts_with("completed (success) at ")
            && b.headline
                .ends_with(" on runner dh-linux-x64-1601-1, launched for job 1601"),
        "{}",
        b.headline
    );
    let k = kinds(&b);
    assert_eq!(k[..3], ["received", "matched", "deferred"], "{k:?}");
    assert!(k.contains(&"started") && k.contains(&"completed"), "{k:?}");
    assert!(
        k.ends_with(&["claimed", "registered", "launched"]),
        "B's own launch comes once A's runner is finished: {k:?}"
    );
    let a = story(store, 1601).await;
    assert_eq!(
        kinds(&a),
        [
            "received",
            "matched",
            "claimed",
            "registered",
            "launched",
            "runner_taken"
        ]
    );
    assert!(
        a.headline
            .starts_with("launched runner dh-linux-x64-1601-1 on task ")
            && a.headline
                .contains("; it ran job 1602 instead, and GitHub has not started this job yet (")
            && a.headline
                .ends_with("): the next idle runner of pool linux-x64 takes it"),
        "{}",
        a.headline
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_failure_its_dead_letter_and_its_requeue_are_told_in_order() {
    let env = Env::new(QueueChoice::Sqs, Backend::Postgres).await;
    let worker = env.worker().await;
    env.github.fail_next(
        Endpoint::JitConfig,
        Failure::Message(403, "Resource not accessible by integration".into()),
    );
    env.app.deliver(Delivery::signed(queued_job(1701))).await;
    assert!(matches!(next(&worker).await, Settled::Failed(_)));
    let store = worker.store();
    let s = story(store, 1701).await;
    assert_eq!(
        kinds(&s),
        ["received", "matched", "claimed", "failed", "dead_lettered"]
    );
    assert!(
        s.headline.starts_with("dead-lettered at ")
            && s.headline.contains(": GitHub: ")
            && s.headline.contains("403"),
        "{}",
        s.headline
    );

    let dlq = env.app.queue.dead_letter_queue().await.unwrap().unwrap();
    let plan = dockhand::dlq::plan(&*dlq, &requeue_of(1701)).await.unwrap();
    let summary = plan.execute(&env.app.queue, &dlq, None, |_, _| {}).await;
    assert_eq!((summary.moved, summary.failed), (1, 0));
    assert_eq!(next(&worker).await, Settled::Done(Outcome::Launched));
    let s = story(store, 1701).await;
    assert_eq!(
        kinds(&s),
        [
            "received",
            "matched",
            "claimed",
            "failed",
            "dead_lettered",
            "requeued",
            "claimed",
            "registered",
            "launched"
        ]
    );
    let requeued = entries(&s, EventKind::Requeued)[0];
    assert_eq!(
        (&requeued["requeues"], &requeued["reopened"]),
        (&1.into(), &true.into())
    );
    assert_eq!(entries(&s, EventKind::Claimed)[1]["attempt"], 2);
    assert!(
        s.headline
            .starts_with("launched runner dh-linux-x64-1701-2 on task "),
        "{}",
        s.headline
    );
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_and_its_take_over_are_told_with_whose_lease_expired(#[case] backend: Backend) {
    let env = Env::new(QueueChoice::Embedded, backend).await;
    // Worker A registers a runner, then dies in RunTask (which never reaches ECS).
    env.crash_in_run_task(1801, false).await;

    let b = env.worker().await;
    let s = story(b.store(), 1801).await;
    assert_eq!(kinds(&s), ["received", "matched", "claimed", "registered"]);
    assert!(
        s.headline.starts_with("launching: worker ") && s.headline.contains("(attempt 1) since "),
        "{}",
        s.headline
    );
    let a_process = s.history[2].process.clone();

    let settled = drain_workers(&[&b]).await;
    assert_eq!(count_done(&settled, Outcome::Launched), 1, "{settled:?}");
    let s = story(b.store(), 1801).await;
    let k = kinds(&s);
    // B's claim comes once A's lease has expired (B may first find it held).
    let claims = entries(&s, EventKind::Claimed);
    let take_over = claims.last().unwrap();
    let a_owner = a_process.split('@').next().unwrap();
    assert_eq!(take_over["took_over_from"], a_owner, "{k:?}");
    assert_eq!(
        take_over["leftovers"]["runner"], "dh-linux-x64-1801-1",
        "{take_over}"
    );
    assert!(
        k.ends_with(&["claimed", "runner_removed", "registered", "launched"]),
        "{k:?}"
    );
    assert!(
        render::story(&s, Utc::now()).contains(&format!(
            "taken over from {a_owner}, whose lease had expired"
        )),
        "{}",
        render::story(&s, Utc::now())
    );
    env.proxy.release_run_task();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_reports_where_github_and_ecs_disagree_with_the_store() {
    let env = Env::new(QueueChoice::Embedded, Backend::Sqlite).await;
    let worker = env.worker().await;
    env.app.deliver(Delivery::signed(queued_job(1901))).await;
    assert_eq!(next(&worker).await, Settled::Done(Outcome::Launched));
    let github = GitHubApp::from_settings(
        &env.settings.github,
        &SecretResolver::new(&env.settings.aws),
    )
    .await
    .unwrap();
    let ecs = Launcher::new(env.settings.aws.ecs_client().await);
    let live = LiveClients {
        github,
        ecs: ecs.clone(),
    };

    // Everything agrees: GitHub has the job queued, its task runs.
    env.github
        .set_job("octo-org/hello-world", 1901, "queued", None, None);
    let mut s = story(worker.store(), 1901).await;
    live.check(&mut s).await;
    let found = s.live.as_ref().unwrap();
    assert_eq!(found.disagreements, Vec::<String>::new(), "{found:?}");
    assert_eq!(found.github.as_ref().unwrap().status, "queued");
    assert_ne!(
        found.task.as_ref().unwrap().last_status.as_deref(),
        Some("STOPPED")
    );
    let asked = env.github.requests_to(Endpoint::WorkflowJob);
    assert_eq!(asked.len(), 1);
    assert_eq!(
        asked[0].path,
        "/repos/octo-org/hello-world/actions/jobs/1901"
    );

    // The task dies before its runner takes the job, and GitHub has started the job on a
    // runner whose `in_progress` never arrived.
    let task = s.job.as_ref().unwrap().task_arn.clone().unwrap();
    let cluster = s.job.as_ref().unwrap().cluster.clone().unwrap();
    ecs.stop_task(&cluster, &TaskArn(task.clone()), "test: out of memory")
        .await
        .unwrap();
    let mut s = story(worker.store(), 1901).await;
    env.github.set_job(
        "octo-org/hello-world",
        1901,
        "in_progress",
        None,
        Some("somebody-elses-runner"),
    );
    live.check(&mut s).await;
    let found = s.live.as_ref().unwrap();
    assert_eq!(
        found.task.as_ref().unwrap().last_status.as_deref(),
        Some("STOPPED")
    );
    assert_eq!(
        found.disagreements,
        ["GitHub says the job is running on runner somebody-elses-runner; the store says queued"],
        "{found:?}"
    );

    env.github
        .set_job("octo-org/hello-world", 1901, "queued", None, None);
    live.check(&mut s).await;
    let found = s.live.as_ref().unwrap();
    assert_eq!(found.disagreements.len(), 1, "{found:?}");
    assert!(
        found.disagreements[0].starts_with(&format!("task {task} stopped (test: out of memory)"))
            && found.disagreements[0].ends_with("GitHub has not started the job: the runner launched for it is gone without running it"),
        "{found:?}"
    );
    let text = render::story(&s, Utc::now());
    assert!(
        text.contains(
            "live:\n  GitHub: queued\n  ECS task: STOPPED (test: out of memory)\n  DISAGREES: task "
        ),
        "{text}"
    );
}
