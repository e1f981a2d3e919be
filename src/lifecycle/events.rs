//! ECS task state change events: the fast path of the lifecycle. An EventBridge rule sends
//! "ECS Task State Change" events of dockhand's runner tasks (RUNNING and STOPPED) to the
//! jobs queue; a worker that receives one hands it here, and it is acted on at once, as a
//! pass would act on what DescribeTasks says of the task. The periodic pass still runs:
//! an event that never comes is caught there.
//!
//! Events come at least once and in any order. A stop is terminal: its runner is no
//! longer live, so a second copy, or a RUNNING event that arrives after it, finds nothing
//! to do. The event's body is never logged: its `overrides` hold the runner's JIT config.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::tasks::end_of;
use super::{Pass, Reconciler};
use crate::ecs::TaskState;
use crate::metrics as m;

/// EventBridge's `source` and `detail-type` of the events dockhand reads.
const SOURCE: &str = "aws.ecs";
const DETAIL_TYPE: &str = "ECS Task State Change";

/// An "ECS Task State Change" event as EventBridge delivers it to SQS: the fields dockhand
/// reads (the rest, `overrides` included, are skipped unread).
#[derive(Debug, Clone, Deserialize)]
pub struct TaskEvent {
    /// EventBridge's id of the event.
    pub id: String,
    detail: Detail,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Detail {
    task_arn: String,
    #[serde(default)]
    cluster_arn: Option<String>,
    last_status: String,
    #[serde(default)]
    desired_status: Option<String>,
    #[serde(default)]
    created_at: Option<DateTime<Utc>>,
    #[serde(default)]
    started_at: Option<DateTime<Utc>>,
    #[serde(default)]
    stopped_at: Option<DateTime<Utc>>,
    #[serde(default)]
    stop_code: Option<String>,
    #[serde(default)]
    stopped_reason: Option<String>,
    #[serde(default)]
    containers: Vec<Container>,
    #[serde(default)]
    capacity_provider_name: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Container {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    exit_code: Option<i32>,
}

/// Why a message that looks like an EventBridge event is not one dockhand reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskEventError {
    #[error(
        "an EventBridge event dockhand does not read: source {origin}, detail-type {detail_type}"
    )]
    OtherEvent { origin: String, detail_type: String },
    #[error("an ECS task state change event without the fields dockhand reads")]
    Malformed,
}

#[derive(Deserialize)]
struct Head {
    source: String,
    #[serde(rename = "detail-type")]
    detail_type: String,
}

impl TaskEvent {
    /// Reads a message body: `None` if it is not an EventBridge event at all (no `source`
    /// and `detail-type`), an error if it is one dockhand does not read.
    pub fn recognise(body: &str) -> Option<Result<Self, TaskEventError>> {
        let head: Head = serde_json::from_str(body).ok()?;
        if head.source != SOURCE || head.detail_type != DETAIL_TYPE {
            return Some(Err(TaskEventError::OtherEvent {
                origin: head.source,
                detail_type: head.detail_type,
            }));
        }
        Some(serde_json::from_str(body).map_err(|_| TaskEventError::Malformed))
    }

    pub fn task_arn(&self) -> &str {
        &self.detail.task_arn
    }

    pub fn last_status(&self) -> &str {
        &self.detail.last_status
    }

    /// The task as DescribeTasks would report it; `container` names the runner container,
    /// whose exit code is the one recorded.
    pub fn task_state(&self, container: &str) -> TaskState {
        let d = &self.detail;
        let exit_code = d
            .containers
            .iter()
            .find(|c| c.name.as_deref() == Some(container))
            .or(d.containers.first())
            .and_then(|c| c.exit_code);
        TaskState {
            arn: d.task_arn.clone(),
            last_status: d.last_status.clone(),
            desired_status: d.desired_status.clone(),
            created_at: d.created_at,
            started_at: d.started_at,
            stopped_at: d.stopped_at,
            stop_code: d.stop_code.clone(),
            stopped_reason: d.stopped_reason.clone(),
            exit_code,
            runner_tag: None,
            capacity_provider: d.capacity_provider_name.clone(),
        }
    }
}

/// What a task event led to: the `outcome` label of `dockhand_task_events_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskEventOutcome {
    /// The runner's task stopped: handled as a pass would (finished, or replaced).
    Stopped,
    /// The runner's task came up: recorded.
    Running,
    /// Nothing new for a live runner (a status already recorded, or one on the way).
    Unchanged,
    /// Not a live runner of dockhand's: another deployment's, or handled already.
    Unknown,
    /// The lifecycle is off (`lifecycle.enabled = false`).
    Ignored,
}

impl TaskEventOutcome {
    pub const ALL: [Self; 5] = [
        Self::Stopped,
        Self::Running,
        Self::Unchanged,
        Self::Unknown,
        Self::Ignored,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stopped => "stopped",
            Self::Running => "running",
            Self::Unchanged => "unchanged",
            Self::Unknown => "unknown",
            Self::Ignored => "ignored",
        }
    }
}

impl Reconciler {
    /// Acts on one task event at once, in whichever process received it (leading or not):
    /// the store's conditional writes make a stop count once however many see it.
    pub async fn task_event(&self, event: &TaskEvent) -> anyhow::Result<TaskEventOutcome> {
        let outcome = self.handle_task_event(event).await;
        let label = outcome.as_ref().map_or("error", |o| o.as_str());
        metrics::counter!(m::TASK_EVENTS_TOTAL, "outcome" => label).increment(1);
        outcome
    }

