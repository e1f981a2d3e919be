//! Taking over what an earlier attempt left: adopting its task, or removing its runner
//! registration once no task is found.

use super::launch::started_by;
use super::outcome::{Deferral, JobError, Outcome, github_error, launch_error};
use super::{Launchers, Worker};
use crate::domain::{InstallationId, JobId};
use crate::github::RunnerTarget;
use crate::pool::Pool;
use crate::store::{LaunchState, PriorAttempt};

impl Worker {
    /// An earlier attempt stopped mid-launch (its lease expired, or it was deferred before
    /// confirming its clean-up). If it started a task, adopt it; otherwise remove its
    /// registration so no offline runner is left behind. `None` means the leftovers are
    /// confirmed gone and a fresh launch may follow; an error leaves them on record. The task is
    /// looked for in the cluster that attempt launched in, which the pool may have left
    /// since (the pool's own cluster for rows recorded before the cluster was).
    pub(super) async fn take_over(
        &self,
        launchers: &Launchers,
        pool: &Pool,
        job: JobId,
        installation: InstallationId,
        target: &RunnerTarget,
        prior: PriorAttempt,
    ) -> Result<Option<Outcome>, JobError> {
        let inner = &self.0;
        let Some(prior_name) = prior.runner_name else {
            return Ok(None);
        };
        let pool_cluster = &pool
            .settings
            .ecs
            .as_ref()
            .expect("checked by the caller")
            .cluster;
        let cluster = prior.cluster.as_deref().unwrap_or(pool_cluster);
        let task = match prior.task_arn.clone() {
            Some(arn) => Some(arn),
            None => launchers
                .ecs
                .find_task(cluster, &started_by(job))
                .await
                .map_err(launch_error)?
                .map(|arn| arn.0),
        };
        // A runner seen running a job had its task come up: that task may be gone by now
        // (an ephemeral runner leaves after one job), and its registration with it.
        let ran = task.is_none() && inner.store.runner_ran_a_job(&prior_name).await?;
        tracing::debug!(
            runner = prior_name,
            cluster,
            task = task.as_deref(),
            ran,
            "looked for what an interrupted attempt left"
        );
        if task.is_some() || ran {
            // Record it under this attempt's lease; the runner keeps the earlier name.
            inner
                .store
                .record_intent(job, &inner.owner, &prior_name, cluster)
                .await?;
            if let Some(runner_id) = prior.runner_id {
                inner
                    .store
                    .record_registration(job, &inner.owner, &pool.name, &prior_name, runner_id)
                    .await?;
            }
            inner
                .store
                .record_launched(
                    job,
                    &inner.owner,
                    &prior_name,
                    task.as_deref(),
                    None,
                    LaunchState::Adopted,
                )
                .await?;
            match task {
                Some(arn) => tracing::info!(
                    task = arn,
                    runner = prior_name,
                    "adopted the task of an interrupted launch"
                ),
                None => tracing::info!(
                    runner = prior_name,
                    "the runner of an interrupted launch already ran a job; adopted its launch"
                ),
            }
            return Ok(Some(Outcome::Adopted));
        }
        // As the installation (and so the App) that registered it, where recorded.
        let registered_as = inner
            .store
            .runner_installation(&prior_name)
            .await?
            .unwrap_or(installation);
        self.remove_registration(launchers, registered_as, target, &prior_name)
            .await?;
        Ok(None)
    }

    /// Deletes a registration by name, unless GitHub says it is running a job.
    pub(super) async fn remove_registration(
        &self,
        launchers: &Launchers,
        installation: InstallationId,
        target: &RunnerTarget,
        name: &str,
    ) -> Result<(), JobError> {
        let found = launchers
            .github
            .find_runner(installation, target, name)
            .await
            .map_err(github_error)?;
        match found {
            Some(runner) if runner.busy => Err(JobError::Deferred(Deferral::Error(format!(
                "runner {name} is registered and busy without a known task"
            )))),
            Some(runner) => {
                launchers
                    .github
                    .delete_runner(installation, target, runner.id)
                    .await
                    .map_err(github_error)?;
                self.0.store.record_runner_removed(name).await?;
                tracing::info!(
                    runner = name,
                    "removed the stale registration of an interrupted launch"
                );
                Ok(())
            }
            None => {
                tracing::debug!(runner = name, "no registration of this name on GitHub");
                Ok(())
            }
        }
    }
}
