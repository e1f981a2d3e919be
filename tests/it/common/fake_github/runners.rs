//! Self-hosted runners and runner groups. Runners belong to their org or repository, not to
//! an App: any App installed there lists and deletes them, as GitHub allows. Each runner
//! remembers which App registered it.

use axum::http::StatusCode;
use dockhand::github::RunnerTarget;
use serde_json::{Value, json};

use super::{Answer, FakeGitHub, FakeState, invalid, message, not_found};

pub(super) const FIRST_RUNNER_ID: u64 = 1001;

/// A registered self-hosted runner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeRunner {
    pub id: u64,
    pub name: String,
    pub labels: Vec<String>,
    pub runner_group_id: u64,
    pub target: RunnerTarget,
    pub busy: bool,
    pub work_folder: String,
    pub encoded_jit_config: String,
    /// The App whose installation registered it (the first App for
    /// [`FakeGitHub::register_runner`]).
    pub app: u64,
}

impl FakeGitHub {
    /// Adds a runner group to an org (every org already has "Default" = 1).
    pub fn add_runner_group(&self, org: &str, name: &str, id: u64) {
        self.lock()
            .groups
            .entry(org.to_lowercase())
            .or_default()
            .push((id, name.to_string()));
    }

    /// From now on the runner list ignores `?name=` and answers every runner, paged, as
    /// older GitHub Enterprise Server does.
    pub fn ignore_runner_name_filter(&self) {
        self.lock().ignore_runner_name_filter = true;
    }

    /// The runners currently registered.
    pub fn runners(&self) -> Vec<FakeRunner> {
        self.lock().runners.clone()
    }

    /// Registers a runner through the first App as if an earlier launch had (a stale
    /// registration); returns its id.
    pub fn register_runner(&self, target: &RunnerTarget, name: &str, busy: bool) -> u64 {
        let mut state = self.lock();
        let id = state.next_runner_id;
        state.next_runner_id += 1;
        let app = state.apps[0].id;
        state.runners.push(FakeRunner {
            id,
            name: name.to_string(),
            labels: vec!["self-hosted".to_string()],
            runner_group_id: 1,
            target: target.clone(),
            busy,
            work_folder: "_work".to_string(),
            encoded_jit_config: format!("pre-registered-{id}"),
            app,
        });
        id
    }

    /// Forgets a runner, as GitHub does once an ephemeral runner has run its one job.
    pub fn forget_runner(&self, runner_id: u64) {
        self.lock().runners.retain(|r| r.id != runner_id);
    }

    /// Marks a runner busy (running a job) or idle.
    pub fn set_busy(&self, runner_id: u64, busy: bool) {
        let mut state = self.lock();
        let runner = state
            .runners
            .iter_mut()
            .find(|r| r.id == runner_id)
            .unwrap_or_else(|| panic!("no runner {runner_id} is registered"));
        runner.busy = busy;
    }
}

impl FakeState {
    fn groups_of(&self, org: &str) -> Vec<(u64, String)> {
        let mut groups = vec![(1, "Default".to_string())];
        groups.extend(
            self.groups
                .get(&org.to_lowercase())
                .into_iter()
                .flatten()
                .cloned(),
        );
        groups.sort();
        groups
    }

    pub(super) fn runner_groups(&self, org: &str, query: Option<&str>) -> Answer {
        let (per_page, page) =
            match pagination(query, &["per_page", "page", "visible_to_repository"]) {
                Ok(p) => p,
                Err(answer) => return answer,
            };
        let groups = self.groups_of(org);
        let items: Vec<Value> = groups
            .iter()
            .skip((page - 1) * per_page)
            .take(per_page)
            .map(|(id, name)| {
                json!({
                    "id": id,
                    "name": name,
                    "visibility": "all",
                    "default": *id == 1,
                    "inherited": false,
                    "allows_public_repositories": false,
                })
            })
            .collect();
        (
            StatusCode::OK,
            json!({"total_count": groups.len(), "runner_groups": items}),
        )
    }

