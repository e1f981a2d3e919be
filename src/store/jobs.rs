//! Job rows as tests and operators read them.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{GitHubState, LaunchState, Store, StoreError};
use crate::domain::{JobId, RunnerId};

/// A job row, as tests and operators see it.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    pub attempt: u32,
    pub runner_name: Option<String>,
    pub runner_id: Option<RunnerId>,
    pub task_arn: Option<String>,
    /// The cluster its task was launched in.
    pub cluster: Option<String>,
    pub lease_owner: Option<String>,
    pub conclusion: Option<String>,
    pub reason: Option<String>,
}

impl Store {
    /// The job's row, if the store has heard of it.
    pub async fn job(&self, job: JobId) -> Result<Option<JobRecord>, StoreError> {
        let sql = self.sql(
            "SELECT job_id, launch, github, ran_on, ran_on_dockhand, pool, repo, attempt, runner_name, runner_id, task_arn,
                    cluster, lease_owner, conclusion, reason
             FROM jobs WHERE job_id = $1",
        );
        let row = sqlx::query(sql)
            .bind(job.0 as i64)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| job_record(&r)).transpose().map_err(Into::into)
    }
}

fn job_record(r: &AnyRow) -> Result<JobRecord, sqlx::Error> {
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
        attempt: r.try_get::<i64, _>("attempt")? as u32,
        runner_name: r.try_get("runner_name")?,
        runner_id: r
            .try_get::<Option<i64>, _>("runner_id")?
            .map(|id| RunnerId(id as u64)),
        task_arn: r.try_get("task_arn")?,
        cluster: r.try_get("cluster")?,
        lease_owner: r.try_get("lease_owner")?,
        conclusion: r.try_get("conclusion")?,
        reason: r.try_get("reason")?,
    })
}
