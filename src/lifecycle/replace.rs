//! Step 2 of a pass: a job whose runner went away before taking a job gets a new attempt,
//! by a `queued` message dockhand sends itself, so the launch goes through the workers like
//! any other (pool caps, leases, take-overs). After `max_replacements` the job is
//! dead-lettered with the last stop reason: `dlq list` shows it, `requeue` retries it.
//!
//! The store is changed first, the message sent second: a crash between leaves the job
//! owed with no message, which the quiet-job check finds and sends again.

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{Pass, Reconciler, pool_label};
use crate::config::LifecycleSettings;
use crate::domain::{
    DeliveryId, JobAction, JobEvent, JobId, JobStatus, Labels, OwnerType, Repository, WorkflowJob,
};
use crate::metrics as m;
use crate::pool::Pools;
use crate::queue::envelope::Envelope;
use crate::queue::{ATTR_DEAD_LETTER_REASON, dead_letter_reason};
use crate::store::{Debt, JobSpec, REDELIVERY_PREFIX, Replaced};

/// The job as a delivery of `action`, rebuilt from its row: what a worker needs.
pub(super) fn event_of(spec: &JobSpec, action: JobAction, delivery: String) -> JobEvent {
    let owner = spec
        .repo
        .split_once('/')
        .map_or(spec.repo.as_str(), |(o, _)| o)
        .to_string();
    JobEvent {
        delivery: DeliveryId(delivery),
        action,
        job: WorkflowJob {
            id: spec.job,
            run_id: spec.run_id,
            run_attempt: None,
            status: JobStatus::Queued,
            conclusion: None,
            labels: Labels(spec.labels.clone()),
            runner: None,
            created_at: DateTime::from_timestamp_millis(spec.created_at),
            started_at: None,
            completed_at: None,
        },
        repository: Repository {
            full_name: spec.repo.clone(),
            owner,
            owner_type: OwnerType::Organization,
        },
        installation_id: spec.installation_id,
    }
}

impl Reconciler {
    /// Replaces the runner of `job` (or dead-letters the job once it had
    /// `max_replacements`), if it is still owed one. `why` is the metric's reason label;
    /// `interrupted_on`, the Spot capacity provider that reclaimed the runner, which the
    /// replacement launches past.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn replace(
        &self,
        settings: &LifecycleSettings,
        pools: &Pools,
        job: JobId,
        debt: Debt,
        why: &'static str,
        reason: &str,
        interrupted_on: Option<&str>,
        detail: Value,
        pass: &mut Pass,
    ) -> anyhow::Result<()> {
        let outcome = self
            .0
            .store
            .replace_runner(
                job,
                debt,
                why,
                reason,
                settings.max_replacements,
                interrupted_on,
                detail,
            )
            .await?;
        match outcome {
            Replaced::Reopened(spec) => {
                pass.replaced += 1;
                let label = pool_label(pools, spec.pool.as_deref());
                metrics::counter!(m::JOBS_REPLACED_TOTAL, "pool" => label, "reason" => why)
                    .increment(1);
                tracing::info!(job.id = %job, replacement = spec.replacements, why, reason, "replacing a job's runner");
                self.resend(&spec).await
            }
            Replaced::Exhausted(spec) => {
                pass.dead_lettered += 1;
                let label = pool_label(pools, spec.pool.as_deref());
                metrics::counter!(m::REPLACEMENTS_EXHAUSTED_TOTAL, "pool" => label).increment(1);
                let reason = format!(
                    "its runner went away {} times (lifecycle.max_replacements = {}); last: {reason}",
                    settings.max_replacements + 1,
                    settings.max_replacements
                );
                tracing::warn!(job.id = %job, reason, "dead-lettering a job whose runners keep dying");
                self.dead_letter(&spec, &reason).await
            }
            Replaced::NotOwed => Ok(()),
        }
    }

    /// Sends the job's `queued` message again, for the workers to launch it.
    pub(super) async fn resend(&self, spec: &JobSpec) -> anyhow::Result<()> {
        let delivery = format!(
            "{REDELIVERY_PREFIX}{}-{}-{}",
            spec.job,
            spec.replacements,
            uuid::Uuid::new_v4().simple()
        );
        let event = event_of(spec, JobAction::Queued, delivery);
        let message = Envelope::new(event, spec.pool.clone(), Utc::now()).to_message();
        self.0
            .queue
            .send(message)
            .await
            .context("sending the job's queued message again")?;
        Ok(())
    }

    async fn dead_letter(&self, spec: &JobSpec, reason: &str) -> anyhow::Result<()> {
        let Some(dlq) = &self.0.dead_letter else {
            tracing::error!(job.id = %spec.job, "no dead-letter queue: the job stays failed in the store");
            return Ok(());
        };
        let delivery = format!("{REDELIVERY_PREFIX}{}-dead", spec.job);
        let event = event_of(spec, JobAction::Queued, delivery);
        let mut message = Envelope::new(event, spec.pool.clone(), Utc::now()).to_message();
        message.attributes.insert(
            ATTR_DEAD_LETTER_REASON.to_string(),
            dead_letter_reason(reason).to_string(),
        );
        dlq.send(message)
            .await
            .context("sending the job to the dead-letter queue")?;
        self.0.store.record_dead_lettered(spec.job, reason).await?;
        Ok(())
    }
}
