//! One GitHub API call: built and sent through octocrab's raw request API, as the App or
//! as one installation, bounded by the request timeout, counted by endpoint and status,
//! and classified into a [`GitHubError`] from the status and headers when it is not a
//! success.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{AUTHORIZATION, InvalidHeaderValue};
use http::{HeaderMap, HeaderValue, StatusCode};
use http_body_util::BodyExt;
use octocrab::Octocrab;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;

use super::budget::{Budget, LimitKind, Permit, Wait, points};
use super::error::{GitHubError, classify, header_u64};
use crate::domain::InstallationId;
use crate::metrics::{GITHUB_RATE_LIMIT_REMAINING, GITHUB_REQUESTS_TOTAL};

/// The GitHub endpoints dockhand calls: the closed set behind the `endpoint` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Endpoint {
    InstallationToken,
    JitConfig,
    RunnerGroups,
    ListRunners,
    DeleteRunner,
    Installation,
    WorkflowJob,
    WorkflowRun,
    RerunFailedJobs,
    HookDeliveries,
    Redeliver,
}

impl Endpoint {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::InstallationToken => "installation_token",
            Self::JitConfig => "jitconfig",
            Self::RunnerGroups => "runner_groups",
            Self::ListRunners => "list_runners",
            Self::DeleteRunner => "delete_runner",
            Self::Installation => "installation",
            Self::WorkflowJob => "workflow_job",
            Self::WorkflowRun => "workflow_run",
            Self::RerunFailedJobs => "rerun_failed_jobs",
            Self::HookDeliveries => "hook_deliveries",
            Self::Redeliver => "redeliver",
        }
    }
}

/// Who a call is made as. It also says whose rate limit the answer's
/// `x-ratelimit-remaining` reports: the App's own, or one installation's.
#[derive(Clone, Copy)]
pub(super) enum Caller<'a> {
    /// The App: `client` signs a fresh JWT for each call.
    App {
        client: &'a Octocrab,
        budget: &'a Budget,
    },
    /// One installation: the call carries the installation's token as
    /// `Authorization: Bearer <token>`, sent on `client`, which must have no credentials
    /// of its own (octocrab would replace the header with them).
    Installation {
        client: &'a Octocrab,
        id: InstallationId,
        token: &'a SecretString,
        budget: &'a Budget,
    },
}

impl<'a> Caller<'a> {
    fn client(self) -> &'a Octocrab {
        match self {
            Self::App { client, .. } | Self::Installation { client, .. } => client,
        }
    }

    /// The App's budget, which every call of the App draws on.
    fn budget(self) -> &'a Budget {
        match self {
            Self::App { budget, .. } | Self::Installation { budget, .. } => budget,
        }
    }

    /// The installation the call is made as; `None` for the App.
    fn installation(self) -> Option<InstallationId> {
        match self {
            Self::App { .. } => None,
            Self::Installation { id, .. } => Some(id),
        }
    }

    /// The `installation` label of the rate-limit gauge.
    fn rate_scope(self) -> String {
        match self {
            Self::App { .. } => "app".to_string(),
            Self::Installation { id, .. } => id.to_string(),
        }
    }

    /// The `Authorization` header the call carries itself: an installation's token,
    /// marked sensitive so it never shows in a log. `None` for the App, whose client adds
    /// its own.
    fn authorization(self) -> Result<Option<HeaderValue>, InvalidHeaderValue> {
        let Self::Installation { token, .. } = self else {
            return Ok(None);
        };
        let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose_secret()))?;
        value.set_sensitive(true);
        Ok(Some(value))
    }
}

/// The HTTP method and, for a POST, its JSON body.
#[derive(Clone, Copy)]
pub(super) enum Method<'a> {
    Get,
    Post(&'a serde_json::Value),
    Delete,
}

impl<'a> Method<'a> {
    fn verb(self) -> http::Method {
        match self {
            Self::Get => http::Method::GET,
            Self::Post(_) => http::Method::POST,
            Self::Delete => http::Method::DELETE,
        }
    }

    fn body(self) -> Option<&'a serde_json::Value> {
        match self {
            Self::Post(body) => Some(body),
            Self::Get | Self::Delete => None,
        }
    }
}

/// A successful (2xx) answer.
pub(super) struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    body: Bytes,
    endpoint: Endpoint,
}

impl Answer {
    /// The body as `T`. A body that does not parse is `Unexpected`; the parse error is
    /// logged by position only, because bodies can hold secrets (JIT configs, tokens).
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, GitHubError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            tracing::warn!(
                github.endpoint = self.endpoint.as_str(),
                http.status = self.status.as_u16(),
                json.line = e.line(),
                json.column = e.column(),
                "GitHub's answer does not have the expected shape"
            );
            GitHubError::Unexpected {
                status: self.status.as_u16(),
            }
        })
    }
}

