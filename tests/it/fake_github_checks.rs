//! The fake GitHub's own checks: it must refuse what GitHub refuses (bad JWTs, another App's
//! JWT or key, tokens it did not mint, malformed bodies, a missing `Accept`), or the client
//! tests prove nothing.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::fake_github::client::{
    GITHUB_JSON, SECOND_KEY, app_jwt, get, header, mint_with, post, send,
};
use crate::common::fake_github::{Auth, Endpoint, Failure, FakeGitHub};
use crate::github::APP_ID;

pub(crate) use crate::common::fake_github::client::{TEST_KEY, jwt, raw};

const SECOND_APP: u64 = 5252;

/// A token for `installation`, minted with the first App's JWT.
pub(crate) async fn mint(fake: &FakeGitHub, installation: u64) -> String {
    let (status, token) = mint_with(fake, &app_jwt(TEST_KEY, APP_ID), installation).await;
    assert_eq!(status, 201);
    token
}

async fn list_acme_runners(fake: &FakeGitHub, bearer: &str) -> reqwest::Response {
    let path = "/orgs/acme/actions/runners";
    send(fake, Method::GET, path, Some(bearer), None).await
}

#[tokio::test]
async fn the_fake_accepts_only_good_app_jwts_for_minting() {
    let fake = FakeGitHub::start(APP_ID).await;
    let path = "/app/installations/5/access_tokens";
    let refused = [
        ("no credentials", None),
        (
            "another key",
            Some(app_jwt("github-app-other-key.pem", APP_ID)),
        ),
        ("another app", Some(app_jwt(TEST_KEY, APP_ID + 1))),
        ("expired", Some(jwt(TEST_KEY, APP_ID, -700, -100))),
        ("over 10 minutes", Some(jwt(TEST_KEY, APP_ID, -60, 600))),
        ("not a JWT", Some("ghs_not_minted".to_string())),
    ];
    for (why, bearer) in refused {
        let (status, _) = raw(&fake, Method::POST, path, bearer.as_deref(), None).await;
        assert_eq!(status, 401, "{why}");
    }
    assert_eq!(fake.count(Endpoint::InstallationToken), 6);

    let good = app_jwt(TEST_KEY, APP_ID);
    let (status, body) = raw(&fake, Method::POST, path, Some(&good), None).await;
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

    assert_eq!(get(&fake, path, Some("ghs_made_up")).await.0, 401);
    let jwt = app_jwt(TEST_KEY, APP_ID);
    let (status, _) = get(&fake, path, Some(&jwt)).await;
    assert_eq!(status, 401, "runner endpoints need an installation token");
    assert_eq!(get(&fake, path, None).await.0, 401);

    let token = mint(&fake, 5).await;
    let (status, body) = get(&fake, path, Some(&token)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["total_count"], 0);
    let last = fake.requests().last().unwrap().clone();
    assert_eq!(last.auth, Auth::InstallationToken { installation: 5 });
    assert_eq!(last.app, Some(APP_ID));

    // Installation 5 now holds acme; another installation's token does not reach it.
    let other = mint(&fake, 6).await;
    assert_eq!(get(&fake, path, Some(&other)).await.0, 404);
    assert_eq!(get(&fake, path, Some(&other)).await.0, 404);
}

