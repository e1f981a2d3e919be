//! What the reconciler ([`crate::lifecycle`]) writes of the runners it follows
//! ([`super::live`]): what ECS said of them, replacements, jobs gone quiet, and the registrations
//! and tasks the orphan sweep asks about. Each change to a row is written with its history
//! entry in one transaction.

use std::collections::HashMap;

use serde_json::{Value, json};
use sqlx::Row;

use super::history::{EventKind, Note};
use super::spot::Interruption;
use super::{LiveRunner, RunnerState, Store, StoreError};
use crate::domain::{InstallationId, JobId, RunId};

/// How a task ended, as ECS reported it (times in unix ms).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct TaskEnd {
    pub task: String,
    pub started_at: Option<i64>,
    pub stopped_at: Option<i64>,
    /// `None` when ECS no longer knew the task.
    pub stop_code: Option<String>,
    pub stopped_reason: Option<String>,
    pub exit_code: Option<i32>,
    /// The capacity provider the task ran on, when ECS said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity_provider: Option<String>,
}

/// What a job needs to be launched again: the fields of its `queued` delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    pub job: JobId,
    pub pool: Option<String>,
    pub repo: String,
    pub installation_id: Option<InstallationId>,
    pub run_id: RunId,
    pub labels: Vec<String>,
    /// GitHub's `created_at`, unix ms.
    pub created_at: i64,
    /// How often its runner was replaced so far.
    pub replacements: u32,
    pub launch: super::LaunchState,
}

/// What became of a request to replace a job's runner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replaced {
    /// The job is owed a launch again: this is replacement `spec.replacements`.
    Reopened(JobSpec),
    /// It had `max_replacements` already: the job failed, for the dead-letter queue.
    Exhausted(JobSpec),
    /// It no longer needs a runner (started, finished, or launched anew meanwhile).
    NotOwed,
}

/// When a job whose runner went away is owed another ([`Store::replace_runner`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Debt {
    /// While it owes a launch: not cancelled before any runner took it, not run by a
    /// runner dockhand did not launch.
    Owed,
    /// Only while GitHub has it queued.
    Queued,
}

impl Debt {
    fn condition(self) -> &'static str {
        match self {
            Self::Owed => {
                "NOT ((github = 'completed' AND ran_on IS NULL) OR COALESCE(ran_on_dockhand, 1) = 0)"
            }
            Self::Queued => "github = 'queued'",
        }
    }
}

const JOB_SPEC: &str =
    "job_id, pool, repo, installation_id, run_id, labels, created_at, replacements, launch";

fn job_spec(row: &sqlx::any::AnyRow) -> Result<JobSpec, sqlx::Error> {
    let labels: String = row.try_get("labels")?;
    Ok(JobSpec {
        job: JobId(row.try_get::<i64, _>("job_id")? as u64),
        pool: row.try_get("pool")?,
        repo: row.try_get("repo")?,
        installation_id: row
            .try_get::<Option<i64>, _>("installation_id")?
            .map(|i| InstallationId(i as u64)),
        run_id: RunId(row.try_get::<i64, _>("run_id")? as u64),
        labels: serde_json::from_str(&labels).unwrap_or_default(),
        created_at: row.try_get("created_at")?,
        replacements: row.try_get::<i64, _>("replacements")?.max(0) as u32,
        launch: super::LaunchState::parse(&row.try_get::<String, _>("launch")?),
    })
}

impl Store {
    /// Records a live task's status as ECS reports it now.
    pub async fn record_task_status(
        &self,
        runner_name: &str,
        status: &str,
        started_at: Option<i64>,
    ) -> Result<(), StoreError> {
        let mut w = self.write("task_status").await?;
        sqlx::query(self.sql(
            "UPDATE runners SET task_status = $2, task_started_at = COALESCE($3, task_started_at)
             WHERE runner_name = $1",
        ))
        .bind(runner_name.to_string())
        .bind(status.to_string())
        .bind(started_at)
        .execute(&mut *w.conn)
        .await?;
        Ok(())
    }

