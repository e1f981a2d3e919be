//! GitHub's side of the model: installation tokens, runner groups, JIT registrations, the
//! runner list, deleting runners, and workflow jobs as the REST API shows them.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Model, Origin, Runner, RunnerState, payload};

/// How long an installation token lives, as GitHub's do.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone)]
pub struct RunnerGroup {
    pub id: u64,
    pub name: &'static str,
}

/// Why a JIT registration was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JitError {
    /// 409: a runner with the name exists.
    Conflict,
    /// 404: no such runner group.
    NoGroup,
}

/// Why a runner could not be deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteError {
    NotFound,
    /// 422: it is running a job.
    Busy,
}

impl Model {
    pub fn runner_groups(&self) -> Vec<RunnerGroup> {
        vec![RunnerGroup {
            id: 1,
            name: "Default",
        }]
    }

    /// App `app`'s installation on an account, if that App is installed there.
    pub fn installation_of(&self, account: &str, app: u64) -> Option<u64> {
        self.settings
            .apps
            .iter()
            .find(|a| a.id == app)
            .filter(|_| account.eq_ignore_ascii_case(&self.settings.org))
            .map(|a| a.installation_id)
    }

    /// Whether `installation` (any App's) is installed on an account.
    pub fn serves(&self, account: &str, installation: u64) -> bool {
        account.eq_ignore_ascii_case(&self.settings.org) && self.app_of(installation).is_some()
    }

    /// The App an installation belongs to.
    pub fn app_of(&self, installation: u64) -> Option<u64> {
        self.settings
            .apps
            .iter()
            .find(|a| a.installation_id == installation)
            .map(|a| a.id)
    }

    /// A new installation token for App `app`, or `None` for an installation that does not
    /// exist or is another App's.
    pub fn mint(&mut self, app: u64, installation: u64) -> Option<(String, Instant)> {
        if self.app_of(installation) != Some(app) {
            return None;
        }
        let token = format!("ghs_{}", uuid::Uuid::from_u128(self.rng.u128(..)).simple());
        let expires = Instant::now() + TOKEN_LIFETIME;
        self.tokens.insert(token.clone(), (installation, expires));
        self.secrets_issued.push(token.clone());
        Some((token, expires))
    }

    /// The installation a token acts for, if it is one we minted and it has not expired.
    pub fn token_installation(&self, token: &str) -> Option<u64> {
        self.tokens
            .get(token)
            .filter(|(_, expires)| *expires > Instant::now())
            .map(|(installation, _)| *installation)
    }

    /// Registers a runner for a JIT config. The config is the runner's one credential.
    pub fn register_jit(
        &mut self,
        name: &str,
        labels: Vec<String>,
        group_id: u64,
    ) -> Result<(Value, String), JitError> {
        if !self.runner_groups().iter().any(|g| g.id == group_id) {
            return Err(JitError::NoGroup);
        }
        if self.runners.values().any(|r| r.listed && r.name == name) {
            return Err(JitError::Conflict);
        }
        let id = self.next_runner;
        self.next_runner += 1;
        let encoded = format!(
            "simjit{id}x{}",
            uuid::Uuid::from_u128(self.rng.u128(..)).simple()
        );
        let runner = Runner {
            id,
            name: name.to_string(),
            origin: Origin::Dockhand,
            state: RunnerState::Registered,
            group_id,
            labels,
            listed: true,
            task: None,
            idle_since: None,
        };
        let json = runner_json(&runner);
        self.runners.insert(id, runner);
        self.jit.insert(encoded.clone(), id);
        self.secrets_issued.push(encoded.clone());
        Ok((json, encoded))
    }

    /// The listed runners (optionally only `name`), a page of them, and how many match.
    pub fn list_runners(
        &self,
        name: Option<&str>,
        page: usize,
        per_page: usize,
    ) -> (usize, Vec<Value>) {
        let mut matching: Vec<&Runner> = self
            .runners
            .values()
            .filter(|r| r.listed && name.is_none_or(|n| n == r.name))
            .collect();
        matching.sort_by_key(|r| r.id);
        let items = matching
            .iter()
            .skip((page - 1) * per_page)
            .take(per_page)
            .map(|r| runner_json(r))
            .collect();
        (matching.len(), items)
    }

    /// A job as `GET /repos/{owner}/{repo}/actions/jobs/{id}` answers it; `None` (a 404)
    /// for a job that does not exist or is not in `repo` (`owner/name`, any case).
    pub fn workflow_job(&self, repo: &str, id: u64) -> Option<Value> {
        self.jobs
            .get(&id)
            .filter(|j| j.repo.eq_ignore_ascii_case(repo))
            .map(|j| payload::job_json(self, j.id))
    }

    /// Deletes a registration. A runner process still holding it exits (its task stops).
    pub fn delete_runner(&mut self, id: u64) -> Result<(), DeleteError> {
        let runner = self
            .runners
            .get_mut(&id)
            .filter(|r| r.listed)
            .ok_or(DeleteError::NotFound)?;
        if matches!(runner.state, RunnerState::Busy(_)) {
            self.counters.delete_busy_refused += 1;
            return Err(DeleteError::Busy);
        }
        runner.listed = false;
        let task = runner.task.clone();
        let now = self.clock.now();
        self.lose_runner(id, now, false);
        if let Some(arn) = task {
            self.exited(&arn, now, 1);
        }
        Ok(())
    }
}

fn runner_json(runner: &Runner) -> Value {
    let (status, busy) = match runner.state {
        RunnerState::Registered | RunnerState::Gone => ("offline", false),
        RunnerState::Idle => ("online", false),
        RunnerState::Busy(_) => ("online", true),
    };
    json!({
        "id": runner.id,
        "name": runner.name,
        "os": "Linux",
        "status": status,
        "busy": busy,
        "ephemeral": true,
        "runner_group_id": runner.group_id,
        "labels": runner.labels.iter().enumerate().map(|(i, l)| json!({
            "id": i + 1,
            "name": l,
            "type": if i == 0 { "read-only" } else { "custom" },
        })).collect::<Vec<_>>(),
    })
}