#[tokio::test]
async fn the_fake_validates_jit_bodies_like_github() {
    let fake = FakeGitHub::start(APP_ID).await;
    let token = mint(&fake, 5).await;
    let path = "/orgs/acme/actions/runners/generate-jitconfig";
    let good = json!({
        "name": "r-1", "runner_group_id": 1, "labels": ["self-hosted"], "work_folder": "_work"
    });
    let with = |key: &str, value: Value| {
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
        ("a label not a string", with("labels", json!(["a", 1])), 422),
        ("no work folder", without("work_folder"), 422),
        ("an unknown key", with("ephemeral", json!(true)), 422),
        ("not an object", json!(["r-1"]), 422),
        (
            "a group the org lacks",
            with("runner_group_id", json!(9)),
            404,
        ),
    ];
    for (why, body, expected) in cases {
        let (status, _) = post(&fake, path, Some(&token), body).await;
        assert_eq!(status, expected, "{why}");
    }
    assert!(fake.runners().is_empty());

    let (status, first) = post(&fake, path, Some(&token), good.clone()).await;
    assert_eq!(status, 201, "{first}");
    let (status, _) = post(&fake, path, Some(&token), good.clone()).await;
    assert_eq!(status, 409, "the name is taken");
    let (status, second) = post(&fake, path, Some(&token), with("name", json!("r-2"))).await;
    assert_eq!(status, 201);
    assert_ne!(first["encoded_jit_config"], second["encoded_jit_config"]);
    assert_eq!(fake.runners().len(), 2);
    assert!(fake.runners().iter().all(|r| r.app == APP_ID));
}

#[tokio::test]
async fn the_fake_refuses_requests_without_a_user_agent_or_with_a_broken_body() {
    let fake = FakeGitHub::start(APP_ID).await;
    let token = mint(&fake, 5).await;
    let url = format!("{}/orgs/acme/actions/runners", fake.url);
    let bearer = format!("Bearer {token}");

    let request = reqwest::Client::new()
        .get(&url)
        .header("authorization", &bearer);
    assert_eq!(request.send().await.unwrap().status().as_u16(), 403);

    let response = reqwest::Client::new()
        .post(format!("{url}/generate-jitconfig"))
        .header("user-agent", "dockhand-tests")
        .header("accept", GITHUB_JSON)
        .header("authorization", &bearer)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);

    let too_many = "/orgs/acme/actions/runners?per_page=1000";
    assert_eq!(get(&fake, too_many, Some(&token)).await.0, 422);
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
    let several = "text/html, application/vnd.github+json; q=0.9";
    assert_eq!(get(Some(several)).await, 200, "one of several");
}

#[tokio::test]
async fn the_fake_serves_workflow_runs_of_their_own_repository() {
    let fake = FakeGitHub::start(APP_ID).await;
    let token = mint(&fake, 5).await;
    fake.set_run("Octo-Org/Hello", 70, "completed", Some("failure"), 1);
    fake.set_run("octo-org/other", 80, "completed", Some("failure"), 1);
    let run = "/repos/octo-org/hello/actions/runs/70";

    let (status, body) = get(&fake, run, Some(&token)).await;
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
        ("another repo's", "/repos/octo-org/hello/actions/runs/80"),
        ("not a run id", "/repos/octo-org/hello/actions/runs/seventy"),
    ] {
        let answer = get(&fake, path, Some(&token)).await;
        assert_eq!(answer, (404, json!({"message": "Not Found"})), "{why}");
    }
    assert_eq!(get(&fake, run, None).await.0, 401, "no credentials");
    let jwt = app_jwt(TEST_KEY, APP_ID);
    let (status, _) = get(&fake, run, Some(&jwt)).await;
    assert_eq!(status, 401, "runs need an installation token");
    assert_eq!(fake.count(Endpoint::WorkflowRun), 6);

    fake.fail_next(Endpoint::WorkflowRun, Failure::Status(502));
    assert_eq!(get(&fake, run, Some(&token)).await.0, 502);

    // A job of a re-run carries its run and attempt.
    fake.set_job_in_run("octo-org/hello", 701, 70, 2, "queued", None, None);
    let job = "/repos/octo-org/hello/actions/jobs/701";
    let (status, job) = get(&fake, job, Some(&token)).await;
    assert_eq!(status, 200, "{job}");
    assert_eq!(
        (&job["run_id"], &job["run_attempt"]),
        (&json!(70), &json!(2))
    );
}

