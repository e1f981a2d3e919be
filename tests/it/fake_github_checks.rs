//! The fake GitHub's own checks: it must refuse what GitHub refuses (bad JWTs, tokens it did
//! not mint, malformed bodies, a missing `Accept`), or the client tests prove nothing.

use serde_json::json;

use crate::common::fake_github::{Auth, Endpoint, Failure, FakeGitHub};
use crate::github::APP_ID;

/// The media type GitHub's docs ask every REST call to accept.
const GITHUB_JSON: &str = "application/vnd.github+json";

/// One request straight to the fake, as (status, JSON body).
pub(crate) async fn raw(
    fake: &FakeGitHub,
    method: reqwest::Method,
    path: &str,
    bearer: Option<&str>,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut request = reqwest::Client::new()
        .request(method, format!("{}{path}", fake.url))
        .header("user-agent", "dockhand-tests")
        .header("accept", GITHUB_JSON);
    if let Some(bearer) = bearer {
        request = request.header("authorization", format!("Bearer {bearer}"));
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}

/// An App JWT signed with `key` (a fixture file), issued `iat` and expiring `exp` seconds
/// from now.
pub(crate) fn jwt(key: &str, iss: u64, iat: i64, exp: i64) -> String {
    let pem = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(key),
    )
    .unwrap();
    let now = chrono::Utc::now().timestamp();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &json!({"iss": iss, "iat": now + iat, "exp": now + exp}),
        &jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap(),
    )
    .unwrap()
}

pub(crate) const TEST_KEY: &str = "github-app-test-key.pem";

