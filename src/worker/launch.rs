//! One queued job's launch, and following jobs to completion.
//!
//! The order is what makes a launch exactly-once whatever crashes:
//! 1. a job already launched, or no longer owed a launch, is a duplicate: answered before
//!    the pool is matched or its capacity checked;
//! 2. claim the job in the store (insert, or take over an owed job or an expired lease);
//! 3. adopt a task an earlier attempt started, or delete its runner registration;
//! 4. record the runner name, register it with GitHub (JIT config), record its id;
//! 5. if the job is still owed a launch, run the task and record its ARN. Only then is the
//!    message deleted.
//!
//! An attempt that stops half-way keeps what it did on record ([`Leftovers::Kept`]) unless
//! it confirmed the clean-up itself, so the next claim adopts or removes it.

use std::time::Instant;

use super::outcome::{Deferral, JobError, Outcome, github_error, launch_error};
use super::settle::{Handling, attribute_ms};
use super::{Heartbeat, Launchers, Worker};
use crate::domain::{JobEvent, JobId};
use crate::ecs::{LaunchError, LaunchSpec, Placement};
use crate::github::{GitHubError, JitRequest, RunnerTarget};
use crate::metrics as m;
use crate::pool::Pool;
use crate::queue::ATTR_REQUEUE_COUNT;
use crate::queue::envelope::Envelope;
use crate::store::{
    Claim, Deferred, Delivered, LaunchState, Leftovers, Owed, PriorAttempt, Registration,
    StoreError,
};
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

fn target(pool: &Pool, event: &JobEvent) -> RunnerTarget {
    RunnerTarget::for_repo(pool.settings.scope, &event.repository.full_name)
}