#[tokio::test]
async fn the_fake_reruns_failed_jobs_only_of_completed_runs_that_failed() {
    let fake = FakeGitHub::start(APP_ID).await;
    let token = mint(&fake, 5).await;
    let path = "/repos/octo-org/hello/actions/runs/70/rerun-failed-jobs";
    let fake = &fake;
    let rerun = move |bearer: Option<String>, body: Option<Value>| async move {
        raw(fake, Method::POST, path, bearer.as_deref(), body).await
    };
    let with_token = || rerun(Some(token.clone()), None);

    assert_eq!(with_token().await.0, 404, "an unknown run");

    fake.set_run("octo-org/hello", 70, "in_progress", None, 1);
    let (status, body) = with_token().await;
    assert_eq!(status, 403, "{body}");
    let not_completed = "Cannot re-run a workflow run that is not completed";
    assert_eq!(body["message"], not_completed);
    assert_eq!(fake.run(70), Some(("in_progress".to_string(), None, 1)));

    fake.set_run("octo-org/hello", 70, "completed", Some("success"), 1);
    assert_eq!(with_token().await.0, 403, "nothing failed");

    fake.set_run("octo-org/hello", 70, "completed", Some("failure"), 1);
    assert_eq!(rerun(None, None).await.0, 401, "no credentials");
    let jwt = app_jwt(TEST_KEY, APP_ID);
    assert_eq!(rerun(Some(jwt), None).await.0, 401, "an App JWT");
    for (why, body) in [
        ("not an object", json!(["enable_debug_logging"])),
        ("an unknown key", json!({"jobs": [1]})),
        ("debug as a string", json!({"enable_debug_logging": "yes"})),
    ] {
        let (status, _) = rerun(Some(token.clone()), Some(body)).await;
        assert_eq!(status, 422, "{why}");
    }
    fake.fail_next(Endpoint::RerunFailedJobs, Failure::Status(500));
    assert_eq!(with_token().await.0, 500);
    assert_eq!(
        fake.run(70),
        Some(("completed".to_string(), Some("failure".to_string()), 1)),
        "nothing refused re-ran the run"
    );

    let no_debug = json!({"enable_debug_logging": false});
    let answer = rerun(Some(token.clone()), Some(no_debug)).await;
    assert_eq!(answer, (201, json!({})));
    assert_eq!(fake.run(70), Some(("queued".to_string(), None, 2)));
    assert_eq!(
        with_token().await.0,
        403,
        "the new attempt has not completed"
    );
    assert_eq!(fake.count(Endpoint::RerunFailedJobs), 11);
}

#[tokio::test]
async fn the_fake_takes_a_jwt_as_an_apps_only_when_that_apps_own_key_signed_it() {
    let fake = FakeGitHub::start_apps(&[APP_ID, SECOND_APP]).await;
    let path = "/orgs/acme/installation";
    for (why, bearer) in [
        ("second App, first key", app_jwt(TEST_KEY, SECOND_APP)),
        ("first App, second key", app_jwt(SECOND_KEY, APP_ID)),
        (
            "second App, expired",
            jwt(SECOND_KEY, SECOND_APP, -700, -100),
        ),
    ] {
        assert_eq!(get(&fake, path, Some(&bearer)).await.0, 401, "{why}");
    }

    let (status, first) = get(&fake, path, Some(&app_jwt(TEST_KEY, APP_ID))).await;
    assert_eq!(status, 200, "{first}");
    let (status, second) = get(&fake, path, Some(&app_jwt(SECOND_KEY, SECOND_APP))).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(
        (&first["id"], &first["app_id"]),
        (&json!(7001), &json!(APP_ID))
    );
    assert_eq!(
        (
            &second["id"],
            &second["app_id"],
            &second["account"]["login"]
        ),
        (&json!(8001), &json!(SECOND_APP), &json!("acme"))
    );

    let requests = fake.requests();
    let apps: Vec<_> = requests.iter().map(|r| r.app).collect();
    assert_eq!(apps, [None, None, None, Some(APP_ID), Some(SECOND_APP)]);
    let iss = SECOND_APP.to_string();
    assert_eq!(
        requests[0].auth,
        Auth::AppJwt { iss },
        "a trusted key, not its App's"
    );
    let by_second = fake.requests_by_app(SECOND_APP, Endpoint::Installation);
    assert_eq!(by_second, &requests[4..]);
}

