//! A fault-injecting proxy in front of moto's ECS. moto never answers RunTask with
//! `failures[]` (Fargate always has room; EC2 without room answers an empty list, or a 500
//! with no instances at all), so the proxy answers RunTask for chosen capacity providers the
//! way ECS does when it has no capacity, and can throttle RunTask. It also refuses, as ECS
//! does, the requests moto lets through: ListTasks with `startedBy` beside another filter,
//! DescribeTasks with more than 100 tasks. Every other request goes to moto unchanged, and
//! every request is recorded.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use dockhand::config::AwsSettings;
use tokio::task::JoinHandle;

use crate::common::{moto_aws, moto_url};

/// What Fargate says when it has no capacity (ECS's documented failure reason).
pub const FARGATE_NO_CAPACITY: &str = "Capacity is unavailable at this time. Please try again later or in a different availability zone";

const JSON_1_1: &str = "application/x-amz-json-1.1";

/// The ListTasks filters ECS refuses beside `startedBy` ("When you specify `startedBy` as
/// the filter, it must be the only filter that you use"). `cluster` is not among them: it
/// names where to look.
const FILTERS_EXCLUDING_STARTED_BY: [&str; 5] = [
    "family",
    "containerInstance",
    "serviceName",
    "desiredStatus",
    "launchType",
];

/// DescribeTasks takes at most this many tasks.
const MAX_DESCRIBE_TASKS: usize = 100;

/// One request the proxy saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The ECS operation, e.g. `RunTask`.
    pub operation: String,
    /// RunTask's first capacity provider, if it named one.
    pub capacity_provider: Option<String>,
    /// Answered by the proxy rather than moto.
    pub injected: bool,
    /// The JSON request body (`Null` if it was not JSON).
    pub request: serde_json::Value,
}

#[derive(Default)]
struct Faults {
    /// Capacity provider → the failure reason RunTask answers for it.
    failing_providers: HashMap<String, String>,
    throttle_run_task: bool,
    /// ListTasks answers 500 ServerException.
    fail_list_tasks: bool,
    /// Hold the next RunTask until released; `true` forwards it to moto first, so the task
    /// exists but its caller never hears of it.
    hold_next_run_task: Option<bool>,
    /// ListTasks answers at most this many ARNs a page (moto answers them all at once).
    list_tasks_page: Option<usize>,
    /// Task ARN → fields DescribeTasks answers over moto's.
    task_patches: HashMap<String, serde_json::Value>,
    calls: Vec<Call>,
}

/// Signals between a test and a held RunTask.
#[derive(Default)]
struct Hold {
    held: tokio::sync::Notify,
    released: tokio::sync::Notify,
}

#[derive(Clone)]
struct Proxy {
    faults: Arc<Mutex<Faults>>,
    hold: Arc<Hold>,
    upstream: String,
    http: reqwest::Client,
}

/// The running proxy; it stops when dropped.
pub struct FaultyEcs {
    pub url: String,
    faults: Arc<Mutex<Faults>>,
    hold: Arc<Hold>,
    server: JoinHandle<()>,
}

impl Drop for FaultyEcs {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FaultyEcs {
    /// A proxy on a free loopback port, forwarding to the moto_server of this test run.
    pub async fn start() -> Self {
        let faults = Arc::new(Mutex::new(Faults::default()));
        let hold = Arc::new(Hold::default());
        let proxy = Proxy {
            faults: faults.clone(),
            hold: hold.clone(),
            upstream: moto_url(),
            http: reqwest::Client::new(),
        };
        let app = Router::new().fallback(handle).with_state(proxy);
        let (url, server) = crate::common::serve_on_loopback(app).await;
        Self {
            url,
            faults,
            hold,
            server,
        }
    }

    /// Holds the next RunTask, as if its caller crashed during the call: with `forward`
    /// the task is created in moto first (the crash comes after ECS acted), without it the
    /// request never reaches ECS.
    pub fn hold_run_task(&self, forward: bool) {
        self.faults.lock().unwrap().hold_next_run_task = Some(forward);
    }

    /// Waits until a RunTask is being held.
    pub async fn wait_for_held_run_task(&self) {
        tokio::time::timeout(
            std::time::Duration::from_secs(30),
            self.hold.held.notified(),
        )
        .await
        .expect("a RunTask reached the proxy");
    }

    /// Lets the held RunTask answer (its caller is gone by then).
    pub fn release_run_task(&self) {
        self.hold.released.notify_one();
    }

    /// RunTask with `provider` first in its capacityProviderStrategy answers 200 with this
    /// failure reason and no task.
    pub fn fail_run_task_on(&self, provider: &str, reason: &str) {
        let mut faults = self.faults.lock().unwrap();
        faults
            .failing_providers
            .insert(provider.to_string(), reason.to_string());
    }

    /// ListTasks answers in pages of `size` ARNs, with a `nextToken` while more follow, as
    /// ECS does past its page size (moto answers every ARN at once).
    pub fn page_list_tasks(&self, size: usize) {
        self.faults.lock().unwrap().list_tasks_page = Some(size);
    }

