//! Claims and leases: how a launch happens exactly once. A worker claims a job before any
//! GitHub or ECS call, records each step under its lease, and ends by launching, releasing,
//! failing, waiving or dry-running the job. Each of those writes checks the lease, so a
//! worker whose lease was taken over learns it ([`StoreError::LeaseLost`]) instead of
//! overwriting the new owner's record. Leases are judged by the database's clock
//! (`DB_NOW`), never a worker's: a worker whose clock runs ahead cannot take over a live
//! lease.
//!
//! Only these writes change `launch`; the webhook events ([`super::tracking`]) change what
//! GitHub says, and never touch a lease.

use std::time::Duration;

use sqlx::Row;

use serde_json::json;

use super::history::{Delivered, EventKind, Note};
use super::{GitHubState, LaunchState, Store, StoreError, created_at, millis};
use crate::domain::{InstallationId, JobEvent, JobId, RunnerId};

/// The outcome of trying to claim a job's launch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This worker now holds the lease for `attempt`. `prior` is what an earlier attempt
    /// left behind, unconfirmed gone: a runner registration or a task to adopt or clean up.
    Acquired {
        attempt: u32,
        prior: Option<PriorAttempt>,
    },
    /// Nothing to launch: launched already, failed, or no longer owed.
    Done(LaunchState),
    /// Another worker holds a live lease for this much longer, by the database's clock.
    Held(Duration),
}

/// What an interrupted attempt had recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriorAttempt {
    pub runner_name: Option<String>,
    pub runner_id: Option<RunnerId>,
    pub task_arn: Option<String>,
    /// The cluster its task was launched in; `None` on rows older than the column.
    pub cluster: Option<String>,
}

/// Whether a job still owes a launch, as GitHub's view stood when a leased write read it:
/// not when the job finished without a runner, nor when it ran on a runner dockhand did not
/// launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owed {
    Yes,
    No,
}

/// The job's debt as the row `RETURNING github, ran_on, ran_on_dockhand` shows it; no row
/// means the leased write found the lease gone.
fn owed(job: JobId, row: Option<&sqlx::any::AnyRow>) -> Result<Owed, StoreError> {
    let Some(row) = row else {
        return Err(StoreError::LeaseLost(job));
    };
    let github = GitHubState::parse(&row.try_get::<String, _>("github")?);
    let ran_on: Option<String> = row.try_get("ran_on")?;
    let ran_on_dockhand: Option<i64> = row.try_get("ran_on_dockhand")?;
    let cancelled =
        (github == GitHubState::Completed && ran_on.is_none()) || ran_on_dockhand == Some(0);
    Ok(if cancelled { Owed::No } else { Owed::Yes })
}

/// A runner registration, as GitHub answered it: the runner's id, and the App and
/// installation that registered it (which its clean-up uses). `None` keeps what is on
/// record (a take-over re-recording an earlier attempt's registration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registration {
    pub runner_id: RunnerId,
    pub installation: Option<InstallationId>,
    pub app_id: Option<u64>,
}

impl From<RunnerId> for Registration {
    /// A registration whose App and installation stay as recorded.
    fn from(runner_id: RunnerId) -> Self {
        Self {
            runner_id,
            installation: None,
            app_id: None,
        }
    }
}

/// How a released attempt leaves the job's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leftovers {
    /// Its registration and task are confirmed gone (or were never made): the next
    /// attempt starts clean.
    CleanedUp,
    /// It may have left a registration or a task: the record keeps them, for the next
    /// claim to adopt or remove.
    Kept,
}

impl Store {
    /// Claims the launch of a queued job: inserts it, or takes over an owed job or an
    /// expired lease, in one statement, so two workers can never both hold it.
    pub async fn claim(
        &self,
        event: &JobEvent,
        pool: &str,
        owner: &str,
        lease: Duration,
    ) -> Result<Claim, StoreError> {
        let delivered = Delivered {
            event,
            accepted_at: chrono::Utc::now(),
        };
        self.claim_delivered(&delivered, pool, owner, lease).await
    }