pub(crate) async fn mint(fake: &FakeGitHub, installation: u64) -> String {
    let (status, body) = raw(
        fake,
        reqwest::Method::POST,
        &format!("/app/installations/{installation}/access_tokens"),
        Some(&jwt(TEST_KEY, APP_ID, -60, 540)),
        None,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn the_fake_accepts_only_good_app_jwts_for_minting() {
    let fake = FakeGitHub::start(APP_ID).await;
    let path = "/app/installations/5/access_tokens";
    let post = reqwest::Method::POST;
    let refused = [
        ("no credentials", None),
        (
            "another key",
            Some(jwt("github-app-other-key.pem", APP_ID, -60, 540)),
        ),
        ("another app", Some(jwt(TEST_KEY, APP_ID + 1, -60, 540))),
        ("expired", Some(jwt(TEST_KEY, APP_ID, -700, -100))),
        (
            "longer than 10 minutes",
            Some(jwt(TEST_KEY, APP_ID, -60, 600)),
        ),
        ("not a JWT", Some("ghs_not_minted".to_string())),
    ];
    for (why, bearer) in refused {
        let (status, _) = raw(&fake, post.clone(), path, bearer.as_deref(), None).await;
        assert_eq!(status, 401, "{why}");
    }
    assert_eq!(fake.count(Endpoint::InstallationToken), 6);

    let (status, body) = raw(
        &fake,
        post,
        path,
        Some(&jwt(TEST_KEY, APP_ID, -60, 540)),
        None,
    )
    .await;
    assert_eq!(status, 201);
    assert!(body["token"].as_str().unwrap().starts_with("ghs_"));
    let expires_at: chrono::DateTime<chrono::Utc> =
        body["expires_at"].as_str().unwrap().parse().unwrap();
    let lifetime = expires_at - chrono::Utc::now();
    assert!(lifetime > chrono::Duration::minutes(59), "{lifetime}");
}

#[tokio::test]
async fn the_fake_accepts_only_tokens_it_minted_on_runner_endpoints() {
    let fake = FakeGitHub::start(APP_ID).await;
    let path = "/orgs/acme/actions/runners";
    let get = reqwest::Method::GET;

    let (status, _) = raw(&fake, get.clone(), path, Some("ghs_made_up"), None).await;
    assert_eq!(status, 401);
    let app_jwt = jwt(TEST_KEY, APP_ID, -60, 540);
    let (status, _) = raw(&fake, get.clone(), path, Some(&app_jwt), None).await;
    assert_eq!(status, 401, "runner endpoints need an installation token");
    let (status, _) = raw(&fake, get.clone(), path, None, None).await;
    assert_eq!(status, 401);

    let token = mint(&fake, 5).await;
    let (status, body) = raw(&fake, get.clone(), path, Some(&token), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["total_count"], 0);
    assert_eq!(
        fake.requests().last().unwrap().auth,
        Auth::InstallationToken { installation: 5 }
    );

    // Installation 5 now holds acme; another installation's token does not reach it.
    let other = mint(&fake, 6).await;
    let (status, _) = raw(&fake, get.clone(), path, Some(&other), None).await;
    assert_eq!(status, 404);
    let (status, _) = raw(&fake, get, path, Some(&other), None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn the_fake_validates_jit_bodies_like_github() {
    let fake = FakeGitHub::start(APP_ID).await;
    let token = mint(&fake, 5).await;
    let path = "/orgs/acme/actions/runners/generate-jitconfig";
    let good = json!({
        "name": "r-1", "runner_group_id": 1, "labels": ["self-hosted"], "work_folder": "_work"
    });
    let with = |key: &str, value: serde_json::Value| {
        let mut body = good.clone();
        body[key] = value;
        body
    };
    let without = |key: &str| {
        let mut body = good.clone();
        body.as_object_mut().unwrap().remove(key);
        body
    };
    let cases = [
        ("no name", without("name"), 422),
        ("empty name", with("name", json!("")), 422),
        (
            "group as a string",
            with("runner_group_id", json!("1")),
            422,
        ),
        ("no labels", without("labels"), 422),
        ("empty labels", with("labels", json!([])), 422),
        (
            "a label that is not a string",
            with("labels", json!(["a", 1])),
            422,
        ),
        ("no work folder", without("work_folder"), 422),
        ("an unknown key", with("ephemeral", json!(true)), 422),
        ("not an object", json!(["r-1"]), 422),
        (
            "a group the org lacks",
            with("runner_group_id", json!(9)),
            404,
        ),
    ];
    let post = reqwest::Method::POST;
    for (why, body, expected) in cases {
        let (status, _) = raw(&fake, post.clone(), path, Some(&token), Some(body)).await;
        assert_eq!(status, expected, "{why}");
    }
    assert!(fake.runners().is_empty());

    let (status, first) = raw(&fake, post.clone(), path, Some(&token), Some(good.clone())).await;
    assert_eq!(status, 201, "{first}");
    let (status, _) = raw(&fake, post.clone(), path, Some(&token), Some(good.clone())).await;
    assert_eq!(status, 409, "the name is taken");
    let (status, second) = raw(
        &fake,
        post,
        path,
        Some(&token),
        Some(with("name", json!("r-2"))),
    )
    .await;
    assert_eq!(status, 201);
    assert_ne!(first["encoded_jit_config"], second["encoded_jit_config"]);
    assert_eq!(fake.runners().len(), 2);
}

#[tokio::test]
async fn the_fake_refuses_requests_without_a_user_agent_or_with_a_broken_body() {
    let fake = FakeGitHub::start(APP_ID).await;
    let token = mint(&fake, 5).await;
    let url = format!("{}/orgs/acme/actions/runners", fake.url);

    let response = reqwest::Client::new()
        .get(&url)
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);

    let response = reqwest::Client::new()
        .post(format!("{url}/generate-jitconfig"))
        .header("user-agent", "dockhand-tests")
        .header("accept", GITHUB_JSON)
        .header("authorization", format!("Bearer {token}"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);

    let (status, _) = raw(
        &fake,
        reqwest::Method::GET,
        "/orgs/acme/actions/runners?per_page=1000",
        Some(&token),
        None,
    )
    .await;
    assert_eq!(status, 422);
}

#[tokio::test]
async fn the_fake_refuses_requests_that_do_not_accept_githubs_json() {
    let fake = FakeGitHub::start(APP_ID).await;
    let token = mint(&fake, 5).await;
    let url = format!("{}/orgs/acme/actions/runners", fake.url);
    let get = |accept: Option<&'static str>| {
        let mut request = reqwest::Client::new()
            .get(&url)
            .header("user-agent", "dockhand-tests")
            .header("authorization", format!("Bearer {token}"));
        if let Some(accept) = accept {
            request = request.header("accept", accept);
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(get(None).await, 415, "no Accept header");
    assert_eq!(get(Some("application/json")).await, 415, "plain JSON");
    assert_eq!(get(Some(GITHUB_JSON)).await, 200);
    assert_eq!(
        get(Some("text/html, application/vnd.github+json; q=0.9")).await,
        200,
        "one of several"
    );
}

#[tokio::test]
async fn the_fake_serves_workflow_runs_of_their_own_repository() {
    let fake = FakeGitHub::start(APP_ID).await;
    let token = mint(&fake, 5).await;
    fake.set_run("Octo-Org/Hello", 70, "completed", Some("failure"), 1);
    fake.set_run("octo-org/other", 80, "completed", Some("failure"), 1);
    let get = reqwest::Method::GET;

    let (status, body) = raw(
        &fake,
        get.clone(),
        "/repos/octo-org/hello/actions/runs/70",
        Some(&token),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({
            "id": 70, "status": "completed", "conclusion": "failure", "run_attempt": 1,
            "repository": {"full_name": "Octo-Org/Hello"},
        })
    );
    for (why, path) in [
        ("an unknown run", "/repos/octo-org/hello/actions/runs/71"),
        (
            "another repo's run",
            "/repos/octo-org/hello/actions/runs/80",
        ),
        ("not a run id", "/repos/octo-org/hello/actions/runs/seventy"),
    ] {
        let (status, body) = raw(&fake, get.clone(), path, Some(&token), None).await;
        assert_eq!(
            (status, body),
            (404, json!({"message": "Not Found"})),
            "{why}"
        );
    }
    let (status, _) = raw(
        &fake,
        get.clone(),
        "/repos/octo-org/hello/actions/runs/70",
        None,
        None,
    )
    .await;
    assert_eq!(status, 401, "no credentials");
    let app_jwt = jwt(TEST_KEY, APP_ID, -60, 540);
    let (status, _) = raw(
        &fake,
        get.clone(),
        "/repos/octo-org/hello/actions/runs/70",
        Some(&app_jwt),
        None,
    )
    .await;
    assert_eq!(status, 401, "runs need an installation token");
    assert_eq!(fake.count(Endpoint::WorkflowRun), 6);

    fake.fail_next(Endpoint::WorkflowRun, Failure::Status(502));
    let (status, _) = raw(
        &fake,
        get.clone(),
        "/repos/octo-org/hello/actions/runs/70",
        Some(&token),
        None,
    )
    .await;
    assert_eq!(status, 502);

    // A job of a re-run carries its run and attempt.
    fake.set_job_in_run("octo-org/hello", 701, 70, 2, "queued", None, None);
    let (status, job) = raw(
        &fake,
        get,
        "/repos/octo-org/hello/actions/jobs/701",
        Some(&token),
        None,
    )
    .await;
    assert_eq!(status, 200, "{job}");
    assert_eq!(
        (job["run_id"].clone(), job["run_attempt"].clone()),
        (json!(70), json!(2))
    );
}

#[tokio::test]
async fn the_fake_reruns_failed_jobs_only_of_completed_runs_that_failed() {
    let fake = FakeGitHub::start(APP_ID).await;
    let token = mint(&fake, 5).await;
    let path = "/repos/octo-org/hello/actions/runs/70/rerun-failed-jobs";
    let post = reqwest::Method::POST;
    let fake = &fake;
    let rerun = move |bearer: Option<String>, body: Option<serde_json::Value>| {
        let post = post.clone();
        async move { raw(fake, post, path, bearer.as_deref(), body).await }
    };

    let (status, _) = rerun(Some(token.clone()), None).await;
    assert_eq!(status, 404, "an unknown run");

    fake.set_run("octo-org/hello", 70, "in_progress", None, 1);
    let (status, body) = rerun(Some(token.clone()), None).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        body["message"],
        "Cannot re-run a workflow run that is not completed"
    );
    assert_eq!(fake.run(70), Some(("in_progress".to_string(), None, 1)));

    fake.set_run("octo-org/hello", 70, "completed", Some("success"), 1);
    let (status, _) = rerun(Some(token.clone()), None).await;
    assert_eq!(status, 403, "nothing failed");

    fake.set_run("octo-org/hello", 70, "completed", Some("failure"), 1);
    let (status, _) = rerun(None, None).await;
    assert_eq!(status, 401, "no credentials");
    let (status, _) = rerun(Some(jwt(TEST_KEY, APP_ID, -60, 540)), None).await;
    assert_eq!(status, 401, "an App JWT");
    for (why, body) in [
        ("not an object", json!(["enable_debug_logging"])),
        ("an unknown key", json!({"jobs": [1]})),
        (
            "debug logging as a string",
            json!({"enable_debug_logging": "yes"}),
        ),
    ] {
        let (status, _) = rerun(Some(token.clone()), Some(body)).await;
        assert_eq!(status, 422, "{why}");
    }
    fake.fail_next(Endpoint::RerunFailedJobs, Failure::Status(500));
    let (status, _) = rerun(Some(token.clone()), None).await;
    assert_eq!(status, 500);
    assert_eq!(
        fake.run(70),
        Some(("completed".to_string(), Some("failure".to_string()), 1)),
        "nothing refused re-ran the run"
    );

    let (status, body) = rerun(
        Some(token.clone()),
        Some(json!({"enable_debug_logging": false})),
    )
    .await;
    assert_eq!((status, body), (201, json!({})));
    assert_eq!(fake.run(70), Some(("queued".to_string(), None, 2)));
    let (status, _) = rerun(Some(token), None).await;
    assert_eq!(status, 403, "the new attempt has not completed");
    assert_eq!(fake.count(Endpoint::RerunFailedJobs), 11);
}