    async fn handle_task_event(&self, event: &TaskEvent) -> anyhow::Result<TaskEventOutcome> {
        let settings = self.0.settings.borrow().clone();
        if !settings.enabled {
            return Ok(TaskEventOutcome::Ignored);
        }
        let Some(runner) = self.0.store.live_runner_by_task(event.task_arn()).await? else {
            tracing::debug!(
                ecs.task = event.task_arn(),
                ecs.cluster = event.detail.cluster_arn.as_deref(),
                "a task event for no live runner: handled already, or not dockhand's"
            );
            return Ok(TaskEventOutcome::Unknown);
        };
        let pools = self.0.pools.current();
        let container = super::pool(&pools, &runner.pool)
            .and_then(|p| p.settings.ecs.as_ref())
            .map_or("runner", |e| e.container.as_str());
        let task = event.task_state(container);
        tracing::info!(
            ecs.task = event.task_arn(),
            ecs.status = task.last_status,
            ecs.stop_code = task.stop_code.as_deref(),
            runner = runner.runner_name,
            "runner task event"
        );
        // Only the stop itself ends a runner: a RUNNING task on its way down sends STOPPED
        // next.
        if task.last_status == "STOPPED" {
            let mut pass = Pass::default();
            self.stopped(
                &settings,
                &pools,
                &runner,
                end_of(&task),
                "task_stopped",
                &mut pass,
            )
            .await?;
            return Ok(TaskEventOutcome::Stopped);
        }
        if task.last_status == "RUNNING"
            && runner.state != crate::store::RunnerState::Finished
            && !settings.dry_run
            && self.record_status(&runner, &task).await?
        {
            return Ok(TaskEventOutcome::Running);
        }
        Ok(TaskEventOutcome::Unchanged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An event as the ECS documentation shows it, shortened.
    fn event(last_status: &str) -> serde_json::Value {
        serde_json::json!({
            "version": "0",
            "id": "3317b2af-7005-947d-b652-f55e762e571a",
            "detail-type": "ECS Task State Change",
            "source": "aws.ecs",
            "account": "111122223333",
            "time": "2020-01-23T17:57:58Z",
            "region": "us-west-2",
            "resources": ["arn:aws:ecs:us-west-2:111122223333:task/runners/b99d40b3"],
            "detail": {
                "clusterArn": "arn:aws:ecs:us-west-2:111122223333:cluster/runners",
                "containers": [
                    {"name": "dind", "exitCode": 137, "lastStatus": "STOPPED"},
                    {"name": "runner", "exitCode": 143, "lastStatus": "STOPPED"}
                ],
                "capacityProviderName": "FARGATE_SPOT",
                "createdAt": "2020-01-23T17:57:34.402Z",
                "desiredStatus": "STOPPED",
                "lastStatus": last_status,
                "overrides": {"containerOverrides": [{"name": "runner", "environment": [
                    {"name": "ACTIONS_RUNNER_INPUT_JITCONFIG", "value": "c2VjcmV0"}
                ]}]},
                "startedAt": "2020-01-23T17:57:38.125Z",
                "startedBy": "dockhand-job-7",
                "stopCode": "SpotInterruption",
                "stoppedAt": "2020-01-23T17:59:58.221Z",
                "stoppedReason": "Your Spot Task was interrupted.",
                "taskArn": "arn:aws:ecs:us-west-2:111122223333:task/runners/b99d40b3",
                "version": 3
            }
        })
    }

    #[test]
    fn a_task_state_change_reads_as_describe_tasks_would_report_it() {
        let body = event("STOPPED").to_string();
        let event = TaskEvent::recognise(&body).unwrap().unwrap();
        let task = event.task_state("runner");
        assert_eq!(
            task.arn,
            "arn:aws:ecs:us-west-2:111122223333:task/runners/b99d40b3"
        );
        assert!(task.is_stopped());
        assert_eq!(task.stop_code.as_deref(), Some("SpotInterruption"));
        assert_eq!(
            task.exit_code,
            Some(143),
            "the runner container's, not the first"
        );
        assert_eq!(task.capacity_provider.as_deref(), Some("FARGATE_SPOT"));
        assert_eq!(
            task.started_at.unwrap().to_rfc3339(),
            "2020-01-23T17:57:38.125+00:00"
        );
        // The JIT config in the overrides is not kept.
        assert!(!format!("{event:?}").contains("c2VjcmV0"));
    }

    #[test]
    fn other_bodies_are_told_apart() {
        assert!(TaskEvent::recognise(r#"{"v":1,"event":{}}"#).is_none());
        assert!(TaskEvent::recognise("not json").is_none());
        let mut other = event("RUNNING");
        other["detail-type"] = "ECS Container Instance State Change".into();
        assert!(matches!(
            TaskEvent::recognise(&other.to_string()),
            Some(Err(TaskEventError::OtherEvent { .. }))
        ));
        let mut broken = event("RUNNING");
        broken["detail"]["taskArn"] = serde_json::Value::Null;
        assert_eq!(
            TaskEvent::recognise(&broken.to_string())
                .unwrap()
                .unwrap_err(),
            TaskEventError::Malformed
        );
    }
}
