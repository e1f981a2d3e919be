//! Who a call is from: one of the Apps (a JWT signed with the key of the App its `iss`
//! names, RS256, at most 10 minutes) or one installation (a token the simulator minted
//! that has not expired).

use axum::http::HeaderMap;
use chrono::Utc;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::Value;

use super::GitHubApi;

/// An App JWT may live at most this long.
const MAX_JWT_LIFETIME: u64 = 600;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Auth {
    None,
    /// The App with this id.
    App(u64),
    Installation(u64),
}

pub(super) fn authenticate(api: &GitHubApi, headers: &HeaderMap) -> Auth {
    let Some(bearer) = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("token "))
        })
    else {
        return Auth::None;
    };
    if bearer.starts_with("ghs_") {
        return api
            .model
            .lock()
            .unwrap()
            .token_installation(bearer)
            .map_or(Auth::None, Auth::Installation);
    }
    verify_jwt(api, bearer).map_or(Auth::None, Auth::App)
}

/// The App whose JWT this is: issued by one of the Apps, signed with that App's key
/// (RS256), unexpired, living ≤ 10 minutes.
fn verify_jwt(api: &GitHubApi, token: &str) -> Option<u64> {
    let claimed = jsonwebtoken::dangerous::insecure_decode::<Value>(token).ok()?;
    let iss = match claimed.claims.get("iss") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    }?;
    let key = api.keys.get(&iss)?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.leeway = 0;
    validation.set_required_spec_claims(&["exp"]);
    let claims = jsonwebtoken::decode::<Value>(token, key, &validation)
        .ok()?
        .claims;
    let (Some(iat), Some(exp)) = (
        claims.get("iat").and_then(Value::as_u64),
        claims.get("exp").and_then(Value::as_u64),
    ) else {
        return None;
    };
    let now = Utc::now().timestamp() as u64;
    (exp > iat && exp - iat <= MAX_JWT_LIFETIME && iat <= now + 60).then_some(iss)
}

pub(super) fn accepts_github_json(headers: &HeaderMap) -> bool {
    headers
        .get_all("accept")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.split(';').next().unwrap_or_default().trim() == "application/vnd.github+json")
}
