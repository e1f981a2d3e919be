//! What the orphan sweep ([`crate::lifecycle`]) asks the store: where a runner name
//! stands, and which repositories recent jobs came from.

use sqlx::Row;

use super::{RunnerState, Store, StoreError};
use crate::domain::{InstallationId, JobId};

/// Where a runner name stands in the store, for the orphan sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// A live runner (registered, launched, busy), or the intent of a launch under way.
    Live,
    /// Finished, removed or stopped: nothing should run under this name any more.
    Done,
    /// The store has never heard of it (or pruned it).
    Unknown,
}

impl Store {
    /// Where a runner name stands, for the orphan sweep; and the job it was for, if known.
    pub async fn standing(
        &self,
        runner_name: &str,
    ) -> Result<(Standing, Option<JobId>), StoreError> {
        let row = sqlx::query(self.sql(
            "SELECT state, for_job_id FROM runners WHERE runner_name = $1
             UNION ALL
             SELECT 'intent', job_id FROM jobs
             WHERE runner_name = $1 AND launch IN ('owed', 'launching')",
        ))
        .bind(runner_name.to_string())
        .fetch_all(&self.pool)
        .await?;
        let mut standing = (Standing::Unknown, None);
        for r in &row {
            let state: String = r.try_get(0)?;
            let job = r.try_get::<Option<i64>, _>(1)?.map(|j| JobId(j as u64));
            let live = state == "intent" || RunnerState::parse(&state).is_live();
            if live {
                return Ok((Standing::Live, job));
            }
            standing = (Standing::Done, job);
        }
        Ok(standing)
    }

    /// The repositories and installations of jobs received since `since_ms`, by pool: where
    /// the orphan sweep lists registrations. `None`: the job's webhook named no
    /// installation (an org or repo hook), and the App's installation on its account acts.
    pub async fn recent_repos(
        &self,
        since_ms: i64,
    ) -> Result<Vec<(String, String, Option<InstallationId>)>, StoreError> {
        let rows = sqlx::query(self.sql(
            "SELECT DISTINCT pool, repo, installation_id FROM jobs
             WHERE received_at > $1 AND pool IS NOT NULL",
        ))
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("pool")?,
                    r.try_get("repo")?,
                    r.try_get::<Option<i64>, _>("installation_id")?
                        .map(|i| InstallationId(i as u64)),
                ))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }
}
