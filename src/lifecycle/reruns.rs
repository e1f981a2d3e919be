//! A step of each pass: re-runs of jobs Spot interrupted while they ran. Such a job fails
//! on GitHub. Where its pool sets `rerun_interrupted`, the interruption put it down for a
//! re-run ([`crate::store::Store::pending_reruns`]); here, once GitHub reports the job
//! completed and its workflow run finished (GitHub refuses a re-run while the attempt is
//! still going), GitHub is asked once to re-run the run's failed jobs. The re-run's jobs
//! come as new `queued` events, and launch on the pool's on-demand capacity providers
//! ([`crate::store::Store::placement`]).
//!
//! Never twice: the re-run is marked `requesting` before the request, and the run's attempt
//! number tells, next pass, whether a request whose answer was lost went through. A run
//! re-run already (for another interrupted job of it, or by a person) is not asked again.
//! A job that succeeded after all is not re-run.

use serde_json::json;

use super::{Pass, Reconciler, pool_label};
use crate::config::LifecycleSettings;
use crate::github::{GitHubError, RunnerTarget};
use crate::metrics as m;
use crate::pool::Pools;
use crate::store::{PendingRerun, RerunState};

/// The values of the `outcome` label of `dockhand_reruns_total`.
pub(super) const OUTCOMES: [&str; 5] = ["requested", "covered", "not_needed", "refused", "expired"];

/// Re-runs looked at per pass, oldest first.
const BATCH: u32 = 50;

/// A run still not completed this long after the interruption is given up on: a job runs
/// at most 6 hours on GitHub-hosted limits, and its lost runner is noticed in minutes.
const GIVE_UP_AFTER: chrono::TimeDelta = chrono::TimeDelta::hours(24);

