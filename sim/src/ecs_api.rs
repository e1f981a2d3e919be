//! The simulated ECS API (JSON 1.1, `X-Amz-Target: AmazonEC2ContainerServiceV20141113.*`),
//! with ECS's rules where dockhand could get them wrong: DescribeTasks takes at most 100
//! ARNs, ListTasks pages at most 100 and takes `startedBy` only as its sole filter, RunTask
//! takes a launch type or a capacity provider strategy but not both, tags follow ECS's
//! limits and come back only from a DescribeTasks that includes `TAGS`, and every
//! operation is throttled beyond its rate.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::faults::{Fault, Faults};
use crate::model::{EcsError, Model, RunTaskRequest};

const TARGET_PREFIX: &str = "AmazonEC2ContainerServiceV20141113.";
const JSON_1_1: &str = "application/x-amz-json-1.1";
/// The environment variable that carries the runner's JIT config.
pub const JIT_CONFIG_ENV: &str = "ACTIONS_RUNNER_INPUT_JITCONFIG";

pub struct EcsApi {
    pub model: Arc<Mutex<Model>>,
    pub faults: Faults,
    /// Per operation: tokens left and when they were last refilled.
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
    rate: f64,
    pub throttled: Mutex<u64>,
    /// Calls by operation, throttled and failed ones included.
    calls: Mutex<BTreeMap<&'static str, u64>>,
}

impl EcsApi {
    pub fn new(model: Arc<Mutex<Model>>, faults: Faults) -> Self {
        let rate = f64::from(model.lock().unwrap().settings.ecs_calls_per_sec.max(1));
        Self {
            model,
            faults,
            buckets: Mutex::default(),
            rate,
            throttled: Mutex::default(),
            calls: Mutex::default(),
        }
    }

    /// Calls so far, by operation (`RunTask`, `ListTasks`, ...; `other` for the rest).
    pub fn calls(&self) -> Vec<(&'static str, u64)> {
        let calls = self.calls.lock().unwrap();
        calls.iter().map(|(op, n)| (*op, *n)).collect()
    }

    /// A token bucket per operation: `rate` a second, bursts of `rate`.
    fn admit(&self, operation: &str) -> bool {
        let mut buckets = self.buckets.lock().unwrap();
        let now = Instant::now();
        let (tokens, last) = buckets
            .entry(operation.to_string())
            .or_insert((self.rate, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.rate).min(self.rate);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            *self.throttled.lock().unwrap() += 1;
            false
        }
    }
}

fn answer(status: StatusCode, body: Value) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, JSON_1_1.to_string()),
            (
                header::HeaderName::from_static("x-amzn-requestid"),
                uuid::Uuid::new_v4().to_string(),
            ),
        ],
        body.to_string(),
    )
        .into_response()
}

fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    answer(status, json!({"__type": kind, "message": message}))
}

fn client_error(e: &EcsError) -> Response {
    error(StatusCode::BAD_REQUEST, e.type_name(), e.message())
}

pub async fn handle(State(api): State<Arc<EcsApi>>, headers: HeaderMap, body: Bytes) -> Response {
    let signed = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("AWS4-HMAC-SHA256 Credential="))
        && headers.contains_key("x-amz-date");
    if !signed {
        return error(
            StatusCode::FORBIDDEN,
            "MissingAuthenticationTokenException",
            "Missing Authentication Token",
        );
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let Some(operation) = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.strip_prefix(TARGET_PREFIX))
        .map(str::to_string)
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "UnknownOperationException",
            "no X-Amz-Target",
        );
    };
    if content_type != Some(JSON_1_1) {
        return error(
            StatusCode::BAD_REQUEST,
            "SerializationException",
            "expected application/x-amz-json-1.1",
        );
    }
    let Ok(Value::Object(request)) = serde_json::from_slice::<Value>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "SerializationException",
            "the body is not a JSON object",
        );
    };
    let request = Value::Object(request);
    *api.calls
        .lock()
        .unwrap()
        .entry(static_name(&operation))
        .or_default() += 1;
    if !api.admit(&operation) {
        return error(
            StatusCode::BAD_REQUEST,
            "ThrottlingException",
            "Rate exceeded",
        );
    }
    let key = match operation.as_str() {
        "RunTask" => request.get("clientToken").or(request.get("startedBy")),
        "StopTask" => request.get("task"),
        _ => None,
    }
    .and_then(Value::as_str)
    .map_or_else(|| body_key(&body), str::to_string);
    let fault = api.faults.decide(static_name(&operation), &key);
    if fault == Fault::Error {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ServerException",
            "injected server error",
        );
    }
    let response = {
        let mut model = api.model.lock().unwrap();
        if let Err(e) = check_cluster(&model, &request) {
            client_error(&e)
        } else {
            match operation.as_str() {
                "RunTask" => run_task(&mut model, &request),
                "ListTasks" => list_tasks(&model, &request),
                "DescribeTasks" => describe_tasks(&model, &request),
                "StopTask" => stop_task(&mut model, &request),
                other => error(StatusCode::BAD_REQUEST, "UnknownOperationException", other),
            }
        }
    };
    if fault == Fault::Timeout {
        tokio::time::sleep(api.faults.hold()).await;
    }
    response
}