    /// DescribeTasks answers these fields over moto's for the task `arn`: what moto never
    /// shows (a PENDING task, `startedAt`, `createdAt`, `stopCode`, an exit code).
    pub fn patch_task(&self, arn: &str, fields: serde_json::Value) {
        let mut faults = self.faults.lock().unwrap();
        let patch = faults
            .task_patches
            .entry(arn.to_string())
            .or_insert_with(|| serde_json::json!({}));
        for (key, value) in fields.as_object().expect("an object of fields") {
            patch[key] = value.clone();
        }
    }

    /// Every RunTask answers 400 ThrottlingException.
    pub fn throttle_run_task(&self) {
        self.faults.lock().unwrap().throttle_run_task = true;
    }

    /// While `on`, every ListTasks answers 500 ServerException (ECS's own fault).
    pub fn fail_list_tasks(&self, on: bool) {
        self.faults.lock().unwrap().fail_list_tasks = on;
    }

    /// RunTask and ListTasks answer as moto does again: no capacity failures, throttling
    /// or ListTasks failures (holds and paging stay).
    pub fn clear_faults(&self) {
        let mut faults = self.faults.lock().unwrap();
        faults.failing_providers.clear();
        faults.throttle_run_task = false;
        faults.fail_list_tasks = false;
    }

    /// Every request so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.faults.lock().unwrap().calls.clone()
    }

    /// The RunTask requests so far.
    pub fn run_task_calls(&self) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.operation == "RunTask")
            .collect()
    }

    /// moto's AWS settings with the ECS endpoint pointed at the proxy.
    pub fn aws_settings(&self) -> AwsSettings {
        let mut aws = moto_aws();
        aws.ecs.endpoint_url = Some(self.url.clone());
        aws
    }
}

async fn handle(
    State(proxy): State<Proxy>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // awsJson 1.1: `X-Amz-Target: AmazonEC2ContainerServiceV20141113.RunTask`.
    let operation = headers
        .get("x-amz-target")
        .and_then(|t| t.to_str().ok())
        .and_then(|t| t.rsplit('.').next())
        .unwrap_or_default()
        .to_string();
    let request: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let capacity_provider = request["capacityProviderStrategy"][0]["capacityProvider"]
        .as_str()
        .map(String::from);
    let (held, injected, page, patches) = {
        let mut faults = proxy.faults.lock().unwrap();
        let patches = (operation == "DescribeTasks").then(|| faults.task_patches.clone());
        let page = faults
            .list_tasks_page
            .filter(|_| operation == "ListTasks")
            .map(|size| (size, request["nextToken"].as_str().map(String::from)));
        let held = if operation == "RunTask" {
            faults.hold_next_run_task.take()
        } else {
            None
        };
        let injected = if let Some(refusal) = breaks_ecs_rules(&operation, &request) {
            Some(invalid_parameter(refusal))
        } else if operation == "ListTasks" && faults.fail_list_tasks {
            Some(server_fault())
        } else if operation != "RunTask" || held.is_some() {
            None
        } else if faults.throttle_run_task {
            Some(throttled())
        } else {
            capacity_provider
                .as_ref()
                .and_then(|p| faults.failing_providers.get(p).map(|r| (p, r)))
                .map(|(provider, reason)| no_capacity(provider, reason))
        };
        faults.calls.push(Call {
            operation,
            capacity_provider,
            injected: injected.is_some(),
            request: request.clone(),
        });
        (held, injected, page, patches)
    };
    if let Some(forward_first) = held {
        return hold(&proxy, forward_first, method, uri, headers, body).await;
    }
    match (injected, page) {
        (Some(response), _) => response,
        (None, Some((size, token))) => {
            let all = forward(&proxy, method, uri, headers, body).await;
            one_page(all, size, token).await
        }
        (None, None) => {
            let answer = forward(&proxy, method, uri, headers, body).await;
            match patches {
                Some(patches) => described_as_ecs(answer, &request, &patches).await,
                None => answer,
            }
        }
    }
}

