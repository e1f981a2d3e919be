//! RunTask, as ECS checks it: a launch type or a capacity provider strategy but not both,
//! a network configuration for Fargate, `startedBy` and `clientToken` within their
//! lengths, and tags within ECS's limits.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::{EcsApi, JIT_CONFIG_ENV, answer, client_error, throttling};
use crate::model::{EcsError, Model, RunTaskRequest};

pub(super) fn str_field<'a>(request: &'a Value, name: &str) -> Option<&'a str> {
    request.get(name).and_then(Value::as_str)
}

/// RunTask: one task (or, for a client token seen before, the task it started), once the
/// request passes ECS's checks and, for a Fargate task, the launch bucket has a token.
pub(super) fn run_task(api: &EcsApi, model: &mut Model, request: &Value) -> Response {
    let invalid = |m: &str| client_error(&EcsError::InvalidParameter(m.into()));
    let Some(task_definition) = str_field(request, "taskDefinition") else {
        return invalid("taskDefinition is required");
    };
    if request
        .get("count")
        .and_then(Value::as_u64)
        .is_some_and(|c| c != 1)
    {
        return invalid("the simulator starts one task per RunTask");
    }
    let started_by = str_field(request, "startedBy");
    if started_by.is_some_and(|s| s.len() > 36) {
        return invalid("startedBy must be at most 36 characters");
    }
    let client_token = str_field(request, "clientToken");
    if client_token.is_some_and(|t| t.is_empty() || t.len() > 64) {
        return invalid("clientToken must be 1 to 64 characters");
    }
    let launch_type = str_field(request, "launchType");
    let strategy = request
        .get("capacityProviderStrategy")
        .and_then(Value::as_array);
    if launch_type.is_some() && strategy.is_some() {
        return invalid(
            "Specifying both a launch type and capacity provider strategy is not supported.",
        );
    }
    let capacity_provider = strategy
        .and_then(|s| s.first())
        .and_then(|s| s.get("capacityProvider"))
        .and_then(Value::as_str);
    let fargate = launch_type == Some("FARGATE")
        || capacity_provider.is_some_and(|p| p.starts_with("FARGATE"));
    if fargate
        && request
            .pointer("/networkConfiguration/awsvpcConfiguration/subnets")
            .is_none()
    {
        return invalid(
            "Network Configuration must be provided when networkMode 'awsvpc' is specified.",
        );
    }
    let tags = match tags(request) {
        Ok(tags) => tags,
        Err(message) => return invalid(&message),
    };
    let replay = client_token.is_some_and(|t| model.knows_client_token(t));
    if fargate && !replay && !api.may_launch(model.clock.now()) {
        return throttling();
    }
    let overrides = request.get("overrides").cloned().unwrap_or(Value::Null);
    let jit = overrides
        .get("containerOverrides")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("environment").and_then(Value::as_array))
        .flatten()
        .find(|e| e.get("name").and_then(Value::as_str) == Some(JIT_CONFIG_ENV))
        .and_then(|e| e.get("value"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let arn = model.run_task(RunTaskRequest {
        task_definition: task_definition.to_string(),
        started_by: started_by.map(str::to_string),
        client_token: client_token.map(str::to_string),
        launch_type: launch_type
            .map(str::to_string)
            .or_else(|| fargate.then(|| "FARGATE".to_string())),
        capacity_provider: capacity_provider.map(str::to_string),
        jit,
        overrides,
        tags,
        managed_tags: request.get("enableECSManagedTags") == Some(&Value::Bool(true)),
    });
    answer(
        StatusCode::OK,
        json!({"tasks": [model.task_json(&arn, false)], "failures": []}),
    )
}

/// RunTask's `tags`, within ECS's limits: at most 50, keys 1 to 128 characters and unique,
/// values at most 256, and no `aws:` prefix on either (it is ECS's own).
fn tags(request: &Value) -> Result<Vec<(String, String)>, String> {
    let Some(tags) = request.get("tags") else {
        return Ok(Vec::new());
    };
    let tags = tags.as_array().ok_or("tags must be a list")?;
    if tags.len() > 50 {
        return Err("Tags cannot be more than 50.".into());
    }
    let reserved = |s: &str| s.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("aws:"));
    let mut out: Vec<(String, String)> = Vec::new();
    for tag in tags {
        let key = tag.get("key").and_then(Value::as_str).unwrap_or_default();
        let value = match tag.get("value") {
            None => "",
            Some(v) => v.as_str().ok_or("a tag's value must be a string")?,
        };
        if key.is_empty() || key.chars().count() > 128 {
            return Err("Tag keys must be 1 to 128 characters.".into());
        }
        if value.chars().count() > 256 {
            return Err("Tag values must be at most 256 characters.".into());
        }
        if reserved(key) || reserved(value) {
            return Err("Tag keys and values cannot start with aws: (reserved).".into());
        }
        if out.iter().any(|(k, _)| k == key) {
            return Err(format!("Duplicate tag key: {key}"));
        }
        out.push((key.to_string(), value.to_string()));
    }
    Ok(out)
}
