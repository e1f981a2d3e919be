//! The runners table: one row per runner name registered for a job, its task, and its
//! state as the worker and the webhook events see it.

use sqlx::Row;

use super::{RunnerState, Store, StoreError};
use crate::domain::{JobId, RunnerId};

/// Records a runner's task: `$1` runner name, `$2` task ARN, `$3` now.
pub(super) const RECORD_RUNNER_TASK: &str =
    "UPDATE runners SET task_arn = $2, state = 'launched', updated_at = $3
     WHERE runner_name = $1 AND state = 'registered'";

/// A runner row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerRecord {
    pub runner_name: String,
    pub pool: String,
    pub for_job_id: JobId,
    pub runner_id: Option<RunnerId>,
    pub task_arn: Option<String>,
    pub state: RunnerState,
    pub ran_job_id: Option<JobId>,
}

impl Store {
    /// Moves a runner to `state`. `ran_job`, when given, is recorded as the job the runner
    /// ran; otherwise the one recorded before stays. A runner that finished or was removed
    /// stays so: GitHub may deliver a job's `in_progress` after its `completed`.
    pub(super) async fn set_runner(
        &self,
        runner_name: &str,
        state: RunnerState,
        ran_job: Option<JobId>,
    ) -> Result<(), StoreError> {
        let mut w = self.write("runner_state").await?;
        let sql = self.sql(
            "UPDATE runners SET state = $2, ran_job_id = COALESCE($3, ran_job_id), updated_at = $4
             WHERE runner_name = $1
               AND (state NOT IN ('finished', 'removed') OR $2 IN ('finished', 'removed'))",
        );
        sqlx::query(sql)
            .bind(runner_name.to_string())
            .bind(state.as_str().to_string())
            .bind(ran_job.map(|j| j.0 as i64))
            .bind(self.now())
            .execute(&mut *w.conn)
            .await?;
        Ok(())
    }

    /// Records the task a runner runs in. Needs no lease: a task that exists is put on the
    /// books whoever holds the job now.
    pub async fn record_runner_task(
        &self,
        runner_name: &str,
        task_arn: &str,
    ) -> Result<(), StoreError> {
        let mut w = self.write("record_runner_task").await?;
        sqlx::query(self.sql(RECORD_RUNNER_TASK))
            .bind(runner_name.to_string())
            .bind(task_arn.to_string())
            .bind(self.now())
            .execute(&mut *w.conn)
            .await?;
        Ok(())
    }

    /// Whether dockhand registered a runner of this name.
    pub async fn is_dockhand_runner(&self, runner_name: &str) -> Result<bool, StoreError> {
        let sql = self.sql("SELECT COUNT(*) FROM runners WHERE runner_name = $1");
        let n: i64 = sqlx::query_scalar(sql)
            .bind(runner_name.to_string())
            .fetch_one(&self.pool)
            .await?;
        Ok(n > 0)
    }

    /// Whether a webhook showed this runner running a job: then its task came up, whatever
    /// ECS and GitHub show now (an ephemeral runner and its task are gone after one job).
    pub async fn runner_ran_a_job(&self, runner_name: &str) -> Result<bool, StoreError> {
        let sql = self
            .sql("SELECT COUNT(*) FROM runners WHERE runner_name = $1 AND ran_job_id IS NOT NULL");
        let n: i64 = sqlx::query_scalar(sql)
            .bind(runner_name.to_string())
            .fetch_one(&self.pool)
            .await?;
        Ok(n > 0)
    }

    /// Marks a runner removed (its registration was deleted on GitHub).
    pub async fn record_runner_removed(&self, runner_name: &str) -> Result<(), StoreError> {
        self.set_runner(runner_name, RunnerState::Removed, None)
            .await
    }

    /// Runners of the pool that are registered, launched or busy: what `max_runners` caps.
    pub async fn live_runners(&self, pool: &str) -> Result<u64, StoreError> {
        let sql = self.sql(
            "SELECT count(*) AS n FROM runners
             WHERE pool = $1 AND state IN ('registered', 'launched', 'busy')",
        );
        let row = sqlx::query(sql)
            .bind(pool.to_string())
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>("n")? as u64)
    }

    /// Runner counts by (pool, state), for the `dockhand_runners` gauge.
    pub async fn runner_counts(&self) -> Result<Vec<(String, RunnerState, u64)>, StoreError> {
        let rows =
            sqlx::query("SELECT pool, state, count(*) AS n FROM runners GROUP BY pool, state")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("pool")?,
                    RunnerState::parse(&r.try_get::<String, _>("state")?),
                    r.try_get::<i64, _>("n")? as u64,
                ))
            })
            .collect()
    }

    /// Every runner row, oldest first.
    pub async fn runners(&self) -> Result<Vec<RunnerRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT runner_name, pool, for_job_id, runner_id, task_arn, state, ran_job_id
             FROM runners ORDER BY created_at, runner_name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(RunnerRecord {
                    runner_name: r.try_get("runner_name")?,
                    pool: r.try_get("pool")?,
                    for_job_id: JobId(r.try_get::<i64, _>("for_job_id")? as u64),
                    runner_id: r
                        .try_get::<Option<i64>, _>("runner_id")?
                        .map(|id| RunnerId(id as u64)),
                    task_arn: r.try_get("task_arn")?,
                    state: RunnerState::parse(&r.try_get::<String, _>("state")?),
                    ran_job_id: r
                        .try_get::<Option<i64>, _>("ran_job_id")?
                        .map(|id| JobId(id as u64)),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }
}
