//! Pruning: finished jobs and runners are deleted once older than the retention, so the
//! store does not grow without bound. Live rows are never pruned, whatever their age.

use chrono::{DateTime, Utc};

use sqlx::AssertSqlSafe;

use super::{Store, StoreError, millis};

/// Rows deleted per statement: short statements keep SQLite's write lock short.
pub const PRUNE_BATCH: u32 = 1_000;

/// What one prune pass deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub jobs: u64,
    pub runners: u64,
    /// History entries: a pruned job's, and those of jobs never stored (no pool served
    /// them) once older than the retention.
    pub history: u64,
    /// Re-runs of interrupted jobs' runs that were settled (requested, refused, ...).
    pub reruns: u64,
}

impl Store {
    /// Deletes finished jobs (with their history) and runners last updated more than
    /// `older_than` ago.
    pub async fn prune(&self, older_than: std::time::Duration) -> Result<Pruned, StoreError> {
        let older_than = chrono::Duration::from_std(older_than).unwrap_or(chrono::Duration::MAX);
        let cutoff = Utc::now()
            .checked_sub_signed(older_than)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        self.prune_before(cutoff, PRUNE_BATCH).await
    }

    /// Deletes, `batch` rows per statement, finished jobs and runners last updated before
    /// `cutoff`. Finished: a job that failed or was a dry run, one launched for and completed
    /// on GitHub, or one owed no launch and not running (and no live runner was launched
    /// for it); a runner
    /// finished or removed. A job still owed a launch, and a state this build does not
    /// know, are kept. Re-runs still waiting for their run, or being asked for, are kept.
    pub async fn prune_before(
        &self,
        cutoff: DateTime<Utc>,
        batch: u32,
    ) -> Result<Pruned, StoreError> {
        let (jobs, mut history) = self.delete_jobs(cutoff, batch).await?;
        let runners = self
            .delete_in_batches(
                "DELETE FROM runners WHERE runner_name IN (
                     SELECT runner_name FROM runners
                     WHERE state IN ('finished', 'removed', 'stopped') AND updated_at < $1
                     LIMIT $2)",
                cutoff,
                batch,
            )
            .await?;
        history += self
            .delete_in_batches(
                "DELETE FROM job_history WHERE id IN (
                     SELECT id FROM job_history h
                     WHERE at < $1
                       AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.job_id = h.job_id)
                     LIMIT $2)",
                cutoff,
                batch,
            )
            .await?;
        let reruns = self
            .delete_in_batches(
                "DELETE FROM reruns WHERE job_id IN (
                     SELECT job_id FROM reruns
                     WHERE state NOT IN ('waiting', 'requesting') AND updated_at < $1
                     LIMIT $2)",
                cutoff,
                batch,
            )
            .await?;
        Ok(Pruned {
            jobs,
            runners,
            history,
            reruns,
        })
    }

    /// Deletes finished jobs, `batch` per transaction, each batch with its jobs' history.
    async fn delete_jobs(
        &self,
        cutoff: DateTime<Utc>,
        batch: u32,
    ) -> Result<(u64, u64), StoreError> {
        let batch = batch.max(1);
        let (mut jobs, mut history) = (0, 0);
        loop {
            let mut w = self.write("prune").await?;
            let mut tx = sqlx::Connection::begin(&mut *w.conn).await?;
            let gone: Vec<i64> = sqlx::query_scalar(self.sql(
                "DELETE FROM jobs WHERE job_id IN (
                     SELECT job_id FROM jobs
                     WHERE (launch IN ('failed', 'dry_run')
                            OR (launch IN ('launched', 'adopted') AND github = 'completed')
                            OR (launch = 'waived' AND github <> 'in_progress'))
                       AND updated_at < $1
                       AND NOT EXISTS (
                           SELECT 1 FROM runners r WHERE r.for_job_id = jobs.job_id
                             AND r.state NOT IN ('finished', 'removed', 'stopped'))
                     LIMIT $2)
                 RETURNING job_id",
            ))
            .bind(millis(cutoff))
            .bind(i64::from(batch))
            .fetch_all(&mut *tx)
            .await?;
            if !gone.is_empty() {
                // Integers only: the list is as safe as the literal around it.
                let ids: Vec<String> = gone.iter().map(i64::to_string).collect();
                let sql = format!(
                    "DELETE FROM job_history WHERE job_id IN ({})",
                    ids.join(",")
                );
                history += sqlx::query(AssertSqlSafe(sql))
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            }
            tx.commit().await?;
            jobs += gone.len() as u64;
            if gone.len() < batch as usize {
                return Ok((jobs, history));
            }
        }
    }

    async fn delete_in_batches(
        &self,
        query: &'static str,
        cutoff: DateTime<Utc>,
        batch: u32,
    ) -> Result<u64, StoreError> {
        let batch = batch.max(1);
        let mut deleted = 0;
        loop {
            let mut w = self.write("prune").await?;
            let n = sqlx::query(self.sql(query))
                .bind(millis(cutoff))
                .bind(i64::from(batch))
                .execute(&mut *w.conn)
                .await?
                .rows_affected();
            deleted += n;
            if n < u64::from(batch) {
                return Ok(deleted);
            }
        }
    }
}
