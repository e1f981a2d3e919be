//! Requests straight to the fake, as GitHub's clients send them rather than through
//! dockhand's client: for checking the fake itself, and for tests that need a request
//! dockhand would never make.

use reqwest::Method;
use serde_json::{Value, json};

use super::FakeGitHub;

/// The media type GitHub's docs ask every REST call to accept.
pub const GITHUB_JSON: &str = "application/vnd.github+json";
/// The first App's private key (a fixture file).
pub const TEST_KEY: &str = "github-app-test-key.pem";
/// The second App's private key (a fixture file).
pub const SECOND_KEY: &str = "github-app-second-key.pem";

/// One request, as (status, JSON body; `null` if the body is not JSON).
pub async fn raw(
    fake: &FakeGitHub,
    method: Method,
    path: &str,
    bearer: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let response = send(fake, method, path, bearer, body).await;
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// One request, with a User-Agent, GitHub's `Accept` and `bearer` if given.
pub async fn send(
    fake: &FakeGitHub,
    method: Method,
    path: &str,
    bearer: Option<&str>,
    body: Option<Value>,
) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .request(method, format!("{}{path}", fake.url))
        .header("user-agent", "dockhand-tests")
        .header("accept", GITHUB_JSON);
    if let Some(bearer) = bearer {
        request = request.header("authorization", format!("Bearer {bearer}"));
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    request.send().await.unwrap()
}

pub async fn get(fake: &FakeGitHub, path: &str, bearer: Option<&str>) -> (u16, Value) {
    raw(fake, Method::GET, path, bearer, None).await
}

pub async fn post(
    fake: &FakeGitHub,
    path: &str,
    bearer: Option<&str>,
    body: Value,
) -> (u16, Value) {
    raw(fake, Method::POST, path, bearer, Some(body)).await
}

/// A response header's value; panics if it is missing.
pub fn header(response: &reqwest::Response, name: &str) -> String {
    response.headers()[name].to_str().unwrap().to_string()
}

/// An App JWT signed with `key` (a fixture file), issued `iat` and expiring `exp` seconds
/// from now.
pub fn jwt(key: &str, iss: u64, iat: i64, exp: i64) -> String {
    let pem = std::fs::read(super::fixture(key)).unwrap();
    let now = chrono::Utc::now().timestamp();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &json!({"iss": iss, "iat": now + iat, "exp": now + exp}),
        &jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap(),
    )
    .unwrap()
}

/// A good JWT for `app`, signed with `key`: issued a minute ago, for nine minutes.
pub fn app_jwt(key: &str, app: u64) -> String {
    jwt(key, app, -60, 540)
}

/// Mints a token for `installation` with `bearer`: (status, the token or "").
pub async fn mint_with(fake: &FakeGitHub, bearer: &str, installation: u64) -> (u16, String) {
    let path = format!("/app/installations/{installation}/access_tokens");
    let (status, body) = raw(fake, Method::POST, &path, Some(bearer), None).await;
    let token = body["token"].as_str().unwrap_or_default().to_string();
    (status, token)
}
