//! GitHub's rate limits on the simulated API (see [`crate::limits`]): which budget a call
//! spends, the 403 that refuses one, and the `x-ratelimit-*` and `retry-after` headers.
//!
//! The limits run in simulated time; dockhand runs in real time. So a `retry-after` is the
//! simulated wait in real seconds (rounded up, at least 1), and `x-ratelimit-reset` is the
//! real wall-clock moment (epoch seconds) at which the simulated window resets: dockhand
//! compares it with its own clock.

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use chrono::Utc;
use serde_json::json;

use super::auth::Auth;
use super::{GitHubApi, Reply};
use crate::clock::Clock;
use crate::limits::{LimitKind, Primary, QuotaSettings, Refusal, Scope};

/// The rate-limit headers of an answer.
#[derive(Debug, Clone, Copy)]
pub(super) enum RateHeaders {
    /// No limits in this world: the fixed headers the simulator always sent (a full hour's
    /// budget, barely touched).
    Unlimited,
    /// The caller's primary limit after this call.
    Primary(Primary),
    /// The call was refused.
    Refused(Refusal),
}

impl RateHeaders {
    pub(super) fn apply(&self, headers: &mut HeaderMap, clock: &Clock) {
        let (limit, remaining, used, reset) = match self {
            Self::Unlimited => (5_000, 4_000, 1_000, Utc::now().timestamp() as u64 + 3_600),
            Self::Primary(p) | Self::Refused(Refusal { primary: p, .. }) => {
                let remaining = match self {
                    Self::Refused(r) if r.kind == LimitKind::Primary => 0,
                    _ => p.remaining(),
                };
                let reset = clock.epoch_secs(p.reset).ceil() as u64;
                (p.limit, remaining, p.used, reset)
            }
        };
        let mut set = |name: &'static str, value: String| {
            headers.insert(
                HeaderName::from_static(name),
                HeaderValue::from_str(&value).expect("ASCII"),
            );
        };
        set("x-ratelimit-limit", limit.to_string());
        set("x-ratelimit-remaining", remaining.to_string());
        set("x-ratelimit-used", used.to_string());
        set("x-ratelimit-reset", reset.to_string());
        set("x-ratelimit-resource", "core".to_string());
        if let Self::Refused(r) = self
            && r.kind != LimitKind::Primary
        {
            let secs = clock.real(r.retry_after).as_secs_f64().ceil().max(1.0);
            set("retry-after", (secs as u64).to_string());
        }
    }
}

/// Spends the caller's budget on a call, or refuses it (a 403 reply, not performed).
/// Returns the answer's rate headers and the App whose call is now in flight. Calls not
/// authenticated, and every call in a world without limits, spend nothing.
pub(super) fn admit(
    api: &GitHubApi,
    auth: Auth,
    method: &Method,
) -> Result<(RateHeaders, Option<u64>), Box<Reply>> {
    let Some(limits) = &api.limits else {
        return Ok((RateHeaders::Unlimited, None));
    };
    let (now, owner) = {
        let model = api.model.lock().unwrap();
        let owner = match auth {
            Auth::App(app) => Some((app, Scope::App(app))),
            Auth::Installation(i) => model.app_of(i).map(|app| (app, Scope::Installation(i))),
            Auth::None => None,
        };
        (model.clock.now(), owner)
    };
    let Some((app, scope)) = owner else {
        return Ok((RateHeaders::Unlimited, None));
    };
    let points = QuotaSettings::points(method.as_str());
    match limits.lock().unwrap().admit(app, scope, points, now) {
        Ok(primary) => Ok((RateHeaders::Primary(primary), Some(app))),
        Err(refusal) => Err(Box::new(Reply {
            answer: (
                StatusCode::FORBIDDEN,
                json!({ "message": refusal_message(&refusal, scope) }),
            ),
            fault: crate::faults::Fault::None,
            rate: RateHeaders::Refused(refusal),
            in_flight: None,
            link: None,
        })),
    }
}

/// GitHub's words for each refusal.
fn refusal_message(refusal: &Refusal, scope: Scope) -> String {
    match (refusal.kind, scope) {
        (LimitKind::Primary, Scope::Installation(i)) => {
            format!("API rate limit exceeded for installation ID {i}.")
        }
        (LimitKind::Primary, Scope::App(app)) => format!("API rate limit exceeded for App {app}."),
        _ => "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID."
            .to_string(),
    }
}
