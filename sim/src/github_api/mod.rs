//! The simulated GitHub REST API, as strict as the tests' fake GitHub: a `User-Agent`, the
//! GitHub JSON media type, an App JWT signed with the App's key (RS256, at most 10
//! minutes) or an unexpired installation token for that account, and bodies with only
//! the keys GitHub permits. Lists are paged as GitHub pages them (`per_page`, `page`, a
//! `Link` header), and a workflow job is readable by the installation on its repository.

mod auth;
mod paging;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{SecondsFormat, Utc};
use jsonwebtoken::DecodingKey;
use serde_json::{Value, json};

use crate::faults::{Fault, Faults};
use crate::model::{DeleteError, JitError, Model};
use auth::{Auth, accepts_github_json, authenticate};
use paging::{pagination, query_pairs};

pub struct GitHubApi {
    pub model: Arc<Mutex<Model>>,
    pub faults: Faults,
    key: DecodingKey,
    app_id: u64,
    /// Calls by endpoint, failed ones included (unknown paths are not counted).
    calls: Mutex<BTreeMap<&'static str, u64>>,
}

impl GitHubApi {
    pub fn new(model: Arc<Mutex<Model>>, faults: Faults) -> anyhow::Result<Self> {
        let (pem, app_id) = {
            let model = model.lock().unwrap();
            (
                model.settings.app_public_key_pem.clone(),
                model.settings.app_id,
            )
        };
        let key = DecodingKey::from_rsa_pem(&pem)?;
        Ok(Self {
            model,
            faults,
            key,
            app_id,
            calls: Mutex::default(),
        })
    }

    /// Calls so far, by endpoint: `mint`, `installation`, `runner_groups`, `jitconfig`,
    /// `list_runners`, `delete_runner`, `workflow_job`.
    pub fn calls(&self) -> Vec<(&'static str, u64)> {
        let calls = self.calls.lock().unwrap();
        calls.iter().map(|(e, n)| (*e, *n)).collect()
    }
}

type Answer = (StatusCode, Value);

fn message(status: StatusCode, text: &str) -> Answer {
    (status, json!({ "message": text }))
}

pub async fn handle(
    State(api): State<Arc<GitHubApi>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (answer, fault) = answer(&api, &method, &uri, &headers, &body);
    if fault == Fault::Timeout {
        tokio::time::sleep(api.faults.hold()).await;
    }
    let link = (answer.0 == StatusCode::OK)
        .then(|| page_link(&uri, &headers, &answer.1))
        .flatten();
    let mut response = respond(answer);
    if let Some(link) = link.and_then(|l| HeaderValue::from_str(&l).ok()) {
        response
            .headers_mut()
            .insert(axum::http::header::LINK, link);
    }
    response
}

/// The `Link` header for an answer that is a page of a list (it has a `total_count`).
fn page_link(uri: &Uri, headers: &HeaderMap, body: &Value) -> Option<String> {
    let total = body.get("total_count")?.as_u64()?;
    let query = uri.query().unwrap_or_default();
    let pages = pagination(
        query,
        &["per_page", "page", "name", "visible_to_repository"],
    )
    .ok()?;
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("api.github.com");
    paging::link(host, uri.path(), query, total as usize, pages)
}

fn respond((status, body): Answer) -> Response {
    let reset = (Utc::now().timestamp() + 3600).to_string();
    let mut response = if status == StatusCode::NO_CONTENT {
        status.into_response()
    } else {
        (status, axum::Json(body)).into_response()
    };
    let headers = response.headers_mut();
    for (name, value) in [
        ("x-ratelimit-limit", "5000".to_string()),
        ("x-ratelimit-remaining", "4000".to_string()),
        ("x-ratelimit-reset", reset),
        ("x-ratelimit-resource", "core".to_string()),
    ] {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_str(&value).expect("ASCII"),
        );
    }
    response
}

