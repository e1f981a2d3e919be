//! Workflow jobs as GitHub shows them: the `workflow_job` object of its webhooks and of
//! `GET /repos/{owner}/{repo}/actions/jobs/{job_id}`, and the webhook bodies around it.

use serde_json::{Value, json};

use super::{Conclusion, JobState, Model};

/// An installation that does not exist: poison jobs name it.
pub const NO_INSTALLATION: u64 = 9_999_999;

/// The job as GitHub shows it now: the same object in a webhook and from the REST API.
pub(super) fn job_json(model: &Model, job_id: u64) -> Value {
    let job = &model.jobs[&job_id];
    let clock = &model.clock;
    let api = format!("https://api.github.com/repos/{}", job.repo);
    let html = format!("https://github.com/{}", job.repo);
    let runner = job.ran_on.and_then(|(id, _)| model.runners.get(&id));
    let (status, conclusion) = match job.state {
        JobState::Queued => ("queued", Value::Null),
        JobState::Running { .. } => ("in_progress", Value::Null),
        JobState::Done(c) => (
            "completed",
            json!(match c {
                Conclusion::Success => "success",
                Conclusion::Cancelled => "cancelled",
                Conclusion::Failure => "failure",
            }),
        ),
    };
    json!({
        "id": job.id,
        "run_id": job.run_id,
        "workflow_name": "CI",
        "head_branch": "main",
        "run_url": format!("{api}/actions/runs/{}", job.run_id),
        "run_attempt": 1,
        "node_id": format!("CR_sim{}", job.id),
        "head_sha": "4f1b2c3d5e6f708192a3b4c5d6e7f8091a2b3c4d",
        "url": format!("{api}/actions/jobs/{}", job.id),
        "html_url": format!("{html}/actions/runs/{}/job/{}", job.run_id, job.id),
        "status": status,
        "conclusion": conclusion,
        "created_at": clock.timestamp(job.created),
        "started_at": clock.timestamp(job.started.unwrap_or(job.created)),
        "completed_at": job.completed.map(|t| clock.timestamp(t)),
        "name": "build",
        "steps": [],
        "check_run_url": format!("{api}/check-runs/{}", job.id),
        "labels": model.settings.labels,
        "runner_id": runner.map(|r| r.id),
        "runner_name": runner.map(|r| r.name.clone()),
        "runner_group_id": runner.map(|r| r.group_id),
        "runner_group_name": runner.map(|_| "Default"),
    })
}

/// The id GitHub gives a job's repository (in its webhooks and its delivery log).
pub(super) fn repository_id(model: &Model, job_id: u64) -> u64 {
    600_000 + model.jobs[&job_id].id % 17
}

/// A `workflow_job` delivery to the App installed as `installation` (a poison job's names
/// [`NO_INSTALLATION`] instead).
pub(super) fn workflow_job(model: &Model, job_id: u64, action: &str, installation: u64) -> String {
    let job = &model.jobs[&job_id];
    let (owner, name) = job.repo.split_once('/').unwrap_or(("sim-org", &job.repo));
    let api = format!("https://api.github.com/repos/{}", job.repo);
    let html = format!("https://github.com/{}", job.repo);
    let body = json!({
        "action": action,
        "workflow_job": job_json(model, job_id),
        "repository": {
            "id": repository_id(model, job_id),
            "name": name,
            "full_name": job.repo,
            "private": true,
            "owner": {"login": owner, "id": 9_000_001, "type": "Organization"},
            "html_url": html,
            "url": api,
            "default_branch": "main",
        },
        "organization": {"login": owner, "id": 9_000_001},
        "sender": {"login": "octocat", "id": 1, "type": "User"},
        "installation": {
            "id": if job.poison { NO_INSTALLATION } else { installation },
            "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uMQ==",
        },
    });
    body.to_string()
}