    /// A runner's task stopped: a runner that had not taken a job is `stopped`, a busy one
    /// `finished` (its job fails on GitHub), a finished one stays so with its task's end
    /// recorded (and noted unless it was a clean exit). Notes `task_stopped` on the job it was launched
    /// for, and `runner_lost` on the job it was running. False if another pass recorded it.
    ///
    /// A Spot `interruption` is noted too (`interrupted`), on both jobs, and, for a busy
    /// runner in a pool that re-runs interrupted jobs, the job it was running is put down
    /// for a re-run of its workflow run ([`Store::pending_reruns`]).
    pub async fn record_task_stopped(
        &self,
        runner: &LiveRunner,
        end: &TaskEnd,
        interruption: Option<&Interruption>,
    ) -> Result<bool, StoreError> {
        let mut w = self.write("task_stopped").await?;
        let now = self.now();
        let mut tx = sqlx::Connection::begin(&mut *w.conn).await?;
        // A finished runner ran its job to the end GitHub reported; only its task's stop is
        // new.
        let finished = runner.state == RunnerState::Finished;
        let busy = runner.state == RunnerState::Busy || finished;
        let to = if busy {
            RunnerState::Finished
        } else {
            RunnerState::Stopped
        };
        let changed = sqlx::query(self.sql(
            "UPDATE runners SET state = $3, task_status = 'STOPPED',
                 task_started_at = COALESCE($4, task_started_at), task_stopped_at = $5,
                 stop_code = $6, stopped_reason = $7, exit_code = $8, updated_at = $9
             WHERE runner_name = $1 AND state = $2 AND COALESCE(task_status, '') <> 'STOPPED'",
        ))
        .bind(runner.runner_name.clone())
        .bind(runner.state.as_str().to_string())
        .bind(to.as_str().to_string())
        .bind(end.started_at)
        .bind(end.stopped_at)
        .bind(end.stop_code.clone())
        .bind(end.stopped_reason.clone())
        .bind(end.exit_code.map(i64::from))
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        if changed {
            let mut detail = serde_json::to_value(end).expect("serializes");
            detail["runner"] = runner.runner_name.clone().into();
            detail["had_job"] = busy.into();
            // An ephemeral runner's container exits 0 after its job: only another end lost
            // the job it was running.
            let clean = end.stop_code.as_deref() == Some("EssentialContainerExited")
                && end.exit_code == Some(0);
            let mut notes = Vec::new();
            // A finished runner's clean exit is the end of every job's story: not noted.
            if let (true, Some(job)) = (
                !finished || !clean || interruption.is_some(),
                runner.for_job,
            ) {
                notes.push(Note::new(job, now, EventKind::TaskStopped, detail.clone()));
            }
            if let (true, false, Some(ran)) =
                (runner.state == RunnerState::Busy, clean, runner.ran_job)
            {
                notes.push(Note::new(ran, now, EventKind::RunnerLost, detail.clone()));
            }
            if let Some(interruption) = interruption {
                detail["rerun"] = interruption.rerun.into();
                detail["capacity_provider"] = interruption.capacity_provider.clone().into();
                if let Some(job) = runner.for_job {
                    notes.push(Note::new(job, now, EventKind::Interrupted, detail.clone()));
                }
                if let Some(ran) = runner
                    .ran_job
                    .filter(|ran| busy && Some(*ran) != runner.for_job)
                {
                    notes.push(Note::new(ran, now, EventKind::Interrupted, detail));
                }
                if let (true, true, Some(ran)) = (busy, interruption.rerun, runner.ran_job) {
                    self.want_rerun(&mut tx, ran, now).await?;
                }
            }
            self.append_all(&mut tx, notes).await?;
        }
        tx.commit().await?;
        Ok(changed)
    }

