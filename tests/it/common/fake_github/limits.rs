//! Rate limits and injected failures. Every answer carries GitHub's `x-ratelimit-*` headers
//! for the caller's credential (each installation, and each App's JWT, has its own budget);
//! a credential with no calls left is refused as GitHub refuses it. Failures can be queued
//! per endpoint for any caller or for one App's credentials, and answers delayed.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{Auth, Endpoint, FakeGitHub, FakeState, epoch_secs};

const RATE_LIMIT: u64 = 5000;
const SECONDARY_LIMIT_MESSAGE: &str =
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.";

/// An answer to give the next request to an endpoint instead of the real one.
#[derive(Debug, Clone)]
pub enum Failure {
    /// This status, with a JSON `message` and the usual rate-limit headers.
    Status(u16),
    /// This status with this `message` (GitHub's own text, which dockhand may pass on).
    Message(u16, String),
    /// A primary rate limit: 403, `x-ratelimit-remaining: 0`, and `x-ratelimit-reset`
    /// this far in the future.
    RateLimited { reset_in: Duration },
    /// A secondary rate limit as some proxies send it: 429 with `retry-after`.
    RetryAfter(Duration),
    /// A secondary rate limit as GitHub sends it: 403 with `retry-after` (whole seconds),
    /// GitHub's message, and the usual rate-limit headers (calls still left).
    SecondaryLimit(Duration),
}

/// Whose rate-limit budget a request spends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Scope {
    /// One App's JWT calls.
    App(u64),
    Installation(u64),
    /// No credentials, or ones not accepted.
    Anonymous,
}

impl Scope {
    pub(super) fn of(auth: &Auth, app: Option<u64>) -> Self {
        match (auth, app) {
            (Auth::InstallationToken { installation }, _) => Scope::Installation(*installation),
            (Auth::AppJwt { .. }, Some(app)) => Scope::App(app),
            _ => Scope::Anonymous,
        }
    }
}

impl FakeGitHub {
    /// Queues an answer for the next request to `endpoint` from any caller (first in,
    /// first out).
    pub fn fail_next(&self, endpoint: Endpoint, failure: Failure) {
        self.lock()
            .failures
            .entry(endpoint)
            .or_default()
            .push_back(failure);
    }

    /// Queues an answer for the next request to `endpoint` made with App `app`'s
    /// credentials (its JWT or one of its installations' tokens); other Apps' requests are
    /// served as usual. Taken before any [`FakeGitHub::fail_next`] failure.
    pub fn fail_next_for(&self, app: u64, endpoint: Endpoint, failure: Failure) {
        self.lock()
            .app_failures
            .entry((app, endpoint))
            .or_default()
            .push_back(failure);
    }

    /// Holds back every answer from `endpoint` by `delay` from now on (the request is
    /// recorded and served at once; only the answer waits).
    pub fn set_delay(&self, endpoint: Endpoint, delay: Duration) {
        self.lock().delays.insert(endpoint, delay);
    }

    /// The next answer to `installation`'s token says `x-ratelimit-remaining: remaining`
    /// (at most 5000); once a call has answered 0, the next is refused as rate limited
    /// (403, remaining 0) until the hourly reset, which the fake never reaches.
    pub fn set_rate_remaining(&self, installation: u64, remaining: u64) {
        assert!(
            remaining <= RATE_LIMIT,
            "GitHub allows {RATE_LIMIT} calls an hour"
        );
        self.lock()
            .rate
            .insert(Scope::Installation(installation), remaining + 1);
    }
}

impl FakeState {
    /// The failure queued for the next request to `endpoint` by App `app` (or anyone).
    pub(super) fn take_failure(&mut self, app: Option<u64>, endpoint: Endpoint) -> Option<Failure> {
        app.and_then(|app| {
            self.app_failures
                .get_mut(&(app, endpoint))
                .and_then(VecDeque::pop_front)
        })
        .or_else(|| {
            self.failures
                .get_mut(&endpoint)
                .and_then(VecDeque::pop_front)
        })
    }

    /// Whether `scope` has spent its hourly budget.
    pub(super) fn exhausted(&self, scope: Scope) -> bool {
        self.rate.get(&scope) == Some(&0)
    }

    /// An injected failure, as GitHub would send it.
    pub(super) fn fail(&mut self, scope: Scope, failure: Failure) -> Response {
        match failure {
            Failure::Status(code) => {
                self.fail(scope, Failure::Message(code, "injected failure".into()))
            }
            Failure::Message(code, message) => {
                let status = StatusCode::from_u16(code).expect("a valid status code");
                self.answer(scope, status, json!({"message": message}))
            }
            Failure::RateLimited { reset_in } => {
                let reset = epoch_secs(SystemTime::now() + reset_in)
                    + u64::from(reset_in.subsec_nanos() > 0);
                primary_limit(reset)
            }
            Failure::RetryAfter(wait) => {
                let mut response = (
                    StatusCode::TOO_MANY_REQUESTS,
                    axum::Json(json!({"message": "You have exceeded a secondary rate limit"})),
                )
                    .into_response();
                response
                    .headers_mut()
                    .insert("retry-after", wait.as_secs().into());
                response
            }
            Failure::SecondaryLimit(wait) => {
                let mut response = self.answer(
                    scope,
                    StatusCode::FORBIDDEN,
                    json!({"message": SECONDARY_LIMIT_MESSAGE}),
                );
                response
                    .headers_mut()
                    .insert("retry-after", wait.as_secs().into());
                response
            }
        }
    }

    /// The refusal of a credential with no calls left.
    pub(super) fn exhausted_answer(&self) -> Response {
        primary_limit(self.rate_reset)
    }

    /// An answer with GitHub's rate-limit headers for the caller's credential, which it
    /// spends one call of.
    pub(super) fn answer(&mut self, scope: Scope, status: StatusCode, body: Value) -> Response {
        let left = self.rate.entry(scope).or_insert(RATE_LIMIT);
        *left = left.saturating_sub(1);
        let remaining = *left;
        let mut response = if body.is_null() {
            status.into_response()
        } else {
            (status, axum::Json(body)).into_response()
        };
        let headers = response.headers_mut();
        headers.insert("x-ratelimit-limit", RATE_LIMIT.into());
        headers.insert("x-ratelimit-remaining", remaining.into());
        headers.insert("x-ratelimit-used", (RATE_LIMIT - remaining).into());
        headers.insert("x-ratelimit-reset", self.rate_reset.into());
        headers.insert("x-ratelimit-resource", HeaderValue::from_static("core"));
        response
    }
}

/// GitHub's primary rate-limit refusal, resetting at `reset` (epoch seconds).
fn primary_limit(reset: u64) -> Response {
    let mut response = (
        StatusCode::FORBIDDEN,
        axum::Json(json!({"message": "API rate limit exceeded"})),
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert("x-ratelimit-limit", RATE_LIMIT.into());
    headers.insert("x-ratelimit-remaining", 0.into());
    headers.insert("x-ratelimit-used", RATE_LIMIT.into());
    headers.insert("x-ratelimit-reset", reset.into());
    headers.insert("x-ratelimit-resource", HeaderValue::from_static("core"));
    response
}
