//! Following jobs after their launch: GitHub's `in_progress` and `completed` events.

use super::Worker;
use super::outcome::{JobError, Outcome};
use crate::domain::JobAction;
use crate::metrics as m;
use crate::queue::envelope::Envelope;

impl Worker {
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