    /// [`Store::claim`], noting in the job's history the delivery (at the time the ingress
    /// accepted it), the pool, and the claim, in the same transaction.
    pub async fn claim_delivered(
        &self,
        delivered: &Delivered<'_>,
        pool: &str,
        owner: &str,
        lease: Duration,
    ) -> Result<Claim, StoreError> {
        let event = delivered.event;
        let mut w = self.write("claim").await?;
        let now = self.now();
        let labels = serde_json::to_string(&event.job.labels).expect("labels serialize");
        let mut tx = sqlx::Connection::begin(&mut *w.conn).await?;
        let sql = self.sql(
            "INSERT INTO jobs (job_id, launch, github, pool, repo, installation_id, run_id,
                               labels, attempt, lease_owner, lease_expires_at, created_at,
                               received_at, updated_at)
             VALUES ($1, 'launching', 'queued', $2, $3, $4, $5, $6, 1, $7, DB_NOW + $8, $9,
                     $11, $10)
             ON CONFLICT (job_id) DO UPDATE SET
                 launch = 'launching',
                 attempt = jobs.attempt + 1,
                 pool = excluded.pool,
                 previous_owner = jobs.lease_owner,
                 lease_owner = excluded.lease_owner,
                 lease_expires_at = excluded.lease_expires_at,
                 installation_id = COALESCE(jobs.installation_id, excluded.installation_id),
                 updated_at = excluded.updated_at
             WHERE jobs.launch = 'owed'
                OR (jobs.launch = 'launching' AND jobs.lease_expires_at < DB_NOW)
             RETURNING attempt, runner_name, runner_id, task_arn, cluster, previous_owner",
        );
        let claimed = sqlx::query(sql)
            .bind(event.job.id.0 as i64)
            .bind(pool.to_string())
            .bind(event.repository.full_name.clone())
            .bind(event.installation_id.map(|i| i.0 as i64))
            .bind(event.job.run_id.0 as i64)
            .bind(labels)
            .bind(owner.to_string())
            .bind(lease.as_millis() as i64)
            .bind(created_at(event, now))
            .bind(now)
            .bind(millis(delivered.accepted_at).min(now))
            .fetch_optional(&mut *tx)
            .await?;
        let mut notes = self.arrival(delivered, Some(pool), json!({}), now);
        let claim = match claimed {
            Some(row) => {
                let attempt: i64 = row.try_get("attempt")?;
                let prior = PriorAttempt {
                    runner_name: row.try_get("runner_name")?,
                    runner_id: row
                        .try_get::<Option<i64>, _>("runner_id")?
                        .map(|id| RunnerId(id as u64)),
                    task_arn: row.try_get("task_arn")?,
                    cluster: row.try_get("cluster")?,
                };
                let prior =
                    (prior.runner_name.is_some() || prior.task_arn.is_some()).then_some(prior);
                let detail = json!({
                    "attempt": attempt,
                    "pool": pool,
                    "lease_s": lease.as_secs_f64(),
                    // A lease still named on the row had expired: its worker stopped mid-way.
                    "took_over_from": row.try_get::<Option<String>, _>("previous_owner")?,
                    "leftovers": prior.as_ref().map(|p| json!({
                        "runner": p.runner_name, "task": p.task_arn,
                    })),
                });
                notes.push(Note::new(event.job.id, now, EventKind::Claimed, detail));
                Claim::Acquired {
                    attempt: attempt as u32,
                    prior,
                }
            }
            None => {
                let sql = self.sql(
                    "SELECT launch, lease_expires_at - DB_NOW AS remaining FROM jobs WHERE job_id = $1",
                );
                let row = sqlx::query(sql)
                    .bind(event.job.id.0 as i64)
                    .fetch_one(&mut *tx)
                    .await?;
                let state = LaunchState::parse(&row.try_get::<String, _>("launch")?);
                if state.is_settled() {
                    Claim::Done(state)
                } else {
                    let remaining: Option<i64> = row.try_get("remaining")?;
                    Claim::Held(Duration::from_millis(remaining.unwrap_or(0).max(0) as u64))
                }
            }
        };
        self.append_all(&mut tx, notes).await?;
        tx.commit().await?;
        Ok(claim)
    }

    /// What dockhand has done for the job, if the store has heard of it.
    pub async fn launch_state(&self, job: JobId) -> Result<Option<LaunchState>, StoreError> {
        let sql = self.sql("SELECT launch FROM jobs WHERE job_id = $1");
        let state: Option<String> = sqlx::query_scalar(sql)
            .bind(job.0 as i64)
            .fetch_optional(&self.pool)
            .await?;
        Ok(state.as_deref().map(LaunchState::parse))
    }

    /// Extends a held lease (the worker's heartbeat).
    pub async fn renew_lease(
        &self,
        job: JobId,
        owner: &str,
        lease: Duration,
    ) -> Result<(), StoreError> {
        let mut w = self.write("renew_lease").await?;
        let sql = self.sql(
            "UPDATE jobs SET lease_expires_at = DB_NOW + $3, updated_at = $4
             WHERE job_id = $1 AND lease_owner = $2 AND launch = 'launching'",
        );
        self.leased(
            job,
            sqlx::query(sql)
                .bind(job.0 as i64)
                .bind(owner.to_string())
                .bind(lease.as_millis() as i64)
                .bind(self.now())
                .execute(&mut *w.conn)
                .await?
                .rows_affected(),
        )
    }

    /// Records the runner name about to be registered and the cluster its task goes to,
    /// before GitHub is called, so a take-over knows what to look for, and where. Called
    /// only once an earlier attempt's leftovers are adopted or confirmed gone. Answers
    /// whether the job is still owed a launch, as GitHub's view stands ([`Owed`]).
    pub async fn record_intent(
        &self,
        job: JobId,
        owner: &str,
        runner_name: &str,
        cluster: &str,
    ) -> Result<Owed, StoreError> {
        let mut w = self.write("record_intent").await?;
        let sql = self.sql(
            "UPDATE jobs SET runner_name = $3, cluster = $4, runner_id = NULL, task_arn = NULL,
                 updated_at = $5
             WHERE job_id = $1 AND lease_owner = $2 AND launch = 'launching'
             RETURNING github, ran_on, ran_on_dockhand",
        );
        let row = sqlx::query(sql)
            .bind(job.0 as i64)
            .bind(owner.to_string())
            .bind(runner_name.to_string())
            .bind(cluster.to_string())
            .bind(self.now())
            .fetch_optional(&mut *w.conn)
            .await?;
        owed(job, row.as_ref())
    }

    /// Records the GitHub runner registration made for the job.
    pub async fn record_registration(
        &self,
        job: JobId,
        owner: &str,
        pool: &str,
        runner_name: &str,
        registration: impl Into<Registration>,
    ) -> Result<Owed, StoreError> {
        let registration = registration.into();
        let runner_id = registration.runner_id;
        let mut w = self.write("record_registration").await?;
        let now = self.now();
        let sql = self.sql(
            "UPDATE jobs SET runner_id = $3, updated_at = $4
             WHERE job_id = $1 AND lease_owner = $2 AND launch = 'launching'
             RETURNING github, ran_on, ran_on_dockhand",
        );
        // One commit for both rows.
        let mut tx = sqlx::Connection::begin(&mut *w.conn).await?;
        let row = sqlx::query(sql)
            .bind(job.0 as i64)
            .bind(owner.to_string())
            .bind(runner_id.0 as i64)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
        let owed = owed(job, row.as_ref())?;
        let detail = json!({ "runner": runner_name, "runner_id": runner_id.0 });
        self.append(&mut tx, Note::new(job, now, EventKind::Registered, detail))
            .await?;
        let sql = self.sql(
            "INSERT INTO runners (runner_name, pool, for_job_id, runner_id, state, created_at, updated_at,
                                  installation_id, app_id)
             VALUES ($1, $2, $3, $4, 'registered', $5, $5, $6, $7)
             ON CONFLICT (runner_name) DO UPDATE SET
                 runner_id = excluded.runner_id,
                 installation_id = COALESCE(excluded.installation_id, runners.installation_id),
                 app_id = COALESCE(excluded.app_id, runners.app_id),
                 -- A runner seen running a job (a take-over adopting it) stays as seen: it
                 -- must not count as live again.
                 state = CASE WHEN runners.state IN ('busy', 'finished', 'removed', 'stopped')
                              THEN runners.state ELSE 'registered' END,
                 updated_at = excluded.updated_at",
        );
        sqlx::query(sql)
            .bind(runner_name.to_string())
            .bind(pool.to_string())
            .bind(job.0 as i64)
            .bind(runner_id.0 as i64)
            .bind(now)
            .bind(registration.installation.map(|i| i.0 as i64))
            .bind(registration.app_id.map(|a| a as i64))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(owed)
    }

    /// Records the task: the job is `launched` (or `adopted`, for what an interrupted
    /// attempt started) and the lease released. `launched_on`: the capacity provider or
    /// launch type ECS reported. `None`: an adopted launch whose task is
    /// gone, its runner seen running a job.
    pub async fn record_launched(
        &self,
        job: JobId,
        owner: &str,
        runner_name: &str,
        task_arn: Option<&str>,
        launched_on: Option<&str>,
        how: LaunchState,
    ) -> Result<(), StoreError> {
        let mut w = self.write("record_launched").await?;
        debug_assert!(matches!(how, LaunchState::Launched | LaunchState::Adopted));
        let now = self.now();
        let sql = self.sql(
            "UPDATE jobs SET launch = $5, task_arn = $3, lease_owner = NULL,
                 lease_expires_at = NULL, reason = NULL, updated_at = $4
             WHERE job_id = $1 AND lease_owner = $2 AND launch = 'launching'",
        );
        // One commit for the job and its runner.
        let mut tx = sqlx::Connection::begin(&mut *w.conn).await?;
        let updated = sqlx::query(sql)
            .bind(job.0 as i64)
            .bind(owner.to_string())
            .bind(task_arn.map(str::to_string))
            .bind(now)
            .bind(how.as_str().to_string())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        self.leased(job, updated)?;
        let kind = if how == LaunchState::Adopted {
            EventKind::Adopted
        } else {
            EventKind::Launched
        };
        let detail = json!({
            "runner": runner_name,
            "task": task_arn,
            "launched_on": launched_on,
        });
        self.append(&mut tx, Note::new(job, now, kind, detail))
            .await?;
        if let Some(task_arn) = task_arn {
            sqlx::query(self.sql(super::runners::RECORD_RUNNER_TASK))
                .bind(runner_name.to_string())
                .bind(task_arn.to_string())
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(super) fn leased(&self, job: JobId, rows_affected: u64) -> Result<(), StoreError> {
        if rows_affected == 0 {
            Err(StoreError::LeaseLost(job))
        } else {
            Ok(())
        }
    }
}
