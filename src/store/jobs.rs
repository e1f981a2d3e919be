//! Job rows as tests and operators read them: one by id, or a filtered list, newest first.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{GitHubState, LaunchState, Store, StoreError, millis};
use crate::domain::{JobId, RunnerId};

/// A job row, as tests and operators see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobRecord {
    pub job_id: JobId,
    /// What dockhand did for the job.
    pub launch: LaunchState,
    /// What GitHub last said about it.
    pub github: GitHubState,
    /// The runner GitHub gave it, and whether dockhand launched that runner.
    pub ran_on: Option<String>,
    pub ran_on_dockhand: Option<bool>,
    pub pool: Option<String>,
    pub repo: String,
    pub installation_id: Option<u64>,
    pub labels: Vec<String>,
    pub attempt: u32,
    pub runner_name: Option<String>,
    pub runner_id: Option<RunnerId>,
    pub task_arn: Option<String>,
    /// The cluster its task was launched in.
    pub cluster: Option<String>,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub conclusion: Option<String>,
    pub reason: Option<String>,
    /// When the ingress accepted its first delivery (or the store first heard of it).
    pub received_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// GitHub's times.
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
}

/// Which jobs `dockhand jobs list` shows. Every filter set must hold.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub launch: Option<LaunchState>,
    pub github: Option<GitHubState>,
    pub pool: Option<String>,
    pub repo: Option<String>,
    /// Received at or before this (older than an age).
    pub received_before: Option<DateTime<Utc>>,
    /// Received at or after this (newer than an age).
    pub received_after: Option<DateTime<Utc>>,
    pub limit: u32,
}

/// The columns a [`JobRecord`] is read from.
macro_rules! job_columns {
    () => {
        "job_id, launch, github, ran_on, ran_on_dockhand, pool, repo, installation_id, labels,
         attempt, runner_name, runner_id, task_arn, cluster, lease_owner, lease_expires_at,
         conclusion, reason, received_at, updated_at, created_at, started_at, completed_at"
    };
}

impl Store {
    /// The job's row, if the store has heard of it.
    pub async fn job(&self, job: JobId) -> Result<Option<JobRecord>, StoreError> {
        let sql = self.sql(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE job_id = $1"
        ));
        let row = sqlx::query(sql)
            .bind(job.0 as i64)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| job_record(&r)).transpose().map_err(Into::into)
    }

    /// Jobs that pass `filter`, newest first, at most `filter.limit`.
    pub async fn jobs(&self, filter: &JobFilter) -> Result<Vec<JobRecord>, StoreError> {
        let sql = self.sql(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs
             WHERE ($1 IS NULL OR launch = $1) AND ($2 IS NULL OR github = $2)
               AND ($3 IS NULL OR pool = $3) AND ($4 IS NULL OR repo = $4)
               AND ($5 IS NULL OR received_at <= $5) AND ($6 IS NULL OR received_at >= $6)
             ORDER BY received_at DESC, job_id DESC
             LIMIT $7"
        ));
        let rows = sqlx::query(sql)
            .bind(filter.launch.map(|s| s.as_str().to_string()))
            .bind(filter.github.map(|s| s.as_str().to_string()))
            .bind(filter.pool.clone())
            .bind(filter.repo.clone())
            .bind(filter.received_before.map(millis))
            .bind(filter.received_after.map(millis))
            .bind(i64::from(filter.limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(job_record)
            .collect::<Result<_, _>>()
            .map_err(Into::into)
    }
}

fn time(r: &AnyRow, column: &str) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    Ok(r.try_get::<Option<i64>, _>(column)?
        .and_then(DateTime::from_timestamp_millis))
}

fn job_record(r: &AnyRow) -> Result<JobRecord, sqlx::Error> {
    let labels: String = r.try_get("labels")?;
    Ok(JobRecord {
        job_id: JobId(r.try_get::<i64, _>("job_id")? as u64),
        launch: LaunchState::parse(&r.try_get::<String, _>("launch")?),
        github: GitHubState::parse(&r.try_get::<String, _>("github")?),
        ran_on: r.try_get("ran_on")?,
        ran_on_dockhand: r
            .try_get::<Option<i64>, _>("ran_on_dockhand")?
            .map(|v| v != 0),
        pool: r.try_get("pool")?,
        repo: r.try_get("repo")?,
        installation_id: r
            .try_get::<Option<i64>, _>("installation_id")?
            .map(|i| i as u64),
        labels: serde_json::from_str(&labels).unwrap_or_default(),
        attempt: r.try_get::<i64, _>("attempt")? as u32,
        runner_name: r.try_get("runner_name")?,
        runner_id: r
            .try_get::<Option<i64>, _>("runner_id")?
            .map(|id| RunnerId(id as u64)),
        task_arn: r.try_get("task_arn")?,
        cluster: r.try_get("cluster")?,
        lease_owner: r.try_get("lease_owner")?,
        lease_expires_at: time(r, "lease_expires_at")?,
        conclusion: r.try_get("conclusion")?,
        reason: r.try_get("reason")?,
        received_at: time(r, "received_at")?.unwrap_or_default(),
        updated_at: time(r, "updated_at")?.unwrap_or_default(),
        created_at: time(r, "created_at")?.unwrap_or_default(),
        started_at: time(r, "started_at")?,
        completed_at: time(r, "completed_at")?,
    })
}
