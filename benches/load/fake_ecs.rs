//! A fast fake ECS for load, speaking the JSON 1.1 protocol (`X-Amz-Target:
//! AmazonEC2ContainerServiceV20141113.RunTask`): RunTask always has capacity, ListTasks finds
//! nothing, DescribeTasks answers every task running. Every call is counted by operation, and every RunTask by the
//! job in its `startedBy` (`dockhand-job-{id}`), with the moment the first one arrived.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

const JSON_1_1: &str = "application/x-amz-json-1.1";
const STARTED_BY_PREFIX: &str = "dockhand-job-";

/// RunTask calls for one job.
#[derive(Debug, Clone, Copy)]
pub struct Launches {
    pub count: u32,
    /// When the first RunTask for the job arrived.
    pub first: Instant,
}

/// What the fake saw.
#[derive(Debug, Clone, Default)]
pub struct EcsCalls {
    pub by_operation: BTreeMap<String, u64>,
    /// RunTask calls per job id.
    pub run_tasks: HashMap<u64, Launches>,
    /// RunTask calls whose `startedBy` named no job.
    pub unattributed_run_tasks: u64,
}

impl EcsCalls {
    pub fn total(&self) -> u64 {
        self.by_operation.values().sum()
    }

    pub fn run_task_total(&self) -> u64 {
        self.by_operation.get("RunTask").copied().unwrap_or(0)
    }
}

/// The running fake; stops when dropped.
pub struct FakeEcs {
    pub url: String,
    calls: Arc<Mutex<EcsCalls>>,
    server: JoinHandle<()>,
}

impl Drop for FakeEcs {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeEcs {
    pub async fn start() -> anyhow::Result<Self> {
        let calls = Arc::new(Mutex::new(EcsCalls::default()));
        let app = Router::new().fallback(handle).with_state(calls.clone());
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("fake ECS serves");
        });
        Ok(Self { url, calls, server })
    }

    pub fn calls(&self) -> EcsCalls {
        self.calls.lock().unwrap().clone()
    }

    /// How many distinct jobs have had a RunTask.
    pub fn jobs_launched(&self) -> usize {
        self.calls.lock().unwrap().run_tasks.len()
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

async fn handle(
    State(calls): State<Arc<Mutex<EcsCalls>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let arrived = Instant::now();
    let operation = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.rsplit('.').next())
        .unwrap_or("<none>")
        .to_string();
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    *calls
        .lock()
        .unwrap()
        .by_operation
        .entry(operation.clone())
        .or_default() += 1;
    match operation.as_str() {
        "RunTask" => run_task(&calls, &request, arrived),
        "ListTasks" => answer(StatusCode::OK, json!({"taskArns": []})),
        "DescribeTasks" => describe_tasks(&request),
        _ => answer(
            StatusCode::BAD_REQUEST,
            json!({"__type": "UnknownOperationException", "message": operation}),
        ),
    }
}

/// Every task asked for, running since its launch: what the reconciler sees of healthy
/// runners (nothing to act on, but every DescribeTasks it makes is counted).
fn describe_tasks(request: &Value) -> Response {
    let now = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
    let tasks: Vec<Value> = request
        .get("tasks")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|arn| {
            json!({
                "taskArn": arn,
                "lastStatus": "RUNNING",
                "desiredStatus": "RUNNING",
                "createdAt": now,
                "startedAt": now,
                "containers": [{"name": "runner", "lastStatus": "RUNNING"}],
            })
        })
        .collect();
    answer(StatusCode::OK, json!({"tasks": tasks, "failures": []}))
}

fn run_task(calls: &Mutex<EcsCalls>, request: &Value, arrived: Instant) -> Response {
    let started_by = request
        .get("startedBy")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let job = started_by
        .strip_prefix(STARTED_BY_PREFIX)
        .and_then(|id| id.parse::<u64>().ok());
    {
        let mut calls = calls.lock().unwrap();
        match job {
            Some(job) => {
                calls
                    .run_tasks
                    .entry(job)
                    .and_modify(|l| l.count += 1)
                    .or_insert(Launches {
                        count: 1,
                        first: arrived,
                    });
            }
            None => calls.unattributed_run_tasks += 1,
        }
    }
    let cluster = request
        .get("cluster")
        .and_then(Value::as_str)
        .unwrap_or("default");
    let account = "arn:aws:ecs:us-east-1:123456789012";
    let created_at = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
    answer(
        StatusCode::OK,
        json!({
            "tasks": [{
                "taskArn": format!("{account}:task/{cluster}/{}", uuid::Uuid::new_v4().simple()),
                "clusterArn": format!("{account}:cluster/{cluster}"),
                "lastStatus": "PROVISIONING",
                "desiredStatus": "RUNNING",
                "launchType": request.get("launchType").cloned().unwrap_or(json!("FARGATE")),
                "startedBy": started_by,
                "createdAt": created_at,
            }],
            "failures": [],
        }),
    )
}
