//! ECS's side of the model: RunTask (idempotent by client token), ListTasks, DescribeTasks,
//! StopTask, and tasks coming up or dying.

use serde_json::{Value, json};

use super::{Interruption, Model, RunnerState, Task, TaskStatus};
use crate::clock::SimTime;

const ACCOUNT: &str = "arn:aws:ecs:us-east-1:123456789012";

/// The capacity provider whose tasks Spot may interrupt.
pub const SPOT_PROVIDER: &str = "FARGATE_SPOT";
/// The stopCode of a task Spot interrupted.
pub const SPOT_INTERRUPTION: &str = "SpotInterruption";

/// What a RunTask asked for, already checked by the API layer.
#[derive(Debug, Clone, Default)]
pub struct RunTaskRequest {
    pub task_definition: String,
    pub started_by: Option<String>,
    pub client_token: Option<String>,
    pub launch_type: Option<String>,
    pub capacity_provider: Option<String>,
    pub jit: Option<String>,
    /// The request's `overrides`, echoed in the task as ECS does.
    pub overrides: Value,
    /// The request's `tags` (key, value).
    pub tags: Vec<(String, String)>,
    /// `enableECSManagedTags`: ECS adds `aws:ecs:clusterName` to the task's tags.
    pub managed_tags: bool,
}

/// ECS's client errors (HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EcsError {
    InvalidParameter(String),
    Client(String),
}

impl EcsError {
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::InvalidParameter(_) => "InvalidParameterException",
            Self::Client(_) => "ClientException",
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Self::InvalidParameter(m) | Self::Client(m) => m,
        }
    }
}

impl Model {
    pub fn cluster_arn(&self) -> String {
        format!("{ACCOUNT}:cluster/{}", self.settings.cluster)
    }

    /// Whether a RunTask with this client token would answer a task started before.
    pub fn knows_client_token(&self, token: &str) -> bool {
        self.client_tokens.contains_key(token)
    }

    /// Starts one task, or, for a client token seen before, answers the task it started.
    pub fn run_task(&mut self, request: RunTaskRequest) -> String {
        if let Some(token) = &request.client_token
            && let Some(arn) = self.client_tokens.get(token)
        {
            self.counters.client_token_replays += 1;
            return arn.clone();
        }
        let now = self.clock.now();
        let arn = format!(
            "{ACCOUNT}:task/{}/{}",
            self.settings.cluster,
            uuid::Uuid::from_u128(self.rng.u128(..)).simple()
        );
        let up_at = now + self.between(self.settings.task_start);
        let dies = self.chance(self.settings.task_death_rate);
        let interrupt_at = self.spot_interruption(now, request.capacity_provider.as_deref());
        if let Some(token) = &request.client_token {
            self.client_tokens.insert(token.clone(), arn.clone());
        }
        let mut tags = request.tags;
        if request.managed_tags {
            tags.push((
                "aws:ecs:clusterName".to_string(),
                self.settings.cluster.clone(),
            ));
        }
        self.tasks.insert(
            arn.clone(),
            Task {
                arn: arn.clone(),
                started_by: request.started_by,
                task_definition: request.task_definition,
                launch_type: request.launch_type,
                capacity_provider: request.capacity_provider,
                jit: request.jit,
                status: TaskStatus::Provisioning,
                desired_stopped: false,
                stop_code: None,
                stopped_reason: None,
                exit_code: None,
                created: now,
                up_at,
                started: None,
                online_at: None,
                stopped: None,
                dies,
                interrupt_at,
                interrupted: None,
                runner: None,
                client_token: request.client_token,
                overrides: request.overrides,
                tags,
            },
        );
        self.task_order.push(arn.clone());
        self.pending.insert((up_at, arn.clone()));
        if let Some(at) = interrupt_at {
            self.pending.insert((at, arn.clone()));
        }
        arn
    }

