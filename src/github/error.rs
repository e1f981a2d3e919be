//! What went wrong talking to GitHub, classified from the answer's status and headers so
//! the worker can branch: transient errors come back through the queue, the rest are
//! recorded and dead-lettered.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, StatusCode};

/// How long to wait on a rate limit that names no time of its own (GitHub's advice for
/// secondary limits: at least a minute).
const DEFAULT_RATE_LIMIT_WAIT: Duration = Duration::from_secs(60);
/// The shortest wait a rate limit yields, so a reset already in the past (clock skew)
/// never turns into an immediate retry loop.
const MIN_RATE_LIMIT_WAIT: Duration = Duration::from_secs(1);
/// GitHub's `message` is kept for 422s; longer ones are cut to this many characters.
const MAX_MESSAGE_CHARS: usize = 300;

/// A failed GitHub API call, by what the caller should do about it.
#[derive(Debug, thiserror::Error)]
pub enum GitHubError {
    /// 401: the App JWT or the installation token was refused.
    #[error("GitHub refused the credentials (401)")]
    Unauthorized,
    /// 403 that is not a rate limit: the App lacks a permission.
    #[error("GitHub refused the request (403): the App lacks a permission")]
    Forbidden,
    /// 404: the organization, repository, installation, runner or runner group does not
    /// exist, or the App cannot see it.
    #[error("GitHub found no such resource (404)")]
    NotFound,
    /// 409: e.g. a runner of that name is already registered.
    #[error("GitHub reported a conflict (409)")]
    Conflict,
    /// 422: GitHub's message says what it did not accept (it never quotes our body).
    #[error("GitHub rejected the request (422): {message}")]
    Validation { message: String },
    /// A primary or secondary rate limit: try again after `retry_after`.
    #[error("GitHub rate limit; retry after {}s", retry_after.as_secs())]
    RateLimited { retry_after: Duration },
    /// 5xx.
    #[error("GitHub failed with {status}")]
    Server { status: u16 },
    /// No answer: connection refused or reset, timeout, TLS failure.
    #[error("no answer from GitHub")]
    Transport(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Any other status, or a success whose body dockhand cannot read.
    #[error("unexpected answer from GitHub ({status})")]
    Unexpected { status: u16 },
}

impl GitHubError {
    /// Whether the same call may succeed later unchanged (retry through the queue).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. } | Self::Server { .. } | Self::Transport(_)
        )
    }

    /// A closed set of names for metric labels and log fields.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::Conflict => "conflict",
            Self::Validation { .. } => "validation",
            Self::RateLimited { .. } => "rate_limited",
            Self::Server { .. } => "server",
            Self::Transport(_) => "transport",
            Self::Unexpected { .. } => "unexpected",
        }
    }
}

