//! The admin listener: `/metrics` for Prometheus, `/healthz` (the process is alive),
//! `/readyz` (configured and the queue answers), and a worker's `/jobs` and `/runners`
//! ([`jobs`]), behind `admin.token` when one is set.

mod jobs;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use secrecy::SecretString;

use crate::queue::Queue;
use crate::store::Store;

/// How long `/readyz` waits for the queue.
const READY_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Clone)]
pub struct AdminState {
    pub metrics: PrometheusHandle,
    pub queue: Arc<dyn Queue>,
    /// Checked by `/readyz` where the process uses the store (workers), and read by
    /// `/jobs` and `/runners`.
    pub store: Option<Store>,
    /// The store's URL without a password, to name it in answers.
    pub store_name: String,
    /// `admin.token`: what `/jobs` and `/runners` require, when set.
    pub token: Option<SecretString>,
}

pub fn router(state: AdminState) -> Router {
    let guarded = Router::new()
        .route("/jobs", get(jobs::list))
        .route("/jobs/{id}", get(jobs::show))
        .route("/runners", get(jobs::runners))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            jobs::require_token,
        ));
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .merge(guarded)
        .with_state(state)
}

async fn metrics(State(state): State<AdminState>) -> Response {
    state.metrics.run_upkeep();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

async fn readyz(State(state): State<AdminState>) -> Response {
    match tokio::time::timeout(READY_TIMEOUT, state.queue.ping()).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => {
            tracing::warn!(error = %crate::telemetry::chain(&err), "not ready: queue unreachable");
            return (StatusCode::SERVICE_UNAVAILABLE, "queue unreachable\n").into_response();
        }
        Err(_) => return (StatusCode::SERVICE_UNAVAILABLE, "queue timed out\n").into_response(),
    }
    if let Some(store) = &state.store {
        match tokio::time::timeout(READY_TIMEOUT, store.ping()).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                tracing::warn!(error = %crate::telemetry::chain(&err), "not ready: store unreachable");
                return (StatusCode::SERVICE_UNAVAILABLE, "store unreachable\n").into_response();
            }
            Err(_) => {
                return (StatusCode::SERVICE_UNAVAILABLE, "store timed out\n").into_response();
            }
        }
    }
    (StatusCode::OK, "ready\n").into_response()
}

/// Drains histogram samples into their buckets even when nobody scrapes, so memory stays
/// flat. Runs until the process exits.
pub fn spawn_upkeep(handle: PrometheusHandle) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            handle.run_upkeep();
        }
    });
}
