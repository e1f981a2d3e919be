//! The runners table: one row per runner name registered for a job, its task, and its
//! state as the worker and the webhook events see it.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::{AnyConnection, Row};

use super::history::{EventKind, Note};
use super::{RunnerState, Store, StoreError};
use crate::domain::{InstallationId, JobId, RunnerId};

/// Records a runner's task: `$1` runner name, `$2` task ARN, `$3` now.
pub(super) const RECORD_RUNNER_TASK: &str =
    "UPDATE runners SET task_arn = $2, state = 'launched', updated_at = $3,
         cluster = COALESCE(runners.cluster,
             (SELECT j.cluster FROM jobs j WHERE j.job_id = runners.for_job_id))
     WHERE runner_name = $1 AND state = 'registered'";

/// A runner row.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RunnerRecord {
    pub runner_name: String,
    pub pool: String,
    /// The job it was launched for; `None` for a warm runner.
    pub for_job_id: Option<JobId>,
    pub runner_id: Option<RunnerId>,
    pub task_arn: Option<String>,
    pub state: RunnerState,
    pub ran_job_id: Option<JobId>,
    /// The GitHub App that registered it (`None` before several Apps were recorded).
    pub app_id: Option<u64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Store {
    /// Moves a runner to `state` on `conn` (the caller's transaction). `ran_job`, when
    /// given, is recorded as the job the runner ran; otherwise the one recorded before
    /// stays. A runner that finished or was removed stays so: GitHub may deliver a job's
    /// `in_progress` after its `completed`.
    pub(super) async fn set_runner_in(
        &self,
        conn: &mut AnyConnection,
        runner_name: &str,
        state: RunnerState,
        ran_job: Option<JobId>,
        now: i64,
    ) -> Result<u64, sqlx::Error> {
        let sql = self.sql(
            "UPDATE runners SET state = $2, ran_job_id = COALESCE($3, ran_job_id), updated_at = $4
             WHERE runner_name = $1
               AND (state NOT IN ('finished', 'removed', 'stopped') OR $2 IN ('finished', 'removed', 'stopped'))",
        );
        Ok(sqlx::query(sql)
            .bind(runner_name.to_string())
            .bind(state.as_str().to_string())
            .bind(ran_job.map(|j| j.0 as i64))
            .bind(now)
            .execute(&mut *conn)
            .await?
            .rows_affected())
    }

    /// Whether dockhand launched a runner of this name (`None`: it did not), and the job
    /// it launched it for (`Some(None)`: a warm runner, launched for no job).
    pub(super) async fn runner_launched_for(
        &self,
        conn: &mut AnyConnection,
        runner_name: &str,
    ) -> Result<Option<Option<JobId>>, sqlx::Error> {
        let sql = self.sql("SELECT for_job_id FROM runners WHERE runner_name = $1");
        let job: Option<Option<i64>> = sqlx::query_scalar(sql)
            .bind(runner_name.to_string())
            .fetch_optional(&mut *conn)
            .await?;
        Ok(job.map(|j| j.map(|j| JobId(j as u64))))
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

    /// The installation a runner was registered as, if recorded: the one its clean-up uses
    /// (with several Apps, another App's than the job's webhook named).
    pub async fn runner_installation(
        &self,
        runner_name: &str,
    ) -> Result<Option<InstallationId>, StoreError> {
        let sql = self.sql("SELECT installation_id FROM runners WHERE runner_name = $1");
        let id: Option<Option<i64>> = sqlx::query_scalar(sql)
            .bind(runner_name.to_string())
            .fetch_optional(&self.pool)
            .await?;
        Ok(id.flatten().map(|id| InstallationId(id as u64)))
    }

    /// Marks a runner removed (its registration was deleted on GitHub), and notes it in
    /// the history of the job it was registered for.
    pub async fn record_runner_removed(&self, runner_name: &str) -> Result<(), StoreError> {
        let mut w = self.write("runner_state").await?;
        let now = self.now();
        let mut tx = sqlx::Connection::begin(&mut *w.conn).await?;
        let changed = self
            .set_runner_in(&mut tx, runner_name, RunnerState::Removed, None, now)
            .await?;
        if changed > 0
            && let Some(Some(job)) = self.runner_launched_for(&mut tx, runner_name).await?
        {
            let detail = json!({ "runner": runner_name });
            let note = Note::new(job, now, EventKind::RunnerRemoved, detail);
            self.append(&mut tx, note).await?;
        }
        tx.commit().await?;
        Ok(())
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

    /// Idle runners by pool: launched, their task running as last described, no job
    /// taken (the `idle` series of `dockhand_runners`, a part of `launched`).
    pub async fn idle_runner_counts(&self) -> Result<HashMap<String, u64>, StoreError> {
        self.counts_by_pool(
            "SELECT pool, count(*) AS n FROM runners
             WHERE state = 'launched' AND task_status = 'RUNNING' AND ran_job_id IS NULL
             GROUP BY pool",
        )
        .await
    }

    /// Runs a `SELECT pool, count(*) AS n ... GROUP BY pool` query.
    pub(super) async fn counts_by_pool(
        &self,
        sql: &'static str,
    ) -> Result<HashMap<String, u64>, StoreError> {
        let rows = sqlx::query(sql).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| Ok((r.try_get("pool")?, r.try_get::<i64, _>("n")? as u64)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// Every runner row, oldest first.
    pub async fn runners(&self) -> Result<Vec<RunnerRecord>, StoreError> {
        self.list_runners(None, None, u32::MAX, false).await
    }

    /// Runners of `pool` in `state` (each when given), at most `limit`, newest first (or
    /// oldest first).
    pub async fn list_runners(
        &self,
        pool: Option<&str>,
        state: Option<RunnerState>,
        limit: u32,
        newest_first: bool,
    ) -> Result<Vec<RunnerRecord>, StoreError> {
        let sql = if newest_first {
            "SELECT runner_name, pool, for_job_id, runner_id, task_arn, state, ran_job_id,
                    app_id, created_at, updated_at
             FROM runners WHERE ($1 IS NULL OR pool = $1) AND ($2 IS NULL OR state = $2)
             ORDER BY created_at DESC, runner_name DESC LIMIT $3"
        } else {
            "SELECT runner_name, pool, for_job_id, runner_id, task_arn, state, ran_job_id,
                    app_id, created_at, updated_at
             FROM runners WHERE ($1 IS NULL OR pool = $1) AND ($2 IS NULL OR state = $2)
             ORDER BY created_at, runner_name LIMIT $3"
        };
        let rows = sqlx::query(self.sql(sql))
            .bind(pool.map(str::to_string))
            .bind(state.map(|s| s.as_str().to_string()))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        let time = |r: &sqlx::any::AnyRow, c: &str| -> Result<DateTime<Utc>, sqlx::Error> {
            Ok(DateTime::from_timestamp_millis(r.try_get::<i64, _>(c)?).unwrap_or_default())
        };
        rows.iter()
            .map(|r| {
                Ok(RunnerRecord {
                    runner_name: r.try_get("runner_name")?,
                    pool: r.try_get("pool")?,
                    for_job_id: r
                        .try_get::<Option<i64>, _>("for_job_id")?
                        .map(|id| JobId(id as u64)),
                    runner_id: r
                        .try_get::<Option<i64>, _>("runner_id")?
                        .map(|id| RunnerId(id as u64)),
                    task_arn: r.try_get("task_arn")?,
                    state: RunnerState::parse(&r.try_get::<String, _>("state")?),
                    ran_job_id: r
                        .try_get::<Option<i64>, _>("ran_job_id")?
                        .map(|id| JobId(id as u64)),
                    app_id: r.try_get::<Option<i64>, _>("app_id")?.map(|id| id as u64),
                    created_at: time(r, "created_at")?,
                    updated_at: time(r, "updated_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }
}
