//! Jobs followed from their webhook events: what GitHub says about a job (`in_progress` on
//! which runner, `completed` with which conclusion), kept apart from what dockhand did for
//! it. An event never touches a lease or a launch under way; it only cancels the launch a
//! job is owed (`owed` → `waived`) when the job finished before any runner took it, or ran
//! on a runner dockhand did not launch. Jobs no pool serves are not stored.

use serde_json::json;
use sqlx::AnyConnection;

use super::history::{EventKind, Note};
use super::{RunnerState, Store, StoreError, created_at, millis};
use crate::domain::{JobAction, JobEvent, JobId};

/// GitHub's conclusion, by its name (`success`, `cancelled`, ...).
fn conclusion(event: &JobEvent) -> Option<String> {
    event
        .job
        .conclusion
        .and_then(|c| serde_json::to_value(c).ok())
        .and_then(|v| v.as_str().map(str::to_string))
}

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

    /// Records an `in_progress` or `completed` event, in one transaction: GitHub's view of
    /// the job, the runner's state when it is one of dockhand's, and the history of the job
    /// (and of the job the runner was launched for, when it ran another).
    pub async fn track(&self, event: &JobEvent, pool: Option<&str>) -> Result<(), StoreError> {
        let op = match event.action {
            JobAction::InProgress => "track_in_progress",
            JobAction::Completed => "track_completed",
            JobAction::Queued | JobAction::Waiting => return Ok(()),
        };
        let job = event.job.id;
        let runner = event.job.runner.as_ref().and_then(|r| r.name.as_deref());
        let mut w = self.write(op).await?;
        let now = self.now();
        let mut tx = sqlx::Connection::begin(&mut *w.conn).await?;
        // Which job dockhand launched the runner for; `None` when it is not dockhand's,
        // `Some(None)` when dockhand launched it warm, for no job.
        let launched_for = match runner {
            Some(name) => Some(self.runner_launched_for(&mut tx, name).await?),
            None => None,
        };
        let ours = launched_for.map(|f| f.is_some());
        let before: Option<String> =
            sqlx::query_scalar(self.sql("SELECT launch FROM jobs WHERE job_id = $1"))
                .bind(job.0 as i64)
                .fetch_optional(&mut *tx)
                .await?;
        let after = if event.action == JobAction::InProgress {
            Some(
                self.upsert_in_progress(&mut tx, event, pool, runner, ours, now)
                    .await?,
            )
        } else {
            self.upsert_completed(&mut tx, event, pool, runner, ours, now)
                .await?
        };
        let detail = json!({
            "delivery": event.delivery.0,
            "runner": runner,
            "launched_for": launched_for.flatten().flatten().map(|j| j.0),
            "warm": launched_for.flatten().is_some_and(|f| f.is_none()),
            "dockhand": ours,
        });
        match (event.action, runner) {
            (JobAction::InProgress, _) => {
                let note = Note::new(job, now, EventKind::Started, detail).once("started".into());
                self.append(&mut tx, note).await?;
            }
            (_, _) if after.is_none() => {} // completed before: nothing changed
            (_, None) => {
                let detail =
                    json!({ "delivery": event.delivery.0, "conclusion": conclusion(event) });
                let note =
                    Note::new(job, now, EventKind::Cancelled, detail).once("completed".into());
                self.append(&mut tx, note).await?;
            }
            (_, Some(_)) => {
                let mut detail = detail;
                detail["conclusion"] = conclusion(event).into();
                let note =
                    Note::new(job, now, EventKind::Completed, detail).once("completed".into());
                self.append(&mut tx, note).await?;
            }
        }
        if after.as_deref() == Some("waived") && before.as_deref() != Some("waived") {
            let reason = match runner {
                Some(name) => format!("it ran on runner {name}, which dockhand did not launch"),
                None => "it finished before any runner took it".to_string(),
            };
            let note = Note::new(job, now, EventKind::Waived, json!({ "reason": reason }));
            self.append(&mut tx, note).await?;
        }
        if let (Some(name), Some(Some(Some(for_job)))) = (runner, launched_for)
            && for_job != job
        {
            let detail = json!({ "runner": name, "ran_job": job.0 });
            let note = Note::new(for_job, now, EventKind::RunnerTaken, detail)
                .once(format!("taken:{name}"));
            self.append(&mut tx, note).await?;
        }
        if let Some(name) = runner {
            let state = if event.action == JobAction::InProgress {
                RunnerState::Busy
            } else {
                RunnerState::Finished
            };
            self.set_runner_in(&mut tx, name, state, Some(job), now)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The job's `launch` after the upsert.
    async fn upsert_in_progress(
        &self,
        conn: &mut AnyConnection,
        event: &JobEvent,
        pool: Option<&str>,
        runner: Option<&str>,
        ours: Option<bool>,
        now: i64,
    ) -> Result<String, sqlx::Error> {
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
                 updated_at = excluded.updated_at
             RETURNING launch",
        );
        sqlx::query_scalar(sql)
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
            .fetch_one(&mut *conn)
            .await
    }

    /// The job's `launch` after the upsert; `None` if GitHub had completed it before.
    async fn upsert_completed(
        &self,
        conn: &mut AnyConnection,
        event: &JobEvent,
        pool: Option<&str>,
        runner: Option<&str>,
        ours: Option<bool>,
        now: i64,
    ) -> Result<Option<String>, sqlx::Error> {
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
             WHERE jobs.github <> 'completed'
             RETURNING launch",
        );
        sqlx::query_scalar(sql)
            .bind(event.job.id.0 as i64)
            .bind(owed_on_insert(runner, ours, true).to_string())
            .bind(pool.map(str::to_string))
            .bind(event.repository.full_name.clone())
            .bind(event.installation_id.map(|i| i.0 as i64))
            .bind(event.job.run_id.0 as i64)
            .bind(serde_json::to_string(&event.job.labels).expect("labels serialize"))
            .bind(runner.map(str::to_string))
            .bind(ours.map(i64::from))
            .bind(conclusion(event))
            .bind(created_at(event, now))
            .bind(event.job.completed_at.map(millis))
            .bind(now)
            .fetch_optional(&mut *conn)
            .await
    }
}
