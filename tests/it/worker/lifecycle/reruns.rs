//! Re-runs of jobs Spot interrupted while they ran: asked for once, only after GitHub
//! reports the job and its run completed, never for a job that failed for other reasons or
//! a run re-run already, and the re-run's jobs launch on on-demand capacity. Checked on the
//! fake GitHub's exact requests, moto's RunTask calls and the store's history.

use serde_json::json;

use super::events::stopped_by_event;
use super::spot::{
    REPO, Seen, interrupted, job_in_run, run_task_providers, running, spot_pool, spot_stop,
};
use super::*;
use crate::common::fake_github::{Endpoint, Failure};
use crate::common::stores::Backend;
use crate::worker::QueueChoice;
use dockhand::store::RunnerState;
use rstest::rstest;

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_job_is_rerun_once_after_its_run_completes_and_the_rerun_launches_on_demand(
    #[case] backend: Backend,
) {
    let env = Env::with(QueueChoice::Embedded, backend, spot_pool).await;
    let worker = env.worker().await;
    let reconciler = reconciler(&worker, lifecycle());
    let runner = running(&env, &worker, 4401, 44010).await;
    stopped_by_event(&env, &worker, &runner, spot_stop()).await;
    let store = worker.store();
    assert_eq!(runner_of(store, 4401).await.state, RunnerState::Finished);
    let history = kinds(store, 4401).await;
    assert!(
        history.ends_with(&["started", "task_stopped", "runner_lost", "interrupted"]),
        "{history:?}"
    );
    assert_eq!(
        entries(store, 4401, EventKind::Interrupted).await[0]["rerun"],
        true
    );

    // GitHub has not yet noticed the runner is gone: nothing is asked.
    let rerun = || env.github.count(Endpoint::RerunFailedJobs);
    env.github.set_job_in_run(
        REPO,
        4401,
        44010,
        1,
        "in_progress",
        None,
        Some(&runner.runner_name),
    );
    env.github.set_run(REPO, 44010, "in_progress", None, 1);
    assert_eq!(pass(&reconciler).await.reruns, 0);
    // The job failed, but its run goes on (other jobs): GitHub would refuse a re-run now.
    env.app
        .deliver(Delivery::signed(job_in_run(
            "completed",
            4401,
            44010,
            1,
            Some(&runner.runner_name),
        )))
        .await;
    assert_eq!(next(&worker).await, Settled::Done(Outcome::Tracked));
    env.github.set_job_in_run(
        REPO,
        4401,
        44010,
        1,
        "completed",
        Some("failure"),
        Some(&runner.runner_name),
    );
    assert_eq!(pass(&reconciler).await.reruns, 0);
    assert_eq!(rerun(), 0, "never while the run is going");
    // The run completed: exactly one request, and never again.
    env.github
        .set_run(REPO, 44010, "completed", Some("failure"), 1);
    assert_eq!(pass(&reconciler).await.reruns, 1);
    assert_eq!(pass(&reconciler).await.reruns, 0);
    assert_eq!(rerun(), 1);
    let request = &env.github.requests_to(Endpoint::RerunFailedJobs)[0];
    assert_eq!(
        request.path,
        "/repos/octo-org/hello-world/actions/runs/44010/rerun-failed-jobs"
    );
    assert_eq!(env.github.run(44010).unwrap().2, 2, "attempt 2 runs");
    let rerun_entry = entries(store, 4401, EventKind::Rerun).await;
    assert_eq!(rerun_entry.len(), 1);
    assert_eq!(
        (&rerun_entry[0]["outcome"], &rerun_entry[0]["attempt"]),
        (&json!("requested"), &json!(2))
    );

    // The re-run's job is a new job: it launches on on-demand Fargate. A job of another
    // run still starts on Spot.
    let before = run_task_providers(&env).len();
    env.app
        .deliver(Delivery::signed(job_in_run("queued", 4402, 44010, 2, None)))
        .await;
    assert_eq!(next(&worker).await, Settled::Done(Outcome::Launched));
    env.app
        .deliver(Delivery::signed(job_in_run("queued", 4403, 44030, 1, None)))
        .await;
    assert_eq!(next(&worker).await, Settled::Done(Outcome::Launched));
    assert_eq!(
        run_task_providers(&env)[before..],
        ["FARGATE", "FARGATE_SPOT"]
    );

    // `jobs show` tells the story.
    let story = dockhand::inspect::JobStory::load(store, "the test store", JobId(4401), Utc::now())
        .await
        .unwrap()
        .unwrap();
    let text = dockhand::inspect::render::story(&story, Utc::now());
    assert!(text.contains("Spot reclaimed task"), "{text}");
    assert!(text.contains("while running a job"), "{text}");
    assert!(
        text.contains("re-runs the failed jobs of run 44010 as attempt 2"),
        "{text}"
    );
    // Settled, the re-run is pruned with the rest once past the retention.
    let pruned = store
        .prune_before(Utc::now() + chrono::TimeDelta::seconds(1), 100)
        .await
        .unwrap();
    assert_eq!(pruned.reruns, 1, "{pruned:?}");
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_interrupted_jobs_that_failed_are_rerun_and_never_a_run_rerun_already(
    #[case] backend: Backend,
) {
    let env = Env::with(QueueChoice::Embedded, backend, spot_pool).await;
    let worker = env.worker().await;
    let reconciler = reconciler(&worker, lifecycle());
    let store = worker.store();
    // 4501 fails for its own reasons: its runner exits 1. Not an interruption.
    let own = running(&env, &worker, 4501, 45010).await;
    let failed = json!({
        "stopCode": "EssentialContainerExited",
        "stoppedReason": "Essential container in task exited",
        "exitCode": 1,
        "capacityProviderName": "FARGATE_SPOT",
    });
    stopped_by_event(&env, &worker, &own, failed).await;
    // 4502 was interrupted, but its job had succeeded already.
    let lucky = running(&env, &worker, 4502, 45020).await;
    stopped_by_event(&env, &worker, &lucky, spot_stop()).await;
    // 4503 was interrupted, and a person re-ran its run already.
    let rerun_by_hand = running(&env, &worker, 4503, 45030).await;
    stopped_by_event(&env, &worker, &rerun_by_hand, spot_stop()).await;

    for (job, run, conclusion, attempt) in [
        (4501, 45010, "failure", 1),
        (4502, 45020, "success", 1),
        (4503, 45030, "failure", 2),
    ] {
        env.github
            .set_job_in_run(REPO, job, run, 1, "completed", Some(conclusion), None);
        env.github
            .set_run(REPO, run, "completed", Some(conclusion), attempt);
    }
    pass(&reconciler).await;
    pass(&reconciler).await;
    assert_eq!(env.github.count(Endpoint::RerunFailedJobs), 0);
    assert!(
        entries(store, 4501, EventKind::Interrupted)
            .await
            .is_empty()
    );
    assert!(entries(store, 4501, EventKind::Rerun).await.is_empty());
    assert_eq!(
        entries(store, 4502, EventKind::Rerun).await[0]["outcome"],
        "not_needed"
    );
    assert_eq!(
        entries(store, 4503, EventKind::Rerun).await[0]["outcome"],
        "covered"
    );
    // Covered by a person's re-run, the run's new jobs still go on-demand.
    env.app
        .deliver(Delivery::signed(job_in_run("queued", 4504, 45030, 2, None)))
        .await;
    assert_eq!(next(&worker).await, Settled::Done(Outcome::Launched));
    assert_eq!(run_task_providers(&env).last().unwrap(), "FARGATE");
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_request_that_failed_is_asked_again_unless_github_had_done_it(
    #[case] backend: Backend,
) {
    let env = Env::with(QueueChoice::Embedded, backend, spot_pool).await;
    let worker = env.worker().await;
    let reconciler = reconciler(&worker, lifecycle());
    let store = worker.store();
    for (job, run) in [(4801, 48010), (4802, 48020)] {
        let runner = running(&env, &worker, job, run).await;
        stopped_by_event(&env, &worker, &runner, spot_stop()).await;
        env.github
            .set_job_in_run(REPO, job, run, 1, "completed", Some("failure"), None);
        env.github
            .set_run(REPO, run, "completed", Some("failure"), 1);
    }
    // Both requests fail with a 502. GitHub did re-run 48010 all the same (the answer was
    // lost on the way back), not 48020.
    env.github
        .fail_next(Endpoint::RerunFailedJobs, Failure::Status(502));
    env.github
        .fail_next(Endpoint::RerunFailedJobs, Failure::Status(502));
    assert!(reconciler.pass().await.is_err(), "a 502 is tried again");
    assert_eq!(env.github.count(Endpoint::RerunFailedJobs), 2);
    env.github.set_run(REPO, 48010, "queued", None, 2);
    let p = pass(&reconciler).await;
    assert_eq!(p.reruns, 1, "{p:?}");
    // 48010 was not asked again; 48020 was, once more, and went through.
    let paths: Vec<String> = env
        .github
        .requests_to(Endpoint::RerunFailedJobs)
        .into_iter()
        .map(|r| r.path)
        .collect();
    assert_eq!(
        paths,
        [
            "/repos/octo-org/hello-world/actions/runs/48010/rerun-failed-jobs",
            "/repos/octo-org/hello-world/actions/runs/48020/rerun-failed-jobs",
            "/repos/octo-org/hello-world/actions/runs/48020/rerun-failed-jobs",
        ]
    );
    for (job, run) in [(4801, 48010), (4802, 48020)] {
        let rerun = entries(store, job, EventKind::Rerun).await;
        assert_eq!(rerun.len(), 1, "job {job}: {rerun:?}");
        assert_eq!(rerun[0]["outcome"], "requested", "job {job}");
        assert_eq!(rerun[0]["attempt"], 2, "job {job}");
        assert_eq!(env.github.run(run).unwrap().2, 2, "run {run}");
    }
    assert_eq!(pass(&reconciler).await.reruns, 0);
    assert_eq!(env.github.count(Endpoint::RerunFailedJobs), 3);
}

/// On SIGTERM the runner fails its job and reports it, so GitHub's `completed` webhook
/// usually comes before ECS's stop: the runner is finished by then, and its interruption
/// must still be recorded and its run re-run.
#[rstest]
#[case::event_sqlite(Seen::Event, Backend::Sqlite)]
#[case::event_postgres(Seen::Event, Backend::Postgres)]
#[case::pass_sqlite(Seen::Pass, Backend::Sqlite)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interruption_seen_after_the_jobs_completed_webhook_still_reruns_its_run(
    #[case] seen: Seen,
    #[case] backend: Backend,
) {
    let env = Env::with(QueueChoice::Embedded, backend, spot_pool).await;
    let worker = env.worker().await;
    let reconciler = reconciler(&worker, lifecycle());
    let runner = running(&env, &worker, 4901, 49010).await;
    env.app
        .deliver(Delivery::signed(job_in_run(
            "completed",
            4901,
            49010,
            1,
            Some(&runner.runner_name),
        )))
        .await;
    assert_eq!(next(&worker).await, Settled::Done(Outcome::Tracked));
    let store = worker.store();
    assert_eq!(runner_of(store, 4901).await.state, RunnerState::Finished);
    // GitHub knows the job failed; its run goes on a little longer.
    env.github.set_job_in_run(
        REPO,
        4901,
        49010,
        1,
        "completed",
        Some("failure"),
        Some(&runner.runner_name),
    );
    env.github.set_run(REPO, 49010, "in_progress", None, 1);
    interrupted(seen, &env, &worker, &reconciler, &runner).await;
    let interrupted = entries(store, 4901, EventKind::Interrupted).await;
    assert_eq!(interrupted.len(), 1, "{:?}", kinds(store, 4901).await);
    assert_eq!(interrupted[0]["had_job"], true);
    env.github
        .set_run(REPO, 49010, "completed", Some("failure"), 1);
    assert_eq!(pass(&reconciler).await.reruns, 1);
    assert_eq!(pass(&reconciler).await.reruns, 0);
    assert_eq!(env.github.count(Endpoint::RerunFailedJobs), 1);
    assert_eq!(runner_of(store, 4901).await.state, RunnerState::Finished);
}
