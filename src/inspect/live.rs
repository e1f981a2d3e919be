//! `--live`: what GitHub and ECS say about a job now, and where that disagrees with the
//! store. A lookup that fails is reported as such, never as a disagreement.

use std::fmt::Write as _;

use serde::Serialize;

use super::JobStory;
use crate::domain::InstallationId;
use crate::ecs::{Launcher, TaskView};
use crate::github::{GitHubApp, RunnerTarget, WorkflowJobView};
use crate::store::{GitHubState, JobRecord, LaunchState};
use crate::telemetry::chain;

/// The clients a live check asks.
#[derive(Clone)]
pub struct LiveClients {
    pub github: GitHubApp,
    pub ecs: Launcher,
}

/// What GitHub and ECS said, and the disagreements with the store.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Live {
    /// The job as GitHub answers it now.
    pub github: Option<WorkflowJobView>,
    pub github_error: Option<String>,
    /// The job's task as ECS describes it now (when the store names one).
    pub task: Option<TaskView>,
    pub task_error: Option<String>,
    /// Where they disagree with the store, in words; empty when they agree.
    pub disagreements: Vec<String>,
}

impl LiveClients {
    /// Asks GitHub for the job and ECS for its task, and compares both with the store.
    pub async fn check(&self, story: &mut JobStory) {
        let mut live = Live::default();
        let Some(job) = &story.job else {
            live.github_error = Some("the store has no row for the job: nothing to ask".into());
            story.live = Some(live);
            return;
        };
        match self.github_job(job).await {
            Ok(view) => live.github = Some(view),
            Err(err) => live.github_error = Some(err),
        }
        if let (Some(task), Some(cluster)) = (&job.task_arn, &job.cluster) {
            match self.ecs.describe_task(cluster, task).await {
                Ok(view) => {
                    live.task = view;
                    if live.task.is_none() {
                        live.disagreements.push(format!(
                            "ECS does not know task {task} in cluster {cluster}, which the store \
                             says was launched for the job"
                        ));
                    }
                }
                Err(err) => live.task_error = Some(format!("ECS: {}", chain(&err))),
            }
        }
        live.disagreements
            .extend(disagreements(job, live.github.as_ref(), live.task.as_ref()));
        story.live = Some(live);
    }

    async fn github_job(&self, job: &JobRecord) -> Result<WorkflowJobView, String> {
        let (owner, repo) = job
            .repo
            .split_once('/')
            .ok_or_else(|| format!("the stored repository {} is not owner/name", job.repo))?;
        let installation = match job.installation_id {
            Some(id) => InstallationId(id),
            None => {
                let target = RunnerTarget::Repo {
                    owner: owner.into(),
                    repo: repo.into(),
                };
                self.github
                    .installation_for(&target)
                    .await
                    .map_err(|e| format!("GitHub: {}", chain(&e)))?
            }
        };
        self.github
            .workflow_job(installation, owner, repo, job.job_id)
            .await
            .map_err(|e| format!("GitHub: {}", chain(&e)))
    }
}

/// Where GitHub's view and the task's state disagree with the store's record.
pub fn disagreements(
    job: &JobRecord,
    github: Option<&WorkflowJobView>,
    task: Option<&TaskView>,
) -> Vec<String> {
    let mut found = Vec::new();
    if let Some(gh) = github {
        let stored = job.github.as_str();
        match (gh.status.as_str(), job.github) {
            ("completed", GitHubState::Completed)
            | ("in_progress", GitHubState::InProgress)
            | ("queued" | "waiting", GitHubState::Queued) => {}
            ("completed", _) => found.push(format!(
                "GitHub says the job completed ({}); the store still says {stored}: its \
                 `completed` event has not arrived",
                gh.conclusion.as_deref().unwrap_or("no conclusion")
            )),
            ("in_progress", _) => found.push(format!(
                "GitHub says the job is running on runner {}; the store says {stored}",
                gh.runner_name.as_deref().unwrap_or("?")
            )),
            (status, _) => found.push(format!(
                "GitHub says the job is {status}; the store says {stored}"
            )),
        }
        if let (Some(theirs), Some(ours)) = (&gh.runner_name, &job.ran_on)
            && !theirs.is_empty()
            && theirs != ours
        {
            found.push(format!(
                "GitHub says the job ran on runner {theirs}; the store says {ours}"
            ));
        }
    }
    let launched = matches!(job.launch, LaunchState::Launched | LaunchState::Adopted);
    if let (Some(task), true) = (task, launched) {
        let stopped = task.last_status.as_deref() == Some("STOPPED");
        let queued = github.map_or(job.github == GitHubState::Queued, |g| g.status == "queued");
        if stopped && queued {
            found.push(format!(
                "task {} stopped ({}) but GitHub has not started the job: the runner launched \
                 for it is gone without running it",
                job.task_arn.as_deref().unwrap_or("?"),
                task.stopped_reason.as_deref().unwrap_or("no reason given")
            ));
        }
        let done = github.map_or(job.github == GitHubState::Completed, |g| {
            g.status == "completed"
        });
        if !stopped && done && job.ran_on.as_deref() == job.runner_name.as_deref() {
            found.push(format!(
                "task {} is still {} after the job completed on its runner",
                job.task_arn.as_deref().unwrap_or("?"),
                task.last_status.as_deref().unwrap_or("running")
            ));
        }
    }
    found
}

impl Live {
    /// The live section of the text story.
    pub fn render(&self) -> String {
        let mut out = String::from("live:\n");
        match (&self.github, &self.github_error) {
            (Some(gh), _) => {
                let _ = writeln!(
                    out,
                    "  GitHub: {}{}{}",
                    gh.status,
                    gh.conclusion
                        .as_deref()
                        .map(|c| format!(" ({c})"))
                        .unwrap_or_default(),
                    gh.runner_name
                        .as_deref()
                        .filter(|r| !r.is_empty())
                        .map(|r| format!(" on runner {r}"))
                        .unwrap_or_default()
                );
            }
            (None, Some(err)) => {
                let _ = writeln!(out, "  GitHub: could not ask: {err}");
            }
            (None, None) => {}
        }
        match (&self.task, &self.task_error) {
            (Some(task), _) => {
                let _ = writeln!(
                    out,
                    "  ECS task: {}{}",
                    task.last_status.as_deref().unwrap_or("?"),
                    task.stopped_reason
                        .as_deref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default()
                );
            }
            (None, Some(err)) => {
                let _ = writeln!(out, "  ECS task: could not ask: {err}");
            }
            (None, None) => {}
        }
        if self.disagreements.is_empty() {
            out.push_str("  the store agrees with GitHub and ECS\n");
        } else {
            for d in &self.disagreements {
                let _ = writeln!(out, "  DISAGREES: {d}");
            }
        }
        out
    }
}