/// Sends one request as `caller` to `path`, relative to the API root. Resolves to the
/// answer when it is a success. The call first waits for room in the App's budget, unless
/// `permit` is room already taken; room that does not come within the budget's wait is
/// `RateLimited`.
pub(super) async fn send(
    caller: Caller<'_>,
    timeout: Duration,
    endpoint: Endpoint,
    method: Method<'_>,
    path: &str,
    permit: Option<Permit>,
) -> Result<Answer, GitHubError> {
    let budget = caller.budget();
    let _permit = match permit {
        Some(permit) => permit,
        None => budget
            .acquire(points(&method.verb()), budget.max_wait())
            .await
            .map_err(|Wait(retry_after)| GitHubError::RateLimited { retry_after })?,
    };
    let mut answered = false;
    let call = async {
        let client = caller.client();
        let mut request = http::Request::builder().method(method.verb()).uri(path);
        if let Some(authorization) = caller
            .authorization()
            .map_err(|e| GitHubError::Transport(Box::new(e)))?
        {
            request = request.header(AUTHORIZATION, authorization);
        }
        let request = client
            .build_request(request, method.body())
            .map_err(|e| GitHubError::Transport(Box::new(e)))?;
        let response = client
            .execute(request)
            .await
            .map_err(|e| GitHubError::Transport(Box::new(e)))?;
        answered = true;
        let (parts, body) = response.into_parts();
        observe(endpoint, caller, parts.status, &parts.headers);
        let body = body
            .collect()
            .await
            .map_err(|e| GitHubError::Transport(Box::new(e)))?
            .to_bytes();
        Ok::<_, GitHubError>((parts.status, parts.headers, body))
    };
    let result = match tokio::time::timeout(timeout, call).await {
        Ok(result) => result,
        Err(elapsed) => Err(GitHubError::Transport(Box::new(elapsed))),
    };
    if !answered {
        metrics::counter!(
            GITHUB_REQUESTS_TOTAL,
            "endpoint" => endpoint.as_str(),
            "status" => "error",
        )
        .increment(1);
    }
    let (status, headers, body) = result?;
    let error =
        (!status.is_success()).then(|| classify(status, &headers, &body, SystemTime::now()));
    let refused = match &error {
        Some(GitHubError::RateLimited { retry_after }) => {
            Some((limit_kind(&headers), *retry_after))
        }
        _ => None,
    };
    budget.observe(
        caller.installation(),
        status,
        &headers,
        endpoint == Endpoint::JitConfig,
        refused,
    );
    if let Some(error) = error {
        return Err(error);
    }
    Ok(Answer {
        status,
        headers,
        body,
        endpoint,
    })
}

/// Which limit a rate-limited answer names: the primary one when it reports no requests
/// left and no `retry-after`, otherwise a secondary one.
fn limit_kind(headers: &HeaderMap) -> LimitKind {
    if header_u64(headers, "retry-after").is_none()
        && header_u64(headers, "x-ratelimit-remaining") == Some(0)
    {
        LimitKind::Primary
    } else {
        LimitKind::Secondary
    }
}

/// Counts an answer and records the rate-limit quota it reports.
fn observe(endpoint: Endpoint, caller: Caller<'_>, status: StatusCode, headers: &HeaderMap) {
    metrics::counter!(
        GITHUB_REQUESTS_TOTAL,
        "endpoint" => endpoint.as_str(),
        "status" => status.as_str().to_owned(),
    )
    .increment(1);
    if let Some(remaining) = header_u64(headers, "x-ratelimit-remaining") {
        metrics::gauge!(GITHUB_RATE_LIMIT_REMAINING, "installation" => caller.rate_scope())
            .set(remaining as f64);
    }
}

/// What a path segment keeps as it is: RFC 3986's unreserved characters. Everything else,
/// `/` and `?` included, is escaped.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes one path segment (an org, repo or owner name), so a name can never
/// change which endpoint is called.
pub(super) fn segment(name: &str) -> String {
    utf8_percent_encode(name, UNRESERVED).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_keep_github_names_and_escape_the_rest() {
        assert_eq!(segment("acme-corp_1.x"), "acme-corp_1.x");
        assert_eq!(segment("a/b?c"), "a%2Fb%3Fc");
        assert_eq!(segment("ä"), "%C3%A4");
        assert_eq!(segment("a b%c~"), "a%20b%25c~");
    }

    #[test]
    fn endpoint_labels_are_the_documented_set() {
        let all = [
            Endpoint::InstallationToken,
            Endpoint::JitConfig,
            Endpoint::RunnerGroups,
            Endpoint::ListRunners,
            Endpoint::DeleteRunner,
            Endpoint::Installation,
            Endpoint::WorkflowJob,
            Endpoint::WorkflowRun,
            Endpoint::RerunFailedJobs,
            Endpoint::HookDeliveries,
            Endpoint::Redeliver,
        ];
        let labels: Vec<_> = all.iter().map(|e| e.as_str()).collect();
        assert_eq!(
            labels,
            [
                "installation_token",
                "jitconfig",
                "runner_groups",
                "list_runners",
                "delete_runner",
                "installation",
                "workflow_job",
                "workflow_run",
                "rerun_failed_jobs",
                "hook_deliveries",
                "redeliver"
            ]
        );
    }
}
