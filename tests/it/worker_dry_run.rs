//! The worker in dry-run mode, end to end on the embedded queue and SQLite: webhook →
//! queue → worker → store, with duplicates, cancellations and poison messages.

use crate::common;

use common::*;
use dockhand::domain::JobId;
use dockhand::queue::OutgoingMessage;
use dockhand::store::{GitHubState, LaunchState};
use dockhand::worker::ATTR_DEAD_LETTER_REASON;
use dockhand::worker::outcome::{Outcome, Settled};

fn dry_run_settings(dir: &tempfile::TempDir) -> dockhand::config::Settings {
    let mut s = embedded_settings(dir);
    s.worker.dry_run = true;
    // Short, so duplicates deferred behind a live lease come back within the test.
    s.worker.lease = std::time::Duration::from_secs(1);
    s.store = common::stores::sqlite_settings(dir);
    s.pools[0].ecs = Some(dry_run_launch_settings());
    s
}

/// An ingress and a dry-run worker on one embedded queue and SQLite store in `dir`.
async fn dry_run_app(dir: &tempfile::TempDir) -> (TestApp, dockhand::worker::Worker) {
    let settings = dry_run_settings(dir);
    let app = spawn_app(settings.clone()).await;
    let worker = dockhand::startup::build_worker(&settings, app.queue.clone())
        .await
        .unwrap();
    (app, worker)
}

#[tokio::test]
async fn a_queued_job_flows_to_a_dry_run_launch_and_duplicates_are_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let (app, worker) = dry_run_app(&dir).await;

    for _ in 0..3 {
        let (status, _) = app.deliver(Delivery::signed(queued_job(11))).await;
        assert_eq!(status, 202);
    }
    let outcomes = drain_workers(&[&worker]).await;
    // Copies processed while the first holds its lease come back after it and are duplicates.
    assert_eq!(count_done(&outcomes, Outcome::DryRun), 1, "{outcomes:?}");
    assert_eq!(count_done(&outcomes, Outcome::Duplicate), 2, "{outcomes:?}");

    let job = worker.store().job(JobId(11)).await.unwrap().unwrap();
    assert_eq!(job.launch, LaunchState::DryRun);
    assert_eq!(job.pool.as_deref(), Some("linux-x64"));
    assert_eq!(job.runner_name.as_deref(), Some("dh-linux-x64-11-1"));
    assert_eq!(job.lease_owner, None);
    // Every message was deleted once its outcome was recorded.
    assert!(app.drain().await.is_empty());
    let metrics = app.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            "dockhand_jobs_total{pool=\"linux-x64\",outcome=\"dry_run\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "dockhand_jobs_total{pool=\"linux-x64\",outcome=\"duplicate\"}"
        ),
        Some(2.0)
    );
    app.stop().await;
}

#[tokio::test]
async fn a_job_cancelled_while_queued_is_recorded_and_never_launched() {
    let dir = tempfile::tempdir().unwrap();
    let (app, worker) = dry_run_app(&dir).await;

    let mut cancelled =
        dockhand::synthetic::workflow_job_payload(&dockhand::synthetic::SyntheticJob {
            action: "completed".into(),
            job_id: 12,
            ..Default::default()
        });
    cancelled["workflow_job"]["conclusion"] = "cancelled".into();
    cancelled["workflow_job"]["runner_name"] = serde_json::Value::Null;
    cancelled["workflow_job"]["runner_id"] = serde_json::Value::Null;
    app.deliver(Delivery::signed(cancelled.to_string())).await;
    assert_eq!(
        drain_workers(&[&worker]).await,
        [Settled::Done(Outcome::Tracked)]
    );
    // The queued delivery arrives late (GitHub does not order deliveries).
    app.deliver(Delivery::signed(queued_job(12))).await;
    assert_eq!(
        drain_workers(&[&worker]).await,
        [Settled::Done(Outcome::Waived)]
    );

    let job = worker.store().job(JobId(12)).await.unwrap().unwrap();
    assert_eq!(job.launch, LaunchState::Waived);
    assert_eq!(job.github, GitHubState::Completed);
    assert_eq!(job.conclusion.as_deref(), Some("cancelled"));
    app.stop().await;
}

#[tokio::test]
async fn a_job_without_github_timestamps_is_followed_and_only_its_wait_goes_unrecorded() {
    let dir = tempfile::tempdir().unwrap();
    let (app, worker) = dry_run_app(&dir).await;
    let labels = ["self-hosted", "linux"];
    let bare = |action: &str| {
        let mut body: serde_json::Value =
            serde_json::from_slice(&job_body(action, 13, &labels)).unwrap();
        let job = body["workflow_job"].as_object_mut().unwrap();
        for key in ["created_at", "run_attempt", "started_at", "completed_at"] {
            job.remove(key);
        }
        body.to_string()
    };
    for action in ["in_progress", "completed"] {
        let (status, reply) = app.deliver(Delivery::signed(bare(action))).await;
        assert_eq!(status, 202, "{reply}");
        assert_eq!(
            drain_workers(&[&worker]).await,
            [Settled::Done(Outcome::Tracked)],
            "{action}"
        );
    }
    let job = worker.store().job(JobId(13)).await.unwrap().unwrap();
    assert_eq!(job.github, GitHubState::Completed);
    assert_eq!(job.conclusion.as_deref(), Some("success"));
    let wait = "dockhand_job_wait_seconds_count{pool=\"linux-x64\"}";
    assert_eq!(sample(&app.metrics().await, wait), None);

    // The same story with GitHub's timestamps records the wait.
    app.deliver(Delivery::signed(job_body("in_progress", 14, &labels)))
        .await;
    assert_eq!(
        drain_workers(&[&worker]).await,
        [Settled::Done(Outcome::Tracked)]
    );
    assert_eq!(sample(&app.metrics().await, wait), Some(1.0));
    app.stop().await;
}