    /// Gives a job whose runner went away before taking a job a new attempt: `owed` again,
    /// its runner and task forgotten (the caller removed or gave up the old ones), unless it
    /// was replaced `max` times already, when it fails. A launched (or adopted) job
    /// qualifies while it still owes a launch ([`Debt::Owed`]: it was neither cancelled
    /// before any runner took it nor run by a runner dockhand did not launch; a job another
    /// of dockhand's runners took still owes the pool the runner that died), or only while
    /// GitHub has it queued ([`Debt::Queued`]). `why` is a closed label (`task_stopped`,
    /// `pending_timeout`, `quiet`), `detail` says more for the history. A runner Spot
    /// interrupted names its capacity provider (`interrupted_on`): the replacement
    /// launches on the providers after it.
    #[allow(clippy::too_many_arguments)]
    pub async fn replace_runner(
        &self,
        job: JobId,
        debt: Debt,
        why: &'static str,
        reason: &str,
        max: u32,
        interrupted_on: Option<&str>,
        detail: Value,
    ) -> Result<Replaced, StoreError> {
        let owed = debt.condition();
        let mut w = self.write("replace_runner").await?;
        let now = self.now();
        let mut tx = sqlx::Connection::begin(&mut *w.conn).await?;
        let reopened = sqlx::query(self.sql_owned(format!(
            "UPDATE jobs SET launch = 'owed', replacements = replacements + 1,
                 runner_name = NULL, runner_id = NULL, task_arn = NULL, cluster = NULL,
                 lease_owner = NULL, lease_expires_at = NULL, verified_at = NULL,
                 reason = $2, updated_at = $3, interrupted_on = $5
             WHERE job_id = $1 AND launch IN ('launched', 'adopted') AND {owed}
               AND replacements < $4
             RETURNING {JOB_SPEC}"
        )))
        .bind(job.0 as i64)
        .bind(reason.to_string())
        .bind(now)
        .bind(i64::from(max))
        .bind(interrupted_on.map(str::to_string))
        .fetch_optional(&mut *tx)
        .await?;
        let mut detail = detail;
        detail["why"] = why.into();
        detail["reason"] = reason.into();
        detail["max"] = max.into();
        let outcome = if let Some(row) = reopened {
            let spec = job_spec(&row)?;
            detail["replacement"] = spec.replacements.into();
            self.append(&mut tx, Note::new(job, now, EventKind::Replaced, detail))
                .await?;
            Replaced::Reopened(spec)
        } else {
            let failed = sqlx::query(self.sql_owned(format!(
                "UPDATE jobs SET launch = 'failed', reason = $2, updated_at = $3,
                     runner_name = NULL, runner_id = NULL, task_arn = NULL, cluster = NULL
                 WHERE job_id = $1 AND launch IN ('launched', 'adopted') AND {owed}
                 RETURNING {JOB_SPEC}"
            )))
            .bind(job.0 as i64)
            .bind(format!("its runner went away {} times: {reason}", max + 1))
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            match failed {
                Some(row) => {
                    let spec = job_spec(&row)?;
                    detail["exhausted"] = true.into();
                    self.append(&mut tx, Note::new(job, now, EventKind::Failed, detail))
                        .await?;
                    Replaced::Exhausted(spec)
                }
                None => Replaced::NotOwed,
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }

    /// A job GitHub still shows queued, launched (or owed with nobody launching) and quiet
    /// for longer than `quiet_ms`, not asked about within that time either: oldest first.
    pub async fn quiet_jobs(&self, quiet_ms: i64, limit: u32) -> Result<Vec<JobSpec>, StoreError> {
        let cutoff = self.now() - quiet_ms;
        let rows = sqlx::query(self.sql_owned(format!(
            "SELECT {JOB_SPEC} FROM jobs
             WHERE github = 'queued' AND launch IN ('owed', 'launched', 'adopted')
               AND updated_at < $1 AND (verified_at IS NULL OR verified_at < $1)
             ORDER BY updated_at LIMIT $2"
        )))
        .bind(cutoff)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(job_spec)
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// Records that GitHub was asked about a quiet job, and what it said.
    pub async fn record_verified(&self, job: JobId, detail: Value) -> Result<(), StoreError> {
        let mut w = self.write("verified").await?;
        let now = self.now();
        let mut tx = sqlx::Connection::begin(&mut *w.conn).await?;
        sqlx::query(self.sql("UPDATE jobs SET verified_at = $2 WHERE job_id = $1"))
            .bind(job.0 as i64)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        self.append(&mut tx, Note::new(job, now, EventKind::Verified, detail))
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Jobs waiting for a runner, by pool: GitHub has not started them and a launch is
    /// owed, under way or done.
    pub async fn waiting_jobs(&self) -> Result<HashMap<String, u64>, StoreError> {
        self.counts_by_pool(concat!(
            "SELECT pool, count(*) AS n FROM jobs WHERE ",
            waiting_job!(),
            " AND pool IS NOT NULL GROUP BY pool"
        ))
        .await
    }

    /// The reconciler removed a runner (its registration, then its task): `removed`, with
    /// `reaped` in the history of the job it was launched for.
    pub async fn record_reaped(
        &self,
        runner_name: &str,
        for_job: Option<JobId>,
        detail: Value,
    ) -> Result<(), StoreError> {
        let mut w = self.write("reaped").await?;
        let now = self.now();
        let mut tx = sqlx::Connection::begin(&mut *w.conn).await?;
        self.set_runner_in(&mut tx, runner_name, RunnerState::Removed, None, now)
            .await?;
        if let Some(job) = for_job {
            self.append(&mut tx, Note::new(job, now, EventKind::Reaped, detail))
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Appends one entry to a job's history, with no change to its row.
    pub async fn note(&self, job: JobId, kind: EventKind, detail: Value) -> Result<(), StoreError> {
        let mut w = self.write("note").await?;
        let note = Note::new(job, self.now(), kind, detail);
        self.append(&mut w.conn, note).await?;
        Ok(())
    }
}

/// The `task_stopped` detail's fields, for callers building a `replaced` entry.
pub fn end_detail(runner: &str, end: &TaskEnd) -> Value {
    json!({
        "runner": runner,
        "task": end.task,
        "stop_code": end.stop_code,
        "stopped_reason": end.stopped_reason,
        "exit_code": end.exit_code,
    })
}
