//! ListTasks (by `startedBy` alone, or by desired status, in pages of at most 100),
//! DescribeTasks (at most 100 ARNs, tags only when asked to include them) and StopTask.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::run_task::str_field;
use super::{answer, client_error};
use crate::model::{EcsError, Model};

pub(super) fn list_tasks(model: &Model, request: &Value) -> Response {
    let invalid = |m: &str| client_error(&EcsError::InvalidParameter(m.into()));
    let started_by = str_field(request, "startedBy");
    let others = [
        "family",
        "serviceName",
        "containerInstance",
        "launchType",
        "desiredStatus",
    ];
    if started_by.is_some() && others.iter().any(|f| request.get(*f).is_some()) {
        return invalid("startedBy must be the only filter when it is specified");
    }
    if others[..4].iter().any(|f| request.get(*f).is_some()) {
        return invalid("the simulator filters ListTasks by startedBy or desiredStatus only");
    }
    let max = request
        .get("maxResults")
        .and_then(Value::as_u64)
        .unwrap_or(100);
    if !(1..=100).contains(&max) {
        return invalid("maxResults must be between 1 and 100");
    }
    let desired_stopped = match str_field(request, "desiredStatus") {
        None | Some("RUNNING") => false,
        Some("STOPPED") => true,
        Some(other) => {
            return invalid(&format!(
                "desiredStatus {other} is not RUNNING, PENDING or STOPPED"
            ));
        }
    };
    let start = match str_field(request, "nextToken") {
        None => 0,
        Some(token) => match token.strip_prefix("sim-page-").and_then(|n| n.parse().ok()) {
            Some(n) => n,
            None => return invalid("Invalid nextToken"),
        },
    };
    let (arns, next) = model.list_tasks(started_by, desired_stopped, start, max as usize);
    let mut body = json!({"taskArns": arns});
    if let Some(next) = next {
        body["nextToken"] = json!(format!("sim-page-{next}"));
    }
    answer(StatusCode::OK, body)
}

pub(super) fn describe_tasks(model: &Model, request: &Value) -> Response {
    let Some(arns) = request.get("tasks").and_then(Value::as_array) else {
        return client_error(&EcsError::InvalidParameter("Tasks cannot be empty.".into()));
    };
    if arns.is_empty() {
        return client_error(&EcsError::InvalidParameter("Tasks cannot be empty.".into()));
    }
    if arns.len() > 100 {
        return client_error(&EcsError::InvalidParameter(
            "Tasks cannot be longer than 100.".into(),
        ));
    }
    let include_tags = match request.get("include") {
        None => false,
        Some(Value::Array(fields)) => {
            if let Some(other) = fields.iter().find(|f| f.as_str() != Some("TAGS")) {
                return client_error(&EcsError::InvalidParameter(format!(
                    "include: {other} is not a valid value (TAGS)"
                )));
            }
            !fields.is_empty()
        }
        Some(_) => {
            return client_error(&EcsError::InvalidParameter("include must be a list".into()));
        }
    };
    let mut tasks = Vec::new();
    let mut failures = Vec::new();
    for arn in arns.iter().filter_map(Value::as_str) {
        let full = if arn.starts_with("arn:") {
            arn.to_string()
        } else {
            format!(
                "arn:aws:ecs:us-east-1:123456789012:task/{}/{arn}",
                model.settings.cluster
            )
        };
        if model.tasks.contains_key(&full) {
            tasks.push(model.task_json(&full, include_tags));
        } else {
            failures.push(json!({"arn": arn, "reason": "MISSING"}));
        }
    }
    answer(
        StatusCode::OK,
        json!({"tasks": tasks, "failures": failures}),
    )
}

pub(super) fn stop_task(model: &mut Model, request: &Value) -> Response {
    let Some(task) = str_field(request, "task") else {
        return client_error(&EcsError::InvalidParameter("task is required".into()));
    };
    let reason = str_field(request, "reason").unwrap_or_default();
    if reason.len() > 255 {
        return client_error(&EcsError::InvalidParameter(
            "reason must be at most 255 characters".into(),
        ));
    }
    match model.stop_task(task, reason) {
        Ok(()) => answer(
            StatusCode::OK,
            json!({"task": model.task_json(task, false)}),
        ),
        Err(e) => client_error(&e),
    }
}