    /// When Spot will interrupt a task started now on `provider`, if it will: only tasks on
    /// `FARGATE_SPOT`, a `spot_interruption_rate` share of them, at a time from
    /// `task_start`'s lower bound to the upper bounds of `task_start`, `runner_ready` and
    /// `job_duration` added up.
    fn spot_interruption(&mut self, now: SimTime, provider: Option<&str>) -> Option<SimTime> {
        if provider != Some(SPOT_PROVIDER) || !self.chance(self.settings.spot_interruption_rate) {
            return None;
        }
        let s = &self.settings;
        let latest = s.task_start.1 + s.runner_ready.1 + s.job_duration.1;
        Some(now + self.between((s.task_start.0, latest)))
    }

    /// ListTasks: tasks whose desired status is `desired_stopped`'s, optionally with this
    /// `startedBy`, from `start` in creation order. Returns a page and where the next starts.
    pub fn list_tasks(
        &self,
        started_by: Option<&str>,
        desired_stopped: bool,
        start: usize,
        max: usize,
    ) -> (Vec<String>, Option<usize>) {
        let mut page = Vec::new();
        for (i, arn) in self.task_order.iter().enumerate().skip(start) {
            let task = &self.tasks[arn];
            if task.desired_stopped != desired_stopped
                || started_by.is_some_and(|s| task.started_by.as_deref() != Some(s))
            {
                continue;
            }
            if page.len() == max {
                return (page, Some(i));
            }
            page.push(arn.clone());
        }
        (page, None)
    }

    pub fn stop_task(&mut self, arn: &str, reason: &str) -> Result<(), EcsError> {
        if !self.tasks.contains_key(arn) {
            return Err(EcsError::InvalidParameter(
                "The referenced task was not found.".into(),
            ));
        }
        let now = self.clock.now();
        self.stop(arn, now, "UserInitiated", reason, Some(143));
        Ok(())
    }

    /// Tasks whose start time has come: each dies, or runs and its runner comes online
    /// (at once, or `runner_ready` later). Runners whose time to come online has come: each
    /// comes online with the JIT config, or its task exits because that registration is
    /// gone or used. And tasks whose Spot interruption has come, unless they have stopped.
    pub(super) fn start_tasks(&mut self, now: SimTime) {
        while let Some((at, arn)) = self.pending.first().cloned() {
            if at > now {
                return;
            }
            self.pending.remove(&(at, arn.clone()));
            let task = self.tasks.get_mut(&arn).expect("pending task");
            if task.interrupt_at == Some(at) {
                self.interrupt(&arn, at, now);
                continue;
            }
            match task.status {
                TaskStatus::Provisioning if task.dies => self.stop(
                    &arn,
                    now,
                    "TaskFailedToStart",
                    "CannotPullContainerError: pull image manifest has been retried 5 time(s)",
                    None,
                ),
                TaskStatus::Provisioning => {
                    task.status = TaskStatus::Running;
                    task.started = Some(now);
                    let ready = self.between(self.settings.runner_ready);
                    if ready.is_zero() {
                        self.come_online(&arn, now);
                    } else {
                        // From when it was due: a late tick does not lengthen the delay.
                        let online_at = at + ready;
                        self.tasks.get_mut(&arn).expect("task").online_at = Some(online_at);
                        self.pending.insert((online_at, arn));
                    }
                }
                TaskStatus::Running if task.online_at == Some(at) && task.runner.is_none() => {
                    self.come_online(&arn, now);
                }
                TaskStatus::Running | TaskStatus::Stopped => {}
            }
        }
    }

    /// The runner process of a running task starts with the JIT config from its
    /// environment: it comes online idle, or, its registration gone or used, exits.
    fn come_online(&mut self, arn: &str, now: SimTime) {
        let task = &self.tasks[arn];
        let runner = task.jit.as_ref().and_then(|jit| self.jit.get(jit)).copied();
        let usable = runner
            .and_then(|id| self.runners.get_mut(&id))
            .filter(|r| r.listed && r.state == RunnerState::Registered && r.task.is_none());
        match usable {
            Some(runner) => {
                runner.task = Some(arn.to_string());
                let id = runner.id;
                self.tasks.get_mut(arn).expect("task").runner = Some(id);
                self.enter_idle(id, now);
            }
            None => {
                self.counters.jit_refused += 1;
                self.exited(arn, now, 1);
            }
        }
    }

