//! The webhook ingress: verify, parse, filter, enqueue, and answer 2xx only once the
//! queue holds the message.
//!
//! | outcome                | status |
//! |------------------------|--------|
//! | enqueued               | 202    |
//! | pong (`ping` event)    | 200    |
//! | ignored_event, ignored_action, no_matching_pool, not_allowed | 202 |
//! | unauthorized           | 401    |
//! | payload_too_large      | 413    |
//! | unsupported_media_type | 415    |
//! | malformed              | 400    |
//! | timeout (body not in within `server.body_timeout`) | 408 |
//! | method_not_allowed     | 405    |
//! | queue_unavailable      | 503    |
//!
//! The connection limits and the header timeout are the listener's (`crate::listener`).

pub mod signature;
pub mod webhook;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::Utc;
use serde::Serialize;

use crate::config::WebhookSettings;
use crate::domain::{DeliveryId, JobAction, JobEvent, JobId, Repository};
use crate::listener::deadline::is_body_timeout;
use crate::metrics as m;
use crate::pool::LivePools;
use crate::queue::batch::BatchSender;
use crate::queue::envelope::Envelope;
use signature::WebhookKeys;
use webhook::Parsed;

/// How one delivery was answered: a closed set, used as the metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Enqueued,
    Pong,
    IgnoredEvent,
    IgnoredAction,
    NoMatchingPool,
    NotAllowed,
    Unauthorized,
    PayloadTooLarge,
    UnsupportedMediaType,
    Malformed,
    Timeout,
    MethodNotAllowed,
    QueueUnavailable,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enqueued => "enqueued",
            Self::Pong => "pong",
            Self::IgnoredEvent => "ignored_event",
            Self::IgnoredAction => "ignored_action",
            Self::NoMatchingPool => "no_matching_pool",
            Self::NotAllowed => "not_allowed",
            Self::Unauthorized => "unauthorized",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::Malformed => "malformed",
            Self::Timeout => "timeout",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::QueueUnavailable => "queue_unavailable",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Self::Pong => StatusCode::OK,
            Self::Enqueued
            | Self::IgnoredEvent
            | Self::IgnoredAction
            | Self::NoMatchingPool
            | Self::NotAllowed => StatusCode::ACCEPTED,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Malformed => StatusCode::BAD_REQUEST,
            Self::Timeout => StatusCode::REQUEST_TIMEOUT,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::QueueUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// Which orgs and repositories may send jobs; empty lists allow everyone.
#[derive(Debug, Clone, Default)]
pub struct Allowlist {
    orgs: Vec<String>,
    repos: Vec<String>,
}

impl Allowlist {
    pub fn new(orgs: Vec<String>, repos: Vec<String>) -> Self {
        Self { orgs, repos }
    }

    /// GitHub's owner and repository names are case-insensitive ASCII.
    pub fn allows(&self, repo: &Repository) -> bool {
        (self.orgs.is_empty() && self.repos.is_empty())
            || self
                .orgs
                .iter()
                .any(|o| o.eq_ignore_ascii_case(&repo.owner))
            || self
                .repos
                .iter()
                .any(|r| r.eq_ignore_ascii_case(&repo.full_name))
    }
}

/// What the webhook handler needs; cheap to clone.
#[derive(Clone)]
pub struct IngressState(Arc<Inner>);

struct Inner {
    keys: WebhookKeys,
    pools: LivePools,
    allowlist: Allowlist,
    max_body_bytes: usize,
    max_labels: usize,
    sender: BatchSender,
}

impl IngressState {
    pub fn new(
        settings: &WebhookSettings,
        keys: WebhookKeys,
        pools: LivePools,
        sender: BatchSender,
    ) -> Self {
        Self(Arc::new(Inner {
            keys,
            pools,
            allowlist: Allowlist::new(
                settings.allowed_orgs.clone(),
                settings.allowed_repos.clone(),
            ),
            max_body_bytes: settings.max_body_bytes,
            max_labels: settings.max_labels,
            sender,
        }))
    }
}

/// The webhook route: `POST path`; any other method is answered 405.
pub fn router(path: &str, state: IngressState) -> Router {
    Router::new()
        .route(path, post(receive).fallback(method_not_allowed))
        .with_state(state)
}

/// The answer to one delivery, before it becomes a response.
struct Reply {
    outcome: Outcome,
    event: &'static str,
    action: &'static str,
    job_id: Option<JobId>,
    /// A short, fixed-vocabulary reason for a refusal; never quotes the request.
    reason: Option<String>,
}

impl Reply {
    fn new(outcome: Outcome, event: &'static str) -> Self {
        Self {
            outcome,
            event,
            action: "none",
            job_id: None,
            reason: None,
        }
    }

    fn because(mut self, reason: impl ToString) -> Self {
        self.reason = Some(reason.to_string());
        self
    }
}

#[derive(Serialize)]
struct ReplyBody<'a> {
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    delivery: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    job_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

