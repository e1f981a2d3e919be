//! `GET /repos/{owner}/{repo}/actions/jobs/{job_id}`: the job as GitHub sees it now, for
//! the installation on its repository only.

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use super::{eventually, github, installation_token, jwt, launch, quick_world};

#[tokio::test]
async fn the_job_endpoint_follows_a_job_from_queued_to_completed() {
    let world = quick_world(Duration::from_secs(1)).await;
    let token = installation_token(&world).await;
    let job = world.queue_job(false);
    let repo = world.with(|m| m.jobs[&job].repo.clone());
    let path = format!("/repos/{repo}/actions/jobs/{job}");
    let get = async || github(&world, Method::GET, &path, Some(&token), None).await;

    let (status, view) = get().await;
    assert_eq!(status, 200);
    assert_eq!(view["id"], job);
    assert_eq!(view["status"], "queued");
    assert!(view["conclusion"].is_null() && view["runner_name"].is_null());
    assert!(view["completed_at"].is_null());
    assert_eq!(
        view["labels"],
        serde_json::json!(["self-hosted", "linux", "x64"])
    );

    launch(&world, "dh-job-runner");
    let mut seen = Value::Null;
    eventually("the job in progress", async || {
        seen = get().await.1;
        seen["status"] != "queued"
    })
    .await;
    assert_eq!(seen["status"], "in_progress", "{seen}");
    assert_eq!(seen["runner_name"], "dh-job-runner");
    assert!(seen["runner_id"].is_u64() && seen["started_at"].is_string());
    eventually("the job completed", async || {
        seen = get().await.1;
        seen["status"] == "completed"
    })
    .await;
    assert_eq!(seen["conclusion"], "success", "{seen}");
    assert!(seen["completed_at"].is_string());
    let calls = world.github.calls();
    assert!(
        calls.iter().any(|(e, n)| *e == "workflow_job" && *n >= 3),
        "{calls:?}"
    );
}

#[tokio::test]
async fn the_job_endpoint_needs_the_installations_token_and_the_jobs_own_repository() {
    let world = quick_world(Duration::from_secs(60)).await;
    let token = installation_token(&world).await;
    let job = world.queue_job(false);
    let repo = world.with(|m| m.jobs[&job].repo.clone());
    let status =
        async |path: &str, auth: Option<&str>| github(&world, Method::GET, path, auth, None).await;
    let path = format!("/repos/{repo}/actions/jobs/{job}");
    assert_eq!(status(&path, None).await.0, 401);
    let app = jwt("github-app-test-key.pem", 31337);
    assert_eq!(status(&path, Some(&app)).await.0, 401);
    assert_eq!(status(&path, Some("ghs_notminted")).await.0, 401);
    assert_eq!(status(&path, Some(&token)).await.0, 200);
    for elsewhere in [
        format!("/repos/sim-org/not-its-repo/actions/jobs/{job}"),
        format!("/repos/{repo}/actions/jobs/{}", job + 1000),
        format!("/repos/{repo}/actions/jobs/not-a-number"),
        format!("/repos/another-org/repo/actions/jobs/{job}"),
    ] {
        let (code, body) = status(&elsewhere, Some(&token)).await;
        assert_eq!(
            (code, body["message"].as_str()),
            (404, Some("Not Found")),
            "{elsewhere}"
        );
    }
    // A poison job's org has no installation of the App: the token cannot see it.
    let poison = world.queue_job(true);
    let path = format!("/repos/no-app-org/poison/actions/jobs/{poison}");
    assert_eq!(status(&path, Some(&token)).await.0, 404);
}
