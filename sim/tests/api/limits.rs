//! GitHub's rate limits (per App, per installation) and ECS's RunTask limits, enforced when
//! the world's settings ask for them; and several Apps, each with its own key and
//! installation.

use std::time::{SystemTime, UNIX_EPOCH};

use dockhand_sim::limits::{EcsLimits, EcsThrottled, LimitKind, QuotaSettings};
use dockhand_sim::{AppSettings, Settings, World};
use reqwest::Method;
use serde_json::{Value, json};

use super::{ecs, fixture, github, installation_token, jwt, world_with};

/// A world limiting GitHub as `quota` says, at `time_scale`.
async fn limited(quota: QuotaSettings, time_scale: f64) -> World {
    world_with(Settings {
        time_scale,
        quota: Some(quota),
        ..Settings::default()
    })
    .await
}

/// A call's status, headers and body.
async fn call(
    world: &World,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut request = reqwest::Client::new()
        .request(method, format!("{}{path}", world.github_url))
        .header("user-agent", "sim-test")
        .header("accept", "application/vnd.github+json")
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.body(body.to_string());
    }
    let response = request.send().await.unwrap();
    let (status, headers) = (response.status().as_u16(), response.headers().clone());
    let body = response.bytes().await.unwrap();
    (
        status,
        headers,
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}

fn header(headers: &reqwest::header::HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.parse().ok()
}

fn now_epoch() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

const JIT: &str = "/orgs/sim-org/actions/runners/generate-jitconfig";
const RUNNERS: &str = "/orgs/sim-org/actions/runners";

fn jit_body(name: &str) -> Value {
    json!({"name": name, "runner_group_id": 1, "labels": ["self-hosted"]})
}

#[tokio::test]
async fn a_full_secondary_window_answers_403_with_retry_after_and_does_nothing() {
    // Real time, so that the window (a minute) outlasts the test.
    let quota = QuotaSettings {
        points_per_window: 12,
        ..QuotaSettings::default()
    };
    let world = limited(quota, 1.0).await;
    // The mint (a POST as the App, 5 points) and a JIT config (5) fit; a second does not.
    let token = installation_token(&world).await;
    let (status, ..) = call(&world, Method::POST, JIT, &token, Some(jit_body("r1"))).await;
    assert_eq!(status, 201);
    let (status, headers, body) =
        call(&world, Method::POST, JIT, &token, Some(jit_body("r2"))).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("You have exceeded a secondary rate limit"),
        "{body}"
    );
    let retry_after = header(&headers, "retry-after").unwrap();
    assert!((59..=60).contains(&retry_after), "{retry_after}");
    // The refused call did nothing, and cost nothing: two GETs (1 point each) still fit.
    let (status, _, runners) = call(&world, Method::GET, RUNNERS, &token, None).await;
    assert_eq!((status, runners["total_count"].as_u64()), (200, Some(1)));
    assert_eq!(
        call(&world, Method::GET, RUNNERS, &token, None).await.0,
        200
    );
    let (status, headers, _) = call(&world, Method::GET, RUNNERS, &token, None).await;
    assert_eq!(status, 403);
    assert!(header(&headers, "retry-after").is_some());
    assert_eq!(
        world.github.refused(),
        vec![(31_337, LimitKind::Secondary, 2)]
    );
}

#[tokio::test]
async fn the_primary_limits_headers_count_down_and_reset_at_the_real_moment_of_the_simulated_hour()
{
    let quota = QuotaSettings {
        primary_limit: 3,
        ..QuotaSettings::default()
    };
    // 60 simulated seconds a real one: the simulated hour ends a real minute from now.
    let world = limited(quota, 60.0).await;
    let token = installation_token(&world).await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        let (status, headers, _) = call(&world, Method::GET, RUNNERS, &token, None).await;
        assert_eq!(status, 200);
        assert_eq!(headers["x-ratelimit-resource"], "core");
        assert_eq!(header(&headers, "x-ratelimit-limit"), Some(3));
        let reset = header(&headers, "x-ratelimit-reset").unwrap();
        let now = now_epoch();
        assert!(
            reset >= now + 55 && reset <= now + 61,
            "reset {reset}, now {now}"
        );
        seen.push((
            header(&headers, "x-ratelimit-remaining").unwrap(),
            header(&headers, "x-ratelimit-used").unwrap(),
        ));
    }
    assert_eq!(seen, [(2, 1), (1, 2), (0, 3)]);
    let (status, headers, body) = call(&world, Method::GET, RUNNERS, &token, None).await;
    assert_eq!(status, 403);
    assert_eq!(header(&headers, "x-ratelimit-remaining"), Some(0));
    assert!(
        headers.get("retry-after").is_none(),
        "GitHub sends none for the primary limit"
    );
    assert_eq!(
        body["message"],
        "API rate limit exceeded for installation ID 4242."
    );
    assert_eq!(
        world.github.refused(),
        vec![(31_337, LimitKind::Primary, 1)]
    );
}