    /// Registers a just-in-time runner for App `app`'s installation.
    pub(super) fn jit(&mut self, app: u64, target: RunnerTarget, body: Option<Value>) -> Answer {
        let Some(Value::Object(body)) = body else {
            return invalid("Invalid request: a JSON object is required");
        };
        if let Some(field) = body
            .keys()
            .find(|k| !["name", "runner_group_id", "labels", "work_folder"].contains(&k.as_str()))
        {
            return invalid(&format!("Invalid request: {field} is not a permitted key"));
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
            .filter(|l| !l.is_empty())
            .and_then(|l| l.iter().map(|v| v.as_str().map(str::to_string)).collect());
        let Some(labels) = labels else {
            return invalid("Invalid request: labels must be a non-empty array of strings");
        };
        let Some(work_folder) = body.get("work_folder").and_then(Value::as_str) else {
            return invalid("Invalid request: work_folder must be a string");
        };
        let group_exists = match &target {
            RunnerTarget::Org(org) => self.groups_of(org).iter().any(|(id, _)| *id == group),
            RunnerTarget::Repo { .. } => group == 1,
        };
        if !group_exists {
            return not_found();
        }
        if self
            .runners
            .iter()
            .any(|r| r.target == target && r.name == name)
        {
            return message(
                StatusCode::CONFLICT,
                "Already exists - A runner with the name already exists.",
            );
        }
        let id = self.next_runner_id;
        self.next_runner_id += 1;
        let encoded = format!("jit-{id}-{}", uuid::Uuid::new_v4().simple());
        let runner = FakeRunner {
            id,
            name: name.to_string(),
            labels,
            runner_group_id: group,
            target,
            busy: false,
            work_folder: work_folder.to_string(),
            encoded_jit_config: encoded.clone(),
            app,
        };
        let json_runner = runner_json(&runner);
        self.runners.push(runner);
        (
            StatusCode::CREATED,
            json!({"runner": json_runner, "encoded_jit_config": encoded}),
        )
    }

    pub(super) fn list_runners(&self, target: &RunnerTarget, query: Option<&str>) -> Answer {
        let (per_page, page) = match pagination(query, &["per_page", "page", "name"]) {
            Ok(p) => p,
            Err(answer) => return answer,
        };
        let name = query_pairs(query)
            .into_iter()
            .find(|(k, _)| k == "name" && !self.ignore_runner_name_filter)
            .map(|(_, v)| v);
        let matching: Vec<&FakeRunner> = self
            .runners
            .iter()
            .filter(|r| &r.target == target)
            .filter(|r| name.as_ref().is_none_or(|n| *n == r.name))
            .collect();
        let items: Vec<Value> = matching
            .iter()
            .skip((page - 1) * per_page)
            .take(per_page)
            .map(|r| runner_json(r))
            .collect();
        (
            StatusCode::OK,
            json!({"total_count": matching.len(), "runners": items}),
        )
    }

    pub(super) fn delete_runner(&mut self, target: &RunnerTarget, id: &str) -> Answer {
        let Some(index) = id.parse::<u64>().ok().and_then(|id| {
            self.runners
                .iter()
                .position(|r| r.id == id && &r.target == target)
        }) else {
            return not_found();
        };
        if self.runners[index].busy {
            return invalid("Bad request - Runner \"busy\" is still running a job\"");
        }
        self.runners.remove(index);
        (StatusCode::NO_CONTENT, Value::Null)
    }
}

fn runner_json(runner: &FakeRunner) -> Value {
    json!({
        "id": runner.id,
        "name": runner.name,
        "os": "unknown",
        "status": if runner.busy { "online" } else { "offline" },
        "busy": runner.busy,
        "runner_group_id": runner.runner_group_id,
        "labels": runner.labels.iter().map(|l| json!({"name": l, "type": "custom"})).collect::<Vec<_>>(),
    })
}

fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// `per_page` (1..=100, default 30) and `page` (from 1, default 1); 422 for keys outside
/// `allowed` or values out of range.
fn pagination(query: Option<&str>, allowed: &[&str]) -> Result<(usize, usize), Answer> {
    let mut per_page = 30;
    let mut page = 1;
    for (key, value) in query_pairs(query) {
        if !allowed.contains(&key.as_str()) {
            return Err(invalid(&format!(
                "Invalid request: unknown parameter {key}"
            )));
        }
        let number = || value.parse::<usize>().ok();
        match key.as_str() {
            "per_page" => match number() {
                Some(n @ 1..=100) => per_page = n,
                _ => return Err(invalid("Invalid request: per_page must be 1 to 100")),
            },
            "page" => match number() {
                Some(n @ 1..) => page = n,
                _ => return Err(invalid("Invalid request: page must be at least 1")),
            },
            _ => {}
        }
    }
    Ok((per_page, page))
}