#[tokio::test]
async fn each_app_mints_only_its_own_installations_and_all_share_the_runners() {
    let fake = FakeGitHub::start_apps(&[APP_ID, SECOND_APP]).await;
    fake.install_on("acme", 41);
    fake.install_app_on(SECOND_APP, "acme", 42);
    let (first_jwt, second_jwt) = (app_jwt(TEST_KEY, APP_ID), app_jwt(SECOND_KEY, SECOND_APP));
    let installation = get(&fake, "/orgs/acme/installation", Some(&second_jwt)).await;
    assert_eq!(installation.1["id"], 42);

    assert_eq!(mint_with(&fake, &second_jwt, 41).await.0, 404, "App 1's");
    assert_eq!(mint_with(&fake, &first_jwt, 42).await.0, 404, "App 2's");
    let (status, first) = mint_with(&fake, &first_jwt, 41).await;
    assert_eq!(status, 201);
    let (status, second) = mint_with(&fake, &second_jwt, 42).await;
    assert_eq!(status, 201);
    let minted: Vec<_> = (fake.requests_to(Endpoint::InstallationToken).iter())
        .map(|r| (r.path.clone(), r.app))
        .collect();
    let path = |id: u64| format!("/app/installations/{id}/access_tokens");
    let expected = [
        (41, SECOND_APP),
        (42, APP_ID),
        (41, APP_ID),
        (42, SECOND_APP),
    ];
    let expected: Vec<_> = (expected.iter())
        .map(|(i, a)| (path(*i), Some(*a)))
        .collect();
    assert_eq!(minted, expected);

    // A runner registered through one App is the org's: the other App lists and deletes it.
    let runners = "/orgs/acme/actions/runners";
    let jit = json!({
        "name": "r-1", "runner_group_id": 1, "labels": ["self-hosted"], "work_folder": "_work"
    });
    let jit_path = format!("{runners}/generate-jitconfig");
    let (status, body) = post(&fake, &jit_path, Some(&first), jit).await;
    assert_eq!(status, 201, "{body}");
    let runner = fake.runners()[0].clone();
    assert_eq!(runner.app, APP_ID);
    let (status, listed) = get(&fake, runners, Some(&second)).await;
    assert_eq!((status, &listed["total_count"]), (200, &json!(1)));
    let delete = format!("{runners}/{}", runner.id);
    let (status, _) = raw(&fake, Method::DELETE, &delete, Some(&second), None).await;
    assert_eq!(status, 204);
    assert!(fake.runners().is_empty());
    let deleted = fake.requests_by_app(SECOND_APP, Endpoint::DeleteRunner);
    assert_eq!(
        deleted[0].auth,
        Auth::InstallationToken { installation: 42 }
    );

    // Each installation still reaches only its own account.
    fake.install_app_on(SECOND_APP, "other", 43);
    let other = get(&fake, "/orgs/other/actions/runners", Some(&second)).await;
    assert_eq!(other.0, 404);
}

