//! Job and runner state, in SQLite (single node) or Postgres (scale-out).
//!
//! The jobs table is what makes launches exactly-once: a worker must [`Store::claim`] a job
//! (an atomic insert-or-take-over of an expired lease) before any GitHub or ECS call, and
//! records its intent and results as it goes, so a crash at any point leaves enough behind
//! for the next worker to adopt or clean up.
//!
//! Both backends run the same SQL through sqlx's `Any` driver; timestamps are unix
//! milliseconds.

mod state;

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, AssertSqlSafe, Executor, Row, SqlSafeStr, SqlStr};

pub use state::{JobState, RunnerState};

use crate::config::StoreSettings;
use crate::domain::{JobEvent, JobId, RunnerId};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/store/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/store/postgres");

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database did not answer or failed: try again later.
    #[error("store unavailable")]
    Unavailable(#[from] sqlx::Error),
    /// This worker's lease on the job expired and another worker took the job over.
    #[error("lease on job {0} was lost to another worker")]
    LeaseLost(JobId),
}

/// The outcome of trying to claim a job's launch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This worker now holds the lease for `attempt`. `prior` is what an earlier attempt
    /// whose lease expired left behind: a runner registration or a task to adopt or clean up.
    Acquired {
        attempt: u32,
        prior: Option<PriorAttempt>,
    },
    /// Launched already, or finished before it needed a runner: nothing to do.
    Done(JobState),
    /// Another worker holds a live lease until then.
    Held(DateTime<Utc>),
}

/// What an interrupted attempt had recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriorAttempt {
    pub runner_name: Option<String>,
    pub runner_id: Option<RunnerId>,
    pub task_arn: Option<String>,
}

/// A job row, as tests and operators see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRecord {
    pub job_id: JobId,
    pub state: JobState,
    pub pool: Option<String>,
    pub repo: String,
    pub attempt: u32,
    pub runner_name: Option<String>,
    pub runner_id: Option<RunnerId>,
    pub task_arn: Option<String>,
    pub lease_owner: Option<String>,
    pub conclusion: Option<String>,
    pub reason: Option<String>,
}

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

/// The store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    sqlite: bool,
}

fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn now() -> i64 {
    millis(Utc::now())
}

/// GitHub's `created_at` for the row, or `now` when the delivery had none (older GitHub
/// Enterprise Server versions): the column is required, and the time dockhand first
/// stored the job is the closest thing known.
fn created_at(event: &JobEvent, now: i64) -> i64 {
    event.job.created_at.map_or(now, millis)
}

impl Store {
    /// Connects; SQLite files (and their directory) are created and always migrated,
    /// Postgres is migrated when `migrate_on_start` is set.
    pub async fn connect(settings: &StoreSettings) -> anyhow::Result<Self> {
        let store = Self::connect_only(settings).await?;
        if store.sqlite || settings.migrate_on_start {
            store.migrate().await?;
        }
        Ok(store)
    }