#[tokio::test]
async fn each_app_signs_with_its_own_key_and_mints_only_its_own_installations_tokens() {
    let key = |name: &str| std::fs::read(fixture(name)).unwrap();
    let (test_key, second_key) = (
        key("github-app-test-key.pub.pem"),
        key("github-app-second-key.pub.pem"),
    );
    let world = world_with(Settings {
        apps: (0..4)
            .map(|n| {
                AppSettings::nth(
                    n,
                    if n % 2 == 0 {
                        test_key.clone()
                    } else {
                        second_key.clone()
                    },
                )
            })
            .collect(),
        ..Settings::default()
    })
    .await;
    let second = jwt("github-app-second-key.pem", 31_338);
    let mint = |installation: u64| format!("/app/installations/{installation}/access_tokens");
    let (status, token) = github(&world, Method::POST, &mint(4243), Some(&second), None).await;
    assert_eq!(status, 201);
    // The right App with the wrong key, or the right key naming another App: refused.
    let forged = jwt("github-app-test-key.pem", 31_338);
    assert_eq!(
        github(&world, Method::POST, &mint(4243), Some(&forged), None)
            .await
            .0,
        401
    );
    // Another App's installation: not found.
    assert_eq!(
        github(&world, Method::POST, &mint(4242), Some(&second), None)
            .await
            .0,
        404
    );
    // App 3 reuses the test key: verification is by (iss, key).
    let third = jwt("github-app-test-key.pem", 31_339);
    let (status, found) = github(
        &world,
        Method::GET,
        "/orgs/sim-org/installation",
        Some(&third),
        None,
    )
    .await;
    assert_eq!(
        (status, found["id"].as_u64(), found["app_id"].as_u64()),
        (200, Some(4244), Some(31_339))
    );
    assert_eq!(
        github(&world, Method::POST, &mint(4244), Some(&third), None)
            .await
            .0,
        201
    );
    // An App sees its own installations only.
    let own = github(
        &world,
        Method::GET,
        "/app/installations/4244",
        Some(&third),
        None,
    )
    .await;
    assert_eq!((own.0, own.1["app_id"].as_u64()), (200, Some(31_339)));
    let other = github(
        &world,
        Method::GET,
        "/app/installations/4243",
        Some(&third),
        None,
    )
    .await;
    assert_eq!(other.0, 404);
    // The second App's token serves the org.
    let token = token["token"].as_str().unwrap();
    assert_eq!(
        github(&world, Method::GET, RUNNERS, Some(token), None)
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn every_call_as_an_app_or_its_installations_spends_that_apps_points_alone() {
    let second_key = std::fs::read(fixture("github-app-second-key.pub.pem")).unwrap();
    let world = world_with(Settings {
        time_scale: 1.0,
        apps: vec![
            AppSettings::nth(0, Vec::new()),
            AppSettings::nth(1, second_key),
        ],
        quota: Some(QuotaSettings {
            points_per_window: 10,
            ..QuotaSettings::default()
        }),
        ..Settings::default()
    })
    .await;
    // App 1: the mint (5) and a JIT config (5) spend its window.
    let first = installation_token(&world).await;
    assert_eq!(
        call(&world, Method::POST, JIT, &first, Some(jit_body("a")))
            .await
            .0,
        201
    );
    assert_eq!(
        call(&world, Method::GET, RUNNERS, &first, None).await.0,
        403
    );
    // App 2 has its own.
    let app2 = jwt("github-app-second-key.pem", 31_338);
    let (status, token) = github(
        &world,
        Method::POST,
        "/app/installations/4243/access_tokens",
        Some(&app2),
        None,
    )
    .await;
    assert_eq!(status, 201);
    let token = token["token"].as_str().unwrap();
    assert_eq!(
        call(&world, Method::POST, JIT, token, Some(jit_body("b")))
            .await
            .0,
        201
    );
    assert_eq!(
        world.github.refused(),
        vec![(31_337, LimitKind::Secondary, 1)]
    );
}

fn run_task(token: &str) -> Value {
    json!({"cluster": "sim", "taskDefinition": "runner", "launchType": "FARGATE",
        "clientToken": token,
        "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-1"]}}})
}

#[tokio::test]
async fn runtask_is_throttled_beyond_its_rate_and_when_the_fargate_launch_bucket_is_empty() {
    let world = world_with(Settings {
        time_scale: 1.0,
        ecs_limits: Some(EcsLimits {
            run_task_per_sec: 1_000.0,
            run_task_burst: 1_000.0,
            fargate_capacity: 5.0,
            fargate_per_sec: 0.01,
            ..EcsLimits::default()
        }),
        ..Settings::default()
    })
    .await;
    let mut statuses = Vec::new();
    for i in 0..8 {
        let (status, body) = ecs(&world, "RunTask", run_task(&format!("t{i}"))).await;
        statuses.push((status, body["__type"].as_str().map(str::to_string)));
    }
    let throttled = Some("ThrottlingException".to_string());
    assert_eq!(statuses[..5], vec![(200, None); 5][..]);
    assert_eq!(statuses[5..], vec![(400, throttled.clone()); 3][..]);
    // A replay of a client token launches nothing: it answers its task.
    assert_eq!(ecs(&world, "RunTask", run_task("t0")).await.0, 200);
    let by_limit = world.ecs.throttled_by_limit().unwrap();
    assert_eq!((by_limit.run_task, by_limit.fargate_launches), (0, 3));
    assert_eq!(world.with(|m| m.tasks.len()), 5);

    let world = world_with(Settings {
        time_scale: 1.0,
        ecs_limits: Some(EcsLimits::default()),
        ..Settings::default()
    })
    .await;
    // At once: 20 go through, the rest are throttled (a few may refill meanwhile, more on
    // a loaded machine).
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..40 {
        let url = world.ecs_url.clone();
        calls
            .spawn(async move { super::ecs_at(&url, "RunTask", run_task(&format!("u{i}"))).await });
    }
    let throttled = calls
        .join_all()
        .await
        .into_iter()
        .filter(|(status, error)| *status == 400 && error["__type"] == "ThrottlingException")
        .count() as u64;
    assert!(
        (10..=20).contains(&throttled),
        "{throttled} of 40 throttled"
    );
    // ListTasks has its own bucket (100 at once).
    assert_eq!(
        ecs(&world, "ListTasks", json!({"cluster": "sim"})).await.0,
        200
    );
    let expected = EcsThrottled {
        run_task: throttled,
        ..EcsThrottled::default()
    };
    assert_eq!(world.ecs.throttled_by_limit(), Some(expected));
}
