//! One queued job's launch, and following jobs to completion.
//!
//! The order is what makes a launch exactly-once whatever crashes:
//! 1. claim the job in the store (insert, or take over an expired lease);
//! 2. on take-over, adopt a task the interrupted attempt already started, or delete its
//!    runner registration;
//! 3. record the runner name, register it with GitHub (JIT config), record its id;
//! 4. run the task, record its ARN. Only then is the message deleted.

use std::time::Instant;

use super::outcome::{Deferral, JobError, Outcome};
use super::{Heartbeat, Launchers, Worker};
use crate::config::RunnerScopeKind;
use crate::domain::{InstallationId, JobAction, JobEvent, JobId};
use crate::ecs::{LaunchError, LaunchSpec};
use crate::github::{GitHubError, JitRequest, RunnerTarget};
use crate::metrics as m;
use crate::pool::Pool;
use crate::queue::envelope::Envelope;
use crate::store::{Claim, PriorAttempt, StoreError};
use crate::telemetry::chain;

/// The runner's name: deterministic from pool, job and attempt, so a take-over knows
/// which registration an interrupted attempt made.
pub fn runner_name(pool: &str, job: JobId, attempt: u32) -> String {
    format!("dh-{pool}-{job}-{attempt}")
}

/// ECS `startedBy` for a job's tasks: how a take-over finds a task already started.
pub fn started_by(job: JobId) -> String {
    format!("dockhand-job-{job}")
}

impl From<StoreError> for JobError {
    fn from(err: StoreError) -> Self {
        match err {
            // The lease went to another worker, which now owns the job's fate.
            StoreError::LeaseLost(_) => JobError::Deferred(Deferral::Error(err.to_string())),
            StoreError::Unavailable(_) => JobError::Deferred(Deferral::Error(chain(&err))),
        }
    }
}

fn github_error(err: GitHubError) -> JobError {
    match err {
        GitHubError::RateLimited { retry_after } => {
            JobError::Deferred(Deferral::RateLimit(retry_after))
        }
        e if e.is_transient() => {
            JobError::Deferred(Deferral::Error(format!("GitHub: {}", chain(&e))))
        }
        e => JobError::Permanent(format!("GitHub: {}", chain(&e))),
    }
}

fn launch_error(err: LaunchError) -> JobError {
    match err {
        LaunchError::NoCapacity { .. } => JobError::Deferred(Deferral::Capacity),
        e if e.is_transient() => JobError::Deferred(Deferral::Error(format!("ECS: {}", chain(&e)))),
        e => JobError::Permanent(format!("ECS: {}", chain(&e))),
    }
}

fn target(pool: &Pool, event: &JobEvent) -> RunnerTarget {
    match pool.settings.scope {
        RunnerScopeKind::Org => RunnerTarget::Org(event.repository.owner.clone()),
        RunnerScopeKind::Repo => {
            let name = event
                .repository
                .full_name
                .split_once('/')
                .map_or(event.repository.full_name.as_str(), |(_, n)| n);
            RunnerTarget::Repo {
                owner: event.repository.owner.clone(),
                repo: name.to_string(),
            }
        }
    }
}

