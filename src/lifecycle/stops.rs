//! Steps 3 and 4 of a pass: a task stuck starting past `pending_timeout` is stopped and
//! handled as stopped (its job replaced); a task running past its pool's `max_runtime` is
//! stopped, and its job fails on GitHub.

use anyhow::Context;
use chrono::Utc;
use serde_json::json;

use super::{Pass, Reconciler, pool_label, reap_detail};
use crate::config::LifecycleSettings;
use crate::ecs::{TaskArn, TaskState};
use crate::metrics as m;
use crate::pool::Pools;
use crate::store::{EventKind, LiveRunner, TaskEnd};

impl Reconciler {
    /// Step 3: a task still starting after `pending_timeout` is stopped, then handled as
    /// stopped.
    pub(super) async fn stop_stuck(
        &self,
        settings: &LifecycleSettings,
        pools: &Pools,
        cluster: &str,
        runner: &LiveRunner,
        task: &TaskState,
        pass: &mut Pass,
    ) -> anyhow::Result<()> {
        let words = format!(
            "dockhand: still {} after lifecycle.pending_timeout ({})",
            task.last_status,
            humantime::format_duration(settings.pending_timeout)
        );
        let detail = reap_detail(
            "pending_timeout",
            &runner.runner_name,
            Some(&task.arn),
            &words,
        );
        let stop = Stop {
            cluster,
            task: &task.arn,
            reason: "pending_timeout",
            words: &words,
            job: runner.for_job,
        };
        if !self
            .stop(settings, pools, runner, stop, detail, pass)
            .await?
        {
            return Ok(());
        }
        let end = TaskEnd {
            task: task.arn.clone(),
            started_at: None,
            stopped_at: Some(Utc::now().timestamp_millis()),
            stop_code: Some("UserInitiated".to_string()),
            stopped_reason: Some(words),
            exit_code: None,
            capacity_provider: task.capacity_provider.clone(),
        };
        self.stopped(settings, pools, runner, end, "pending_timeout", pass)
            .await
    }

    /// Step 4: a task running past its pool's `max_runtime` is stopped. Its job, if it had
    /// one, fails on GitHub; the next pass records the task stopped.
    pub(super) async fn stop_overtime(
        &self,
        settings: &LifecycleSettings,
        pools: &Pools,
        cluster: &str,
        runner: &LiveRunner,
        max: std::time::Duration,
        pass: &mut Pass,
    ) -> anyhow::Result<()> {
        let words = format!(
            "dockhand: ran longer than pool {}'s max_runtime ({})",
            runner.pool,
            humantime::format_duration(max)
        );
        let job = runner.ran_job.or(runner.for_job);
        let mut detail = reap_detail(
            "max_runtime",
            &runner.runner_name,
            Some(&runner.task_arn),
            &words,
        );
        detail["job"] = json!(job.map(|j| j.0));
        let stop = Stop {
            cluster,
            task: &runner.task_arn,
            reason: "max_runtime",
            words: &words,
            job,
        };
        if self
            .stop(settings, pools, runner, stop, detail, pass)
            .await?
        {
            tracing::warn!(runner = runner.runner_name, job.id = ?job, "stopped a runner task over its pool's max_runtime");
        }
        Ok(())
    }

    /// Stops a runner's task for `stop.reason`, counts it, and notes it (`reaped`) on
    /// `stop.job`; in a dry run only says so. Answers whether the task was stopped.
    async fn stop(
        &self,
        settings: &LifecycleSettings,
        pools: &Pools,
        runner: &LiveRunner,
        stop: Stop<'_>,
        detail: serde_json::Value,
        pass: &mut Pass,
    ) -> anyhow::Result<bool> {
        if self
            .would(settings.dry_run, stop.job, "stop_task", detail.clone())
            .await
        {
            pass.would += 1;
            return Ok(false);
        }
        self.0
            .ecs
            .stop_task(stop.cluster, &TaskArn(stop.task.to_string()), stop.words)
            .await
            .with_context(|| format!("stopping a task ({})", stop.reason))?;
        pass.reaped += 1;
        let label = pool_label(pools, Some(&runner.pool));
        metrics::counter!(m::RUNNERS_REAPED_TOTAL, "pool" => label, "reason" => stop.reason)
            .increment(1);
        if let Some(job) = stop.job {
            self.0.store.note(job, EventKind::Reaped, detail).await?;
        }
        Ok(true)
    }
}

/// A task the reconciler stops: where, why (the metric's reason and the words ECS keeps
/// as `stoppedReason`), and the job whose history tells it.
struct Stop<'a> {
    cluster: &'a str,
    task: &'a str,
    reason: &'static str,
    words: &'a str,
    /// `None`: a warm runner that took no job.
    job: Option<crate::domain::JobId>,
}
