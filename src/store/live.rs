//! The runners whose tasks the reconciler follows ([`crate::lifecycle`]): launched or busy
//! with a task on record, and those that finished lately whose task's stop is not yet seen.

use sqlx::Row;

use super::{RunnerState, Store, StoreError};
use crate::domain::{InstallationId, JobId, RunnerId};

/// A runner whose task the store believes live (launched or busy, with a task ARN).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveRunner {
    pub runner_name: String,
    pub pool: String,
    /// The job it was launched for; `None` for a warm runner.
    pub for_job: Option<JobId>,
    pub runner_id: Option<RunnerId>,
    pub task_arn: String,
    /// Where the task runs; `None` on rows from before the column (the pool's cluster).
    pub cluster: Option<String>,
    pub state: RunnerState,
    pub ran_job: Option<JobId>,
    /// ECS's last status when last described, and when the task started (unix ms).
    pub task_status: Option<String>,
    pub task_started_at: Option<i64>,
    /// When the runner was registered (unix ms): the start of its wait when ECS reports
    /// neither a creation nor a start time.
    pub created_at: i64,
    /// The job's repository and installation (a warm runner's own: its pool's
    /// `warm_target`), where its registration lives.
    pub repo: Option<String>,
    pub installation_id: Option<InstallationId>,
}

/// Selects [`LiveRunner`]s: runners launched or busy with a task on record, and runners
/// that finished (GitHub reported their job completed) within the last hour whose task's
/// stop is not recorded yet: on a Spot interruption the runner reports its job failed
/// before ECS stops the task, and the stop says the job was interrupted. `$1` is that
/// hour's start (unix ms); a `WHERE` clause may follow (`AND ...`).
const LIVE_RUNNERS: &str = "SELECT r.runner_name, r.pool, r.for_job_id, r.runner_id, r.task_arn,
            COALESCE(r.cluster, j.cluster) AS cluster, r.state, r.ran_job_id,
            r.task_status, r.task_started_at, r.created_at,
            COALESCE(r.repo, j.repo) AS repo,
            COALESCE(r.installation_id, j.installation_id) AS installation_id
     FROM runners r LEFT JOIN jobs j ON j.job_id = r.for_job_id
     WHERE r.task_arn IS NOT NULL
       AND (r.state IN ('launched', 'busy')
            OR (r.state = 'finished' AND COALESCE(r.task_status, '') <> 'STOPPED'
                AND r.updated_at > $1))";

/// How long after its runner finished a task's stop is still looked for: ECS forgets a
/// stopped task after about an hour.
const FINISHED_FOLLOWED_MS: i64 = 3_600_000;

fn live_runner(r: &sqlx::any::AnyRow) -> Result<LiveRunner, sqlx::Error> {
    Ok(LiveRunner {
        runner_name: r.try_get("runner_name")?,
        pool: r.try_get("pool")?,
        for_job: r
            .try_get::<Option<i64>, _>("for_job_id")?
            .map(|id| JobId(id as u64)),
        runner_id: r
            .try_get::<Option<i64>, _>("runner_id")?
            .map(|id| RunnerId(id as u64)),
        task_arn: r.try_get("task_arn")?,
        cluster: r.try_get("cluster")?,
        state: RunnerState::parse(&r.try_get::<String, _>("state")?),
        ran_job: r
            .try_get::<Option<i64>, _>("ran_job_id")?
            .map(|id| JobId(id as u64)),
        task_status: r.try_get("task_status")?,
        task_started_at: r.try_get("task_started_at")?,
        created_at: r.try_get("created_at")?,
        repo: r.try_get("repo")?,
        installation_id: r
            .try_get::<Option<i64>, _>("installation_id")?
            .map(|i| InstallationId(i as u64)),
    })
}

impl Store {
    /// Runners whose task the reconciler follows ([`LIVE_RUNNERS`]), oldest first.
    pub async fn live_runner_tasks(&self) -> Result<Vec<LiveRunner>, StoreError> {
        let rows = sqlx::query(self.sql_owned(format!(
            "{LIVE_RUNNERS} ORDER BY r.created_at, r.runner_name"
        )))
        .bind(self.now() - FINISHED_FOLLOWED_MS)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(live_runner)
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// The runner whose task this is, if the reconciler follows it: launched, busy, or
    /// finished with its task's stop not yet recorded.
    pub async fn live_runner_by_task(
        &self,
        task_arn: &str,
    ) -> Result<Option<LiveRunner>, StoreError> {
        let row = sqlx::query(self.sql_owned(format!("{LIVE_RUNNERS} AND r.task_arn = $2")))
            .bind(self.now() - FINISHED_FOLLOWED_MS)
            .bind(task_arn.to_string())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(live_runner).transpose()?)
    }
}
