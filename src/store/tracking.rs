//! Jobs followed from their webhook events: `in_progress` and `completed` (which runner
//! took a job, when it started, how it ended). Jobs no pool serves are not stored.

use super::{JobState, RunnerState, Store, StoreError, created_at, millis};
use crate::domain::{JobEvent, JobId};

impl Store {
    /// Whether the store has a row for the job, or for the runner that took it: a job
    /// dockhand has seen, or one a runner of its own is running, is tracked whether or not
    /// a pool still serves its labels.
    pub async fn knows(&self, job: JobId, runner_name: Option<&str>) -> Result<bool, StoreError> {
        let sql = self.sql(
            "SELECT COUNT(*) FROM jobs WHERE job_id = $1
             UNION ALL SELECT COUNT(*) FROM runners WHERE runner_name = $2",
        );
        let counts: Vec<i64> = sqlx::query_scalar(sql)
            .bind(job.0 as i64)
            .bind(runner_name.map(str::to_string))
            .fetch_all(&self.pool)
            .await?;
        Ok(counts.iter().any(|n| *n > 0))
    }

    /// Follows a job from its `in_progress` and `completed` events: which runner took it,
    /// when it started, how it ended. A `completed` job that never had a runner (cancelled
    /// while queued) is recorded too, so a later `queued` delivery launches nothing.
    pub async fn track(&self, event: &JobEvent, pool: Option<&str>) -> Result<(), StoreError> {
        use crate::domain::JobAction;
        let runner_name = event.job.runner.as_ref().and_then(|r| r.name.clone());
        match event.action {
            JobAction::InProgress => {
                self.upsert_running(event, pool).await?;
                if let Some(name) = &runner_name {
                    self.set_runner(name, RunnerState::Busy, Some(event.job.id))
                        .await?;
                }
            }
            JobAction::Completed => {
                let state = if runner_name.is_some() {
                    JobState::Completed
                } else {
                    JobState::Cancelled
                };
                let conclusion = event
                    .job
                    .conclusion
                    .map(|c| serde_json::to_value(c).ok())
                    .and_then(|v| v.and_then(|v| v.as_str().map(str::to_string)));
                self.upsert_finished(event, pool, state, conclusion).await?;
                if let Some(name) = &runner_name {
                    self.set_runner(name, RunnerState::Finished, Some(event.job.id))
                        .await?;
                }
            }
            JobAction::Queued | JobAction::Waiting => {}
        }
        Ok(())
    }

    async fn upsert_running(&self, event: &JobEvent, pool: Option<&str>) -> Result<(), StoreError> {
        let now = self.now();
        let sql = self.sql(
            "INSERT INTO jobs (job_id, state, pool, repo, installation_id, run_id, labels,
                               created_at, started_at, received_at, updated_at)
             VALUES ($1, 'running', $2, $3, $4, $5, $6, $7, $8, $9, $9)
             ON CONFLICT (job_id) DO UPDATE SET
                 state = 'running', started_at = excluded.started_at, updated_at = excluded.updated_at
             WHERE jobs.state NOT IN ('completed', 'cancelled', 'running')",
        );
        sqlx::query(sql)
            .bind(event.job.id.0 as i64)
            .bind(pool.map(str::to_string))
            .bind(event.repository.full_name.clone())
            .bind(event.installation_id.map(|i| i.0 as i64))
            .bind(event.job.run_id.0 as i64)
            .bind(serde_json::to_string(&event.job.labels).expect("labels serialize"))
            .bind(created_at(event, now))
            .bind(event.job.started_at.map(millis))
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn upsert_finished(
        &self,
        event: &JobEvent,
        pool: Option<&str>,
        state: JobState,
        conclusion: Option<String>,
    ) -> Result<(), StoreError> {
        let now = self.now();
        let sql = self.sql(
            "INSERT INTO jobs (job_id, state, pool, repo, installation_id, run_id, labels,
                               conclusion, created_at, completed_at, received_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)
             ON CONFLICT (job_id) DO UPDATE SET
                 state = excluded.state, conclusion = excluded.conclusion,
                 completed_at = excluded.completed_at, lease_owner = NULL,
                 lease_expires_at = NULL, updated_at = excluded.updated_at
             WHERE jobs.state NOT IN ('completed', 'cancelled')",
        );
        sqlx::query(sql)
            .bind(event.job.id.0 as i64)
            .bind(state.as_str().to_string())
            .bind(pool.map(str::to_string))
            .bind(event.repository.full_name.clone())
            .bind(event.installation_id.map(|i| i.0 as i64))
            .bind(event.job.run_id.0 as i64)
            .bind(serde_json::to_string(&event.job.labels).expect("labels serialize"))
            .bind(conclusion)
            .bind(created_at(event, now))
            .bind(event.job.completed_at.map(millis))
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
