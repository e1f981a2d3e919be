//! Warm runners in the store: the books the fill step reads, and the slots that name
//! warm runners.
//!
//! A warm runner is named `dh-{pool}-w{slot}-{generation}`. Its row is written, with the
//! slot's next generation, before anything is registered or launched; the generation is
//! taken by a conditional update. So a crash between the row and the task leaves a row the
//! books count (no second runner is launched for it) and the next leader resumes or
//! removes ([`Store::stale_warm_intents`]); and two leaders racing cannot take the same
//! generation.

use sqlx::Row;

use super::{Registration, Store, StoreError};
use crate::domain::{InstallationId, RunnerId};

/// One pool's books, as the fill step reads them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WarmBooks {
    /// Runners registered or launched that have not taken a job: idle or on their way.
    pub spare: u64,
    /// Launches owed to jobs (or under way) with no runner on record yet.
    pub coming: u64,
    /// Jobs GitHub has queued and that will take a spare runner.
    pub waiting: u64,
    /// Runners that count toward `max_runners` (registered, launched, busy).
    pub live: u64,
}

impl WarmBooks {
    /// The idle runners the pool will have once every waiting job has taken one and every
    /// launch under way has come up; negative when jobs wait for more than is coming.
    pub fn settled_idle(&self) -> i64 {
        self.spare as i64 + self.coming as i64 - self.waiting as i64
    }
}

/// A warm runner whose row exists but whose task is not on record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarmIntent {
    pub runner_name: String,
    pub pool: String,
    pub runner_id: Option<RunnerId>,
    pub installation_id: Option<InstallationId>,
    pub cluster: Option<String>,
    /// Where it registers: the pool's `warm_target` when the row was written.
    pub target: String,
}

/// A warm runner's name.
pub fn warm_runner_name(pool: &str, slot: u32, generation: u64) -> String {
    format!("dh-{pool}-w{slot}-{generation}")
}

impl Store {
    /// The fill step's books for `pool`.
    pub async fn warm_books(&self, pool: &str) -> Result<WarmBooks, StoreError> {
        let sql = self.sql(concat!(
            "SELECT
               (SELECT count(*) FROM runners
                 WHERE pool = $1 AND state IN ('registered', 'launched')) AS spare,
               (SELECT count(*) FROM runners
                 WHERE pool = $1 AND state IN ('registered', 'launched', 'busy')) AS live,
               (SELECT count(*) FROM jobs j
                 WHERE j.pool = $1 AND j.launch IN ('owed', 'launching')
                   AND NOT EXISTS (SELECT 1 FROM runners r WHERE r.for_job_id = j.job_id
                                     AND r.state IN ('registered', 'launched', 'busy'))) AS coming,
               (SELECT count(*) FROM jobs WHERE pool = $1 AND ",
            waiting_job!(),
            ") AS waiting"
        ));
        let row = sqlx::query(sql)
            .bind(pool.to_string())
            .fetch_one(&self.pool)
            .await?;
        let n = |c: &str| -> Result<u64, sqlx::Error> { Ok(row.try_get::<i64, _>(c)? as u64) };
        Ok(WarmBooks {
            spare: n("spare")?,
            coming: n("coming")?,
            waiting: n("waiting")?,
            live: n("live")?,
        })
    }

    /// Writes up to `want` warm runner rows for `pool`, one per slot among `0..slots`
    /// whose current runner is not spare (it took a job, ended, or never was), each with
    /// the slot's next generation. Answers the names written; fewer than `want` when the
    /// slots are full or another process took a generation first.
    pub async fn claim_warm_slots(
        &self,
        pool: &str,
        slots: u32,
        want: u32,
        target: &str,
        cluster: &str,
    ) -> Result<Vec<String>, StoreError> {
        if want == 0 {
            return Ok(Vec::new());
        }
        let mut w = self.write("claim_warm_slots").await?;
        let now = self.now();
        let mut tx = sqlx::Connection::begin(&mut *w.conn).await?;
        let rows = sqlx::query(self.sql("SELECT slot, generation FROM warm_slots WHERE pool = $1"))
            .bind(pool.to_string())
            .fetch_all(&mut *tx)
            .await?;
        let mut generations = std::collections::HashMap::new();
        for r in &rows {
            generations.insert(
                r.try_get::<i64, _>("slot")? as u32,
                r.try_get::<i64, _>("generation")? as u64,
            );
        }
        let mut names = Vec::new();
        for slot in 0..slots {
            if names.len() as u32 >= want {
                break;
            }
            let current = generations.get(&slot).copied();
            if let Some(generation) = current {
                let name = warm_runner_name(pool, slot, generation);
                let spare: i64 = sqlx::query_scalar(self.sql(
                    "SELECT count(*) FROM runners
                     WHERE runner_name = $1 AND state IN ('registered', 'launched')",
                ))
                .bind(name)
                .fetch_one(&mut *tx)
                .await?;
                if spare > 0 {
                    continue;
                }
            }
            let next = current.map_or(1, |g| g + 1);
            let taken = match current {
                Some(generation) => sqlx::query(self.sql(
                    "UPDATE warm_slots SET generation = $4, updated_at = $5
                     WHERE pool = $1 AND slot = $2 AND generation = $3",
                ))
                .bind(pool.to_string())
                .bind(i64::from(slot))
                .bind(generation as i64)
                .bind(next as i64)
                .bind(now),
                None => sqlx::query(self.sql(
                    "INSERT INTO warm_slots (pool, slot, generation, updated_at)
                     VALUES ($1, $2, $3, $4) ON CONFLICT (pool, slot) DO NOTHING",
                ))
                .bind(pool.to_string())
                .bind(i64::from(slot))
                .bind(next as i64)
                .bind(now),
            }
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if taken == 0 {
                continue;
            }
            let name = warm_runner_name(pool, slot, next);
            let inserted = sqlx::query(self.sql(
                "INSERT INTO runners (runner_name, pool, for_job_id, state, warm_slot, repo,
                                      cluster, created_at, updated_at)
                 VALUES ($1, $2, NULL, 'registered', $3, $4, $5, $6, $6)
                 ON CONFLICT (runner_name) DO NOTHING",
            ))
            .bind(name.clone())
            .bind(pool.to_string())
            .bind(i64::from(slot))
            .bind(target.to_string())
            .bind(cluster.to_string())
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted > 0 {
                names.push(name);
            }
        }
        tx.commit().await?;
        Ok(names)
    }

