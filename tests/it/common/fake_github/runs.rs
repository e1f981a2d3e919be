//! Workflow jobs and runs: `GET /repos/{owner}/{repo}/actions/jobs/{job_id}`,
//! `GET .../actions/runs/{run_id}` and `POST .../actions/runs/{run_id}/rerun-failed-jobs`,
//! which GitHub refuses until the run has completed, and for a run with nothing to re-run.

use axum::http::{Method, StatusCode};
use dockhand::github::RunnerTarget;
use serde_json::{Value, json};

use super::routes::Route;
use super::{Answer, Endpoint, FakeGitHub, FakeState, invalid, message, not_found};

/// A workflow run as the fake keeps it.
pub(super) struct Run {
    id: u64,
    /// `owner/name` as it was set (GitHub answers the canonical casing).
    full_name: String,
    /// `queued`, `in_progress` or `completed`.
    status: String,
    conclusion: Option<String>,
    run_attempt: u64,
}

/// The run routes under `/repos/{owner}/{repo}/` (`rest` is what follows); runs belong to
/// repositories only.
pub(super) fn route(
    method: &Method,
    target: RunnerTarget,
    rest: &[&str],
) -> Option<(Endpoint, Route)> {
    if !matches!(target, RunnerTarget::Repo { .. }) {
        return None;
    }
    let route = match (method, rest) {
        (&Method::GET, ["actions", "runs", id]) => (
            Endpoint::WorkflowRun,
            Route::WorkflowRun {
                target,
                id: id.to_string(),
            },
        ),
        (&Method::POST, ["actions", "runs", id, "rerun-failed-jobs"]) => (
            Endpoint::RerunFailedJobs,
            Route::RerunFailedJobs {
                target,
                id: id.to_string(),
            },
        ),
        _ => return None,
    };
    Some(route)
}

impl FakeGitHub {
    /// Sets a workflow job as GitHub would answer it: its `status` (`queued`, `in_progress`,
    /// `completed`), `conclusion` and runner, in run `job_id * 10`, attempt 1.
    pub fn set_job(
        &self,
        repo: &str,
        job_id: u64,
        status: &str,
        conclusion: Option<&str>,
        runner_name: Option<&str>,
    ) {
        self.set_job_in_run(
            repo,
            job_id,
            job_id * 10,
            1,
            status,
            conclusion,
            runner_name,
        );
    }

    /// Sets a workflow run (creating or replacing it): its `status` (`queued`,
    /// `in_progress`, `completed`), `conclusion` and `run_attempt`.
    pub fn set_run(
        &self,
        repo: &str,
        run_id: u64,
        status: &str,
        conclusion: Option<&str>,
        run_attempt: u64,
    ) {
        let run = Run {
            id: run_id,
            full_name: repo.to_string(),
            status: status.to_string(),
            conclusion: conclusion.map(str::to_string),
            run_attempt,
        };
        self.lock().runs.insert(run_id, (repo.to_lowercase(), run));
    }

    /// A run's `(status, conclusion, run_attempt)` as the fake holds it now.
    pub fn run(&self, run_id: u64) -> Option<(String, Option<String>, u64)> {
        self.lock()
            .runs
            .get(&run_id)
            .map(|(_, run)| (run.status.clone(), run.conclusion.clone(), run.run_attempt))
    }

    /// Sets a workflow job as [`FakeGitHub::set_job`] does, in the given run and attempt.
    #[allow(clippy::too_many_arguments)]
    pub fn set_job_in_run(
        &self,
        repo: &str,
        job_id: u64,
        run_id: u64,
        run_attempt: u64,
        status: &str,
        conclusion: Option<&str>,
        runner_name: Option<&str>,
    ) {
        let job = json!({
            "id": job_id,
            "run_id": run_id,
            "run_attempt": run_attempt,
            "status": status,
            "conclusion": conclusion,
            "runner_name": runner_name,
            "labels": ["self-hosted", "linux"],
        });
        self.lock().jobs.insert(job_id, (repo.to_lowercase(), job));
    }
}

impl FakeState {
    pub(super) fn workflow_job(&self, target: &RunnerTarget, id: &str) -> Answer {
        let RunnerTarget::Repo { owner, repo } = target else {
            return not_found();
        };
        let full = format!("{owner}/{repo}").to_lowercase();
        match id.parse::<u64>().ok().and_then(|id| self.jobs.get(&id)) {
            Some((of, job)) if *of == full => (StatusCode::OK, job.clone()),
            _ => not_found(),
        }
    }

    /// The run `id` of the repository `target`, if it has one.
    fn run_of(&mut self, target: &RunnerTarget, id: &str) -> Option<&mut Run> {
        let RunnerTarget::Repo { owner, repo } = target else {
            return None;
        };
        let full = format!("{owner}/{repo}").to_lowercase();
        id.parse::<u64>()
            .ok()
            .and_then(|id| self.runs.get_mut(&id))
            .filter(|(of, _)| *of == full)
            .map(|(_, run)| run)
    }

    pub(super) fn workflow_run(&mut self, target: &RunnerTarget, id: &str) -> Answer {
        let Some(run) = self.run_of(target, id) else {
            return not_found();
        };
        (
            StatusCode::OK,
            json!({
                "id": run.id,
                "status": run.status,
                "conclusion": run.conclusion,
                "run_attempt": run.run_attempt,
                "repository": {"full_name": run.full_name},
            }),
        )
    }

    /// Re-runs the failed jobs of a completed run: a new attempt, queued.
    pub(super) fn rerun_failed_jobs(
        &mut self,
        target: &RunnerTarget,
        id: &str,
        body: Option<Value>,
    ) -> Answer {
        match body {
            None => {}
            Some(Value::Object(body)) => {
                if let Some(field) = body.keys().find(|k| *k != "enable_debug_logging") {
                    return invalid(&format!("Invalid request: {field} is not a permitted key"));
                }
                if body
                    .get("enable_debug_logging")
                    .is_some_and(|v| !v.is_boolean())
                {
                    return invalid("Invalid request: enable_debug_logging must be a boolean");
                }
            }
            Some(_) => return invalid("Invalid request: body must be an object"),
        }
        let Some(run) = self.run_of(target, id) else {
            return not_found();
        };
        if run.status != "completed" {
            return message(
                StatusCode::FORBIDDEN,
                "Cannot re-run a workflow run that is not completed",
            );
        }
        if run.conclusion.as_deref() == Some("success") {
            return message(
                StatusCode::FORBIDDEN,
                "This workflow run has no failed jobs to re-run",
            );
        }
        run.status = "queued".to_string();
        run.conclusion = None;
        run.run_attempt += 1;
        (StatusCode::CREATED, json!({}))
    }
}
