//! The simulated APIs are as strict as the real ones where dockhand could get them wrong.

mod deliveries;
mod installations;
mod jobs;
mod limits;
mod runners;

use std::path::PathBuf;
use std::time::Duration;

use dockhand_sim::{Settings, World};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name)
}

async fn world() -> World {
    world_with(Settings::default()).await
}

/// A world with these settings, its first App's public key the test key's (unless the
/// settings give it one).
async fn world_with(mut settings: Settings) -> World {
    if settings.apps[0].public_key_pem.is_empty() {
        settings.apps[0].public_key_pem =
            std::fs::read(fixture("github-app-test-key.pub.pem")).unwrap();
    }
    World::start(settings).await.unwrap()
}

/// A world whose tasks come up at once and whose jobs run for `job` of real time.
async fn quick_world(job: Duration) -> World {
    let settings = Settings::default();
    let job = job.mul_f64(settings.time_scale);
    world_with(Settings {
        task_start: (Duration::ZERO, Duration::ZERO),
        job_duration: (job, job),
        ..settings
    })
    .await
}

/// An installation token for the simulated App's one installation.
async fn installation_token(world: &World) -> String {
    let app = jwt("github-app-test-key.pem", 31337);
    let mint = "/app/installations/4242/access_tokens";
    let (status, token) = github(world, reqwest::Method::POST, mint, Some(&app), None).await;
    assert_eq!(status, 201);
    token["token"].as_str().unwrap().to_string()
}

/// Registers runner `name` and starts its task (tagged as dockhand tags them), as dockhand
/// launches one. Returns the runner's id and the task's ARN.
fn launch(world: &World, name: &str) -> (u64, String) {
    let mut model = world.model.lock().unwrap();
    let labels = model.settings.labels.clone();
    let (runner, jit) = model.register_jit(name, labels, 1).unwrap();
    let arn = model.run_task(dockhand_sim::model::RunTaskRequest {
        task_definition: "runner".into(),
        jit: Some(jit),
        tags: vec![("dockhand:runner".into(), name.into())],
        ..Default::default()
    });
    (runner["id"].as_u64().unwrap(), arn)
}

/// Polls `check` every 20 ms for up to 10 s.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..500 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("not within 10 s: {what}");
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

/// A `GET` of a list page: its status, its `Link` header and its body.
async fn github_page(world: &World, path: &str, token: &str) -> (u16, Option<String>, Value) {
    let response = reqwest::Client::new()
        .get(format!("{}{path}", world.github_url))
        .header("user-agent", "sim-test")
        .header("accept", "application/vnd.github+json")
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let link = response
        .headers()
        .get("link")
        .map(|l| l.to_str().unwrap().to_string());
    let body = response.bytes().await.unwrap();
    (
        status,
        link,
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
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

#[tokio::test]
async fn describe_tasks_shows_a_tasks_tags_only_when_asked_to_include_them() {
    let world = world().await;
    let run = |tags: Value| {
        json!({"cluster": "sim", "taskDefinition": "runner", "launchType": "FARGATE",
            "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-1"]}},
            "enableECSManagedTags": true, "tags": tags})
    };
    let tags = json!([
        {"key": "dockhand:runner", "value": "dh-1"},
        {"key": "dockhand:job-id", "value": "8200000000"},
        {"key": "dockhand:pool", "value": "linux-x64"},
    ]);
    let (status, started) = ecs(&world, "RunTask", run(tags.clone())).await;
    assert_eq!(status, 200, "{started}");
    let arn = started["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    assert!(started["tasks"][0].get("tags").is_none(), "{started}");

    let describe = |include: Option<Value>| {
        let mut body = json!({"cluster": "sim", "tasks": [arn, "arn:aws:ecs:us-east-1:123456789012:task/sim/gone"]});
        if let Some(include) = include {
            body["include"] = include;
        }
        ecs(&world, "DescribeTasks", body)
    };
    let (status, plain) = describe(None).await;
    assert_eq!(status, 200);
    assert!(plain["tasks"][0].get("tags").is_none(), "{plain}");
    assert_eq!(plain["failures"][0]["reason"], "MISSING");
    let (_, tagged) = describe(Some(json!(["TAGS"]))).await;
    let mut expected = tags.as_array().unwrap().clone();
    expected.push(json!({"key": "aws:ecs:clusterName", "value": "sim"}));
    assert_eq!(tagged["tasks"][0]["tags"], Value::Array(expected));
    assert!(tagged["tasks"][0]["createdAt"].is_f64());
    assert_eq!(describe(Some(json!(["EVERYTHING"]))).await.0, 400);

    let (_, listed) = ecs(
        &world,
        "ListTasks",
        json!({"cluster": "sim", "desiredStatus": "RUNNING", "maxResults": 100}),
    )
    .await;
    assert_eq!(listed["taskArns"], json!([arn]));
    for bad in [
        json!([{"key": "aws:owner", "value": "x"}]),
        json!([{"key": "", "value": "x"}]),
        json!([{"key": "k", "value": "x"}, {"key": "k", "value": "y"}]),
        Value::Array((0..51).map(|i| json!({"key": format!("k{i}")})).collect()),
    ] {
        let (status, error) = ecs(&world, "RunTask", run(bad.clone())).await;
        assert_eq!(
            (status, error["__type"].as_str()),
            (400, Some("InvalidParameterException")),
            "{bad}"
        );
    }
}