    /// Connects without migrating (for `dockhand migrate`, which migrates explicitly).
    pub async fn connect_only(settings: &StoreSettings) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let sqlite = settings.url.starts_with("sqlite:");
        let mut url = settings.url.clone();
        if sqlite {
            let path = url
                .trim_start_matches("sqlite://")
                .trim_start_matches("sqlite:");
            let path = path.split('?').next().unwrap_or_default();
            if let Some(dir) = std::path::Path::new(path).parent()
                && !dir.as_os_str().is_empty()
            {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            if !url.contains("mode=") {
                url.push_str(if url.contains('?') {
                    "&mode=rwc"
                } else {
                    "?mode=rwc"
                });
            }
        }
        let pool = AnyPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if sqlite {
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                             PRAGMA busy_timeout = 10000;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .context("connecting to the store (store.url)")?;
        Ok(Self { pool, sqlite })
    }

    pub async fn migrate(&self) -> anyhow::Result<()> {
        let migrator = if self.sqlite {
            &SQLITE_MIGRATIONS
        } else {
            &POSTGRES_MIGRATIONS
        };
        migrator
            .run(&self.pool)
            .await
            .context("migrating the store")?;
        Ok(())
    }

    /// The same SQL for both backends: `$N` placeholders become SQLite's `?N`. Only the
    /// placeholders of a literal change, so the result is as safe as the literal.
    fn sql(&self, query: &'static str) -> SqlStr {
        if self.sqlite {
            AssertSqlSafe(query.replace('$', "?")).into_sql_str()
        } else {
            query.into_sql_str()
        }
    }

    /// Claims the launch of a queued job: inserts it, or takes over a released or expired
    /// lease, in one statement, so two workers can never both hold it.
    pub async fn claim(
        &self,
        event: &JobEvent,
        pool: &str,
        owner: &str,
        lease: Duration,
    ) -> Result<Claim, StoreError> {
        let now = now();
        let labels = serde_json::to_string(&event.job.labels).expect("labels serialize");
        let sql = self.sql(
            "INSERT INTO jobs (job_id, state, pool, repo, installation_id, run_id, labels, attempt,
                               lease_owner, lease_expires_at, created_at, received_at, updated_at)
             VALUES ($1, 'launching', $2, $3, $4, $5, $6, 1, $7, $8, $9, $10, $10)
             ON CONFLICT (job_id) DO UPDATE SET
                 state = 'launching',
                 attempt = jobs.attempt + 1,
                 pool = excluded.pool,
                 lease_owner = excluded.lease_owner,
                 lease_expires_at = excluded.lease_expires_at,
                 installation_id = COALESCE(jobs.installation_id, excluded.installation_id),
                 updated_at = excluded.updated_at
             WHERE jobs.state = 'pending'
                OR (jobs.state = 'launching' AND jobs.lease_expires_at < excluded.updated_at)
             RETURNING attempt, runner_name, runner_id, task_arn",
        );
        let claimed = sqlx::query(sql)
            .bind(event.job.id.0 as i64)
            .bind(pool.to_string())
            .bind(event.repository.full_name.clone())
            .bind(event.installation_id.map(|i| i.0 as i64))
            .bind(event.job.run_id.0 as i64)
            .bind(labels)
            .bind(owner.to_string())
            .bind(now + lease.as_millis() as i64)
            .bind(created_at(event, now))
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
        if let Some(row) = claimed {
            let attempt: i64 = row.try_get("attempt")?;
            let prior = PriorAttempt {
                runner_name: row.try_get("runner_name")?,
                runner_id: row
                    .try_get::<Option<i64>, _>("runner_id")?
                    .map(|id| RunnerId(id as u64)),
                task_arn: row.try_get("task_arn")?,
            };
            let prior = (prior.runner_name.is_some() || prior.task_arn.is_some()).then_some(prior);
            return Ok(Claim::Acquired {
                attempt: attempt as u32,
                prior,
            });
        }
        let sql = self.sql("SELECT state, lease_expires_at FROM jobs WHERE job_id = $1");
        let row = sqlx::query(sql)
            .bind(event.job.id.0 as i64)
            .fetch_one(&self.pool)
            .await?;
        let state = JobState::parse(&row.try_get::<String, _>("state")?);
        Ok(match state {
            JobState::Launching | JobState::Pending => {
                let until: Option<i64> = row.try_get("lease_expires_at")?;
                Claim::Held(
                    until
                        .and_then(DateTime::from_timestamp_millis)
                        .unwrap_or_else(Utc::now),
                )
            }
            other => Claim::Done(other),
        })
    }