impl Worker {
    /// Launches a queued job's runner, once. A `requeued` message (one `dockhand requeue`
    /// moved back from the dead-letter queue) may retry a job that failed permanently.
    pub(super) async fn launch(
        &self,
        envelope: &Envelope,
        heartbeat: &Heartbeat,
        received: Instant,
        requeued: bool,
    ) -> Result<Outcome, JobError> {
        let inner = &self.0;
        let event = &envelope.event;
        let job = event.job.id;
        let Some(pool) = inner.pools.current().match_job(&event.job.labels).cloned() else {
            // The pool config changed since the ingress matched. Not stored (the store keeps
            // only jobs dockhand serves): the log line and the metric say why nothing ran.
            tracing::info!(labels = ?event.job.labels, "no pool serves the job's labels; not launching");
            return Ok(Outcome::Unmatched);
        };
        tracing::Span::current().record("pool", pool.name.as_str());
        if inner.store.live_runners(&pool.name).await? >= u64::from(pool.settings.max_runners) {
            return Err(JobError::Deferred(Deferral::PoolFull));
        }
        if requeued && inner.store.reopen_failed(job).await? {
            tracing::info!("requeued after a permanent failure; trying again");
        }
        let (attempt, prior) = match inner
            .store
            .claim(event, &pool.name, &inner.owner, inner.settings.lease)
            .await?
        {
            Claim::Acquired { attempt, prior } => (attempt, prior),
            Claim::Done(state) => {
                tracing::info!(state = state.as_str(), "duplicate delivery");
                return Ok(Outcome::Duplicate);
            }
            Claim::Held(until) => {
                let wait = (until - chrono::Utc::now()).to_std().unwrap_or_default();
                return Err(JobError::Deferred(Deferral::Held(wait)));
            }
        };
        heartbeat.claimed(job);
        let name = runner_name(&pool.name, job, attempt);
        let Some(launchers) = &inner.launchers else {
            return self.dry_run(&pool, event, &name).await;
        };
        let result = self
            .launch_claimed(launchers, &pool, event, attempt, prior, &name)
            .await;
        if let Ok(Outcome::Launched) = result {
            metrics::histogram!(m::RUNNER_LAUNCH_SECONDS, "pool" => pool.name.clone())
                .record(received.elapsed().as_secs_f64());
        }
        match result {
            Err(JobError::Deferred(deferral)) => {
                self.give_back(job, &deferral).await;
                Err(JobError::Deferred(deferral))
            }
            Err(JobError::Permanent(reason)) => {
                if let Err(err) = inner.store.record_failed(job, &inner.owner, &reason).await {
                    tracing::warn!(error = %chain(&err), "could not record the failure");
                }
                Err(JobError::Permanent(reason))
            }
            ok => ok,
        }
    }

    /// Releases the lease after a transient failure, so the next delivery claims at once.
    async fn give_back(&self, job: JobId, deferral: &Deferral) {
        let reason = match deferral {
            Deferral::Error(reason) => reason.as_str(),
            other => other.as_str(),
        };
        match self.0.store.release(job, &self.0.owner, reason).await {
            Ok(()) | Err(StoreError::LeaseLost(_)) => {}
            Err(err) => tracing::warn!(
                error = %chain(&err),
                "could not release the lease; it expires by itself"
            ),
        }
    }

    async fn dry_run(
        &self,
        pool: &Pool,
        event: &JobEvent,
        name: &str,
    ) -> Result<Outcome, JobError> {
        self.0
            .store
            .record_dry_run(event.job.id, &self.0.owner, name)
            .await?;
        let ecs = pool.settings.ecs.as_ref();
        tracing::info!(
            pool = pool.name,
            runner = name,
            task_definition = ecs.map(|e| e.task_definition.as_str()),
            cluster = ecs.map(|e| e.cluster.as_str()),
            launch = ecs.map(|e| {
                e.launch_type
                    .map(|l| l.as_str().to_string())
                    .unwrap_or_else(|| e.capacity_providers.join(">"))
            }),
            "dry run: would launch"
        );
        Ok(Outcome::DryRun)
    }