/// moto's DescribeTasks answer made ECS's: the patched fields over each task's, and a
/// `MISSING` failure for every task asked for that moto did not answer.
async fn described_as_ecs(
    answer: Response,
    request: &serde_json::Value,
    patches: &HashMap<String, serde_json::Value>,
) -> Response {
    let status = answer.status();
    let body = axum::body::to_bytes(answer.into_body(), usize::MAX)
        .await
        .expect("moto's DescribeTasks answer");
    if !status.is_success() {
        return (status, [(header::CONTENT_TYPE, JSON_1_1)], body).into_response();
    }
    let mut answer: serde_json::Value = serde_json::from_slice(&body).expect("a JSON answer");
    let mut answered = Vec::new();
    for task in answer["tasks"].as_array_mut().into_iter().flatten() {
        let arn = task["taskArn"].as_str().unwrap_or_default().to_string();
        if let Some(patch) = patches.get(&arn) {
            for (key, value) in patch.as_object().into_iter().flatten() {
                task[key] = value.clone();
            }
        }
        answered.push(arn);
    }
    let missing: Vec<serde_json::Value> = request["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_str())
        .filter(|t| {
            !answered
                .iter()
                .any(|a| a == t || a.ends_with(&format!("/{t}")))
        })
        .map(|t| serde_json::json!({"arn": t, "reason": "MISSING"}))
        .collect();
    answer["failures"] = missing.into();
    ([(header::CONTENT_TYPE, JSON_1_1)], answer.to_string()).into_response()
}

/// The page of moto's full ListTasks answer that `token` (an offset) points at.
async fn one_page(all: Response, size: usize, token: Option<String>) -> Response {
    let status = all.status();
    let body = axum::body::to_bytes(all.into_body(), usize::MAX)
        .await
        .expect("moto's ListTasks answer");
    if !status.is_success() {
        return (status, [(header::CONTENT_TYPE, JSON_1_1)], body).into_response();
    }
    let answer: serde_json::Value = serde_json::from_slice(&body).expect("a JSON answer");
    let arns = answer["taskArns"].as_array().cloned().unwrap_or_default();
    let start: usize = token.map_or(0, |t| t.parse().expect("a token this proxy gave"));
    let end = (start + size).min(arns.len());
    let mut page = serde_json::json!({ "taskArns": arns[start.min(end)..end] });
    if end < arns.len() {
        page["nextToken"] = end.to_string().into();
    }
    ([(header::CONTENT_TYPE, JSON_1_1)], page.to_string()).into_response()
}

async fn hold(
    proxy: &Proxy,
    forward_first: bool,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let answer = if forward_first {
        Some(forward(proxy, method, uri, headers, body).await)
    } else {
        None
    };
    proxy.hold.held.notify_one();
    proxy.hold.released.notified().await;
    answer.unwrap_or_else(|| StatusCode::SERVICE_UNAVAILABLE.into_response())
}

/// Why ECS would refuse this request although moto accepts it, if it would.
fn breaks_ecs_rules(operation: &str, request: &serde_json::Value) -> Option<String> {
    let present = |key: &str| !request[key].is_null();
    match operation {
        "ListTasks" if present("startedBy") => FILTERS_EXCLUDING_STARTED_BY
            .iter()
            .find(|filter| present(filter))
            .map(|filter| format!("startedBy must be the only filter; {filter} was also given")),
        "DescribeTasks" => request["tasks"]
            .as_array()
            .filter(|tasks| tasks.len() > MAX_DESCRIBE_TASKS)
            .map(|tasks| {
                format!(
                    "at most {MAX_DESCRIBE_TASKS} tasks per DescribeTasks; {} were given",
                    tasks.len()
                )
            }),
        _ => None,
    }
}

/// ECS's answer to a request it will not take.
fn invalid_parameter(message: String) -> Response {
    let body = serde_json::json!({"__type": "InvalidParameterException", "message": message});
    (
        StatusCode::BAD_REQUEST,
        [(header::CONTENT_TYPE, JSON_1_1)],
        body.to_string(),
    )
        .into_response()
}

fn no_capacity(provider: &str, reason: &str) -> Response {
    let body = serde_json::json!({
        "tasks": [],
        "failures": [{
            "arn": format!("arn:aws:ecs:us-east-1:123456789012:capacity-provider/{provider}"),
            "reason": reason,
        }],
    });
    ([(header::CONTENT_TYPE, JSON_1_1)], body.to_string()).into_response()
}

fn server_fault() -> Response {
    let body = r#"{"__type":"ServerException","message":"Service unavailable"}"#;
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [(header::CONTENT_TYPE, JSON_1_1)],
        body,
    )
        .into_response()
}

fn throttled() -> Response {
    let body = r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#;
    (
        StatusCode::BAD_REQUEST,
        [(header::CONTENT_TYPE, JSON_1_1)],
        body,
    )
        .into_response()
}

async fn forward(
    proxy: &Proxy,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    forward_to(&proxy.http, &proxy.upstream, method, uri, headers, body).await
}

/// Forwards a request to `upstream` (moto) and hands back its answer.
pub async fn forward_to(
    http: &reqwest::Client,
    upstream: &str,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut upstream_headers = headers;
    for hop in [header::HOST, header::CONTENT_LENGTH, header::CONNECTION] {
        upstream_headers.remove(hop);
    }
    let answer = http
        .request(method, format!("{upstream}{path}"))
        .headers(upstream_headers)
        .body(body)
        .send()
        .await
        .expect("moto answers the proxy");
    let status = answer.status();
    let mut headers = answer.headers().clone();
    for hop in [
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
        header::CONNECTION,
    ] {
        headers.remove(hop);
    }
    let body = answer.bytes().await.expect("moto's answer body");
    (status, headers, body).into_response()
}
