//! ECS: one RunTask per job, finding a job's task again after a crash, and stopping it.
//!
//! Every call is counted in `dockhand_ecs_requests_total{operation,outcome}`. The JIT config
//! travels only inside the RunTask request: nothing here logs a request or an answer (a
//! RunTask answer echoes the container overrides), and errors drop the raw HTTP response.

mod error;
mod launch;
mod tasks;

use std::fmt;

use aws_sdk_ecs::Client;
use secrecy::SecretString;

use crate::config::{EcsLaunchSettings, RunTaskPacing};
use crate::domain::JobId;
use crate::metrics::ECS_REQUESTS_TOTAL;
use crate::pacing::Pacer;
pub use error::LaunchError;
use error::{OperationError, classify};
pub use tasks::{Described, TaskState};

/// Tag keys dockhand puts on every task, next to the pool's own `ecs.tags`.
pub const TAG_JOB_ID: &str = "dockhand:job-id";
pub const TAG_POOL: &str = "dockhand:pool";
pub const TAG_RUNNER: &str = "dockhand:runner";

/// DescribeTasks takes at most this many tasks per call.
const DESCRIBE_BATCH: usize = 100;

/// A task's ARN.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TaskArn(pub String);

impl fmt::Display for TaskArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Everything one runner's RunTask needs. Its `Debug` shows the JIT config as `[REDACTED]`.
#[derive(Debug, Clone, Copy)]
pub struct LaunchSpec<'a> {
    pub pool: &'a str,
    pub ecs: &'a EcsLaunchSettings,
    /// The job the runner is launched for; `None` for a warm runner (no job tag).
    pub job_id: Option<JobId>,
    pub runner_name: &'a str,
    pub jit_config: &'a SecretString,
    /// Idempotency token (ECS honours it; moto doesn't). ≤ 64 chars. The first launch option
    /// sends it as given; each later one (a fallback capacity provider) sends the SHA-256 hex
    /// of the token and the provider's name, because ECS refuses a token reused for a
    /// different request. Both are deterministic, so a retry with the same token is
    /// idempotent per option.
    pub client_token: &'a str,
    /// ECS `startedBy` (≤ 128 chars), marks the job: `dockhand-job-<id>` (the worker's
    /// `started_by`), which is how a take-over finds a task already started; a warm
    /// runner's is `dockhand-warm-<runner name>`.
    pub started_by: &'a str,
    /// Which of the pool's capacity providers this launch may use.
    pub placement: &'a Placement,
}

/// Which of a pool's capacity providers a launch may use, beyond their order.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Placement {
    /// The job's last runner was interrupted on this provider before it took the job:
    /// try the providers after it (all of them, if it was the last).
    pub after: Option<String>,
    /// A job of a run re-run because of a Spot interruption: only providers that are not
    /// Spot capacity (all of them, if the pool has none).
    pub on_demand: bool,
}

impl Placement {
    pub fn is_default(&self) -> bool {
        self == &Self::default()
    }
}

/// A task RunTask created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchedTask {
    pub arn: TaskArn,
    /// The capacity provider the task runs on, as ECS reports it (or, if it reports none,
    /// the one asked for); `None` with a launch type.
    pub capacity_provider: Option<String>,
    /// The launch type ECS reports, e.g. `FARGATE`, `EC2`.
    pub launch_type: Option<String>,
}

/// A task's state as DescribeTasks answers it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TaskView {
    /// `PROVISIONING`, `PENDING`, `RUNNING`, `STOPPED`, ...
    pub last_status: Option<String>,
    pub desired_status: Option<String>,
    pub stopped_reason: Option<String>,
}

/// The ECS calls the worker makes.
#[derive(Clone, Debug)]
pub struct Launcher {
    client: Client,
    pacer: Pacer,
}

impl Launcher {
    /// A launcher pacing RunTask at ECS's documented rate (`[aws.run_task]`'s defaults).
    pub fn new(client: Client) -> Self {
        Self::with_pacing(client, &RunTaskPacing::default())
    }

    /// A launcher pacing this process's RunTask calls as `pacing` says.
    pub fn with_pacing(client: Client, pacing: &RunTaskPacing) -> Self {
        Self {
            client,
            pacer: Pacer::new(
                pacing.per_second,
                pacing.burst,
                Some(crate::metrics::ECS_RUN_TASK_WAIT_SECONDS),
            ),
        }
    }

    /// RunTask; with capacity providers, tries each in order on a capacity failure, and only
    /// then. Returns [`LaunchError::NoCapacity`] when every option reported no capacity.
    /// Each call waits for the process's RunTask pacing first.
    pub async fn run_task(&self, spec: &LaunchSpec<'_>) -> Result<LaunchedTask, LaunchError> {
        launch::run_task(&self.client, &self.pacer, spec).await
    }