    /// Records the installation a warm runner registers as, before GitHub is asked.
    pub async fn record_warm_installation(
        &self,
        runner_name: &str,
        installation: InstallationId,
    ) -> Result<(), StoreError> {
        let sql = "UPDATE runners SET installation_id = $2, updated_at = $3
                   WHERE runner_name = $1 AND state = 'registered'";
        self.set_warm("warm_installation", sql, runner_name, installation.0)
            .await
    }

    /// Records a warm runner's registration on GitHub.
    pub async fn record_warm_registration(
        &self,
        runner_name: &str,
        registration: Registration,
    ) -> Result<(), StoreError> {
        let mut w = self.write("warm_registration").await?;
        let sql = "UPDATE runners SET runner_id = $2,
                       installation_id = COALESCE($3, installation_id),
                       app_id = COALESCE($4, app_id), updated_at = $5
                   WHERE runner_name = $1 AND state = 'registered'";
        sqlx::query(self.sql(sql))
            .bind(runner_name.to_string())
            .bind(registration.runner_id.0 as i64)
            .bind(registration.installation.map(|i| i.0 as i64))
            .bind(registration.app_id.map(|a| a as i64))
            .bind(self.now())
            .execute(&mut *w.conn)
            .await?;
        Ok(())
    }

    /// Runs `sql` (`$1` runner name, `$2` value, `$3` now) as the write `op`.
    async fn set_warm(
        &self,
        op: &'static str,
        sql: &'static str,
        runner_name: &str,
        value: u64,
    ) -> Result<(), StoreError> {
        let mut w = self.write(op).await?;
        sqlx::query(self.sql(sql))
            .bind(runner_name.to_string())
            .bind(value as i64)
            .bind(self.now())
            .execute(&mut *w.conn)
            .await?;
        Ok(())
    }

    /// Warm runners of `pool` whose task failed to start (`TaskFailedToStart`, or stopped
    /// before it ran) in the last `within_ms`: how often its fills have failed lately.
    pub async fn warm_start_failures(&self, pool: &str, within_ms: i64) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(self.sql(
            "SELECT count(*) FROM runners
             WHERE pool = $1 AND warm_slot IS NOT NULL AND state = 'stopped'
               AND (stop_code = 'TaskFailedToStart' OR task_started_at IS NULL)
               AND updated_at > $2",
        ))
        .bind(pool.to_string())
        .bind(self.now() - within_ms)
        .fetch_one(&self.pool)
        .await?;
        Ok(n as u64)
    }

    /// Warm runners written at least `older_than_ms` ago whose task is not on record: left
    /// by a fill that crashed or failed part-way.
    pub async fn stale_warm_intents(
        &self,
        older_than_ms: i64,
    ) -> Result<Vec<WarmIntent>, StoreError> {
        let rows = sqlx::query(self.sql(
            "SELECT runner_name, pool, runner_id, installation_id, cluster, repo FROM runners
             WHERE warm_slot IS NOT NULL AND state = 'registered' AND task_arn IS NULL
               AND updated_at <= $1
             ORDER BY created_at, runner_name",
        ))
        .bind(self.now() - older_than_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(WarmIntent {
                    runner_name: r.try_get("runner_name")?,
                    pool: r.try_get("pool")?,
                    runner_id: r
                        .try_get::<Option<i64>, _>("runner_id")?
                        .map(|id| RunnerId(id as u64)),
                    installation_id: r
                        .try_get::<Option<i64>, _>("installation_id")?
                        .map(|id| InstallationId(id as u64)),
                    cluster: r.try_get("cluster")?,
                    target: r.try_get::<Option<String>, _>("repo")?.unwrap_or_default(),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }
}