fn static_name(operation: &str) -> &'static str {
    match operation {
        "RunTask" => "RunTask",
        "ListTasks" => "ListTasks",
        "DescribeTasks" => "DescribeTasks",
        "StopTask" => "StopTask",
        _ => "other",
    }
}

fn body_key(body: &[u8]) -> String {
    String::from_utf8_lossy(body).into_owned()
}

fn check_cluster(model: &Model, request: &Value) -> Result<(), EcsError> {
    let cluster = request
        .get("cluster")
        .and_then(Value::as_str)
        .unwrap_or("default");
    if cluster == model.settings.cluster || cluster == model.cluster_arn() {
        Ok(())
    } else {
        Err(EcsError::Client(format!("Cluster not found: {cluster}")))
    }
}

fn str_field<'a>(request: &'a Value, name: &str) -> Option<&'a str> {
    request.get(name).and_then(Value::as_str)
}

fn run_task(model: &mut Model, request: &Value) -> Response {
    let invalid = |m: &str| client_error(&EcsError::InvalidParameter(m.into()));
    let Some(task_definition) = str_field(request, "taskDefinition") else {
        return invalid("taskDefinition is required");
    };
    if request
        .get("count")
        .and_then(Value::as_u64)
        .is_some_and(|c| c != 1)
    {
        return invalid("the simulator starts one task per RunTask");
    }
    let started_by = str_field(request, "startedBy");
    if started_by.is_some_and(|s| s.len() > 36) {
        return invalid("startedBy must be at most 36 characters");
    }
    let client_token = str_field(request, "clientToken");
    if client_token.is_some_and(|t| t.is_empty() || t.len() > 64) {
        return invalid("clientToken must be 1 to 64 characters");
    }
    let launch_type = str_field(request, "launchType");
    let strategy = request
        .get("capacityProviderStrategy")
        .and_then(Value::as_array);
    if launch_type.is_some() && strategy.is_some() {
        return invalid(
            "Specifying both a launch type and capacity provider strategy is not supported.",
        );
    }
    let capacity_provider = strategy
        .and_then(|s| s.first())
        .and_then(|s| s.get("capacityProvider"))
        .and_then(Value::as_str);
    let fargate = launch_type == Some("FARGATE")
        || capacity_provider.is_some_and(|p| p.starts_with("FARGATE"));
    if fargate
        && request
            .pointer("/networkConfiguration/awsvpcConfiguration/subnets")
            .is_none()
    {
        return invalid(
            "Network Configuration must be provided when networkMode 'awsvpc' is specified.",
        );
    }
    let tags = match tags(request) {
        Ok(tags) => tags,
        Err(message) => return invalid(&message),
    };
    let overrides = request.get("overrides").cloned().unwrap_or(Value::Null);
    let jit = overrides
        .get("containerOverrides")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("environment").and_then(Value::as_array))
        .flatten()
        .find(|e| e.get("name").and_then(Value::as_str) == Some(JIT_CONFIG_ENV))
        .and_then(|e| e.get("value"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let arn = model.run_task(RunTaskRequest {
        task_definition: task_definition.to_string(),
        started_by: started_by.map(str::to_string),
        client_token: client_token.map(str::to_string),
        launch_type: launch_type
            .map(str::to_string)
            .or_else(|| fargate.then(|| "FARGATE".to_string())),
        capacity_provider: capacity_provider.map(str::to_string),
        jit,
        overrides,
        tags,
        managed_tags: request.get("enableECSManagedTags") == Some(&Value::Bool(true)),
    });
    answer(
        StatusCode::OK,
        json!({"tasks": [model.task_json(&arn, false)], "failures": []}),
    )
}

/// RunTask's `tags`, within ECS's limits: at most 50, keys 1 to 128 characters and unique,
/// values at most 256, and no `aws:` prefix on either (it is ECS's own).
fn tags(request: &Value) -> Result<Vec<(String, String)>, String> {
    let Some(tags) = request.get("tags") else {
        return Ok(Vec::new());
    };
    let tags = tags.as_array().ok_or("tags must be a list")?;
    if tags.len() > 50 {
        return Err("Tags cannot be more than 50.".into());
    }
    let reserved = |s: &str| s.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("aws:"));
    let mut out: Vec<(String, String)> = Vec::new();
    for tag in tags {
        let key = tag.get("key").and_then(Value::as_str).unwrap_or_default();
        let value = match tag.get("value") {
            None => "",
            Some(v) => v.as_str().ok_or("a tag's value must be a string")?,
        };
        if key.is_empty() || key.chars().count() > 128 {
            return Err("Tag keys must be 1 to 128 characters.".into());
        }
        if value.chars().count() > 256 {
            return Err("Tag values must be at most 256 characters.".into());
        }
        if reserved(key) || reserved(value) {
            return Err("Tag keys and values cannot start with aws: (reserved).".into());
        }
        if out.iter().any(|(k, _)| k == key) {
            return Err(format!("Duplicate tag key: {key}"));
        }
        out.push((key.to_string(), value.to_string()));
    }
    Ok(out)
}