fn answer(
    api: &GitHubApi,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> (Answer, Fault) {
    if !headers.contains_key("user-agent") {
        let text = "Request forbidden: please make sure your request has a User-Agent header";
        return (message(StatusCode::FORBIDDEN, text), Fault::None);
    }
    if !accepts_github_json(headers) {
        let text = "Unsupported 'Accept' header: send application/vnd.github+json";
        return (
            message(StatusCode::UNSUPPORTED_MEDIA_TYPE, text),
            Fault::None,
        );
    }
    let auth = authenticate(api, headers);
    let path: Vec<&str> = uri.path().trim_start_matches('/').split('/').collect();
    let query = uri.query().unwrap_or_default();
    let json: Option<Value> = if body.is_empty() {
        None
    } else {
        match serde_json::from_slice(body) {
            Ok(v) => Some(v),
            Err(_) => {
                return (
                    message(StatusCode::BAD_REQUEST, "Problems parsing JSON"),
                    Fault::None,
                );
            }
        }
    };
    let (endpoint, key) = match (method, path.as_slice()) {
        (&Method::POST, ["app", "installations", id, "access_tokens"]) => ("mint", id.to_string()),
        (&Method::GET, ["orgs" | "repos", ..]) if path.last() == Some(&"installation") => {
            ("installation", uri.path().to_string())
        }
        (&Method::GET, ["orgs", _, "actions", "runner-groups"]) => {
            ("runner_groups", query.to_string())
        }
        (&Method::POST, ["orgs", _, "actions", "runners", "generate-jitconfig"]) => (
            "jitconfig",
            json.as_ref()
                .and_then(|b| b.get("name"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        ),
        (&Method::GET, ["orgs", _, "actions", "runners"]) => ("list_runners", query.to_string()),
        (&Method::DELETE, ["orgs", _, "actions", "runners", id]) => {
            ("delete_runner", id.to_string())
        }
        (&Method::GET, ["repos", _, _, "actions", "jobs", id]) => ("workflow_job", id.to_string()),
        _ => return (message(StatusCode::NOT_FOUND, "Not Found"), Fault::None),
    };
    *api.calls.lock().unwrap().entry(endpoint).or_default() += 1;
    let fault = api.faults.decide(endpoint, &key);
    if fault == Fault::Error {
        return (message(StatusCode::BAD_GATEWAY, "Server Error"), fault);
    }
    let mut model = api.model.lock().unwrap();
    let answer = match (endpoint, path.as_slice()) {
        ("mint", [_, _, id, _]) => {
            if auth != Auth::App {
                unauthorized()
            } else {
                mint(&mut model, id, json.as_ref())
            }
        }
        ("installation", [kind, account, ..]) => {
            if auth != Auth::App {
                unauthorized()
            } else {
                let account = if *kind == "orgs" { *account } else { account };
                match model.installation_of(account) {
                    Some(id) => (
                        StatusCode::OK,
                        json!({"id": id, "account": {"login": account}, "app_id": api.app_id}),
                    ),
                    None => message(StatusCode::NOT_FOUND, "Not Found"),
                }
            }
        }
        ("workflow_job", ["repos", owner, repo, _, _, id]) => {
            workflow_job(&model, &auth, owner, repo, id)
        }
        (_, ["orgs", org, ..]) => {
            let installation = model.installation_of(org);
            match auth {
                Auth::Installation(i) if Some(i) == installation => {
                    org_call(&mut model, endpoint, &path, query, json.as_ref())
                }
                Auth::Installation(_) => message(
                    StatusCode::FORBIDDEN,
                    "Resource not accessible by integration",
                ),
                _ => unauthorized(),
            }
        }
        _ => message(StatusCode::NOT_FOUND, "Not Found"),
    };
    (answer, fault)
}

/// A job, for the installation on its repository's owner; 404 for a job not in that
/// repository, and for another installation's token (GitHub hides what a token cannot
/// see).
fn workflow_job(model: &Model, auth: &Auth, owner: &str, repo: &str, id: &str) -> Answer {
    let Auth::Installation(installation) = *auth else {
        return unauthorized();
    };
    let not_found = || message(StatusCode::NOT_FOUND, "Not Found");
    if model.installation_of(owner) != Some(installation) {
        return not_found();
    }
    id.parse()
        .ok()
        .and_then(|id| model.workflow_job(&format!("{owner}/{repo}"), id))
        .map_or_else(not_found, |job| (StatusCode::OK, job))
}

fn unauthorized() -> Answer {
    message(StatusCode::UNAUTHORIZED, "Bad credentials")
}

fn invalid(text: &str) -> Answer {
    message(StatusCode::UNPROCESSABLE_ENTITY, text)
}

fn mint(model: &mut Model, id: &str, body: Option<&Value>) -> Answer {
    if let Some(body) = body
        && let Some(key) = body.as_object().and_then(|o| {
            o.keys()
                .find(|k| !["repositories", "repository_ids", "permissions"].contains(&k.as_str()))
        })
    {
        return invalid(&format!("Invalid request: {key} is not a permitted key"));
    }
    let Some((token, _)) = id.parse().ok().and_then(|id| model.mint(id)) else {
        return message(StatusCode::NOT_FOUND, "Not Found");
    };
    let expires =
        (Utc::now() + chrono::Duration::hours(1)).to_rfc3339_opts(SecondsFormat::Secs, true);
    (
        StatusCode::CREATED,
        json!({
            "token": token,
            "expires_at": expires,
            "permissions": {"organization_self_hosted_runners": "write"},
            "repository_selection": "all",
        }),
    )
}

fn org_call(
    model: &mut Model,
    endpoint: &str,
    path: &[&str],
    query: &str,
    body: Option<&Value>,
) -> Answer {
    match endpoint {
        "runner_groups" => {
            match pagination(query, &["per_page", "page", "visible_to_repository"]) {
                Err(answer) => answer,
                Ok((per_page, page)) => {
                    let groups: Vec<Value> = model
                    .runner_groups()
                    .iter()
                    .skip((page - 1) * per_page)
                    .take(per_page)
                    .map(|g| json!({"id": g.id, "name": g.name, "default": g.id == 1, "visibility": "all"}))
                    .collect();
                    (
                        StatusCode::OK,
                        json!({"total_count": model.runner_groups().len(), "runner_groups": groups}),
                    )
                }
            }
        }
        "jitconfig" => jit(model, body),
        "list_runners" => match pagination(query, &["per_page", "page", "name"]) {
            Err(answer) => answer,
            Ok((per_page, page)) => {
                let name = query_pairs(query)
                    .into_iter()
                    .find(|(k, _)| k == "name")
                    .map(|(_, v)| v);
                let (total, runners) = model.list_runners(name.as_deref(), page, per_page);
                (
                    StatusCode::OK,
                    json!({"total_count": total, "runners": runners}),
                )
            }
        },
        "delete_runner" => {
            let id = path.last().and_then(|id| id.parse::<u64>().ok());
            match id.map(|id| model.delete_runner(id)) {
                Some(Ok(())) => (StatusCode::NO_CONTENT, Value::Null),
                Some(Err(DeleteError::Busy)) => {
                    invalid("Bad request - Runner \"busy\" is still running a job")
                }
                Some(Err(DeleteError::NotFound)) | None => {
                    message(StatusCode::NOT_FOUND, "Not Found")
                }
            }
        }
        _ => message(StatusCode::NOT_FOUND, "Not Found"),
    }
}

fn jit(model: &mut Model, body: Option<&Value>) -> Answer {
    let Some(Value::Object(body)) = body else {
        return invalid("Invalid request: a JSON object is required");
    };
    if let Some(key) = body
        .keys()
        .find(|k| !["name", "runner_group_id", "labels", "work_folder"].contains(&k.as_str()))
    {
        return invalid(&format!("Invalid request: {key} is not a permitted key"));
    }
    let Some(name) = body
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
    else {
        return invalid("Invalid request: name must be a non-empty string");
    };
    let Some(group) = body.get("runner_group_id").and_then(Value::as_u64) else {
        return invalid("Invalid request: runner_group_id must be an integer");
    };
    let labels: Option<Vec<String>> = body
        .get("labels")
        .and_then(Value::as_array)
        .filter(|l| !l.is_empty() && l.len() <= 100)
        .and_then(|l| l.iter().map(|v| v.as_str().map(str::to_string)).collect());
    let Some(labels) = labels else {
        return invalid("Invalid request: labels must be a non-empty array of strings");
    };
    if body.get("work_folder").is_some_and(|w| !w.is_string()) {
        return invalid("Invalid request: work_folder must be a string");
    }
    match model.register_jit(name, labels, group) {
        Ok((runner, encoded)) => (
            StatusCode::CREATED,
            json!({"runner": runner, "encoded_jit_config": encoded}),
        ),
        Err(JitError::Conflict) => message(
            StatusCode::CONFLICT,
            "Already exists - A runner with the name already exists.",
        ),
        Err(JitError::NoGroup) => message(StatusCode::NOT_FOUND, "Not Found"),
    }
}