    /// Spot reclaims the task's capacity at `at` (seen at `now`): it stops with
    /// `SpotInterruption`, its runner container (if it was running) exiting on SIGTERM, and
    /// its runner goes offline as any stopped task's does: GitHub fails a job it was
    /// running. A job that ended before `at` succeeded first.
    fn interrupt(&mut self, arn: &str, at: SimTime, now: SimTime) {
        let busy = |model: &Self| {
            let runner = model.tasks[arn].runner?;
            match model.runners.get(&runner)?.state {
                RunnerState::Busy(job) => Some(job),
                _ => None,
            }
        };
        if busy(self).is_some() {
            self.finish_jobs(at);
        }
        let job = busy(self);
        let task = self.tasks.get_mut(arn).expect("the task");
        if task.status == TaskStatus::Stopped {
            return;
        }
        let running = task.status == TaskStatus::Running;
        task.interrupted = Some(match job {
            Some(job) => Interruption::DuringJob(job),
            None => Interruption::BeforeJob,
        });
        let reason = "Your Spot Task was interrupted.";
        self.stop(arn, now, SPOT_INTERRUPTION, reason, running.then_some(143));
    }

    /// The runner container exited with `code`: its job done (0), or its registration
    /// gone (1).
    pub(super) fn exited(&mut self, arn: &str, now: SimTime, code: i32) {
        let reason = "Essential container in task exited";
        self.stop(arn, now, "EssentialContainerExited", reason, Some(code));
    }

    /// A task stops; its runner, if it had one, is gone with it.
    pub(super) fn stop(
        &mut self,
        arn: &str,
        now: SimTime,
        code: &'static str,
        reason: &str,
        exit_code: Option<i32>,
    ) {
        let Some(task) = self.tasks.get_mut(arn) else {
            return;
        };
        if task.status == TaskStatus::Stopped {
            return;
        }
        task.status = TaskStatus::Stopped;
        task.desired_stopped = true;
        task.stop_code = Some(code);
        task.stopped_reason = Some(reason.chars().take(255).collect());
        task.exit_code = exit_code;
        task.stopped = Some(now);
        if let Some(runner) = task.runner {
            self.lose_runner(runner, now, code == SPOT_INTERRUPTION);
        }
    }

    /// The task as DescribeTasks, RunTask and StopTask show it: its `tags` only with
    /// `include_tags` (a DescribeTasks whose `include` holds `TAGS`), as ECS leaves them
    /// out otherwise.
    pub fn task_json(&self, arn: &str, include_tags: bool) -> Value {
        let task = &self.tasks[arn];
        let status = match task.status {
            TaskStatus::Provisioning => "PROVISIONING",
            TaskStatus::Running => "RUNNING",
            TaskStatus::Stopped => "STOPPED",
        };
        let mut json = json!({
            "taskArn": task.arn,
            "clusterArn": self.cluster_arn(),
            "taskDefinitionArn": format!("arn:aws:ecs:us-east-1:123456789012:task-definition/{}:1", task.task_definition),
            "lastStatus": status,
            "desiredStatus": if task.desired_stopped { "STOPPED" } else { "RUNNING" },
            "createdAt": self.clock.epoch_secs(task.created),
            "group": format!("family:{}", task.task_definition),
            "overrides": task.overrides,
            "containers": [{
                "name": "runner",
                "lastStatus": status,
                "exitCode": task.exit_code,
            }],
            "attachments": [],
        });
        if include_tags {
            json["tags"] = task
                .tags
                .iter()
                .map(|(key, value)| json!({"key": key, "value": value}))
                .collect();
        }
        let fields = [
            ("startedBy", task.started_by.clone().map(Value::from)),
            ("launchType", task.launch_type.clone().map(Value::from)),
            (
                "capacityProviderName",
                task.capacity_provider.clone().map(Value::from),
            ),
            (
                "startedAt",
                task.started.map(|t| self.clock.epoch_secs(t).into()),
            ),
            (
                "stoppedAt",
                task.stopped.map(|t| self.clock.epoch_secs(t).into()),
            ),
            ("stopCode", task.stop_code.map(Value::from)),
            (
                "stoppedReason",
                task.stopped_reason.clone().map(Value::from),
            ),
        ];
        for (name, value) in fields {
            if let Some(value) = value {
                json[name] = value;
            }
        }
        json
    }
}
