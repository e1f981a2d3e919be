//! The simulated ECS API (JSON 1.1, `X-Amz-Target: AmazonEC2ContainerServiceV20141113.*`),
//! with ECS's rules where dockhand could get them wrong: DescribeTasks takes at most 100
//! ARNs, ListTasks pages at most 100 and takes `startedBy` only as its sole filter, RunTask
//! takes a launch type or a capacity provider strategy but not both, tags follow ECS's
//! limits and come back only from a DescribeTasks that includes `TAGS`, and every
//! operation is throttled beyond its rate: with [`crate::settings::Settings::ecs_limits`]
//! set, as AWS throttles an account, in simulated time (RunTask's own rate, the Fargate
//! task-launch bucket, and each other operation's rate).

mod run_task;
mod tasks;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::faults::{Fault, Faults};
use crate::limits::{EcsThrottled, EcsThrottles, TokenBucket};
use crate::model::{EcsError, Model};
use run_task::run_task;
use tasks::{describe_tasks, list_tasks, stop_task};

const TARGET_PREFIX: &str = "AmazonEC2ContainerServiceV20141113.";
const JSON_1_1: &str = "application/x-amz-json-1.1";
/// The environment variable that carries the runner's JIT config.
pub const JIT_CONFIG_ENV: &str = "ACTIONS_RUNNER_INPUT_JITCONFIG";

pub struct EcsApi {
    pub model: Arc<Mutex<Model>>,
    pub faults: Faults,
    /// Per operation, on the real clock since `started` (without `limits`).
    buckets: Mutex<HashMap<String, TokenBucket>>,
    started: Instant,
    rate: f64,
    /// AWS's buckets, in simulated time, when the world limits ECS as AWS does.
    limits: Option<Mutex<EcsThrottles>>,
    /// Calls throttled, by any limit.
    pub throttled: Mutex<u64>,
    /// Calls by operation, throttled and failed ones included.
    calls: Mutex<BTreeMap<&'static str, u64>>,
}

impl EcsApi {
    pub fn new(model: Arc<Mutex<Model>>, faults: Faults) -> Self {
        let (rate, limits) = {
            let model = model.lock().unwrap();
            let s = &model.settings;
            let limits = s
                .ecs_limits
                .as_ref()
                .map(|limits| Mutex::new(EcsThrottles::new(limits, model.clock.now())));
            (f64::from(s.ecs_calls_per_sec.max(1)), limits)
        };
        Self {
            model,
            faults,
            buckets: Mutex::default(),
            started: Instant::now(),
            rate,
            limits,
            throttled: Mutex::default(),
            calls: Mutex::default(),
        }
    }

    /// Calls so far, by operation (`RunTask`, `ListTasks`, ...; `other` for the rest).
    pub fn calls(&self) -> Vec<(&'static str, u64)> {
        let calls = self.calls.lock().unwrap();
        calls.iter().map(|(op, n)| (*op, *n)).collect()
    }

    /// Calls throttled by each of AWS's limits; `None` in a world without them.
    pub fn throttled_by_limit(&self) -> Option<EcsThrottled> {
        self.limits.as_ref().map(|t| t.lock().unwrap().throttled)
    }

    /// Whether a call may go ahead: against AWS's buckets (simulated time) when the world
    /// has them, else against a bucket per operation, `rate` a second with bursts of
    /// `rate` (real time).
    fn admit(&self, operation: &str) -> bool {
        let admitted = match &self.limits {
            Some(throttles) => {
                let now = self.model.lock().unwrap().clock.now();
                throttles.lock().unwrap().call(operation, now).is_ok()
            }
            None => {
                let now = self.started.elapsed();
                self.buckets
                    .lock()
                    .unwrap()
                    .entry(operation.to_string())
                    .or_insert_with(|| TokenBucket::new(self.rate, self.rate, Duration::ZERO))
                    .take(now)
            }
        };
        if !admitted {
            *self.throttled.lock().unwrap() += 1;
        }
        admitted
    }

    /// Whether a RunTask may launch a Fargate task now (`now` simulated): always, unless the
    /// world's launch bucket is empty.
    fn may_launch(&self, now: Duration) -> bool {
        let Some(throttles) = &self.limits else {
            return true;
        };
        let launched = throttles.lock().unwrap().launch(now).is_ok();
        if !launched {
            *self.throttled.lock().unwrap() += 1;
        }
        launched
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

/// ECS's answer to a call beyond its rate.
fn throttling() -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "ThrottlingException",
        "Rate exceeded",
    )
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
        return throttling();
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
                "RunTask" => run_task(&api, &mut model, &request),
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