#[tokio::test]
async fn a_failure_for_one_app_leaves_the_other_apps_requests_alone() {
    let fake = FakeGitHub::start_apps(&[APP_ID, SECOND_APP]).await;
    let first = mint(&fake, 7001).await;
    let (_, second) = mint_with(&fake, &app_jwt(SECOND_KEY, SECOND_APP), 8001).await;
    let wait = Duration::from_secs(30);
    fake.fail_next_for(
        SECOND_APP,
        Endpoint::ListRunners,
        Failure::SecondaryLimit(wait),
    );

    assert_eq!(list_acme_runners(&fake, &first).await.status(), 200);
    let refused = list_acme_runners(&fake, &second).await;
    assert_eq!(refused.status(), 403, "GitHub's secondary limit is a 403");
    assert_eq!(header(&refused, "retry-after"), "30");
    assert_eq!(header(&refused, "x-ratelimit-resource"), "core");
    let remaining = header(&refused, "x-ratelimit-remaining");
    assert_ne!(remaining, "0", "not the primary limit");
    let body: Value = serde_json::from_str(&refused.text().await.unwrap()).unwrap();
    let secondary = "You have exceeded a secondary rate limit. \
                     Please wait a few minutes before you try again.";
    assert_eq!(body["message"], secondary);
    let again = list_acme_runners(&fake, &second).await;
    assert_eq!(again.status(), 200, "one failure, once");
    let listed = |app| fake.requests_by_app(app, Endpoint::ListRunners).len();
    assert_eq!((listed(APP_ID), listed(SECOND_APP)), (1, 2));
}

#[tokio::test]
async fn each_installation_spends_its_own_rate_limit() {
    let fake = FakeGitHub::start_apps(&[APP_ID, SECOND_APP]).await;
    let first = mint(&fake, 7001).await;
    let (_, second) = mint_with(&fake, &app_jwt(SECOND_KEY, SECOND_APP), 8001).await;
    fake.set_rate_remaining(8001, 1);
    let remaining = async |bearer: &str| {
        let response = list_acme_runners(&fake, bearer).await;
        let remaining = header(&response, "x-ratelimit-remaining");
        (response.status().as_u16(), remaining)
    };

    assert_eq!(remaining(&second).await, (200, "1".to_string()));
    assert_eq!(remaining(&second).await, (200, "0".to_string()));
    assert_eq!(
        remaining(&second).await,
        (403, "0".to_string()),
        "no calls left"
    );
    assert_eq!(remaining(&first).await, (200, "4999".to_string()));
}

#[tokio::test]
async fn the_delivery_log_takes_only_the_apps_jwt_and_githubs_paging() {
    let fake = FakeGitHub::start_apps(&[APP_ID, SECOND_APP]).await;
    let mine = fake.log_delivery(APP_ID, "g1", "queued", 503, chrono::Utc::now());
    let jwt = app_jwt(TEST_KEY, APP_ID);
    let token = mint(&fake, 5).await;
    for (what, path, bearer, status) in [
        ("no credentials", "/app/hook/deliveries", None, 401),
        ("a token", "/app/hook/deliveries", Some(token.as_str()), 401),
        (
            "per_page 0",
            "/app/hook/deliveries?per_page=0",
            Some(&jwt),
            422,
        ),
        (
            "per_page 101",
            "/app/hook/deliveries?per_page=101",
            Some(&jwt),
            422,
        ),
        (
            "a page number",
            "/app/hook/deliveries?page=2",
            Some(&jwt),
            422,
        ),
        (
            "a bad cursor",
            "/app/hook/deliveries?cursor=42",
            Some(&jwt),
            422,
        ),
        (
            "the log",
            "/app/hook/deliveries?per_page=100",
            Some(&jwt),
            200,
        ),
    ] {
        let (got, _) = get(&fake, path, bearer).await;
        assert_eq!(got, status, "{what}");
    }
    // Another App sees its own log only, and cannot redeliver this App's delivery.
    let other = app_jwt(SECOND_KEY, SECOND_APP);
    let (_, log) = get(&fake, "/app/hook/deliveries", Some(&other)).await;
    assert_eq!(log, json!([]));
    let attempts = format!("/app/hook/deliveries/{mine}/attempts");
    let (refused, _) = post(&fake, &attempts, Some(&other), json!({})).await;
    assert_eq!(refused, 404);
    let (accepted, _) = post(&fake, &attempts, Some(&jwt), json!({})).await;
    assert_eq!(accepted, 202);
}
