//! How a leased attempt ends, when it does not launch: given back after a transient failure,
//! waived, failed, or a dry run; and a failed job reopened by a requeue. Each write checks
//! the lease and appends its entry to the job's history in the same transaction.

use serde_json::{Value, json};

use super::history::{Deferred, EventKind, Note};
use super::{Leftovers, Store, StoreError};
use crate::domain::JobId;

impl Store {
    /// Gives the job back after a transient failure: the next delivery claims it at once,
    /// with a new attempt. What the attempt may have left stays on record unless its
    /// clean-up was confirmed, so that claim adopts or removes it.
    pub async fn release(
        &self,
        job: JobId,
        owner: &str,
        deferred: &Deferred,
        leftovers: Leftovers,
    ) -> Result<(), StoreError> {
        let sql = match leftovers {
            Leftovers::CleanedUp => {
                "UPDATE jobs SET launch = 'owed', lease_owner = NULL, lease_expires_at = NULL,
                     runner_name = NULL, runner_id = NULL, task_arn = NULL, cluster = NULL,
                     reason = $3, updated_at = $4
                 WHERE job_id = $1 AND lease_owner = $2 AND launch = 'launching'"
            }
            Leftovers::Kept => {
                "UPDATE jobs SET launch = 'owed', lease_owner = NULL, lease_expires_at = NULL,
                     reason = $3, updated_at = $4
                 WHERE job_id = $1 AND lease_owner = $2 AND launch = 'launching'"
            }
        };
        let mut detail = deferred.detail();
        detail["leftovers"] = match leftovers {
            Leftovers::CleanedUp => "cleaned_up",
            Leftovers::Kept => "kept",
        }
        .into();
        let entry = (EventKind::Deferred, detail);
        self.update_leased("release", sql, job, owner, &deferred.reason, entry)
            .await
    }

    /// No launch is owed any more (the job finished without a runner, or ran on one dockhand
    /// did not launch) and this attempt's leftovers are confirmed gone.
    pub async fn record_waived(&self, job: JobId, owner: &str) -> Result<(), StoreError> {
        let reason = "no longer owed a launch";
        self.update_leased(
            "record_waived",
            "UPDATE jobs SET launch = 'waived', lease_owner = NULL, lease_expires_at = NULL,
                 runner_name = NULL, runner_id = NULL, task_arn = NULL, cluster = NULL,
                 reason = $3, updated_at = $4
             WHERE job_id = $1 AND lease_owner = $2 AND launch = 'launching'",
            job,
            owner,
            reason,
            (EventKind::Waived, json!({ "reason": reason })),
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
            "record_failed",
            "UPDATE jobs SET launch = 'failed', lease_owner = NULL, lease_expires_at = NULL, reason = $3, updated_at = $4
             WHERE job_id = $1 AND lease_owner = $2 AND launch = 'launching'",
            job,
            owner,
            reason,
            (EventKind::Failed, json!({ "reason": reason })),
        )
        .await
    }

    /// A message `dockhand requeue` moved back (for the `requeues`-th time) arrived: the
    /// history notes it once, and a job that failed permanently is made claimable again,
    /// because an operator requeued it after fixing the cause. The claim that follows is the
    /// usual one, so a job requeued twice still launches once; its earlier attempt is taken
    /// over as after a crash. Returns whether the job was failed.
    pub async fn reopen_failed(&self, job: JobId, requeues: u32) -> Result<bool, StoreError> {
        let mut w = self.write("reopen_failed").await?;
        let now = self.now();
        let sql = self.sql(
            "UPDATE jobs SET launch = 'owed', reason = NULL, replacements = 0, updated_at = $2
             WHERE job_id = $1 AND launch = 'failed'",
        );
        let mut tx = sqlx::Connection::begin(&mut *w.conn).await?;
        let reopened = sqlx::query(sql)
            .bind(job.0 as i64)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            > 0;
        let detail = json!({ "requeues": requeues, "reopened": reopened });
        let note =
            Note::new(job, now, EventKind::Requeued, detail).once(format!("requeued:{requeues}"));
        self.append(&mut tx, note).await?;
        tx.commit().await?;
        Ok(reopened)
    }

    /// A dry run: records what would have launched and releases the lease.
    pub async fn record_dry_run(
        &self,
        job: JobId,
        owner: &str,
        runner_name: &str,
    ) -> Result<(), StoreError> {
        self.update_leased(
            "record_dry_run",
            "UPDATE jobs SET launch = 'dry_run', runner_name = $3, lease_owner = NULL, lease_expires_at = NULL, updated_at = $4
             WHERE job_id = $1 AND lease_owner = $2 AND launch = 'launching'",
            job,
            owner,
            runner_name,
            (EventKind::DryRun, json!({ "runner": runner_name })),
        )
        .await
    }

    /// Runs an update of a job this worker holds the lease on, and appends `entry` to its
    /// history, in one transaction. `sql` binds `$1` job id, `$2` owner, `$3` the value, `$4`
    /// now, and must check the lease in its WHERE clause.
    async fn update_leased(
        &self,
        op: &'static str,
        sql: &'static str,
        job: JobId,
        owner: &str,
        value: &str,
        (kind, detail): (EventKind, Value),
    ) -> Result<(), StoreError> {
        let mut w = self.write(op).await?;
        let now = self.now();
        let mut tx = sqlx::Connection::begin(&mut *w.conn).await?;
        let updated = sqlx::query(self.sql(sql))
            .bind(job.0 as i64)
            .bind(owner.to_string())
            .bind(value.to_string())
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        self.leased(job, updated)?;
        self.append(&mut tx, Note::new(job, now, kind, detail))
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