    async fn launch_claimed(
        &self,
        launchers: &Launchers,
        pool: &Pool,
        event: &JobEvent,
        attempt: u32,
        prior: Option<PriorAttempt>,
        name: &str,
    ) -> Result<Outcome, JobError> {
        let inner = &self.0;
        let job = event.job.id;
        let ecs =
            pool.settings.ecs.as_ref().ok_or_else(|| {
                JobError::Permanent(format!("pool {} has no [pool.ecs]", pool.name))
            })?;
        let target = target(pool, event);
        let installation = match event.installation_id {
            Some(id) => id,
            None => launchers
                .github
                .installation_for(&target)
                .await
                .map_err(github_error)?,
        };
        if let Some(prior) = prior
            && let Some(outcome) = self
                .take_over(launchers, pool, job, installation, &target, prior)
                .await?
        {
            return Ok(outcome);
        }
        inner
            .store
            .record_intent(job, &inner.owner, name, &ecs.cluster)
            .await?;
        let request = JitRequest {
            name: name.to_string(),
            runner_group: pool.settings.runner_group.clone(),
            labels: pool.labels.clone(),
            work_folder: pool.settings.work_folder.clone(),
        };
        let jit = match launchers
            .github
            .generate_jit_config(installation, &target, &request)
            .await
        {
            Err(GitHubError::Conflict) => {
                // A registration with this name exists: left by an attempt that crashed
                // before recording it. Remove it (unless it is running a job) and retry once.
                self.remove_registration(launchers, installation, &target, name)
                    .await?;
                launchers
                    .github
                    .generate_jit_config(installation, &target, &request)
                    .await
                    .map_err(github_error)?
            }
            other => other.map_err(github_error)?,
        };
        inner
            .store
            .record_registration(job, &inner.owner, &pool.name, name, jit.runner_id)
            .await?;
        let spec = LaunchSpec {
            pool: &pool.name,
            ecs,
            job_id: job,
            runner_name: name,
            jit_config: &jit.encoded,
            client_token: &format!("dockhand-{job}-{attempt}"),
            started_by: &started_by(job),
        };
        match launchers.ecs.run_task(&spec).await {
            Ok(task) => {
                inner
                    .store
                    .record_launched(job, &inner.owner, name, &task.arn.0)
                    .await?;
                tracing::info!(
                    runner = name,
                    task = task.arn.0,
                    capacity_provider = task.capacity_provider,
                    "launched"
                );
                Ok(Outcome::Launched)
            }
            Err(err) => {
                tracing::warn!(error = %chain(&err), runner = name, "launch failed; removing the registration");
                let removed = launchers
                    .github
                    .delete_runner(installation, &target, jit.runner_id)
                    .await;
                match removed {
                    Ok(()) => inner.store.record_runner_removed(name).await?,
                    Err(e) => {
                        tracing::warn!(error = %chain(&e), "could not delete the runner registration")
                    }
                }
                Err(launch_error(err))
            }
        }
    }

    /// An earlier attempt's lease expired mid-launch. If it started a task, adopt it;
    /// otherwise remove its registration so no offline runner is left behind. The task is
    /// looked for in the cluster that attempt launched in, which the pool may have left
    /// since (the pool's own cluster for rows recorded before the cluster was).
    async fn take_over(
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
        if let Some(arn) = task {
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
                .record_launched(job, &inner.owner, &prior_name, &arn)
                .await?;
            tracing::info!(
                task = arn,
                runner = prior_name,
                "adopted the task of an interrupted launch"
            );
            return Ok(Some(Outcome::Adopted));
        }
        self.remove_registration(launchers, installation, target, &prior_name)
            .await?;
        Ok(None)
    }

    /// Deletes a registration by name, unless GitHub says it is running a job.
    async fn remove_registration(
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
            None => Ok(()),
        }
    }

    /// Records an `in_progress` or `completed` event. A job no pool serves, that neither it
    /// nor its runner is in the store (a GitHub-hosted job), is acknowledged unstored.
    pub(super) async fn track(&self, envelope: &Envelope) -> Result<Outcome, JobError> {
        let event = &envelope.event;
        let pool = self
            .0
            .pools
            .current()
            .match_job(&event.job.labels)
            .map(|p| p.name.clone());
        if event.action == JobAction::InProgress
            && let Some(wait) = event.job.wait()
        {
            let label = pool.clone().unwrap_or_else(|| "none".into());
            metrics::histogram!(m::JOB_WAIT_SECONDS, "pool" => label).record(wait.as_secs_f64());
        }
        if pool.is_none() {
            let runner = event.job.runner.as_ref().and_then(|r| r.name.as_deref());
            if !self.0.store.knows(event.job.id, runner).await? {
                tracing::debug!(labels = ?event.job.labels, "no pool serves the job and dockhand never saw it; not stored");
                return Ok(Outcome::Unmatched);
            }
        }
        self.0.store.track(event, pool.as_deref()).await?;
        Ok(Outcome::Tracked)
    }
}
