//! What the reconciler asks ECS: the state of many tasks at once, and every task dockhand
//! tagged in a cluster. DescribeTasks takes at most 100 tasks a call and ListTasks answers
//! at most 100 a page, so both go batch by batch and page by page to the end.

use aws_sdk_ecs::types::{Task, TaskField};
use chrono::{DateTime, Utc};

use super::{
    DESCRIBE_BATCH, LaunchError, Launcher, Operation, Outcome, TAG_RUNNER, failed, record,
};

/// A task as DescribeTasks reports it, with what the reconciler records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskState {
    pub arn: String,
    /// `PROVISIONING`, `PENDING`, `ACTIVATING`, `RUNNING`, `DEACTIVATING`, `STOPPING`,
    /// `DEPROVISIONING`, `STOPPED`.
    pub last_status: String,
    pub desired_status: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub stopped_at: Option<DateTime<Utc>>,
    /// ECS's `stopCode`, e.g. `TaskFailedToStart`, `EssentialContainerExited`,
    /// `UserInitiated`, `SpotInterruption`.
    pub stop_code: Option<String>,
    pub stopped_reason: Option<String>,
    /// The exit code of the runner container (the one named `container`, else the first).
    pub exit_code: Option<i32>,
    /// The `dockhand:runner` tag, when tags were asked for.
    pub runner_tag: Option<String>,
    /// The capacity provider the task runs on (`None` for a launch type).
    pub capacity_provider: Option<String>,
}

impl TaskState {
    /// Whether ECS is done with the task, or will be: it no longer runs a runner.
    pub fn is_stopped(&self) -> bool {
        self.last_status == "STOPPED" || self.desired_status.as_deref() == Some("STOPPED")
    }

    /// Whether the task has not come up yet.
    pub fn is_starting(&self) -> bool {
        matches!(
            self.last_status.as_str(),
            "PROVISIONING" | "PENDING" | "ACTIVATING"
        ) && !self.is_stopped()
    }

    fn from_task(task: Task, container: &str) -> Option<Self> {
        let time = |t: Option<&aws_sdk_ecs::primitives::DateTime>| {
            t.and_then(|t| DateTime::from_timestamp_millis(t.to_millis().ok()?))
        };
        let exit_code = {
            let containers = task.containers();
            containers
                .iter()
                .find(|c| c.name() == Some(container))
                .or(containers.first())
                .and_then(|c| c.exit_code())
        };
        let runner_tag = task
            .tags()
            .iter()
            .find(|t| t.key() == Some(TAG_RUNNER))
            .and_then(|t| t.value().map(str::to_string));
        Some(Self {
            last_status: task.last_status()?.to_string(),
            desired_status: task.desired_status().map(str::to_string),
            created_at: time(task.created_at()),
            started_at: time(task.started_at()),
            stopped_at: time(task.stopped_at()),
            stop_code: task.stop_code().map(|c| c.as_str().to_string()),
            stopped_reason: task.stopped_reason().map(str::to_string),
            exit_code,
            runner_tag,
            capacity_provider: task.capacity_provider_name().map(str::to_string),
            arn: task.task_arn?,
        })
    }
}

/// What DescribeTasks said of a set of tasks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Described {
    pub tasks: Vec<TaskState>,
    /// ARNs ECS no longer knows (stopped tasks vanish after about an hour).
    pub missing: Vec<String>,
}

impl Launcher {
    /// DescribeTasks for every ARN, 100 a call. `container` names the runner container,
    /// whose exit code is reported.
    pub async fn describe_tasks(
        &self,
        cluster: &str,
        arns: &[String],
        container: &str,
        with_tags: bool,
    ) -> Result<Described, LaunchError> {
        let mut described = Described::default();
        for batch in arns.chunks(DESCRIBE_BATCH) {
            let mut request = self
                .client
                .describe_tasks()
                .cluster(cluster)
                .set_tasks(Some(batch.to_vec()));
            if with_tags {
                request = request.include(TaskField::Tags);
            }
            let out = request
                .send()
                .await
                .map_err(|e| failed(Operation::DescribeTasks, e))?;
            record(Operation::DescribeTasks, Outcome::Ok);
            for failure in out.failures.unwrap_or_default() {
                if failure.reason() == Some("MISSING")
                    && let Some(arn) = failure.arn
                {
                    described.missing.push(arn);
                }
            }
            described.tasks.extend(
                out.tasks
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|t| TaskState::from_task(t, container)),
            );
        }
        // ECS answers a known ARN even when asked by its short id: match either form.
        described.missing.retain(|m| {
            !described
                .tasks
                .iter()
                .any(|t| t.arn == *m || t.arn.ends_with(&format!("/{m}")))
        });
        Ok(described)
    }

    /// Every ARN a ListTasks request lists, page by page to the last.
    pub(super) async fn list_arns(
        &self,
        request: aws_sdk_ecs::operation::list_tasks::builders::ListTasksFluentBuilder,
    ) -> Result<Vec<String>, LaunchError> {
        let mut arns = Vec::new();
        let mut pages = request.into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| failed(Operation::ListTasks, e))?;
            record(Operation::ListTasks, Outcome::Ok);
            arns.extend(page.task_arns.unwrap_or_default());
        }
        Ok(arns)
    }

    /// Every task in the cluster that is meant to run (desired status RUNNING), with its
    /// tags: ListTasks to its last page, then DescribeTasks 100 at a time.
    pub async fn running_tasks(
        &self,
        cluster: &str,
        container: &str,
    ) -> Result<Vec<TaskState>, LaunchError> {
        let request = self
            .client
            .list_tasks()
            .cluster(cluster)
            .desired_status(aws_sdk_ecs::types::DesiredStatus::Running)
            .max_results(100);
        let arns = self.list_arns(request).await?;
        if arns.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self
            .describe_tasks(cluster, &arns, container, true)
            .await?
            .tasks)
    }
}