impl Worker {
    /// Launches a queued job's runner, once. A requeued message (one `dockhand requeue`
    /// moved back from the dead-letter queue) may retry a job that failed permanently.
    pub(super) async fn launch(
        &self,
        envelope: &Envelope,
        heartbeat: &Heartbeat,
        received: Instant,
        handling: &Handling<'_>,
    ) -> Result<Outcome, JobError> {
        let inner = &self.0;
        let event = &envelope.event;
        let job = event.job.id;
        let delivered = Delivered {
            event,
            accepted_at: envelope.received_at,
        };
        if let Some(requeues) = attribute_ms(handling.message, ATTR_REQUEUE_COUNT)
            && inner
                .store
                .reopen_failed(job, requeues.max(0) as u32)
                .await?
        {
            tracing::info!("requeued after a permanent failure; trying again");
        }
        // A copy of a job already seen to its end neither waits for a slot nor depends on
        // the pool config.
        if let Some(state) = inner.store.launch_state(job).await?
            && state.is_settled()
        {
            inner.store.record_duplicate(&delivered, state).await?;
            return Ok(settled_already(state));
        }
        let Some(pool) = inner.pools.current().match_job(&event.job.labels).cloned() else {
            return match &envelope.pool {
                // The ingress matched a pool this worker does not know (yet): its config
                // reload may be behind the ingress's. Wait for it, within a bound.
                Some(name) => {
                    let deferral = Deferral::UnknownPool(name.clone());
                    self.wait_unclaimed(&delivered, handling, deferral, None)
                        .await
                }
                None => {
                    tracing::info!(labels = ?event.job.labels, "no pool serves the job's labels; not launching");
                    inner.store.record_unmatched(&delivered).await?;
                    Ok(Outcome::Unmatched)
                }
            };
        };
        tracing::Span::current().record("pool", pool.name.as_str());
        let live = inner.store.live_runners(&pool.name).await?;
        if live >= u64::from(pool.settings.max_runners) {
            let full = (live, pool.settings.max_runners);
            return self
                .wait_unclaimed(
                    &delivered,
                    handling,
                    Deferral::PoolFull,
                    Some((&pool, full)),
                )
                .await;
        }
        let (attempt, prior) = match inner
            .store
            .claim_delivered(&delivered, &pool.name, &inner.owner, inner.settings.lease)
            .await?
        {
            Claim::Acquired { attempt, prior } => (attempt, prior),
            Claim::Done(state) => return Ok(settled_already(state)),
            Claim::Held(wait) => {
                let deferral = Deferral::Held(wait);
                let full = (live, pool.settings.max_runners);
                return self
                    .wait_unclaimed(&delivered, handling, deferral, Some((&pool, full)))
                    .await;
            }
        };
        heartbeat.claimed(job);
        let name = runner_name(&pool.name, job, attempt);
        let Some(launchers) = &inner.launchers else {
            return self.dry_run(&pool, event, &name).await;
        };
        let mut leftovers = if prior.is_some() {
            Leftovers::Kept
        } else {
            Leftovers::CleanedUp
        };
        let attempt = Attempt {
            launchers,
            pool: &pool,
            event,
            number: attempt,
            name: &name,
            heartbeat,
        };
        let result = self.launch_claimed(&attempt, prior, &mut leftovers).await;
        if let Ok(Outcome::Launched) = result {
            metrics::histogram!(m::RUNNER_LAUNCH_SECONDS, "pool" => pool.name.clone())
                .record(received.elapsed().as_secs_f64());
        }
        match result {
            Err(JobError::Deferred(deferral)) => {
                let deferred = self.deferred(handling, &deferral, Some(&pool.name));
                self.give_back(job, &deferred, leftovers).await;
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
    /// What the attempt left stays on record unless its clean-up was confirmed.
    async fn give_back(&self, job: JobId, deferred: &Deferred, leftovers: Leftovers) {
        match self
            .0
            .store
            .release(job, &self.0.owner, deferred, leftovers)
            .await
        {
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

    /// The launch under a lease. `leftovers` says, whenever this returns, whether what the
    /// job's record names (an earlier attempt's, then this one's registration and task) is
    /// confirmed gone.
    async fn launch_claimed(
        &self,
        attempt: &Attempt<'_>,
        prior: Option<PriorAttempt>,
        leftovers: &mut Leftovers,
    ) -> Result<Outcome, JobError> {
        let inner = &self.0;
        let Attempt {
            launchers,
            pool,
            event,
            name,
            ..
        } = *attempt;
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
        if let Some(prior) = prior {
            if let Some(outcome) = self
                .take_over(launchers, pool, job, installation, &target, prior)
                .await?
            {
                return Ok(outcome);
            }
            *leftovers = Leftovers::CleanedUp;
        }
        attempt.check_lease()?;
        // Budget first: a registration that has to wait for it is deferred with nothing
        // recorded, so its next attempt has nothing to look for.
        let reservation = launchers
            .github
            .reserve_jit(installation, &target)
            .await
            .map_err(github_error)?;
        attempt.check_lease()?;
        *leftovers = Leftovers::Kept;
        let owed = inner
            .store
            .record_intent(job, &inner.owner, name, &ecs.cluster)
            .await?;
        if owed == Owed::No {
            // Nothing was registered under the name just recorded.
            inner.store.record_waived(job, &inner.owner).await?;
            tracing::info!("no launch is owed any more");
            return Ok(Outcome::Waived);
        }
        let request = JitRequest {
            name: name.to_string(),
            runner_group: pool.settings.runner_group.clone(),
            labels: pool.labels.clone(),
            work_folder: pool.settings.work_folder.clone(),
        };
        let jit = match launchers
            .github
            .register(reservation, installation, &target, &request)
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
        let registration = Registration {
            runner_id: jit.runner_id,
            installation: Some(jit.installation),
            app_id: Some(jit.app_id),
        };
        let owed = inner
            .store
            .record_registration(job, &inner.owner, &pool.name, name, registration)
            .await?;
        let remove = |why: &'static str| async move {
            // The App that registered the runner removes it, as its installation.
            let removed = launchers
                .github
                .delete_runner(jit.installation, &target, jit.runner_id)
                .await;
            match removed {
                Ok(()) => {
                    inner.store.record_runner_removed(name).await?;
                    Ok::<_, StoreError>(Leftovers::CleanedUp)
                }
                Err(e) => {
                    tracing::warn!(error = %chain(&e), runner = name, why, "could not delete the runner registration; it stays on record for the next attempt");
                    Ok(Leftovers::Kept)
                }
            }
        };
        // The job may have been cancelled, or taken by a runner dockhand did not launch,
        // while it was being registered: then no task is owed.
        if owed == Owed::No {
            *leftovers = remove("no longer owed").await?;
            if *leftovers == Leftovers::Kept {
                return Err(JobError::Deferred(Deferral::Error(
                    "no launch is owed any more, and the registration is not removed yet".into(),
                )));
            }
            inner.store.record_waived(job, &inner.owner).await?;
            tracing::info!(
                runner = name,
                "no launch is owed any more; registration removed"
            );
            return Ok(Outcome::Waived);
        }
        attempt.check_lease()?;
        let placement = if ecs.uses_spot() {
            inner.store.placement(job, event.job.run_id).await?
        } else {
            Placement::default()
        };
        if !placement.is_default() {
            tracing::info!(
                after = placement.after,
                on_demand = placement.on_demand,
                "launching past Spot capacity"
            );
        }
        let spec = LaunchSpec {
            pool: &pool.name,
            ecs,
            job_id: Some(job),
            runner_name: name,
            jit_config: &jit.encoded,
            client_token: &format!("dockhand-{job}-{}", attempt.number),
            started_by: &started_by(job),
            placement: &placement,
        };
        match launchers.ecs.run_task(&spec).await {
            Ok(task) => {
                let recorded = inner
                    .store
                    .record_launched(
                        job,
                        &inner.owner,
                        name,
                        Some(&task.arn.0),
                        task.capacity_provider
                            .as_deref()
                            .or(task.launch_type.as_deref()),
                        LaunchState::Launched,
                    )
                    .await;
                if let Err(StoreError::LeaseLost(_)) = &recorded {
                    // Another worker owns the job now; the task still goes on the books.
                    inner.store.record_runner_task(name, &task.arn.0).await?;
                }
                recorded?;
                tracing::info!(
                    runner = name,
                    task = task.arn.0,
                    capacity_provider = task.capacity_provider,
                    "launched"
                );
                Ok(Outcome::Launched)
            }
            Err(err @ LaunchError::Unavailable(_)) => {
                // No answer: ECS may have started the task all the same. The registration
                // stays, for the next attempt to look for the task before removing it.
                tracing::warn!(error = %chain(&err), runner = name, "RunTask's outcome is unknown; keeping the registration");
                Err(launch_error(err))
            }
            Err(err) => {
                tracing::warn!(error = %chain(&err), runner = name, "launch failed; removing the registration");
                *leftovers = remove("launch failed").await?;
                Err(launch_error(err))
            }
        }
    }
}

/// One claimed attempt at a launch, and what it needs.
struct Attempt<'a> {
    launchers: &'a Launchers,
    pool: &'a Pool,
    event: &'a JobEvent,
    number: u32,
    name: &'a str,
    heartbeat: &'a Heartbeat,
}

impl Attempt<'_> {
    /// Stops the attempt before its next side effect if the heartbeat found the lease
    /// taken over: the new owner decides the job's fate.
    fn check_lease(&self) -> Result<(), JobError> {
        if self.heartbeat.lease_lost() {
            return Err(StoreError::LeaseLost(self.event.job.id).into());
        }
        Ok(())
    }
}

/// The outcome for a `queued` copy of a job whose launch is settled.
fn settled_already(state: LaunchState) -> Outcome {
    if state == LaunchState::Waived {
        tracing::info!(
            "no launch is owed: the job finished without a runner, or ran on one dockhand did not launch"
        );
        Outcome::Waived
    } else {
        tracing::info!(state = state.as_str(), "duplicate delivery");
        Outcome::Duplicate
    }
}
