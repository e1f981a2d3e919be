//! The simulated APIs are as strict as the real ones where dockhand could get them wrong.

use std::path::PathBuf;

use dockhand_sim::{Settings, World};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name)
}

async fn world() -> World {
    let settings = Settings {
        app_public_key_pem: std::fs::read(fixture("github-app-test-key.pub.pem")).unwrap(),
        ..Settings::default()
    };
    World::start(settings).await.unwrap()
}

fn jwt(key: &str, iss: u64) -> String {
    let now = chrono::Utc::now().timestamp();
    let key = EncodingKey::from_rsa_pem(&std::fs::read(fixture(key)).unwrap()).unwrap();
    let claims = json!({"iat": now - 30, "exp": now + 540, "iss": iss});
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &key).unwrap()
}

async fn github(
    world: &World,
    method: reqwest::Method,
    path: &str,
    auth: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .request(method, format!("{}{path}", world.github_url))
        .header("user-agent", "sim-test")
        .header("accept", "application/vnd.github+json");
    if let Some(auth) = auth {
        request = request.bearer_auth(auth);
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let body = response.bytes().await.unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn github_wants_the_apps_jwt_then_an_installation_token_and_permitted_keys_only() {
    let world = world().await;
    let mint = "/app/installations/4242/access_tokens";
    let post = reqwest::Method::POST;
    assert_eq!(github(&world, post.clone(), mint, None, None).await.0, 401);
    let stranger = jwt("github-app-other-key.pem", 31337);
    assert_eq!(
        github(&world, post.clone(), mint, Some(&stranger), None)
            .await
            .0,
        401
    );
    let wrong_app = jwt("github-app-test-key.pem", 1);
    assert_eq!(
        github(&world, post.clone(), mint, Some(&wrong_app), None)
            .await
            .0,
        401
    );
    let (status, token) = github(
        &world,
        post.clone(),
        mint,
        Some(&jwt("github-app-test-key.pem", 31337)),
        None,
    )
    .await;
    assert_eq!(status, 201);
    let token = token["token"].as_str().unwrap().to_string();

    let jit = "/orgs/sim-org/actions/runners/generate-jitconfig";
    let body = json!({"name": "r1", "runner_group_id": 1, "labels": ["self-hosted"], "work_folder": "_work"});
    assert_eq!(
        github(
            &world,
            post.clone(),
            jit,
            Some(&wrong_app),
            Some(body.clone())
        )
        .await
        .0,
        401
    );
    let mut extra = body.clone();
    extra["ephemeral"] = json!(true);
    assert_eq!(
        github(&world, post.clone(), jit, Some(&token), Some(extra))
            .await
            .0,
        422
    );
    assert_eq!(
        github(&world, post.clone(), jit, Some(&token), Some(body.clone()))
            .await
            .0,
        201
    );
    assert_eq!(
        github(&world, post, jit, Some(&token), Some(body)).await.0,
        409
    );
    let other_org = "/orgs/another-org/actions/runners";
    assert_eq!(
        github(&world, reqwest::Method::GET, other_org, Some(&token), None)
            .await
            .0,
        403
    );
}

async fn ecs(world: &World, operation: &str, body: Value) -> (u16, Value) {
    ecs_at(&world.ecs_url, operation, body).await
}

async fn ecs_at(url: &str, operation: &str, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(url)
        .header(
            "x-amz-target",
            format!("AmazonEC2ContainerServiceV20141113.{operation}"),
        )
        .header("content-type", "application/x-amz-json-1.1")
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=x/20260101/us-east-1/ecs/aws4_request",
        )
        .header("x-amz-date", "20260101T000000Z")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.bytes().await.unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn ecs_refuses_what_the_real_api_refuses_and_throttles() {
    let world = world().await;
    let arns: Vec<String> = (0..101)
        .map(|i| format!("arn:aws:ecs:us-east-1:123456789012:task/sim/{i}"))
        .collect();
    let (status, error) = ecs(
        &world,
        "DescribeTasks",
        json!({"cluster": "sim", "tasks": arns}),
    )
    .await;
    assert_eq!(
        (status, error["__type"].as_str()),
        (400, Some("InvalidParameterException"))
    );
    let filters =
        json!({"cluster": "sim", "startedBy": "dockhand-job-1", "desiredStatus": "STOPPED"});
    assert_eq!(ecs(&world, "ListTasks", filters).await.0, 400);
    let (status, error) = ecs(&world, "ListTasks", json!({"cluster": "elsewhere"})).await;
    assert_eq!(
        (status, error["__type"].as_str()),
        (400, Some("ClientException"))
    );
    let both = json!({"cluster": "sim", "taskDefinition": "runner", "launchType": "FARGATE",
        "capacityProviderStrategy": [{"capacityProvider": "FARGATE_SPOT"}]});
    assert_eq!(ecs(&world, "RunTask", both).await.0, 400);
    let unsigned = reqwest::Client::new()
        .post(&world.ecs_url)
        .header(
            "x-amz-target",
            "AmazonEC2ContainerServiceV20141113.ListTasks",
        )
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status().as_u16(), 403);
    // At once, not one after another: on a loaded machine 40 calls in a row can take
    // longer than the bucket takes to refill.
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..40 {
        let url = world.ecs_url.clone();
        calls.spawn(async move { ecs_at(&url, "ListTasks", json!({"cluster": "sim"})).await });
    }
    let throttled = calls
        .join_all()
        .await
        .into_iter()
        .filter(|(status, error)| *status == 400 && error["__type"] == "ThrottlingException")
        .count();
    assert!(throttled > 0, "40 calls at once, 20 a second allowed");
}
