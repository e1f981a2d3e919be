//! The store's claim and lease rules, on SQLite and on Postgres.

use std::time::Duration;

use dockhand::domain::{DeliveryId, JobEvent, JobId, RunnerId};
use dockhand::ingress::webhook::{Parsed, parse_workflow_job};
use dockhand::store::{
    Claim, Deferred, GitHubState, LaunchState, Leftovers, Owed, RunnerState, StoreError,
};
use dockhand::synthetic::{SyntheticJob, workflow_job_payload};
use rstest::rstest;

use crate::common::stores::{Backend, TestStore};

const LEASE: Duration = Duration::from_secs(60);

/// A transient error's wait, as a worker gives a job back with it.
fn wait(reason: &str) -> Deferred {
    Deferred::new("error", reason, chrono::Utc::now())
}

pub(crate) fn event(action: &str, job_id: u64) -> JobEvent {
    let body = workflow_job_payload(&SyntheticJob {
        action: action.into(),
        job_id,
        installation_id: Some(3),
        ..SyntheticJob::default()
    })
    .to_string();
    match parse_workflow_job(body.as_bytes(), DeliveryId("d".into()), 64).unwrap() {
        Parsed::Job(e) => *e,
        Parsed::UnknownAction => unreachable!(),
    }
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_claim_acquires_and_a_second_is_held(#[case] backend: Backend) {
    let fresh = TestStore::new(backend).await;
    let store = fresh.connect().await;
    let job = event("queued", 1);
    assert_eq!(
        store.claim(&job, "pool", "worker-a", LEASE).await.unwrap(),
        Claim::Acquired {
            attempt: 1,
            prior: None
        }
    );
    assert!(matches!(
        store.claim(&job, "pool", "worker-b", LEASE).await.unwrap(),
        Claim::Held(_)
    ));
    let row = store.job(JobId(1)).await.unwrap().unwrap();
    assert_eq!(row.launch, LaunchState::Launching);
    assert_eq!(row.lease_owner.as_deref(), Some("worker-a"));
    assert_eq!(row.repo, "octo-org/hello-world");
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claims_of_one_job_give_exactly_one_lease(#[case] backend: Backend) {
    let fresh = TestStore::new(backend).await;
    let store = fresh.connect().await;
    let job = event("queued", 2);
    let mut claims = tokio::task::JoinSet::new();
    for i in 0..20 {
        let (store, job) = (store.clone(), job.clone());
        claims.spawn(async move { store.claim(&job, "pool", &format!("w{i}"), LEASE).await });
    }
    let results = claims.join_all().await;
    let acquired = results
        .iter()
        .filter(|r| matches!(r, Ok(Claim::Acquired { .. })))
        .count();
    assert_eq!(acquired, 1, "{results:?}");
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Ok(Claim::Acquired { .. } | Claim::Held(_))))
    );
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_is_taken_over_with_what_the_first_attempt_left(#[case] backend: Backend) {
    let fresh = TestStore::new(backend).await;
    let store = fresh.connect().await;
    let job = event("queued", 3);
    store
        .claim(&job, "pool", "crashed", Duration::from_millis(1))
        .await
        .unwrap();
    store
        .record_intent(JobId(3), "crashed", "dh-pool-3-1", "runners-a")
        .await
        .unwrap();
    store
        .record_registration(JobId(3), "crashed", "pool", "dh-pool-3-1", RunnerId(77))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;

    let claim = store.claim(&job, "pool", "rescuer", LEASE).await.unwrap();
    let Claim::Acquired {
        attempt,
        prior: Some(prior),
    } = claim
    else {
        panic!("{claim:?}")
    };
    assert_eq!(attempt, 2);
    assert_eq!(prior.runner_name.as_deref(), Some("dh-pool-3-1"));
    assert_eq!(prior.runner_id, Some(RunnerId(77)));
    assert_eq!(prior.task_arn, None);
    assert_eq!(prior.cluster.as_deref(), Some("runners-a"));
    // The crashed worker's late writes are refused.
    assert!(matches!(
        store
            .record_launched(
                JobId(3),
                "crashed",
                "dh-pool-3-1",
                Some("arn:task"),
                None,
                LaunchState::Launched
            )
            .await,
        Err(StoreError::LeaseLost(JobId(3)))
    ));
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launched_job_is_done_and_counts_as_a_live_runner(#[case] backend: Backend) {
    let fresh = TestStore::new(backend).await;
    let store = fresh.connect().await;
    let job = event("queued", 4);
    store.claim(&job, "pool", "w", LEASE).await.unwrap();
    store
        .record_intent(JobId(4), "w", "dh-pool-4-1", "runners-a")
        .await
        .unwrap();
    store
        .record_registration(JobId(4), "w", "pool", "dh-pool-4-1", RunnerId(5))
        .await
        .unwrap();
    store
        .record_launched(
            JobId(4),
            "w",
            "dh-pool-4-1",
            Some("arn:aws:ecs:task/1"),
            None,
            LaunchState::Launched,
        )
        .await
        .unwrap();
    assert_eq!(
        store.claim(&job, "pool", "w2", LEASE).await.unwrap(),
        Claim::Done(LaunchState::Launched)
    );
    assert_eq!(store.live_runners("pool").await.unwrap(), 1);
    let row = store.job(JobId(4)).await.unwrap().unwrap();
    assert_eq!(row.task_arn.as_deref(), Some("arn:aws:ecs:task/1"));
    assert_eq!(row.lease_owner, None);

    // GitHub gives the runner the job, then it completes: the runner is no longer live.
    let mut running = event("in_progress", 4);
    running.job.runner.as_mut().unwrap().name = Some("dh-pool-4-1".into());
    store.track(&running, Some("pool")).await.unwrap();
    assert_eq!(
        store.job(JobId(4)).await.unwrap().unwrap().github,
        GitHubState::InProgress
    );
    let mut done = event("completed", 4);
    done.job.runner.as_mut().unwrap().name = Some("dh-pool-4-1".into());
    store.track(&done, Some("pool")).await.unwrap();
    let row = store.job(JobId(4)).await.unwrap().unwrap();
    assert_eq!(row.github, GitHubState::Completed);
    assert_eq!(row.launch, LaunchState::Launched);
    assert_eq!(row.ran_on.as_deref(), Some("dh-pool-4-1"));
    assert_eq!(row.ran_on_dockhand, Some(true));
    assert_eq!(row.conclusion.as_deref(), Some("success"));
    assert_eq!(store.live_runners("pool").await.unwrap(), 0);
    let runner = &store.runners().await.unwrap()[0];
    assert_eq!(runner.state, RunnerState::Finished);
    assert_eq!(runner.ran_job_id, Some(JobId(4)));
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_job_is_claimed_again_with_a_new_attempt(#[case] backend: Backend) {
    let fresh = TestStore::new(backend).await;
    let store = fresh.connect().await;
    let job = event("queued", 5);
    store.claim(&job, "pool", "w", LEASE).await.unwrap();
    store
        .record_intent(JobId(5), "w", "dh-pool-5-1", "runners-a")
        .await
        .unwrap();
    store
        .release(JobId(5), "w", &wait("no capacity"), Leftovers::CleanedUp)
        .await
        .unwrap();
    let row = store.job(JobId(5)).await.unwrap().unwrap();
    assert_eq!(row.launch, LaunchState::Owed);
    assert_eq!(row.reason.as_deref(), Some("no capacity"));
    assert_eq!(row.cluster, None, "the next attempt may launch elsewhere");
    assert_eq!(
        store.claim(&job, "pool", "w", LEASE).await.unwrap(),
        Claim::Acquired {
            attempt: 2,
            prior: None
        }
    );
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_cancelled_while_queued_is_never_claimed(#[case] backend: Backend) {
    let fresh = TestStore::new(backend).await;
    let store = fresh.connect().await;
    let mut cancelled = event("completed", 6);
    cancelled.job.runner = None;
    store.track(&cancelled, None).await.unwrap();
    assert_eq!(
        store
            .claim(&event("queued", 6), "pool", "w", LEASE)
            .await
            .unwrap(),
        Claim::Done(LaunchState::Waived)
    );
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_failed_job_is_reopened_and_then_claimed_once(#[case] backend: Backend) {
    let fresh = TestStore::new(backend).await;
    let store = fresh.connect().await;
    let job = event("queued", 7);
    store.claim(&job, "pool", "w", LEASE).await.unwrap();
    store
        .record_intent(JobId(7), "w", "dh-pool-7-1", "runners-a")
        .await
        .unwrap();
    store
        .record_failed(JobId(7), "w", "GitHub App key revoked")
        .await
        .unwrap();
    assert_eq!(
        store.claim(&job, "pool", "w", LEASE).await.unwrap(),
        Claim::Done(LaunchState::Failed),
        "a redelivery alone does not retry a failed job"
    );

    assert!(store.reopen_failed(JobId(7), 1).await.unwrap());
    assert!(
        !store.reopen_failed(JobId(7), 1).await.unwrap(),
        "reopening is idempotent"
    );
    let row = store.job(JobId(7)).await.unwrap().unwrap();
    assert_eq!(row.launch, LaunchState::Owed);
    assert_eq!(row.reason, None);
    // The first attempt's runner name comes back, for the take-over to clean up.
    let claims = [
        store.claim(&job, "pool", "w1", LEASE).await.unwrap(),
        store.claim(&job, "pool", "w2", LEASE).await.unwrap(),
    ];
    assert!(
        matches!(&claims[0], Claim::Acquired { attempt: 2, prior: Some(p) } if p.runner_name.as_deref() == Some("dh-pool-7-1")),
        "{claims:?}"
    );
    assert!(matches!(claims[1], Claim::Held(_)), "{claims:?}");

    // A launched or never-seen job is left alone.
    assert!(!store.reopen_failed(JobId(7), 1).await.unwrap());
    assert!(!store.reopen_failed(JobId(70), 1).await.unwrap());
    assert!(store.job(JobId(70)).await.unwrap().is_none());
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrating_twice_is_harmless(#[case] backend: Backend) {
    let fresh = TestStore::new(backend).await;
    let store = fresh.connect().await;
    store.migrate().await.unwrap();
    store.ping().await.unwrap();
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_clock_runs_ahead_cannot_take_over_a_live_lease(#[case] backend: Backend) {
    let fresh = TestStore::new(backend).await;
    let on_time = fresh.connect().await;
    let ahead = fresh
        .connect()
        .await
        .with_clock_skew(chrono::TimeDelta::minutes(10));
    let job = event("queued", 31);
    assert!(matches!(
        on_time.claim(&job, "pool", "on-time", LEASE).await.unwrap(),
        Claim::Acquired { attempt: 1, .. }
    ));
    let claim = ahead.claim(&job, "pool", "ahead", LEASE).await.unwrap();
    assert!(matches!(claim, Claim::Held(_)), "{claim:?}");
    let row = on_time.job(JobId(31)).await.unwrap().unwrap();
    assert_eq!(row.lease_owner.as_deref(), Some("on-time"));
    assert_eq!(row.attempt, 1);
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_held_by_a_worker_whose_clock_runs_behind_lasts_its_full_term(
    #[case] backend: Backend,
) {
    let fresh = TestStore::new(backend).await;
    let behind = fresh
        .connect()
        .await
        .with_clock_skew(chrono::TimeDelta::minutes(-10));
    let on_time = fresh.connect().await;
    let job = event("queued", 32);
    assert!(matches!(
        behind.claim(&job, "pool", "behind", LEASE).await.unwrap(),
        Claim::Acquired { attempt: 1, .. }
    ));
    let claim = on_time.claim(&job, "pool", "on-time", LEASE).await.unwrap();
    let Claim::Held(wait) = claim else {
        panic!("the lease was taken over: {claim:?}")
    };
    assert!(wait > Duration::from_secs(50), "{wait:?}");
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_attempt_keeps_its_leftovers_until_their_clean_up_is_confirmed(
    #[case] backend: Backend,
) {
    let fresh = TestStore::new(backend).await;
    let store = fresh.connect().await;
    let job = event("queued", 33);
    store.claim(&job, "pool", "w", LEASE).await.unwrap();
    store
        .record_intent(JobId(33), "w", "dh-pool-33-1", "runners-a")
        .await
        .unwrap();
    store
        .record_registration(JobId(33), "w", "pool", "dh-pool-33-1", RunnerId(9))
        .await
        .unwrap();
    store
        .release(JobId(33), "w", &wait("ECS: no answer"), Leftovers::Kept)
        .await
        .unwrap();
    let row = store.job(JobId(33)).await.unwrap().unwrap();
    assert_eq!(row.launch, LaunchState::Owed);
    assert_eq!(row.runner_name.as_deref(), Some("dh-pool-33-1"));
    let claim = store.claim(&job, "pool", "w2", LEASE).await.unwrap();
    let Claim::Acquired {
        attempt: 2,
        prior: Some(prior),
    } = claim
    else {
        panic!("{claim:?}")
    };
    assert_eq!(prior.runner_name.as_deref(), Some("dh-pool-33-1"));
    assert_eq!(prior.runner_id, Some(RunnerId(9)));
    assert_eq!(prior.cluster.as_deref(), Some("runners-a"));
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_never_touch_a_lease_and_only_cancel_a_launch_that_is_owed(
    #[case] backend: Backend,
) {
    let fresh = TestStore::new(backend).await;
    let store = fresh.connect().await;
    let on = |action: &str, job: u64, runner: Option<&str>| {
        let mut e = event(action, job);
        match runner {
            Some(name) => e.job.runner.as_mut().unwrap().name = Some(name.into()),
            None => e.job.runner = None,
        }
        e
    };
    // A launching job cancelled meanwhile: the lease and the launch are the worker's.
    store
        .claim(&event("queued", 34), "pool", "w", LEASE)
        .await
        .unwrap();
    store.track(&on("completed", 34, None), None).await.unwrap();
    let row = store.job(JobId(34)).await.unwrap().unwrap();
    assert_eq!(
        (row.launch, row.github),
        (LaunchState::Launching, GitHubState::Completed)
    );
    assert_eq!(row.lease_owner.as_deref(), Some("w"));
    store.renew_lease(JobId(34), "w", LEASE).await.unwrap();
    // The worker learns it at its next write.
    assert_eq!(
        store
            .record_intent(JobId(34), "w", "dh-pool-34-1", "runners-a")
            .await
            .unwrap(),
        Owed::No
    );

    // A job seen first running on a runner dockhand did not launch owes nothing; one seen
    // running on dockhand's runner of another job still owes its launch.
    store
        .track(&on("in_progress", 35, Some("build-box-1")), Some("pool"))
        .await
        .unwrap();
    assert_eq!(
        store
            .claim(&event("queued", 35), "pool", "w", LEASE)
            .await
            .unwrap(),
        Claim::Done(LaunchState::Waived)
    );
    store
        .claim(&event("queued", 36), "pool", "w", LEASE)
        .await
        .unwrap();
    store
        .record_intent(JobId(36), "w", "dh-pool-36-1", "runners-a")
        .await
        .unwrap();
    assert_eq!(
        store
            .record_registration(JobId(36), "w", "pool", "dh-pool-36-1", RunnerId(36))
            .await
            .unwrap(),
        Owed::Yes
    );
    store
        .track(&on("in_progress", 37, Some("dh-pool-36-1")), Some("pool"))
        .await
        .unwrap();
    assert!(matches!(
        store
            .claim(&event("queued", 37), "pool", "w", LEASE)
            .await
            .unwrap(),
        Claim::Acquired { attempt: 1, .. }
    ));
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_in_progress_arrives_after_its_completed_stays_completed_and_frees_its_runner(
    #[case] backend: Backend,
) {
    let fresh = TestStore::new(backend).await;
    let store = fresh.connect().await;
    let job = event("queued", 38);
    store.claim(&job, "pool", "w", LEASE).await.unwrap();
    store
        .record_intent(JobId(38), "w", "dh-pool-38-1", "runners-a")
        .await
        .unwrap();
    store
        .record_registration(JobId(38), "w", "pool", "dh-pool-38-1", RunnerId(38))
        .await
        .unwrap();
    store
        .record_launched(
            JobId(38),
            "w",
            "dh-pool-38-1",
            Some("arn:task/38"),
            None,
            LaunchState::Launched,
        )
        .await
        .unwrap();
    // GitHub does not order deliveries: completed first, then in_progress.
    for action in ["completed", "in_progress"] {
        let mut e = event(action, 38);
        e.job.runner.as_mut().unwrap().name = Some("dh-pool-38-1".into());
        store.track(&e, Some("pool")).await.unwrap();
    }
    let row = store.job(JobId(38)).await.unwrap().unwrap();
    assert_eq!(row.github, GitHubState::Completed);
    assert_eq!(store.live_runners("pool").await.unwrap(), 0);
    assert_eq!(
        store.runners().await.unwrap()[0].state,
        RunnerState::Finished
    );
}