fn list_tasks(model: &Model, request: &Value) -> Response {
    let invalid = |m: &str| client_error(&EcsError::InvalidParameter(m.into()));
    let started_by = str_field(request, "startedBy");
    let others = [
        "family",
        "serviceName",
        "containerInstance",
        "launchType",
        "desiredStatus",
    ];
    if started_by.is_some() && others.iter().any(|f| request.get(*f).is_some()) {
        return invalid("startedBy must be the only filter when it is specified");
    }
    if others[..4].iter().any(|f| request.get(*f).is_some()) {
        return invalid("the simulator filters ListTasks by startedBy or desiredStatus only");
    }
    let max = request
        .get("maxResults")
        .and_then(Value::as_u64)
        .unwrap_or(100);
    if !(1..=100).contains(&max) {
        return invalid("maxResults must be between 1 and 100");
    }
    let desired_stopped = match str_field(request, "desiredStatus") {
        None | Some("RUNNING") => false,
        Some("STOPPED") => true,
        Some(other) => {
            return invalid(&format!(
                "desiredStatus {other} is not RUNNING, PENDING or STOPPED"
            ));
        }
    };
    let start = match str_field(request, "nextToken") {
        None => 0,
        Some(token) => match token.strip_prefix("sim-page-").and_then(|n| n.parse().ok()) {
            Some(n) => n,
            None => return invalid("Invalid nextToken"),
        },
    };
    let (arns, next) = model.list_tasks(started_by, desired_stopped, start, max as usize);
    let mut body = json!({"taskArns": arns});
    if let Some(next) = next {
        body["nextToken"] = json!(format!("sim-page-{next}"));
    }
    answer(StatusCode::OK, body)
}

fn describe_tasks(model: &Model, request: &Value) -> Response {
    let Some(arns) = request.get("tasks").and_then(Value::as_array) else {
        return client_error(&EcsError::InvalidParameter("Tasks cannot be empty.".into()));
    };
    if arns.is_empty() {
        return client_error(&EcsError::InvalidParameter("Tasks cannot be empty.".into()));
    }
    if arns.len() > 100 {
        return client_error(&EcsError::InvalidParameter(
            "Tasks cannot be longer than 100.".into(),
        ));
    }
    let include_tags = match request.get("include") {
        None => false,
        Some(Value::Array(fields)) => {
            if let Some(other) = fields.iter().find(|f| f.as_str() != Some("TAGS")) {
                return client_error(&EcsError::InvalidParameter(format!(
                    "include: {other} is not a valid value (TAGS)"
                )));
            }
            !fields.is_empty()
        }
        Some(_) => {
            return client_error(&EcsError::InvalidParameter("include must be a list".into()));
        }
    };
    let mut tasks = Vec::new();
    let mut failures = Vec::new();
    for arn in arns.iter().filter_map(Value::as_str) {
        let full = if arn.starts_with("arn:") {
            arn.to_string()
        } else {
            format!(
                "arn:aws:ecs:us-east-1:123456789012:task/{}/{arn}",
                model.settings.cluster
            )
        };
        if model.tasks.contains_key(&full) {
            tasks.push(model.task_json(&full, include_tags));
        } else {
            failures.push(json!({"arn": arn, "reason": "MISSING"}));
        }
    }
    answer(
        StatusCode::OK,
        json!({"tasks": tasks, "failures": failures}),
    )
}

fn stop_task(model: &mut Model, request: &Value) -> Response {
    let Some(task) = str_field(request, "task") else {
        return client_error(&EcsError::InvalidParameter("task is required".into()));
    };
    let reason = str_field(request, "reason").unwrap_or_default();
    if reason.len() > 255 {
        return client_error(&EcsError::InvalidParameter(
            "reason must be at most 255 characters".into(),
        ));
    }
    match model.stop_task(task, reason) {
        Ok(()) => answer(
            StatusCode::OK,
            json!({"task": model.task_json(task, false)}),
        ),
        Err(e) => client_error(&e),
    }
}