/// Classifies an answer that was not a success, from its status and headers alone (and,
/// for a 422, GitHub's `message` in the body). `now` is the clock `x-ratelimit-reset` is
/// measured against.
pub(super) fn classify(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> GitHubError {
    let code = status.as_u16();
    if code == 403 || code == 429 {
        if let Some(retry_after) = rate_limit_wait(headers, now) {
            return GitHubError::RateLimited { retry_after };
        }
        if code == 429 {
            return GitHubError::RateLimited {
                retry_after: DEFAULT_RATE_LIMIT_WAIT,
            };
        }
        return GitHubError::Forbidden;
    }
    match code {
        401 => GitHubError::Unauthorized,
        404 => GitHubError::NotFound,
        409 => GitHubError::Conflict,
        422 => GitHubError::Validation {
            message: message(body),
        },
        500..=599 => GitHubError::Server { status: code },
        _ => GitHubError::Unexpected { status: code },
    }
}

/// The wait a rate-limit answer asks for: `retry-after` (secondary limits) first, then
/// `x-ratelimit-remaining: 0` until `x-ratelimit-reset`. `None` when neither is present.
fn rate_limit_wait(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    if let Some(seconds) = header_u64(headers, "retry-after") {
        return Some(Duration::from_secs(seconds).max(MIN_RATE_LIMIT_WAIT));
    }
    if header_u64(headers, "x-ratelimit-remaining") != Some(0) {
        return None;
    }
    let wait = match header_u64(headers, "x-ratelimit-reset") {
        Some(reset) => {
            let reset = UNIX_EPOCH + Duration::from_secs(reset);
            reset.duration_since(now).unwrap_or(Duration::ZERO)
        }
        None => DEFAULT_RATE_LIMIT_WAIT,
    };
    Some(wait.max(MIN_RATE_LIMIT_WAIT))
}

/// An integer header, or `None` when absent or not an integer.
pub(super) fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// GitHub's `message` from an error body, cut to a sensible length.
fn message(body: &[u8]) -> String {
    let message = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("message")?.as_str().map(str::to_owned));
    match message {
        Some(m) if m.chars().count() > MAX_MESSAGE_CHARS => {
            let mut cut: String = m.chars().take(MAX_MESSAGE_CHARS).collect();
            cut.push('…');
            cut
        }
        Some(m) => m,
        None => "no message".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn classify_status(code: u16, pairs: &[(&'static str, &str)]) -> GitHubError {
        classify(
            StatusCode::from_u16(code).unwrap(),
            &headers(pairs),
            b"{}",
            now(),
        )
    }

    #[test]
    fn exhausted_primary_limit_waits_until_the_reset() {
        let err = classify_status(
            403,
            &[
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", "1700000090"),
            ],
        );
        assert!(
            matches!(err, GitHubError::RateLimited { retry_after } if retry_after == Duration::from_secs(90)),
            "{err:?}"
        );
        assert!(err.is_transient());
    }

    #[test]
    fn a_reset_in_the_past_still_waits_a_second() {
        let err = classify_status(
            403,
            &[
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", "1699999000"),
            ],
        );
        assert!(
            matches!(err, GitHubError::RateLimited { retry_after } if retry_after == MIN_RATE_LIMIT_WAIT),
            "{err:?}"
        );
    }

    #[test]
    fn retry_after_wins_on_403_and_429() {
        for code in [403, 429] {
            let err = classify_status(
                code,
                &[
                    ("retry-after", "17"),
                    ("x-ratelimit-remaining", "0"),
                    ("x-ratelimit-reset", "1700000090"),
                ],
            );
            assert!(
                matches!(err, GitHubError::RateLimited { retry_after } if retry_after == Duration::from_secs(17)),
                "{code}: {err:?}"
            );
        }
    }

    #[test]
    fn a_bare_429_waits_a_minute() {
        let err = classify_status(429, &[]);
        assert!(
            matches!(err, GitHubError::RateLimited { retry_after } if retry_after == DEFAULT_RATE_LIMIT_WAIT),
            "{err:?}"
        );
    }

    #[test]
    fn a_403_with_quota_left_is_forbidden_and_permanent() {
        let err = classify_status(
            403,
            &[
                ("x-ratelimit-remaining", "4999"),
                ("x-ratelimit-reset", "1700000090"),
            ],
        );
        assert!(matches!(err, GitHubError::Forbidden), "{err:?}");
        assert!(!err.is_transient());
        assert!(matches!(classify_status(403, &[]), GitHubError::Forbidden));
    }

    #[test]
    fn unparseable_rate_limit_headers_do_not_count() {
        let err = classify_status(
            403,
            &[("retry-after", "soon"), ("x-ratelimit-remaining", "none")],
        );
        assert!(matches!(err, GitHubError::Forbidden), "{err:?}");
    }

    #[test]
    fn statuses_map_to_their_variants() {
        assert!(matches!(
            classify_status(401, &[]),
            GitHubError::Unauthorized
        ));
        assert!(matches!(classify_status(404, &[]), GitHubError::NotFound));
        assert!(matches!(classify_status(409, &[]), GitHubError::Conflict));
        assert!(matches!(
            classify_status(500, &[]),
            GitHubError::Server { status: 500 }
        ));
        assert!(matches!(
            classify_status(503, &[]),
            GitHubError::Server { status: 503 }
        ));
        assert!(matches!(
            classify_status(400, &[]),
            GitHubError::Unexpected { status: 400 }
        ));
        assert!(matches!(
            classify_status(302, &[]),
            GitHubError::Unexpected { status: 302 }
        ));
    }

    #[test]
    fn a_422_keeps_githubs_message() {
        let body = br#"{"message": "Bad request - Runner is currently running a job", "documentation_url": "x"}"#;
        let err = classify(
            StatusCode::UNPROCESSABLE_ENTITY,
            &HeaderMap::new(),
            body,
            now(),
        );
        match err {
            GitHubError::Validation { message } => {
                assert_eq!(message, "Bad request - Runner is currently running a job");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_422_without_a_json_message_says_so_and_long_messages_are_cut() {
        let err = classify(
            StatusCode::UNPROCESSABLE_ENTITY,
            &HeaderMap::new(),
            b"<html>",
            now(),
        );
        assert!(matches!(err, GitHubError::Validation { message } if message == "no message"));
        let long = serde_json::json!({ "message": "x".repeat(1000) }).to_string();
        let err = classify(
            StatusCode::UNPROCESSABLE_ENTITY,
            &HeaderMap::new(),
            long.as_bytes(),
            now(),
        );
        assert!(
            matches!(&err, GitHubError::Validation { message } if message.chars().count() == MAX_MESSAGE_CHARS + 1)
        );
    }

    #[test]
    fn only_rate_limits_server_errors_and_transport_are_transient() {
        let transient = [
            GitHubError::RateLimited {
                retry_after: Duration::from_secs(1),
            },
            GitHubError::Server { status: 502 },
            GitHubError::Transport("reset".into()),
        ];
        assert!(transient.iter().all(GitHubError::is_transient));
        let permanent = [
            GitHubError::Unauthorized,
            GitHubError::Forbidden,
            GitHubError::NotFound,
            GitHubError::Conflict,
            GitHubError::Validation {
                message: String::new(),
            },
            GitHubError::Unexpected { status: 400 },
        ];
        assert!(permanent.iter().all(|e| !e.is_transient()));
    }

    #[test]
    fn transport_errors_keep_their_cause_as_the_source_not_in_the_message() {
        let err = GitHubError::Transport("connection refused".into());
        assert_eq!(err.to_string(), "no answer from GitHub");
        assert_eq!(
            std::error::Error::source(&err).unwrap().to_string(),
            "connection refused"
        );
    }
}