async fn receive(State(state): State<IngressState>, headers: HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    let delivery = header_str(&headers, "x-github-delivery");
    let reply = handle(&state.0, &headers, body, delivery).await;
    metrics::counter!(
        m::WEBHOOK_REQUESTS_TOTAL,
        "event" => reply.event,
        "action" => reply.action,
        "outcome" => reply.outcome.as_str(),
    )
    .increment(1);
    metrics::histogram!(m::WEBHOOK_REQUEST_SECONDS).record(started.elapsed().as_secs_f64());
    let status = reply.outcome.status();
    let job_id = reply.job_id.map(|id| id.0);
    if status.is_server_error() {
        tracing::warn!(
            github.delivery = delivery,
            github.event = reply.event,
            job.action = reply.action,
            job.id = job_id,
            outcome = reply.outcome.as_str(),
            status = status.as_u16(),
            reason = reply.reason.as_deref(),
            "webhook refused"
        );
    } else {
        tracing::info!(
            github.delivery = delivery,
            github.event = reply.event,
            job.action = reply.action,
            job.id = job_id,
            outcome = reply.outcome.as_str(),
            status = status.as_u16(),
            reason = reply.reason.as_deref(),
            "webhook"
        );
    }
    let body = ReplyBody {
        outcome: reply.outcome.as_str(),
        delivery,
        job_id,
        error: reply.reason.as_deref(),
    };
    let mut response = (status, axum::Json(body)).into_response();
    if reply.outcome == Outcome::Timeout {
        // The rest of the body may still come; the connection is not worth keeping.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

async fn method_not_allowed() -> Response {
    metrics::counter!(
        m::WEBHOOK_REQUESTS_TOTAL,
        "event" => "none", "action" => "none", "outcome" => Outcome::MethodNotAllowed.as_str(),
    )
    .increment(1);
    let body = ReplyBody {
        outcome: Outcome::MethodNotAllowed.as_str(),
        delivery: None,
        job_id: None,
        error: Some("use POST"),
    };
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(header::ALLOW, "POST")],
        axum::Json(body),
    )
        .into_response()
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The event label: a closed set, whatever the header says.
fn event_label(event: Option<&str>) -> &'static str {
    match event {
        Some("workflow_job") => "workflow_job",
        Some("ping") => "ping",
        Some(_) => "other",
        None => "none",
    }
}

enum BodyKind {
    Json,
    Form,
}

async fn handle(state: &Inner, headers: &HeaderMap, body: Body, delivery: Option<&str>) -> Reply {
    let event = header_str(headers, "x-github-event");
    let label = event_label(event);
    let declared_length =
        header_str(headers, header::CONTENT_LENGTH.as_str()).and_then(|v| v.parse::<u64>().ok());
    if declared_length.is_some_and(|n| n > state.max_body_bytes as u64) {
        return Reply::new(Outcome::PayloadTooLarge, label).because("body too large");
    }
    // Reads at most the limit: a body that keeps coming is cut off, not buffered.
    let body = match axum::body::to_bytes(body, state.max_body_bytes).await {
        Ok(body) => body,
        Err(err) if is_length_limit(&err) => {
            return Reply::new(Outcome::PayloadTooLarge, label).because("body too large");
        }
        Err(err) if is_body_timeout(&err) => {
            return Reply::new(Outcome::Timeout, label).because("body not received in time");
        }
        Err(_) => return Reply::new(Outcome::Malformed, label).because("could not read body"),
    };
    if let Err(err) = state.keys.verify(
        headers.get("x-hub-signature-256").map(|v| v.as_bytes()),
        headers.contains_key("x-hub-signature"),
        &body,
    ) {
        return Reply::new(Outcome::Unauthorized, label).because(err);
    }
    let kind = match header_str(headers, header::CONTENT_TYPE.as_str())
        .map(|ct| {
            ct.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .as_deref()
    {
        None | Some("application/json") => BodyKind::Json,
        Some("application/x-www-form-urlencoded") => BodyKind::Form,
        Some(_) => {
            return Reply::new(Outcome::UnsupportedMediaType, label)
                .because("send application/json or application/x-www-form-urlencoded");
        }
    };
    match label {
        "workflow_job" => {}
        "ping" => return Reply::new(Outcome::Pong, label),
        "none" => return Reply::new(Outcome::Malformed, label).because("missing X-GitHub-Event"),
        _ => return Reply::new(Outcome::IgnoredEvent, label),
    }
    let Some(delivery) = delivery else {
        return Reply::new(Outcome::Malformed, label).because("missing X-GitHub-Delivery");
    };
    let json = match kind {
        BodyKind::Json => Ok(body.to_vec()),
        BodyKind::Form => webhook::form_payload(&body),
    };
    let parsed = json.and_then(|json| {
        webhook::parse_workflow_job(&json, DeliveryId(delivery.to_string()), state.max_labels)
    });
    let event = match parsed {
        Ok(Parsed::Job(event)) => event,
        Ok(Parsed::UnknownAction) => {
            let mut reply = Reply::new(Outcome::IgnoredAction, label);
            reply.action = "unknown";
            return reply;
        }
        Err(err) => {
            return Reply::new(Outcome::Malformed, label).because(err);
        }
    };
    let mut reply = Reply::new(Outcome::Enqueued, label);
    reply.action = event.action.as_str();
    reply.job_id = Some(event.job.id);
    reply.outcome = enqueue(state, *event).await;
    if reply.outcome == Outcome::QueueUnavailable {
        reply.reason = Some("queue unavailable; redeliver later".into());
    }
    reply
}

/// Filters, then enqueues. Only `queued` jobs need a pool: later actions are for jobs
/// dockhand may already be running a runner for.
async fn enqueue(state: &Inner, event: JobEvent) -> Outcome {
    if !state.allowlist.allows(&event.repository) {
        return Outcome::NotAllowed;
    }
    let pool = match state.pools.current().match_job(&event.job.labels) {
        Some(pool) => Some(pool.name.clone()),
        None if event.action == JobAction::Queued => return Outcome::NoMatchingPool,
        None => None,
    };
    let message = Envelope::new(event, pool, Utc::now()).to_message();
    match state.sender.send(message).await {
        Ok(_) => Outcome::Enqueued,
        Err(err) => {
            tracing::error!(error = %crate::telemetry::chain(&err), "enqueue failed");
            Outcome::QueueUnavailable
        }
    }
}

fn is_length_limit(err: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = e.source();
    }
    false
}