    /// Extends a held lease (the worker's heartbeat).
    pub async fn renew_lease(
        &self,
        job: JobId,
        owner: &str,
        lease: Duration,
    ) -> Result<(), StoreError> {
        let sql = self.sql(
            "UPDATE jobs SET lease_expires_at = $3, updated_at = $4
            
             WHERE job_id = $1 AND lease_owner = $2 AND state = 'launching'",
        );
        let now = now();
        self.leased(
            job,
            sqlx::query(sql)
                .bind(job.0 as i64)
                .bind(owner.to_string())
                .bind(now + lease.as_millis() as i64)
                .bind(now)
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }

    /// Records the runner name about to be registered, before GitHub is called, so a
    /// take-over knows what to look for.
    pub async fn record_intent(
        &self,
        job: JobId,
        owner: &str,
        runner_name: &str,
    ) -> Result<(), StoreError> {
        self.update_leased(
            "UPDATE jobs SET runner_name = $3, runner_id = NULL, task_arn = NULL, updated_at = $4
             WHERE job_id = $1 AND lease_owner = $2 AND state = 'launching'",
            job,
            owner,
            runner_name,
        )
        .await
    }

    /// Records the GitHub runner registration made for the job.
    pub async fn record_registration(
        &self,
        job: JobId,
        owner: &str,
        pool: &str,
        runner_name: &str,
        runner_id: RunnerId,
    ) -> Result<(), StoreError> {
        let now = now();
        let sql = self.sql(
            "UPDATE jobs SET runner_id = $3, updated_at = $4
            
             WHERE job_id = $1 AND lease_owner = $2 AND state = 'launching'",
        );
        let updated = sqlx::query(sql)
            .bind(job.0 as i64)
            .bind(owner.to_string())
            .bind(runner_id.0 as i64)
            .bind(now)
            .execute(&self.pool)
            .await?
            .rows_affected();
        self.leased(job, updated)?;
        let sql = self.sql(
            "INSERT INTO runners (runner_name, pool, for_job_id, runner_id, state, created_at, updated_at)
             VALUES ($1, $2, $3, $4, 'registered', $5, $5)
             ON CONFLICT (runner_name) DO UPDATE SET
                 runner_id = excluded.runner_id, state = 'registered', updated_at = excluded.updated_at",
        );
        sqlx::query(sql)
            .bind(runner_name.to_string())
            .bind(pool.to_string())
            .bind(job.0 as i64)
            .bind(runner_id.0 as i64)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records the task: the job is launched and the lease released.
    pub async fn record_launched(
        &self,
        job: JobId,
        owner: &str,
        runner_name: &str,
        task_arn: &str,
    ) -> Result<(), StoreError> {
        let now = now();
        let sql = self.sql(
            "UPDATE jobs SET state = 'launched', task_arn = $3, lease_owner = NULL,
                 lease_expires_at = NULL, reason = NULL, updated_at = $4
            
             WHERE job_id = $1 AND lease_owner = $2 AND state = 'launching'",
        );
        let updated = sqlx::query(sql)
            .bind(job.0 as i64)
            .bind(owner.to_string())
            .bind(task_arn.to_string())
            .bind(now)
            .execute(&self.pool)
            .await?
            .rows_affected();
        self.leased(job, updated)?;
        let sql = self.sql(
            "UPDATE runners SET task_arn = $2, state = 'launched', updated_at = $3
             WHERE runner_name = $1 AND state = 'registered'",
        );
        sqlx::query(sql)
            .bind(runner_name.to_string())
            .bind(task_arn.to_string())
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Gives the job back (after a transient failure, its registration removed): the next
    /// delivery claims it afresh, with a new attempt and runner name.
    pub async fn release(&self, job: JobId, owner: &str, reason: &str) -> Result<(), StoreError> {
        self.update_leased(
            "UPDATE jobs SET state = 'pending', lease_owner = NULL, lease_expires_at = NULL, runner_name = NULL, runner_id = NULL, task_arn = NULL, reason = $3, updated_at = $4
             WHERE job_id = $1 AND lease_owner = $2 AND state = 'launching'",
            job,
            owner,
            reason,
        )
        .await
    }

    /// The job cannot be launched (a permanent error).
    pub async fn record_failed(
        &self,
        job: JobId,
        owner: &str,
        reason: &str,
    ) -> Result<(), StoreError> {
        self.update_leased(
            "UPDATE jobs SET state = 'failed', lease_owner = NULL, lease_expires_at = NULL, reason = $3, updated_at = $4
             WHERE job_id = $1 AND lease_owner = $2 AND state = 'launching'",
            job,
            owner,
            reason,
        )
        .await
    }

    /// Makes a job that failed permanently claimable again, because an operator requeued its
    /// message after fixing the cause. The claim that follows is the usual one, so a job
    /// requeued twice still launches once; its earlier attempt is taken over as after a
    /// crash. Returns whether the job was failed.
    pub async fn reopen_failed(&self, job: JobId) -> Result<bool, StoreError> {
        let sql = self.sql(
            "UPDATE jobs SET state = 'pending', reason = NULL, updated_at = $2
             WHERE job_id = $1 AND state = 'failed'",
        );
        let done = sqlx::query(sql)
            .bind(job.0 as i64)
            .bind(now())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// A dry run: records what would have launched and releases the lease.
    pub async fn record_dry_run(
        &self,
        job: JobId,
        owner: &str,
        runner_name: &str,
    ) -> Result<(), StoreError> {
        self.update_leased(
            "UPDATE jobs SET state = 'dry_run', runner_name = $3, lease_owner = NULL, lease_expires_at = NULL, updated_at = $4
             WHERE job_id = $1 AND lease_owner = $2 AND state = 'launching'",
            job,
            owner,
            runner_name,
        )
        .await
    }

    /// A queued job no pool can serve (the pool config changed since the ingress matched).
    pub async fn record_unmatched(&self, event: &JobEvent) -> Result<(), StoreError> {
        self.upsert_finished(event, None, JobState::Unmatched, None)
            .await
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
        let now = now();
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
        let now = now();
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

    async fn set_runner(
        &self,
        runner_name: &str,
        state: RunnerState,
        ran_job: Option<JobId>,
    ) -> Result<(), StoreError> {
        let sql = self.sql(
            "UPDATE runners SET state = $2, ran_job_id = COALESCE($3, ran_job_id), updated_at = $4
             WHERE runner_name = $1",
        );
        sqlx::query(sql)
            .bind(runner_name.to_string())
            .bind(state.as_str().to_string())
            .bind(ran_job.map(|j| j.0 as i64))
            .bind(now())
            .execute(&self.pool)
            .await?;
        Ok(())
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

    pub async fn job(&self, job: JobId) -> Result<Option<JobRecord>, StoreError> {
        let sql = self.sql(
            "SELECT job_id, state, pool, repo, attempt, runner_name, runner_id, task_arn,
                    lease_owner, conclusion, reason
             FROM jobs WHERE job_id = $1",
        );
        let row = sqlx::query(sql)
            .bind(job.0 as i64)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| job_record(&r)).transpose().map_err(Into::into)
    }

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

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Runs an update of a job this worker holds the lease on. `sql` binds `$1` job id,
    /// `$2` owner, `$3` the value, `$4` now, and must check the lease in its WHERE clause.
    async fn update_leased(
        &self,
        sql: &'static str,
        job: JobId,
        owner: &str,
        value: &str,
    ) -> Result<(), StoreError> {
        let updated = sqlx::query(self.sql(sql))
            .bind(job.0 as i64)
            .bind(owner.to_string())
            .bind(value.to_string())
            .bind(now())
            .execute(&self.pool)
            .await?
            .rows_affected();
        self.leased(job, updated)
    }

    fn leased(&self, job: JobId, rows_affected: u64) -> Result<(), StoreError> {
        if rows_affected == 0 {
            Err(StoreError::LeaseLost(job))
        } else {
            Ok(())
        }
    }
}

fn job_record(r: &AnyRow) -> Result<JobRecord, sqlx::Error> {
    Ok(JobRecord {
        job_id: JobId(r.try_get::<i64, _>("job_id")? as u64),
        state: JobState::parse(&r.try_get::<String, _>("state")?),
        pool: r.try_get("pool")?,
        repo: r.try_get("repo")?,
        attempt: r.try_get::<i64, _>("attempt")? as u32,
        runner_name: r.try_get("runner_name")?,
        runner_id: r
            .try_get::<Option<i64>, _>("runner_id")?
            .map(|id| RunnerId(id as u64)),
        task_arn: r.try_get("task_arn")?,
        lease_owner: r.try_get("lease_owner")?,
        conclusion: r.try_get("conclusion")?,
        reason: r.try_get("reason")?,
    })
}
