//! `GET /jobs/{id}`, `GET /jobs?...` and `GET /runners`: the store's record as JSON, the
//! same as `dockhand jobs show|list` and `dockhand runners list`. A process without a store
//! (the scale-out ingress) answers 404 and says where to ask. When `admin.token` is set,
//! these routes need it as a bearer token.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::json;

use super::AdminState;
use crate::domain::JobId;
use crate::inspect::{self, JobQuery, JobStory};
use crate::store::{RunnerState, Store};
use crate::telemetry::chain;

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// Refuses a request without the configured bearer token (when one is).
pub async fn require_token(
    State(state): State<AdminState>,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = &state.token else {
        return next.run(request).await;
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(p) if constant_time_eq(p.as_bytes(), token.expose_secret().as_bytes()) => {
            next.run(request).await
        }
        _ => {
            let mut answer = error(
                StatusCode::UNAUTHORIZED,
                "this route needs admin.token as `Authorization: Bearer <token>`",
            );
            answer.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"dockhand admin\""),
            );
            answer
        }
    }
}

/// Compares in time that depends only on the lengths, not on where the bytes differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The process's store, or the answer for a process without one.
fn store(state: &AdminState) -> Result<&Store, Box<Response>> {
    state.store.as_ref().ok_or_else(|| {
        Box::new(error(
            StatusCode::NOT_FOUND,
            "this process has no store (an ingress): ask a worker's admin listener",
        ))
    })
}

/// The store and a list's query, or the answer: 404 without a store, 400 for a bad query.
fn store_and<Q>(
    state: &AdminState,
    query: Result<Query<Q>, QueryRejection>,
) -> Result<(&Store, Q), Box<Response>> {
    let store = store(state)?;
    match query {
        Ok(Query(query)) => Ok((store, query)),
        Err(rejection) => Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            rejection.body_text(),
        ))),
    }
}

fn unavailable(err: &crate::store::StoreError) -> Response {
    tracing::warn!(error = %chain(err), "admin: store read failed");
    error(StatusCode::SERVICE_UNAVAILABLE, "the store did not answer")
}

/// `GET /jobs/{id}`: the job's story.
pub async fn show(State(state): State<AdminState>, Path(id): Path<String>) -> Response {
    let store = match store(&state) {
        Ok(store) => store,
        Err(answer) => return *answer,
    };
    let Ok(id) = id.parse::<u64>() else {
        return error(StatusCode::BAD_REQUEST, format!("`{id}` is not a job id"));
    };
    match JobStory::load(store, &state.store_name, JobId(id), Utc::now()).await {
        Ok(Some(story)) => Json(story).into_response(),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            inspect::unknown(JobId(id), &state.store_name),
        ),
        Err(err) => unavailable(&err),
    }
}

/// `GET /jobs?state=&pool=&repo=&older_than=&newer_than=&limit=`: newest first.
pub async fn list(
    State(state): State<AdminState>,
    query: Result<Query<JobQuery>, QueryRejection>,
) -> Response {
    let (store, query) = match store_and(&state, query) {
        Ok(both) => both,
        Err(answer) => return *answer,
    };
    let filter = match query.filter(Utc::now()) {
        Ok(filter) => filter,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    match store.jobs(&filter).await {
        Ok(jobs) => Json(jobs).into_response(),
        Err(err) => unavailable(&err),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunnerQuery {
    pool: Option<String>,
    state: Option<String>,
    limit: Option<u32>,
}

/// `GET /runners?pool=&state=&limit=`: newest first.
pub async fn runners(
    State(state): State<AdminState>,
    query: Result<Query<RunnerQuery>, QueryRejection>,
) -> Response {
    let (store, query) = match store_and(&state, query) {
        Ok(both) => both,
        Err(answer) => return *answer,
    };
    let runner_state = match query.state.as_deref().map(RunnerState::parse) {
        Some(RunnerState::Unknown) => {
            return error(StatusCode::BAD_REQUEST, "unknown runner state");
        }
        other => other,
    };
    let limit = query.limit.unwrap_or(50);
    if !(1..=inspect::MAX_LIST).contains(&limit) {
        return error(
            StatusCode::BAD_REQUEST,
            format!("limit must be between 1 and {}", inspect::MAX_LIST),
        );
    }
    match store
        .list_runners(query.pool.as_deref(), runner_state, limit, true)
        .await
    {
        Ok(runners) => Json(runners).into_response(),
        Err(err) => unavailable(&err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_equal_only_when_equal() {
        assert!(constant_time_eq(b"s3cret", b"s3cret"));
        assert!(!constant_time_eq(b"s3cret", b"s3crex"));
        assert!(!constant_time_eq(b"s3cret", b"s3cret-longer"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
