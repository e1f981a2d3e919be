//! A fast fake GitHub for load: answers the three calls a launch makes, counts every call
//! by endpoint, and records each runner name it registered so duplicates can be counted.
//!
//! It checks nothing (no JWT or token verification, no body validation, never a 409):
//! the checking fake is `tests/common/fake_github.rs`. Answers take microseconds, so what
//! the harness measures is dockhand.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{SecondsFormat, Utc};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// The first runner id handed out.
const FIRST_RUNNER_ID: u64 = 100_001;

/// What the fake saw.
#[derive(Debug, Clone, Default)]
pub struct GitHubCalls {
    /// Calls per endpoint (`installation_token`, `runner_groups`, `jitconfig`, `other`).
    pub by_endpoint: BTreeMap<&'static str, u64>,
    /// JIT registrations per runner name.
    pub registrations: HashMap<String, u32>,
    next_runner_id: u64,
}

impl GitHubCalls {
    pub fn total(&self) -> u64 {
        self.by_endpoint.values().sum()
    }

    /// JIT registrations, all names together.
    pub fn jit_total(&self) -> u64 {
        self.registrations.values().map(|n| u64::from(*n)).sum()
    }

    /// How many distinct jobs got a registration: runner names are
    /// `dh-{pool}-{job}-{attempt}`, so a second attempt for one job has a new name but
    /// the same job.
    pub fn jobs_registered(&self) -> usize {
        let mut jobs: Vec<&str> = self
            .registrations
            .keys()
            .filter_map(|name| name.rsplit('-').nth(1))
            .collect();
        jobs.sort_unstable();
        jobs.dedup();
        jobs.len()
    }
}

#[derive(Default)]
struct Shared {
    calls: Mutex<GitHubCalls>,
}

impl Shared {
    fn count(&self, endpoint: &'static str) {
        *self
            .calls
            .lock()
            .unwrap()
            .by_endpoint
            .entry(endpoint)
            .or_default() += 1;
    }
}

/// The running fake; stops when dropped.
pub struct FakeGitHub {
    /// The API root, e.g. `http://127.0.0.1:40123`.
    pub url: String,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl Drop for FakeGitHub {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeGitHub {
    pub async fn start() -> anyhow::Result<Self> {
        let shared = Arc::new(Shared {
            calls: Mutex::new(GitHubCalls {
                next_runner_id: FIRST_RUNNER_ID,
                ..GitHubCalls::default()
            }),
        });
        let app = Router::new()
            .route("/app/installations/{id}/access_tokens", post(mint))
            .route("/orgs/{org}/actions/runner-groups", get(runner_groups))
            .route("/orgs/{org}/actions/runners/generate-jitconfig", post(jit))
            .fallback(other)
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("fake GitHub serves");
        });
        Ok(Self {
            url,
            shared,
            server,
        })
    }

    pub fn calls(&self) -> GitHubCalls {
        self.shared.calls.lock().unwrap().clone()
    }
}

/// A JSON answer with GitHub's rate-limit headers (plenty left).
fn answer(status: StatusCode, body: Value) -> Response {
    let reset = (Utc::now().timestamp() + 3600).to_string();
    let mut response = (status, axum::Json(body)).into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        ("x-ratelimit-limit", "5000".to_string()),
        ("x-ratelimit-remaining", "4999".to_string()),
        ("x-ratelimit-reset", reset),
    ] {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_str(&value).expect("ASCII"),
        );
    }
    response
}

async fn mint(State(shared): State<Arc<Shared>>) -> Response {
    shared.count("installation_token");
    let expires_at =
        (Utc::now() + chrono::Duration::hours(1)).to_rfc3339_opts(SecondsFormat::Secs, true);
    answer(
        StatusCode::CREATED,
        json!({"token": "ghs_x", "expires_at": expires_at}),
    )
}

async fn runner_groups(State(shared): State<Arc<Shared>>) -> Response {
    shared.count("runner_groups");
    answer(
        StatusCode::OK,
        json!({"total_count": 1, "runner_groups": [{"id": 1, "name": "Default"}]}),
    )
}

async fn jit(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let name = body
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("<unnamed>")
        .to_string();
    let id = {
        let mut calls = shared.calls.lock().unwrap();
        *calls.by_endpoint.entry("jitconfig").or_default() += 1;
        *calls.registrations.entry(name.clone()).or_default() += 1;
        calls.next_runner_id += 1;
        calls.next_runner_id - 1
    };
    answer(
        StatusCode::CREATED,
        json!({
            "runner": {
                "id": id,
                "name": name,
                "os": "unknown",
                "status": "offline",
                "busy": false,
                "labels": body.get("labels").cloned().unwrap_or(Value::Null),
            },
            "encoded_jit_config": "eyJsb2FkIjoiaGFybmVzcyJ9",
        }),
    )
}

async fn other(State(shared): State<Arc<Shared>>) -> Response {
    shared.count("other");
    answer(StatusCode::NOT_FOUND, json!({"message": "Not Found"}))
}
