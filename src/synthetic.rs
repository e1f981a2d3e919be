//! Synthetic `workflow_job` deliveries shaped like GitHub's (same fields, realistic size),
//! for smoke-testing a deployment (`dockhand send-event`), tests and benchmarks.

use chrono::{Duration, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

/// What the synthetic job looks like.
#[derive(Debug, Clone)]
pub struct SyntheticJob {
    /// `queued`, `waiting`, `in_progress` or `completed` (anything else is sent as given).
    pub action: String,
    pub job_id: u64,
    pub run_id: u64,
    pub labels: Vec<String>,
    /// `owner/name`.
    pub repo: String,
    pub installation_id: Option<u64>,
    /// Steps in the job; each adds about 130 bytes, to reach realistic payload sizes.
    pub steps: usize,
}

impl Default for SyntheticJob {
    fn default() -> Self {
        Self {
            action: "queued".to_string(),
            job_id: 2832853555,
            run_id: 940463255,
            labels: vec!["self-hosted".into(), "linux".into(), "x64".into()],
            repo: "octo-org/hello-world".to_string(),
            installation_id: None,
            steps: 4,
        }
    }
}

/// The delivery's JSON body.
pub fn workflow_job_payload(spec: &SyntheticJob) -> Value {
    let (owner, name) = spec
        .repo
        .split_once('/')
        .unwrap_or(("octo-org", &spec.repo));
    let created = Utc::now() - Duration::seconds(5);
    let ts = |t: chrono::DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    let (status, conclusion, started, completed) = match spec.action.as_str() {
        "in_progress" => ("in_progress", Value::Null, json!(ts(created)), Value::Null),
        "completed" => (
            "completed",
            json!("success"),
            json!(ts(created)),
            json!(ts(Utc::now())),
        ),
        "waiting" => ("waiting", Value::Null, json!(ts(created)), Value::Null),
        _ => ("queued", Value::Null, json!(ts(created)), Value::Null),
    };
    let assigned = matches!(spec.action.as_str(), "in_progress" | "completed");
    let api = format!("https://api.github.com/repos/{}", spec.repo);
    let html = format!("https://github.com/{}", spec.repo);
    let steps: Vec<Value> = (0..spec.steps)
        .map(|i| {
            json!({
                "name": format!("Run step number {i} of the build"),
                "status": if assigned { "completed" } else { "queued" },
                "conclusion": if spec.action == "completed" { json!("success") } else { Value::Null },
                "number": i + 1,
                "started_at": if assigned { json!(ts(created)) } else { Value::Null },
                "completed_at": if spec.action == "completed" { json!(ts(Utc::now())) } else { Value::Null },
            })
        })
        .collect();
    let mut payload = json!({
        "action": spec.action,
        "workflow_job": {
            "id": spec.job_id,
            "run_id": spec.run_id,
            "workflow_name": "CI",
            "head_branch": "main",
            "run_url": format!("{api}/actions/runs/{}", spec.run_id),
            "run_attempt": 1,
            "node_id": "CR_kwDOA4kPa88AAAACp6d9Ww",
            "head_sha": "c8bda1bc6d09e8cbd2bb1c6d8c4d3b0f4c8bd4a1",
            "url": format!("{api}/actions/jobs/{}", spec.job_id),
            "html_url": format!("{html}/actions/runs/{}/job/{}", spec.run_id, spec.job_id),
            "status": status,
            "conclusion": conclusion,
            "created_at": ts(created),
            "started_at": started,
            "completed_at": completed,
            "name": "build",
            "steps": steps,
            "check_run_url": format!("{api}/check-runs/{}", spec.job_id),
            "labels": spec.labels,
            "runner_id": if assigned { json!(7) } else { Value::Null },
            "runner_name": if assigned { json!(format!("dockhand-{}", spec.job_id)) } else { Value::Null },
            "runner_group_id": if assigned { json!(1) } else { Value::Null },
            "runner_group_name": if assigned { json!("Default") } else { Value::Null },
        },
        "repository": repository(owner, name, &api, &html),
        "organization": account(owner, "Organization"),
        "sender": account("octocat", "User"),
    });
    if let Some(id) = spec.installation_id {
        payload["installation"] =
            json!({ "id": id, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uMQ==" });
    }
    payload
}

/// POSTs a delivery the way GitHub does (headers and signature) and returns the answer.
pub async fn deliver(
    url: &str,
    secret: &[u8],
    delivery: &str,
    body: &str,
) -> anyhow::Result<(reqwest::StatusCode, String)> {
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("user-agent", "GitHub-Hookshot/dockhand-send-event")
        .header("x-github-event", "workflow_job")
        .header("x-github-delivery", delivery)
        .header(
            "x-hub-signature-256",
            crate::ingress::signature::sign(secret, body.as_bytes()),
        )
        .body(body.to_string())
        .send()
        .await?;
    Ok((response.status(), response.text().await?))
}

fn account(login: &str, kind: &str) -> Value {
    let api = format!("https://api.github.com/users/{login}");
    let mut obj = Map::new();
    obj.insert("login".into(), json!(login));
    obj.insert("id".into(), json!(21031067));
    obj.insert("node_id".into(), json!("MDQ6VXNlcjIxMDMxMDY3"));
    obj.insert(
        "avatar_url".into(),
        json!("https://avatars.githubusercontent.com/u/21031067?v=4"),
    );
    obj.insert("gravatar_id".into(), json!(""));
    obj.insert("url".into(), json!(api));
    obj.insert(
        "html_url".into(),
        json!(format!("https://github.com/{login}")),
    );
    for (field, suffix) in [
        ("followers_url", "/followers"),
        ("following_url", "/following{/other_user}"),
        ("gists_url", "/gists{/gist_id}"),
        ("starred_url", "/starred{/owner}{/repo}"),
        ("subscriptions_url", "/subscriptions"),
        ("organizations_url", "/orgs"),
        ("repos_url", "/repos"),
        ("events_url", "/events{/privacy}"),
        ("received_events_url", "/received_events"),
    ] {
        obj.insert(field.into(), json!(format!("{api}{suffix}")));
    }
    obj.insert("type".into(), json!(kind));
    obj.insert("site_admin".into(), json!(false));
    Value::Object(obj)
}

fn repository(owner: &str, name: &str, api: &str, html: &str) -> Value {
    let mut obj = Map::new();
    obj.insert("id".into(), json!(186853002));
    obj.insert("node_id".into(), json!("MDEwOlJlcG9zaXRvcnkxODY4NTMwMDI="));
    obj.insert("name".into(), json!(name));
    obj.insert("full_name".into(), json!(format!("{owner}/{name}")));
    obj.insert("private".into(), json!(true));
    obj.insert("owner".into(), account(owner, "Organization"));
    obj.insert("html_url".into(), json!(html));
    obj.insert("description".into(), Value::Null);
    obj.insert("fork".into(), json!(false));
    obj.insert("url".into(), json!(api));
    for (field, suffix) in [
        ("forks_url", "/forks"),
        ("keys_url", "/keys{/key_id}"),
        ("collaborators_url", "/collaborators{/collaborator}"),
        ("teams_url", "/teams"),
        ("hooks_url", "/hooks"),
        ("issue_events_url", "/issues/events{/number}"),
        ("events_url", "/events"),
        ("assignees_url", "/assignees{/user}"),
        ("branches_url", "/branches{/branch}"),
        ("tags_url", "/tags"),
        ("blobs_url", "/git/blobs{/sha}"),
        ("git_tags_url", "/git/tags{/sha}"),
        ("git_refs_url", "/git/refs{/sha}"),
        ("trees_url", "/git/trees{/sha}"),
        ("statuses_url", "/statuses/{sha}"),
        ("languages_url", "/languages"),
        ("stargazers_url", "/stargazers"),
        ("contributors_url", "/contributors"),
        ("subscribers_url", "/subscribers"),
        ("subscription_url", "/subscription"),
        ("commits_url", "/commits{/sha}"),
        ("git_commits_url", "/git/commits{/sha}"),
        ("comments_url", "/comments{/number}"),
        ("issue_comment_url", "/issues/comments{/number}"),
        ("contents_url", "/contents/{+path}"),
        ("compare_url", "/compare/{base}...{head}"),
        ("merges_url", "/merges"),
        ("archive_url", "/{archive_format}{/ref}"),
        ("downloads_url", "/downloads"),
        ("issues_url", "/issues{/number}"),
        ("pulls_url", "/pulls{/number}"),
        ("milestones_url", "/milestones{/number}"),
        (
            "notifications_url",
            "/notifications{?since,all,participating}",
        ),
        ("labels_url", "/labels{/name}"),
        ("releases_url", "/releases{/id}"),
        ("deployments_url", "/deployments"),
    ] {
        obj.insert(field.into(), json!(format!("{api}{suffix}")));
    }
    for (field, value) in [
        ("created_at", json!("2019-05-15T15:19:25Z")),
        ("updated_at", json!("2024-01-12T11:02:13Z")),
        ("pushed_at", json!("2024-03-07T20:13:01Z")),
        (
            "git_url",
            json!(format!("git://github.com/{owner}/{name}.git")),
        ),
        (
            "ssh_url",
            json!(format!("git@github.com:{owner}/{name}.git")),
        ),
        ("clone_url", json!(format!("{html}.git"))),
        ("svn_url", json!(html)),
        ("homepage", Value::Null),
        ("size", json!(108)),
        ("stargazers_count", json!(0)),
        ("watchers_count", json!(0)),
        ("language", json!("Rust")),
        ("has_issues", json!(true)),
        ("has_projects", json!(true)),
        ("has_downloads", json!(true)),
        ("has_wiki", json!(true)),
        ("has_pages", json!(false)),
        ("has_discussions", json!(false)),
        ("forks_count", json!(0)),
        ("mirror_url", Value::Null),
        ("archived", json!(false)),
        ("disabled", json!(false)),
        ("open_issues_count", json!(2)),
        ("license", Value::Null),
        ("allow_forking", json!(true)),
        ("is_template", json!(false)),
        ("web_commit_signoff_required", json!(false)),
        ("topics", json!([])),
        ("visibility", json!("private")),
        ("forks", json!(0)),
        ("open_issues", json!(2)),
        ("watchers", json!(0)),
        ("default_branch", json!("main")),
    ] {
        obj.insert(field.into(), value);
    }
    Value::Object(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_sizes_span_githubs_realistic_range() {
        let small = workflow_job_payload(&SyntheticJob {
            steps: 4,
            ..SyntheticJob::default()
        });
        let size = small.to_string().len();
        assert!((7_000..10_000).contains(&size), "small {size}");
        let large = workflow_job_payload(&SyntheticJob {
            steps: 130,
            ..SyntheticJob::default()
        });
        let size = large.to_string().len();
        assert!((22_000..27_000).contains(&size), "{size}");
    }
}