#[tokio::test]
async fn poison_messages_go_to_the_dead_letter_queue_at_once_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (app, worker) = dry_run_app(&dir).await;
    let mut future_version = serde_json::json!({"v": 2, "event": {}});
    future_version["job"] = 5.into();
    for body in ["not json at all".to_string(), future_version.to_string()] {
        app.queue
            .send(OutgoingMessage {
                body,
                attributes: [("job-id".to_string(), "5".to_string())].into(),
                delay: std::time::Duration::ZERO,
            })
            .await
            .unwrap();
    }
    let settled = drain_workers(&[&worker]).await;
    assert!(
        matches!(&settled[..], [Settled::Failed(_), Settled::Failed(_)]),
        "{settled:?}"
    );

    assert!(app.drain().await.is_empty(), "nothing is left to retry");
    let dlq = app.queue.dead_letter_queue().await.unwrap().unwrap();
    let mut reasons: Vec<String> = drain(&*dlq)
        .await
        .iter()
        .map(|m| {
            assert_eq!(m.receive_count, 1, "dead-lettered on the first receive");
            assert_eq!(m.attributes["job-id"], "5", "attributes are kept");
            m.attributes[ATTR_DEAD_LETTER_REASON].clone()
        })
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        [
            "message body is not a dockhand envelope",
            "unsupported envelope version 2 (this build reads 1)"
        ]
    );
    app.stop().await;
}

#[tokio::test]
async fn events_for_a_job_no_pool_serves_leave_no_row_and_count_as_unmatched() {
    let dir = tempfile::tempdir().unwrap();
    let (app, worker) = dry_run_app(&dir).await;
    // A GitHub-hosted job: the ingress forwards its later events (dockhand's runner might
    // have taken it), and the worker finds it is not dockhand's.
    for action in ["in_progress", "completed"] {
        let (status, reply) = app
            .deliver(Delivery::signed(job_body(action, 15, &["ubuntu-latest"])))
            .await;
        assert_eq!(status, 202, "{reply}");
        assert_eq!(
            drain_workers(&[&worker]).await,
            [Settled::Done(Outcome::Unmatched)],
            "{action}"
        );
    }
    // A queued job from an ingress that named no pool (an older build), which no pool of
    // this worker's serves.
    let body = job_body("queued", 16, &["ubuntu-latest"]);
    let event = match dockhand::ingress::webhook::parse_workflow_job(
        &body,
        dockhand::domain::DeliveryId("d".into()),
        64,
    )
    .unwrap()
    {
        dockhand::ingress::webhook::Parsed::Job(event) => *event,
        dockhand::ingress::webhook::Parsed::UnknownAction => unreachable!(),
    };
    let envelope = dockhand::queue::envelope::Envelope::new(event, None, chrono::Utc::now());
    app.queue.send(envelope.to_message()).await.unwrap();
    assert_eq!(
        drain_workers(&[&worker]).await,
        [Settled::Done(Outcome::Unmatched)]
    );

    for job in [15, 16] {
        assert_eq!(
            worker.store().job(JobId(job)).await.unwrap(),
            None,
            "job {job}"
        );
    }
    assert!(app.drain().await.is_empty());
    assert_eq!(
        sample(
            &app.metrics().await,
            "dockhand_jobs_total{pool=\"none\",outcome=\"unmatched\"}"
        ),
        Some(3.0)
    );
    app.stop().await;
}

#[tokio::test]
async fn a_completed_event_for_a_job_dockhand_launched_is_still_tracked() {
    let dir = tempfile::tempdir().unwrap();
    let (app, worker) = dry_run_app(&dir).await;
    app.deliver(Delivery::signed(queued_job(17))).await;
    assert_eq!(
        drain_workers(&[&worker]).await,
        [Settled::Done(Outcome::DryRun)]
    );
    // Its labels no longer match a pool (as if the pool were since removed): the store
    // knows the job, so its end is still recorded.
    let mut done: serde_json::Value =
        serde_json::from_slice(&job_body("completed", 17, &["ubuntu-latest"])).unwrap();
    done["workflow_job"]["runner_name"] = "dh-linux-x64-17-1".into();
    app.deliver(Delivery::signed(done.to_string())).await;
    assert_eq!(
        drain_workers(&[&worker]).await,
        [Settled::Done(Outcome::Tracked)]
    );
    let job = worker.store().job(JobId(17)).await.unwrap().unwrap();
    assert_eq!(job.github, GitHubState::Completed);
    assert_eq!(job.conclusion.as_deref(), Some("success"));
    app.stop().await;
}
