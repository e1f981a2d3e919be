//! What each endpoint does once the call is routed, authenticated and within the limits:
//! mint an installation token, show a workflow job, and the org's runner endpoints
//! (runner groups, JIT configs, the runner list, deleting a runner).

use axum::http::StatusCode;
use chrono::{SecondsFormat, Utc};
use serde_json::{Value, json};

use super::auth::Auth;
use super::paging::{pagination, query_pairs};
use super::{Answer, message};
use crate::model::{DeleteError, JitError, Model};

/// A job, for the installation on its repository's owner; 404 for a job not in that
/// repository, and for another installation's token (GitHub hides what a token cannot
/// see).
pub(super) fn workflow_job(model: &Model, auth: Auth, owner: &str, repo: &str, id: &str) -> Answer {
    let Auth::Installation(installation) = auth else {
        return unauthorized();
    };
    let not_found = || message(StatusCode::NOT_FOUND, "Not Found");
    if !model.serves(owner, installation) {
        return not_found();
    }
    id.parse()
        .ok()
        .and_then(|id| model.workflow_job(&format!("{owner}/{repo}"), id))
        .map_or_else(not_found, |job| (StatusCode::OK, job))
}

pub(super) fn unauthorized() -> Answer {
    message(StatusCode::UNAUTHORIZED, "Bad credentials")
}

pub(super) fn invalid(text: &str) -> Answer {
    message(StatusCode::UNPROCESSABLE_ENTITY, text)
}

/// `GET /app/installations/{id}`: the installation, for the App it belongs to; 404 for any
/// other App (GitHub shows an App only its own installations).
pub(super) fn app_installation(model: &Model, app: u64, id: &str) -> Answer {
    match id.parse().ok().filter(|&i| model.app_of(i) == Some(app)) {
        Some(installation) => (
            StatusCode::OK,
            json!({
                "id": installation,
                "app_id": app,
                "account": {"login": model.settings.org},
                "target_type": "Organization",
            }),
        ),
        None => message(StatusCode::NOT_FOUND, "Not Found"),
    }
}

/// An installation token for App `app`'s installation `id`; 404 for another App's.
pub(super) fn mint(model: &mut Model, app: u64, id: &str, body: Option<&Value>) -> Answer {
    if let Some(body) = body
        && let Some(key) = body.as_object().and_then(|o| {
            o.keys()
                .find(|k| !["repositories", "repository_ids", "permissions"].contains(&k.as_str()))
        })
    {
        return invalid(&format!("Invalid request: {key} is not a permitted key"));
    }
    let Some((token, _)) = id.parse().ok().and_then(|id| model.mint(app, id)) else {
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

pub(super) fn org_call(
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