    /// A live (not STOPPED) task started with this `startedBy` on the cluster, for adopting
    /// a launch after a crash. With several (a duplicate launch), the oldest.
    ///
    /// ECS takes `startedBy` only as ListTasks' sole filter (it refuses it beside
    /// `desiredStatus`, `family` and the rest), so the status is judged here, from
    /// DescribeTasks. ListTasks is read to its last page.
    pub async fn find_task(
        &self,
        cluster: &str,
        started_by: &str,
    ) -> Result<Option<TaskArn>, LaunchError> {
        let arns = self
            .list_arns(
                self.client
                    .list_tasks()
                    .cluster(cluster)
                    .started_by(started_by),
            )
            .await?;
        // ListTasks lists recently stopped tasks too, and is eventually consistent, so
        // DescribeTasks has the last word.
        let described = self.describe_tasks(cluster, &arns, "", false).await?;
        Ok(described
            .tasks
            .into_iter()
            .filter(|t| !t.is_stopped())
            .map(|t| (t.created_at, t.arn))
            .min()
            .map(|(_, arn)| TaskArn(arn)))
    }

    /// A task as ECS describes it now, for `dockhand jobs show --live`; `None` when ECS
    /// does not know it (stopped long ago, or never started).
    pub async fn describe_task(
        &self,
        cluster: &str,
        task: &str,
    ) -> Result<Option<TaskView>, LaunchError> {
        let out = self
            .client
            .describe_tasks()
            .cluster(cluster)
            .tasks(task)
            .send()
            .await
            .map_err(|e| failed(Operation::DescribeTasks, e))?;
        record(Operation::DescribeTasks, Outcome::Ok);
        Ok(out
            .tasks
            .unwrap_or_default()
            .into_iter()
            .next()
            .map(|t| TaskView {
                last_status: t.last_status,
                desired_status: t.desired_status,
                stopped_reason: t.stopped_reason,
            }))
    }

    /// StopTask. `reason` (≤ 255 chars) shows in the task's `stoppedReason`.
    pub async fn stop_task(
        &self,
        cluster: &str,
        task: &TaskArn,
        reason: &str,
    ) -> Result<(), LaunchError> {
        self.client
            .stop_task()
            .cluster(cluster)
            .task(&task.0)
            .reason(reason)
            .send()
            .await
            .map_err(|e| failed(Operation::StopTask, e))?;
        record(Operation::StopTask, Outcome::Ok);
        Ok(())
    }
}

/// The `operation` label of `dockhand_ecs_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    RunTask,
    ListTasks,
    DescribeTasks,
    StopTask,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Self::RunTask => "run_task",
            Self::ListTasks => "list_tasks",
            Self::DescribeTasks => "describe_tasks",
            Self::StopTask => "stop_task",
        }
    }
}

/// The `outcome` label of `dockhand_ecs_requests_total`: how one request went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    /// RunTask answered, but the launch option had no capacity.
    Capacity,
    Throttled,
    Unavailable,
    Rejected,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Capacity => "capacity",
            Self::Throttled => "throttled",
            Self::Unavailable => "unavailable",
            Self::Rejected => "rejected",
        }
    }

    fn of(err: &LaunchError) -> Self {
        match err {
            LaunchError::NoCapacity { .. } => Self::Capacity,
            LaunchError::Throttled(_) => Self::Throttled,
            LaunchError::Unavailable(_) => Self::Unavailable,
            LaunchError::Rejected { .. } => Self::Rejected,
        }
    }
}

fn record(operation: Operation, outcome: Outcome) {
    metrics::counter!(
        ECS_REQUESTS_TOTAL,
        "operation" => operation.as_str(),
        "outcome" => outcome.as_str(),
    )
    .increment(1);
}

/// Classifies a failed call and counts it.
fn failed<E: OperationError>(
    operation: Operation,
    err: aws_sdk_ecs::error::SdkError<E, aws_sdk_ecs::config::http::HttpResponse>,
) -> LaunchError {
    let err = classify(err);
    record(operation, Outcome::of(&err));
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_debug_of_a_launch_spec_hides_the_jit_config() {
        let ecs: EcsLaunchSettings = toml::from_str(
            r#"
            cluster = "runners"
            task_definition = "runner"
            launch_type = "FARGATE"
            subnets = ["subnet-1"]
            "#,
        )
        .unwrap();
        let jit = SecretString::from("eyJzZWNyZXQiOiJqaXQifQ==");
        let spec = LaunchSpec {
            pool: "linux",
            ecs: &ecs,
            job_id: Some(JobId(7)),
            runner_name: "dockhand-linux-7",
            jit_config: &jit,
            client_token: "dockhand-7",
            started_by: "dockhand-job-7",
            placement: &Placement::default(),
        };
        let printed = format!("{spec:?}");
        assert!(printed.contains("dockhand-linux-7"), "{printed}");
        assert!(!printed.contains("eyJzZWNyZXQiOiJqaXQifQ=="), "{printed}");
    }

    #[test]
    fn outcomes_follow_the_error_kind() {
        let outcomes: Vec<&str> = [
            LaunchError::NoCapacity { tried: vec![] },
            LaunchError::Throttled("x".into()),
            LaunchError::Unavailable("x".into()),
            LaunchError::Rejected { reason: "x".into() },
        ]
        .iter()
        .map(|e| Outcome::of(e).as_str())
        .collect();
        assert_eq!(
            outcomes,
            ["capacity", "throttled", "unavailable", "rejected"]
        );
    }
}
