//! Pruning the store: finished jobs and runners go after the retention, live ones stay
//! whatever their age; on SQLite and on Postgres.

use std::time::Duration;

use dockhand::domain::{DeliveryId, JobEvent, JobId, RunnerId};
use dockhand::ingress::webhook::{Parsed, parse_workflow_job};
use dockhand::store::{Delivered, GitHubState, LaunchState, Pruned, RunnerState, Store};
use dockhand::synthetic::{SyntheticJob, workflow_job_payload};
use rstest::rstest;

use crate::common::stores::{Backend, TestStore};

const LEASE: Duration = Duration::from_secs(60);

fn event(action: &str, job_id: u64, runner: Option<&str>) -> JobEvent {
    let body = workflow_job_payload(&SyntheticJob {
        action: action.into(),
        job_id,
        installation_id: Some(3),
        ..SyntheticJob::default()
    })
    .to_string();
    let mut event = match parse_workflow_job(body.as_bytes(), DeliveryId("d".into()), 64).unwrap() {
        Parsed::Job(e) => *e,
        Parsed::UnknownAction => unreachable!(),
    };
    match runner {
        Some(name) => event.job.runner.as_mut().unwrap().name = Some(name.into()),
        None => event.job.runner = None,
    }
    event
}

/// Claims the job and launches a runner for it, as a worker does.
async fn launch(store: &Store, job: u64) -> String {
    let runner = format!("dh-pool-{job}-1");
    store
        .claim(&event("queued", job, None), "pool", "w", LEASE)
        .await
        .unwrap();
    store
        .record_intent(JobId(job), "w", &runner, "cluster")
        .await
        .unwrap();
    store
        .record_registration(JobId(job), "w", "pool", &runner, RunnerId(job))
        .await
        .unwrap();
    store
        .record_launched(
            JobId(job),
            "w",
            &runner,
            Some("arn:aws:ecs:task/1"),
            None,
            LaunchState::Launched,
        )
        .await
        .unwrap();
    runner
}

async fn state(store: &Store, job: u64) -> Option<(LaunchState, GitHubState)> {
    store
        .job(JobId(job))
        .await
        .unwrap()
        .map(|j| (j.launch, j.github))
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_finished_jobs_and_runners_are_pruned_in_batches_and_live_ones_are_kept(
    #[case] backend: Backend,
) {
    let fresh = TestStore::new(backend).await;
    let store = fresh.connect().await;
    // Old and finished: a job its runner completed, and eight cancelled while queued
    // (more than one batch of three).
    let ran = launch(&store, 1).await;
    store
        .track(&event("completed", 1, Some(&ran)), Some("pool"))
        .await
        .unwrap();
    for job in 2..=9 {
        store
            .track(&event("completed", job, None), Some("pool"))
            .await
            .unwrap();
    }
    // Old but live: a job still launching, one launched (with its live runner), one running.
    store
        .claim(&event("queued", 20, None), "pool", "w", LEASE)
        .await
        .unwrap();
    let live = launch(&store, 21).await;
    store
        .track(
            &event("in_progress", 22, Some("someone-else")),
            Some("pool"),
        )
        .await
        .unwrap();

    // Old, and known only from its history: no pool served it.
    let unmatched = event("queued", 40, None);
    let seen = |event| Delivered {
        event,
        accepted_at: chrono::Utc::now(),
    };
    store.record_unmatched(&seen(&unmatched)).await.unwrap();

    tokio::time::sleep(Duration::from_millis(5)).await;
    let cutoff = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(5)).await;
    // Finished, but recent; and a recent history without a row.
    store
        .track(&event("completed", 30, None), Some("pool"))
        .await
        .unwrap();
    store
        .record_unmatched(&seen(&event("queued", 41, None)))
        .await
        .unwrap();

    let mut old_history = 0;
    for job in (1..=9).chain([40]) {
        old_history += store.history(JobId(job)).await.unwrap().len() as u64;
    }
    // Job 1: received, matched, claimed, registered, launched, completed; 2-9: cancelled
    // and waived; 40: received and unmatched.
    assert_eq!(old_history, 6 + 8 * 2 + 2);
    let pruned = store.prune_before(cutoff, 3).await.unwrap();
    assert_eq!(
        pruned,
        Pruned {
            jobs: 9,
            runners: 1,
            history: old_history,
            reruns: 0,
        }
    );
    for job in (1..=9).chain([40]) {
        assert_eq!(state(&store, job).await, None, "job {job}");
        assert_eq!(store.history(JobId(job)).await.unwrap(), [], "job {job}");
    }
    for job in [20, 21, 22, 30, 41] {
        assert!(
            !store.history(JobId(job)).await.unwrap().is_empty(),
            "job {job}"
        );
    }
    use GitHubState::{Completed, InProgress, Queued};
    assert_eq!(
        state(&store, 20).await,
        Some((LaunchState::Launching, Queued))
    );
    assert_eq!(
        state(&store, 21).await,
        Some((LaunchState::Launched, Queued))
    );
    assert_eq!(
        state(&store, 22).await,
        Some((LaunchState::Waived, InProgress)),
        "running on a runner dockhand did not launch"
    );
    assert_eq!(
        state(&store, 30).await,
        Some((LaunchState::Waived, Completed))
    );
    let runners = store.runners().await.unwrap();
    assert_eq!(runners.len(), 1, "{runners:?}");
    assert_eq!(runners[0].runner_name, live);
    assert_eq!(runners[0].state, RunnerState::Launched);

    // A second pass finds nothing; the retention form keeps everything this young.
    assert_eq!(
        store.prune_before(cutoff, 3).await.unwrap(),
        Pruned::default()
    );
    assert_eq!(
        store.prune(Duration::from_secs(3600)).await.unwrap(),
        Pruned::default()
    );
    assert_eq!(
        state(&store, 30).await,
        Some((LaunchState::Waived, GitHubState::Completed))
    );
}
