//! Jobs followed from their webhook events: what GitHub says about a job (`in_progress` on
//! which runner, `completed` with which conclusion), kept apart from what dockhand did for
//! it. An event never touches a lease or a launch under way; it only cancels the launch a
//! job is owed (`owed` → `waived`) when the job finished before any runner took it, or ran
//! on a runner dockhand did not launch. Jobs no pool serves are not stored.

use super::{RunnerState, Store, StoreError, created_at, millis};
use crate::domain::{JobAction, JobEvent, JobId};

/// The launch a job a `queued` delivery has not reached yet owes, given the runner that
/// took it (`None`: no runner) and whether dockhand launched that runner.
fn owed_on_insert(ran_on: Option<&str>, ours: Option<bool>, completed: bool) -> &'static str {
    match (ran_on, ours) {
        (None, _) if completed => "waived",
        (Some(_), Some(false)) => "waived",
        _ => "owed",
    }
}

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

    /// Records an `in_progress` or `completed` event: GitHub's view of the job, and the
    /// runner's state when it is one of dockhand's.
    pub async fn track(&self, event: &JobEvent, pool: Option<&str>) -> Result<(), StoreError> {
        let runner = event.job.runner.as_ref().and_then(|r| r.name.as_deref());
        let ours = match runner {
            Some(name) => Some(self.is_dockhand_runner(name).await?),
            None => None,
        };
        match event.action {
            JobAction::InProgress => {
                self.upsert_in_progress(event, pool, runner, ours).await?;
                if let Some(name) = runner {
                    self.set_runner(name, RunnerState::Busy, Some(event.job.id))
                        .await?;
                }
            }
            JobAction::Completed => {
                self.upsert_completed(event, pool, runner, ours).await?;
                if let Some(name) = runner {
                    self.set_runner(name, RunnerState::Finished, Some(event.job.id))
                        .await?;
                }
            }
            JobAction::Queued | JobAction::Waiting => {}
        }
        Ok(())
    }

    async fn upsert_in_progress(
        &self,
        event: &JobEvent,
        pool: Option<&str>,
        runner: Option<&str>,
        ours: Option<bool>,
    ) -> Result<(), StoreError> {
        let mut w = self.write("track_in_progress").await?;
        let now = self.now();
        let sql = self.sql(
            "INSERT INTO jobs (job_id, launch, github, pool, repo, installation_id, run_id,
                               labels, ran_on, ran_on_dockhand, created_at, started_at,
                               received_at, updated_at)
             VALUES ($1, $2, 'in_progress', $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)
             ON CONFLICT (job_id) DO UPDATE SET
                 github = CASE WHEN jobs.github = 'completed' THEN jobs.github
                               ELSE 'in_progress' END,
                 ran_on = COALESCE(excluded.ran_on, jobs.ran_on),
                 ran_on_dockhand = COALESCE(excluded.ran_on_dockhand, jobs.ran_on_dockhand),
                 started_at = COALESCE(excluded.started_at, jobs.started_at),
                 launch = CASE WHEN jobs.launch = 'owed' AND jobs.runner_name IS NULL
                                    AND excluded.ran_on_dockhand = 0
                               THEN 'waived' ELSE jobs.launch END,
                 updated_at = excluded.updated_at",
        );
        sqlx::query(sql)
            .bind(event.job.id.0 as i64)
            .bind(owed_on_insert(runner, ours, false).to_string())
            .bind(pool.map(str::to_string))
            .bind(event.repository.full_name.clone())
            .bind(event.installation_id.map(|i| i.0 as i64))
            .bind(event.job.run_id.0 as i64)
            .bind(serde_json::to_string(&event.job.labels).expect("labels serialize"))
            .bind(runner.map(str::to_string))
            .bind(ours.map(i64::from))
            .bind(created_at(event, now))
            .bind(event.job.started_at.map(millis))
            .bind(now)
            .execute(&mut *w.conn)
            .await?;
        Ok(())
    }

    async fn upsert_completed(
        &self,
        event: &JobEvent,
        pool: Option<&str>,
        runner: Option<&str>,
        ours: Option<bool>,
    ) -> Result<(), StoreError> {
        let mut w = self.write("track_completed").await?;
        let now = self.now();
        let conclusion = event
            .job
            .conclusion
            .and_then(|c| serde_json::to_value(c).ok())
            .and_then(|v| v.as_str().map(str::to_string));
        let sql = self.sql(
            "INSERT INTO jobs (job_id, launch, github, pool, repo, installation_id, run_id,
                               labels, ran_on, ran_on_dockhand, conclusion, created_at,
                               completed_at, received_at, updated_at)
             VALUES ($1, $2, 'completed', $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13)
             ON CONFLICT (job_id) DO UPDATE SET
                 github = 'completed',
                 conclusion = excluded.conclusion,
                 completed_at = excluded.completed_at,
                 ran_on = COALESCE(excluded.ran_on, jobs.ran_on),
                 ran_on_dockhand = COALESCE(excluded.ran_on_dockhand, jobs.ran_on_dockhand),
                 launch = CASE WHEN jobs.launch = 'owed' AND jobs.runner_name IS NULL
                                    AND (COALESCE(excluded.ran_on_dockhand, jobs.ran_on_dockhand) = 0
                                         OR COALESCE(excluded.ran_on, jobs.ran_on) IS NULL)
                               THEN 'waived' ELSE jobs.launch END,
                 updated_at = excluded.updated_at
             WHERE jobs.github <> 'completed'",
        );
        sqlx::query(sql)
            .bind(event.job.id.0 as i64)
            .bind(owed_on_insert(runner, ours, true).to_string())
            .bind(pool.map(str::to_string))
            .bind(event.repository.full_name.clone())
            .bind(event.installation_id.map(|i| i.0 as i64))
            .bind(event.job.run_id.0 as i64)
            .bind(serde_json::to_string(&event.job.labels).expect("labels serialize"))
            .bind(runner.map(str::to_string))
            .bind(ours.map(i64::from))
            .bind(conclusion)
            .bind(created_at(event, now))
            .bind(event.job.completed_at.map(millis))
            .bind(now)
            .execute(&mut *w.conn)
            .await?;
        Ok(())
    }
}
