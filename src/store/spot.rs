//! What Spot handling reads and writes: the runner behind an ECS task event, interruptions,
//! the re-runs of interrupted jobs' workflow runs, and where a launch may be placed.

use serde_json::Value;
use sqlx::{AnyConnection, Row};

use super::history::{EventKind, Note};
use super::{Store, StoreError};
use crate::domain::{InstallationId, JobId, RunId};
use crate::ecs::Placement;

/// A runner's task Spot reclaimed, as recorded with the task's stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interruption {
    /// The Spot capacity provider it ran on.
    pub capacity_provider: String,
    /// Whether the pool re-runs the workflow run of a job interrupted while it ran.
    pub rerun: bool,
}

/// Where the re-run of an interrupted job's workflow run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RerunState {
    /// For the job and its run to complete.
    Waiting,
    /// The re-run is being asked for (launches of the run go on-demand from now).
    Requesting,
    /// GitHub accepted it.
    Requested,
    /// The run was re-run already: for another interrupted job, or by a person.
    Covered,
    /// The job succeeded after all.
    NotNeeded,
    /// GitHub refused it.
    Refused,
    /// The run did not complete in time.
    Expired,
}

impl RerunState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Requesting => "requesting",
            Self::Requested => "requested",
            Self::Covered => "covered",
            Self::NotNeeded => "not_needed",
            Self::Refused => "refused",
            Self::Expired => "expired",
        }
    }

    fn parse(value: &str) -> Self {
        match value {
            "requesting" => Self::Requesting,
            "requested" => Self::Requested,
            "covered" => Self::Covered,
            "not_needed" => Self::NotNeeded,
            "refused" => Self::Refused,
            "expired" => Self::Expired,
            _ => Self::Waiting,
        }
    }
}

/// A re-run not yet settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRerun {
    /// The job interrupted while it ran.
    pub job: JobId,
    pub run_id: RunId,
    /// `owner/name`.
    pub repo: String,
    pub installation_id: Option<InstallationId>,
    pub pool: Option<String>,
    pub state: RerunState,
    /// When the interruption was recorded (unix ms, the store's clock).
    pub since: i64,
}

impl Store {
    /// Puts `job` down for a re-run of its workflow run, once: in the transaction that
    /// records its runner's interruption.
    pub(super) async fn want_rerun(
        &self,
        conn: &mut AnyConnection,
        job: JobId,
        now: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(self.sql(
            "INSERT INTO reruns (job_id, run_id, repo, installation_id, pool, state, created_at,
                                 updated_at)
             SELECT job_id, run_id, repo, installation_id, pool, 'waiting', $2, $2
             FROM jobs WHERE job_id = $1
             ON CONFLICT (job_id) DO NOTHING",
        ))
        .bind(job.0 as i64)
        .bind(now)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Re-runs waiting for their run to complete, or being asked for: oldest first.
    pub async fn pending_reruns(&self, limit: u32) -> Result<Vec<PendingRerun>, StoreError> {
        let rows = sqlx::query(self.sql(
            "SELECT job_id, run_id, repo, installation_id, pool, state, created_at FROM reruns
             WHERE state IN ('waiting', 'requesting') ORDER BY created_at, job_id LIMIT $1",
        ))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(PendingRerun {
                    job: JobId(r.try_get::<i64, _>("job_id")? as u64),
                    run_id: RunId(r.try_get::<i64, _>("run_id")? as u64),
                    repo: r.try_get("repo")?,
                    installation_id: r
                        .try_get::<Option<i64>, _>("installation_id")?
                        .map(|i| InstallationId(i as u64)),
                    pool: r.try_get("pool")?,
                    state: RerunState::parse(&r.try_get::<String, _>("state")?),
                    since: r.try_get("created_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// Moves a re-run from `from` to `to`, with the run attempt it led to and why; a final
    /// state is noted in the job's history (`rerun`, with `detail`). False if another
    /// process moved it first.
    pub async fn settle_rerun(
        &self,
        job: JobId,
        from: RerunState,
        to: RerunState,
        attempt: Option<u64>,
        reason: Option<&str>,
        detail: Value,
    ) -> Result<bool, StoreError> {
        let mut w = self.write("rerun").await?;
        let now = self.now();
        let mut tx = sqlx::Connection::begin(&mut *w.conn).await?;
        let moved = sqlx::query(self.sql(
            "UPDATE reruns SET state = $3, attempt = COALESCE($4, attempt),
                 reason = COALESCE($5, reason), updated_at = $6
             WHERE job_id = $1 AND state = $2",
        ))
        .bind(job.0 as i64)
        .bind(from.as_str().to_string())
        .bind(to.as_str().to_string())
        .bind(attempt.map(|a| a as i64))
        .bind(reason.map(str::to_string))
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        if moved && to != RerunState::Requesting {
            let mut detail = detail;
            detail["outcome"] = to.as_str().into();
            self.append(&mut tx, Note::new(job, now, EventKind::Rerun, detail))
                .await?;
        }
        tx.commit().await?;
        Ok(moved)
    }

    /// Where `job` (of workflow run `run_id`) may launch: past the capacity provider its
    /// last runner was interrupted on, and on-demand only if its run was re-run because of
    /// an interruption.
    pub async fn placement(&self, job: JobId, run_id: RunId) -> Result<Placement, StoreError> {
        let row = sqlx::query(self.sql(
            "SELECT (SELECT interrupted_on FROM jobs WHERE job_id = $1) AS after,
                    (SELECT count(*) FROM reruns WHERE run_id = $2
                       AND state IN ('requesting', 'requested', 'covered')) AS reruns",
        ))
        .bind(job.0 as i64)
        .bind(run_id.0 as i64)
        .fetch_one(&self.pool)
        .await?;
        Ok(Placement {
            after: row.try_get("after")?,
            on_demand: row.try_get::<i64, _>("reruns")? > 0,
        })
    }
}
