//! Step 6 of a pass: jobs gone quiet. A job GitHub has not started `verify_after` after
//! its launch (or its last change) is asked about (`GET /repos/{owner}/{repo}/actions/
//! jobs/{id}`): if GitHub started or finished it, its webhook was lost, and the store is
//! put right from the answer; if it is still queued and no runner of its pool is idle or
//! starting, it gets a replacement; a job owed a launch with nobody launching it (its
//! message was lost) is sent again.

use serde_json::json;

use super::replace::event_of;
use super::{Pass, Reconciler, Seen, pool_label};
use crate::config::LifecycleSettings;
use crate::domain::{Conclusion, JobAction, JobStatus, RunnerAssignment};
use crate::github::{GitHubError, WorkflowJobView};
use crate::metrics as m;
use crate::pool::Pools;
use crate::store::{Debt, JobSpec, LaunchState};

/// Quiet jobs asked about in one pass, at most: one GitHub call each.
const VERIFY_PER_PASS: u32 = 50;

impl Reconciler {
    pub(super) async fn verify_quiet(
        &self,
        settings: &LifecycleSettings,
        pools: &Pools,
        seen: &Seen,
        pass: &mut Pass,
    ) -> anyhow::Result<()> {
        let quiet = self
            .0
            .store
            .quiet_jobs(settings.verify_after.as_millis() as i64, VERIFY_PER_PASS)
            .await?;
        let mut failed = None;
        for spec in quiet {
            if let Err(err) = self.verify(settings, pools, seen, &spec, pass).await {
                tracing::warn!(job.id = %spec.job, error = format!("{err:#}"), "could not check a quiet job with GitHub; trying again next pass");
                failed.get_or_insert(err);
            }
        }
        match failed {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    async fn verify(
        &self,
        settings: &LifecycleSettings,
        pools: &Pools,
        seen: &Seen,
        spec: &JobSpec,
        pass: &mut Pass,
    ) -> anyhow::Result<()> {
        let Some(installation) = spec.installation_id else {
            return Ok(());
        };
        let Some((owner, repo)) = spec.repo.split_once('/') else {
            return Ok(());
        };
        let view = match self
            .0
            .github
            .workflow_job(installation, owner, repo, spec.job)
            .await
        {
            Ok(view) => view,
            Err(GitHubError::NotFound) => {
                // Deleted with its run, or no longer visible to the App: nothing to run.
                let detail = json!({ "github": "not_found", "action": "none" });
                self.0.store.record_verified(spec.job, detail).await?;
                pass.verified += 1;
                return Ok(());
            }
            Err(err) => return Err(err.into()),
        };
        pass.verified += 1;
        let label = pool_label(pools, spec.pool.as_deref());
        if matches!(view.status.as_str(), "in_progress" | "completed") {
            let detail = json!({
                "github": view.status,
                "runner": view.runner_name,
                "action": "healed",
            });
            if self
                .would(settings.dry_run, Some(spec.job), "heal", detail.clone())
                .await
            {
                pass.would += 1;
                return Ok(());
            }
            self.heal(spec, &view).await?;
            self.0.store.record_verified(spec.job, detail).await?;
            pass.healed += 1;
            metrics::counter!(m::JOBS_HEALED_TOTAL, "pool" => label).increment(1);
            tracing::info!(job.id = %spec.job, github = view.status, "a quiet job had started on GitHub: its webhook was lost; the store is put right");
            return Ok(());
        }
        let pool_name = spec.pool.as_deref().unwrap_or_default();
        let spare = seen.spare(pool_name);
        let action = match (spec.launch, spare) {
            (LaunchState::Owed, _) => "resent",
            (_, 0) => "replaced",
            _ => "wait",
        };
        let detail = json!({ "github": view.status, "action": action, "spare_runners": spare });
        if action != "wait"
            && self
                .would(settings.dry_run, Some(spec.job), action, detail.clone())
                .await
        {
            pass.would += 1;
            return Ok(());
        }
        self.0
            .store
            .record_verified(spec.job, detail.clone())
            .await?;
        match action {
            "resent" => self.resend(spec).await,
            "replaced" => {
                let reason = format!(
                    "GitHub still shows the job queued after lifecycle.verify_after ({}) and pool {pool_name} has no idle or starting runner",
                    humantime::format_duration(settings.verify_after)
                );
                self.replace(
                    settings,
                    pools,
                    spec.job,
                    Debt::Queued,
                    "quiet",
                    &reason,
                    None,
                    detail,
                    pass,
                )
                .await
            }
            _ => Ok(()),
        }
    }

    /// Records what GitHub says of a job whose webhook was lost, as that webhook would have.
    async fn heal(&self, spec: &JobSpec, view: &WorkflowJobView) -> anyhow::Result<()> {
        let (action, status) = if view.status == "completed" {
            (JobAction::Completed, JobStatus::Completed)
        } else {
            (JobAction::InProgress, JobStatus::InProgress)
        };
        let delivery = format!("dockhand:verify-{}-{}", spec.job, view.status);
        let mut event = event_of(spec, action, delivery);
        event.job.status = status;
        event.job.conclusion = view
            .conclusion
            .as_deref()
            .and_then(|c| serde_json::from_value::<Conclusion>(json!(c)).ok());
        event.job.runner = view.runner_name.clone().map(|name| RunnerAssignment {
            id: None,
            name: Some(name),
            group_id: None,
            group_name: None,
        });
        event.job.started_at = view.started_at;
        event.job.completed_at = view.completed_at;
        // An in-progress job's completion comes later, by webhook or by the next check.
        self.0.store.track(&event, spec.pool.as_deref()).await?;
        Ok(())
    }
}
