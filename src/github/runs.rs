//! Workflow runs, for the re-run of a job Spot interrupted: the run's state, and the
//! request to re-run its failed jobs. Both need the App's repository permission "Actions:
//! read & write" (read for the run, write for the re-run).

use serde::Deserialize;

use super::request::{Endpoint, Method};
use super::{AppClient, GitHubError, RunnerTarget};
use crate::domain::{InstallationId, RunId};

/// A workflow run as GitHub answers it: what decides whether to re-run it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct WorkflowRunView {
    /// `queued`, `in_progress`, `completed`, ...
    pub status: String,
    pub conclusion: Option<String>,
    /// 1 for the first attempt; each re-run adds one.
    pub run_attempt: u64,
}

fn repo_target(owner: &str, repo: &str) -> RunnerTarget {
    RunnerTarget::Repo {
        owner: owner.to_string(),
        repo: repo.to_string(),
    }
}

impl AppClient {
    /// `GET /repos/{owner}/{repo}/actions/runs/{run_id}`.
    #[tracing::instrument(skip_all, fields(github.installation = %installation, github.run = %run))]
    pub async fn workflow_run(
        &self,
        installation: InstallationId,
        owner: &str,
        repo: &str,
        run: RunId,
    ) -> Result<WorkflowRunView, GitHubError> {
        let target = repo_target(owner, repo);
        let path = format!("{}/actions/runs/{run}", target.path());
        self.as_installation(
            installation,
            &target,
            (Endpoint::WorkflowRun, Method::Get, &path),
            None,
        )
        .await?
        .json()
    }

    /// `POST /repos/{owner}/{repo}/actions/runs/{run_id}/rerun-failed-jobs`: GitHub
    /// re-runs the run's failed (and cancelled) jobs and the jobs that depend on them, as a
    /// new run attempt whose jobs get new ids. GitHub refuses while the run is not
    /// completed (403).
    #[tracing::instrument(skip_all, fields(github.installation = %installation, github.run = %run))]
    pub async fn rerun_failed_jobs(
        &self,
        installation: InstallationId,
        owner: &str,
        repo: &str,
        run: RunId,
    ) -> Result<(), GitHubError> {
        let target = repo_target(owner, repo);
        let path = format!("{}/actions/runs/{run}/rerun-failed-jobs", target.path());
        let body = serde_json::json!({ "enable_debug_logging": false });
        self.as_installation(
            installation,
            &target,
            (Endpoint::RerunFailedJobs, Method::Post(&body), &path),
            None,
        )
        .await?;
        Ok(())
    }
}
