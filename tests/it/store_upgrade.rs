//! Upgrading a store written before GitHub's view and dockhand's launch were two columns:
//! every old state lands on the pair it meant.

use std::borrow::Cow;

use dockhand::domain::JobId;
use dockhand::store::{GitHubState, LaunchState};
use rstest::rstest;
use sqlx::migrate::Migrator;

use crate::common::stores::{Backend, TestStore};

/// The migrations before `0004_github_view_apart`.
const BEFORE: usize = 3;

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_from_the_single_state_column_keep_their_meaning(#[case] backend: Backend) {
    let fresh = TestStore::new(backend).await;
    let (dir, url) = match backend {
        Backend::Sqlite => {
            let path = fresh.settings.url.trim_start_matches("sqlite://");
            std::fs::create_dir_all(std::path::Path::new(path).parent().unwrap()).unwrap();
            (
                "migrations/store/sqlite",
                format!("{}?mode=rwc", fresh.settings.url),
            )
        }
        Backend::Postgres => ("migrations/store/postgres", fresh.settings.url.clone()),
    };
    sqlx::any::install_default_drivers();
    let all = Migrator::new(std::path::Path::new(dir)).await.unwrap();
    let old = Migrator {
        migrations: Cow::Owned(all.migrations[..BEFORE].to_vec()),
        ..Migrator::DEFAULT
    };
    let db = sqlx::AnyPool::connect(&url).await.unwrap();
    old.run(&db).await.unwrap();
    // (job, old state, task ARN): every state the single column held.
    let rows: [(i64, &str, Option<&str>); 10] = [
        (1, "pending", None),
        (2, "launching", None),
        (3, "launched", Some("arn:task/3")),
        (4, "running", Some("arn:task/4")),
        (5, "running", None),
        (6, "completed", Some("arn:task/6")),
        (7, "cancelled", None),
        (8, "failed", None),
        (9, "unmatched", None),
        (10, "dry_run", None),
    ];
    for (job, state, task) in rows {
        sqlx::query(sqlx::AssertSqlSafe(match backend {
            Backend::Sqlite => {
                "INSERT INTO jobs (job_id, state, repo, run_id, labels, task_arn,
                created_at, received_at, updated_at) VALUES (?1, ?2, 'o/r', 1, '[]', ?3, 0, 0, 0)"
            }
            Backend::Postgres => {
                "INSERT INTO jobs (job_id, state, repo, run_id, labels, task_arn,
                created_at, received_at, updated_at) VALUES ($1, $2, 'o/r', 1, '[]', $3, 0, 0, 0)"
            }
        }))
        .bind(job)
        .bind(state)
        .bind(task)
        .execute(&db)
        .await
        .unwrap();
    }
    db.close().await;

    let store = fresh.connect().await;
    use GitHubState::{Completed, InProgress, Queued};
    use LaunchState::*;
    let expected = [
        (1, Owed, Queued),
        (2, Launching, Queued),
        (3, Launched, Queued),
        (4, Launched, InProgress),
        (5, Waived, InProgress),
        (6, Launched, Completed),
        (7, Waived, Completed),
        (8, Failed, Queued),
        (9, Waived, Queued),
        (10, DryRun, Queued),
    ];
    for (job, launch, github) in expected {
        let row = store.job(JobId(job)).await.unwrap().unwrap();
        assert_eq!((row.launch, row.github), (launch, github), "job {job}");
    }
}