impl Reconciler {
    /// Follows every pending re-run; one that fails does not hold up the others. The first
    /// error is returned.
    pub(super) async fn follow_reruns(
        &self,
        settings: &LifecycleSettings,
        pools: &Pools,
        pass: &mut Pass,
    ) -> anyhow::Result<()> {
        let mut first_error = None;
        for rerun in self.0.store.pending_reruns(BATCH).await? {
            if let Err(err) = self.follow_rerun(settings, pools, &rerun, pass).await {
                tracing::warn!(
                    job.id = %rerun.job,
                    run = %rerun.run_id,
                    error = format!("{err:#}"),
                    "could not follow an interrupted job's re-run; trying again next pass"
                );
                first_error.get_or_insert(err);
            }
        }
        match first_error {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    async fn follow_rerun(
        &self,
        settings: &LifecycleSettings,
        pools: &Pools,
        rerun: &PendingRerun,
        pass: &mut Pass,
    ) -> anyhow::Result<()> {
        let github = &self.0.github;
        let label = pool_label(pools, rerun.pool.as_deref());
        let Some((owner, repo)) = rerun.repo.split_once('/') else {
            return self
                .end_rerun(
                    rerun,
                    RerunState::Refused,
                    None,
                    "the job's repository is not owner/name",
                    &label,
                )
                .await;
        };
        let installation = match rerun.installation_id {
            Some(id) => id,
            None => {
                let target = RunnerTarget::Repo {
                    owner: owner.to_string(),
                    repo: repo.to_string(),
                };
                match github.installation_for(&target).await {
                    Ok(id) => id,
                    Err(err) => return self.github_refused(rerun, err, &label).await,
                }
            }
        };
        let job = match github
            .workflow_job(installation, owner, repo, rerun.job)
            .await
        {
            Ok(job) => job,
            Err(err) => return self.github_refused(rerun, err, &label).await,
        };
        if job.status != "completed" {
            return self.wait_or_expire(rerun, &label).await;
        }
        if job.conclusion.as_deref() == Some("success") {
            let detail = json!({ "run_id": rerun.run_id.0, "conclusion": job.conclusion });
            return self
                .settle(rerun, RerunState::NotNeeded, None, None, detail, &label)
                .await;
        }
        let attempt = job.run_attempt.unwrap_or(1);
        let run = match github
            .workflow_run(installation, owner, repo, rerun.run_id)
            .await
        {
            Ok(run) => run,
            Err(err) => return self.github_refused(rerun, err, &label).await,
        };
        if run.run_attempt > attempt {
            let detail = json!({ "run_id": rerun.run_id.0, "attempt": run.run_attempt });
            let state = if rerun.state == RerunState::Requesting {
                // Our own request, whose answer was lost.
                RerunState::Requested
            } else {
                RerunState::Covered
            };
            return self
                .settle(rerun, state, Some(run.run_attempt), None, detail, &label)
                .await;
        }
        if run.status != "completed" {
            return self.wait_or_expire(rerun, &label).await;
        }
        let detail = json!({ "run_id": rerun.run_id.0, "attempt": attempt + 1 });
        if self
            .would(settings.dry_run, Some(rerun.job), "rerun", detail.clone())
            .await
        {
            pass.would += 1;
            return Ok(());
        }
        // Marked first: from here the run's new jobs launch on-demand, and a request whose
        // answer is lost is recognised next pass by the run's attempt.
        if rerun.state == RerunState::Waiting
            && !self
                .0
                .store
                .settle_rerun(
                    rerun.job,
                    RerunState::Waiting,
                    RerunState::Requesting,
                    None,
                    None,
                    json!({}),
                )
                .await?
        {
            return Ok(());
        }
        let requesting = PendingRerun {
            state: RerunState::Requesting,
            ..rerun.clone()
        };
        match github
            .rerun_failed_jobs(installation, owner, repo, rerun.run_id)
            .await
        {
            Ok(()) => {
                tracing::info!(job.id = %rerun.job, run = %rerun.run_id, attempt = attempt + 1, "re-running an interrupted job's workflow run");
                pass.reruns += 1;
                self.settle(
                    &requesting,
                    RerunState::Requested,
                    Some(attempt + 1),
                    None,
                    detail,
                    &label,
                )
                .await
            }
            Err(err) => self.github_refused(&requesting, err, &label).await,
        }
    }

    /// A transient error is tried again next pass; any other is GitHub's final word.
    async fn github_refused(
        &self,
        rerun: &PendingRerun,
        err: GitHubError,
        label: &str,
    ) -> anyhow::Result<()> {
        if err.is_transient() {
            return Err(err.into());
        }
        let reason = crate::telemetry::chain(&err);
        self.end_rerun(rerun, RerunState::Refused, None, &reason, label)
            .await
    }

    async fn wait_or_expire(&self, rerun: &PendingRerun, label: &str) -> anyhow::Result<()> {
        let age = chrono::Utc::now().timestamp_millis() - rerun.since;
        if age < GIVE_UP_AFTER.num_milliseconds() {
            return Ok(());
        }
        let reason = "the job or its run did not complete within 24 hours of the interruption";
        self.end_rerun(rerun, RerunState::Expired, None, reason, label)
            .await
    }

    async fn end_rerun(
        &self,
        rerun: &PendingRerun,
        state: RerunState,
        attempt: Option<u64>,
        reason: &str,
        label: &str,
    ) -> anyhow::Result<()> {
        tracing::warn!(job.id = %rerun.job, run = %rerun.run_id, state = state.as_str(), reason, "an interrupted job's run is not re-run");
        let detail = json!({ "run_id": rerun.run_id.0, "reason": reason });
        self.settle(rerun, state, attempt, Some(reason), detail, label)
            .await
    }

    async fn settle(
        &self,
        rerun: &PendingRerun,
        state: RerunState,
        attempt: Option<u64>,
        reason: Option<&str>,
        detail: serde_json::Value,
        label: &str,
    ) -> anyhow::Result<()> {
        let moved = self
            .0
            .store
            .settle_rerun(rerun.job, rerun.state, state, attempt, reason, detail)
            .await?;
        if moved {
            metrics::counter!(m::RERUNS_TOTAL, "outcome" => state.as_str(), "pool" => label.to_string())
                .increment(1);
        }
        Ok(())
    }
}
