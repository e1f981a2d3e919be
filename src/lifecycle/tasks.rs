//! Steps 1, 2 and 8 of a pass: every task the store believes live is described (100 a
//! call, per cluster) and what ECS says is recorded. A stopped task ends its runner: a busy
//! one is finished (its job fails on GitHub), one that took no job has its job replaced. A
//! task stuck starting, or over its max runtime, is stopped (`stops`).

use std::collections::{BTreeMap, HashMap};

use super::{Pass, Reconciler, Seen, pool, pool_label};
use crate::config::{LifecycleSettings, RunnerScopeKind};
use crate::ecs::TaskState;
use crate::github::{GitHubError, RunnerTarget};
use crate::metrics as m;
use crate::pool::Pools;
use crate::store::{Debt, Interruption, LiveRunner, RunnerState, TaskEnd, end_detail};
use anyhow::Context;
use chrono::Utc;

/// An idle runner: its task runs, and it has taken no job.
#[derive(Debug, Clone)]
pub(crate) struct Idle {
    pub runner: LiveRunner,
    /// Since when, unix ms (its task's start).
    pub since: i64,
}

/// The values of the `stop_code` label.
pub(super) const STOP_CODES: [&str; 8] = [
    "TaskFailedToStart",
    "EssentialContainerExited",
    "UserInitiated",
    "ServiceSchedulerInitiated",
    "SpotInterruption",
    "TerminationNotice",
    "other",
    "unknown",
];

/// The `stop_code` label: ECS's codes as a closed set ([`STOP_CODES`]).
fn stop_code_label(code: Option<&str>) -> &'static str {
    match code {
        None => "unknown",
        Some("TaskFailedToStart") => "TaskFailedToStart",
        Some("EssentialContainerExited") => "EssentialContainerExited",
        Some("UserInitiated") => "UserInitiated",
        Some("ServiceSchedulerInitiated") => "ServiceSchedulerInitiated",
        Some("SpotInterruption") => "SpotInterruption",
        Some("TerminationNotice") => "TerminationNotice",
        Some(_) => "other",
    }
}

pub(super) fn end_of(task: &TaskState) -> TaskEnd {
    TaskEnd {
        task: task.arn.clone(),
        started_at: task.started_at.map(|t| t.timestamp_millis()),
        stopped_at: task.stopped_at.map(|t| t.timestamp_millis()),
        stop_code: task.stop_code.clone(),
        stopped_reason: task.stopped_reason.clone(),
        exit_code: task.exit_code,
        capacity_provider: task.capacity_provider.clone(),
    }
}

/// Whether two ARNs (or an ARN and a short task id) name the same task.
fn same_task(a: &str, b: &str) -> bool {
    a == b || a.ends_with(&format!("/{b}")) || b.ends_with(&format!("/{a}"))
}

/// Where a runner's registration lives: its job's installation and target, when known.
pub(super) fn registration_of(
    pools: &Pools,
    runner: &LiveRunner,
) -> Option<(crate::domain::InstallationId, RunnerTarget)> {
    let scope = pool(pools, &runner.pool).map_or(RunnerScopeKind::Org, |p| p.settings.scope);
    Some((
        runner.installation_id?,
        RunnerTarget::for_repo(scope, runner.repo.as_deref()?),
    ))
}

impl Reconciler {
    /// Describes every live task and acts on what ECS says. Answers the idle and starting
    /// runners seen; an error (a cluster that could not be described) comes after the
    /// other clusters were handled, so the later steps, which need the whole picture, are
    /// skipped for this pass.
    pub(super) async fn follow_tasks(
        &self,
        settings: &LifecycleSettings,
        pools: &Pools,
        pass: &mut Pass,
    ) -> anyhow::Result<Seen> {
        let live = self.0.store.live_runner_tasks().await?;
        let mut by_cluster: BTreeMap<String, Vec<LiveRunner>> = BTreeMap::new();
        for runner in live {
            let cluster = runner.cluster.clone().or_else(|| {
                pool(pools, &runner.pool)
                    .and_then(|p| p.settings.ecs.as_ref())
                    .map(|e| e.cluster.clone())
            });
            match cluster {
                Some(cluster) => by_cluster.entry(cluster).or_default().push(runner),
                None => tracing::warn!(
                    runner = runner.runner_name,
                    pool = runner.pool,
                    "no cluster known for a live runner's task; not followed"
                ),
            }
        }
        let mut seen = Seen::default();
        let mut failed = None;
        for (cluster, runners) in by_cluster {
            let container = pool(pools, &runners[0].pool)
                .and_then(|p| p.settings.ecs.as_ref())
                .map_or("runner", |e| e.container.as_str());
            let arns: Vec<String> = runners.iter().map(|r| r.task_arn.clone()).collect();
            let described = match self
                .0
                .ecs
                .describe_tasks(&cluster, &arns, container, false)
                .await
            {
                Ok(described) => described,
                Err(err) => {
                    failed.get_or_insert(anyhow::Error::new(err).context(format!(
                        "describing {} tasks in cluster {cluster}",
                        arns.len()
                    )));
                    continue;
                }
            };
            pass.described += arns.len();
            for runner in &runners {
                let task = described
                    .tasks
                    .iter()
                    .find(|t| same_task(&t.arn, &runner.task_arn));
                let result = match task {
                    Some(task) => {
                        self.follow(settings, pools, &cluster, runner, task, &mut seen, pass)
                            .await
                    }
                    None if described
                        .missing
                        .iter()
                        .any(|m| same_task(m, &runner.task_arn)) =>
                    {
                        let end = TaskEnd {
                            task: runner.task_arn.clone(),
                            ..TaskEnd::default()
                        };
                        self.stopped(settings, pools, runner, end, "task_stopped", pass)
                            .await
                    }
                    None => Ok(()),
                };
                if let Err(err) = result {
                    tracing::warn!(
                        runner = runner.runner_name,
                        error = format!("{err:#}"),
                        "could not act on a runner's task; trying again next pass"
                    );
                    failed.get_or_insert(err);
                }
            }
        }
        match failed {
            Some(err) => Err(err),
            None => Ok(seen),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn follow(
        &self,
        settings: &LifecycleSettings,
        pools: &Pools,
        cluster: &str,
        runner: &LiveRunner,
        task: &TaskState,
        seen: &mut Seen,
        pass: &mut Pass,
    ) -> anyhow::Result<()> {
        let now = Utc::now().timestamp_millis();
        let waiting = runner.state == RunnerState::Launched && runner.ran_job.is_none();
        if task.is_stopped() {
            return self
                .stopped(settings, pools, runner, end_of(task), "task_stopped", pass)
                .await;
        }
        // A finished runner's task is followed only to its stop (SIGTERM to exit).
        if runner.state == RunnerState::Finished {
            return Ok(());
        }
        self.record_status(runner, task).await?;
        if task.is_starting() {
            let created = task
                .created_at
                .map_or(runner.created_at, |t| t.timestamp_millis());
            if now - created > settings.pending_timeout.as_millis() as i64 {
                return self
                    .stop_stuck(settings, pools, cluster, runner, task, pass)
                    .await;
            }
            if waiting {
                *seen.starting.entry(runner.pool.clone()).or_default() += 1;
            }
            return Ok(());
        }
        let max_runtime = pool(pools, &runner.pool).map(|p| p.settings.max_runtime);
        if let (Some(started), Some(max)) = (task.started_at, max_runtime)
            && now - started.timestamp_millis() > max.as_millis() as i64
        {
            return self
                .stop_overtime(settings, pools, cluster, runner, max, pass)
                .await;
        }
        if waiting && task.last_status == "RUNNING" {
            let since = task
                .started_at
                .or(task.created_at)
                .map_or(runner.created_at, |t| t.timestamp_millis());
            seen.idle
                .entry(runner.pool.clone())
                .or_default()
                .push(Idle {
                    runner: runner.clone(),
                    since,
                });
        }
        Ok(())
    }

    /// Records the task's status if it changed; answers whether it did.
    pub(super) async fn record_status(
        &self,
        runner: &LiveRunner,
        task: &TaskState,
    ) -> anyhow::Result<bool> {
        if runner.task_status.as_deref() == Some(task.last_status.as_str()) {
            return Ok(false);
        }
        self.0
            .store
            .record_task_status(
                &runner.runner_name,
                &task.last_status,
                task.started_at.map(|t| t.timestamp_millis()),
            )
            .await?;
        Ok(true)
    }

    /// A runner's task has stopped (or ECS no longer knows it). A busy runner is finished:
    /// its job fails on GitHub. One that took no job has its registration removed if GitHub
    /// still lists it, and its job, if still owed a runner, is replaced. One whose task came
    /// up and whose registration is gone most likely ran a job whose webhook is late or
    /// lost: it is not replaced here; the job, if it stays quiet, is asked about.
    pub(super) async fn stopped(
        &self,
        settings: &LifecycleSettings,
        pools: &Pools,
        runner: &LiveRunner,
        end: TaskEnd,
        why: &'static str,
        pass: &mut Pass,
    ) -> anyhow::Result<()> {
        let label = pool_label(pools, Some(&runner.pool));
        let detail = end_detail(&runner.runner_name, &end);
        let busy = runner.state == RunnerState::Busy || runner.ran_job.is_some();
        let interruption = interruption(pools, runner, &end, busy);
        if settings.dry_run && runner.state == RunnerState::Finished && interruption.is_none() {
            // Only its task's end is new: nothing a dry run would do.
            return Ok(());
        }
        if busy {
            if self
                .would(settings.dry_run, runner.for_job, "record_stopped", detail)
                .await
            {
                pass.would += 1;
                return Ok(());
            }
            if self
                .0
                .store
                .record_task_stopped(runner, &end, interruption.as_ref())
                .await?
            {
                pass.stopped += 1;
                if interruption.is_some() {
                    metrics::counter!(m::SPOT_INTERRUPTIONS_TOTAL, "pool" => label.clone(), "when" => "during_job").increment(1);
                }
                metrics::counter!(m::RUNNER_STOPS_TOTAL, "pool" => label, "stop_code" => stop_code_label(end.stop_code.as_deref())).increment(1);
            }
            return Ok(());
        }
        let never_started =
            end.started_at.is_none() || end.stop_code.as_deref() == Some("TaskFailedToStart");
        let registration = registration_of(pools, runner);
        let listed = match &registration {
            Some((installation, target)) => self
                .0
                .github
                .find_runner(*installation, target, &runner.runner_name)
                .await
                .context("looking up the stopped runner's registration")?,
            None => None,
        };
        let replace =
            listed.as_ref().is_some_and(|r| !r.busy) || (listed.is_none() && never_started);
        if self
            .would(
                settings.dry_run,
                runner.for_job,
                if replace { "replace" } else { "record_stopped" },
                detail.clone(),
            )
            .await
        {
            pass.would += 1;
            return Ok(());
        }
        if !self
            .0
            .store
            .record_task_stopped(runner, &end, interruption.as_ref())
            .await?
        {
            return Ok(());
        }
        pass.stopped += 1;
        if interruption.is_some() {
            metrics::counter!(m::SPOT_INTERRUPTIONS_TOTAL, "pool" => label.clone(), "when" => "before_job").increment(1);
        }
        metrics::counter!(m::RUNNER_STOPS_TOTAL, "pool" => label, "stop_code" => stop_code_label(end.stop_code.as_deref())).increment(1);
        // Recorded before the registration is deleted: a delete that fails leaves a
        // registration of a runner the store shows done, which the orphan sweep removes,
        // and the replacement does not wait for it.
        if let (Some(found), Some((installation, target))) = (&listed, &registration)
            && !found.busy
        {
            match self
                .0
                .github
                .delete_runner(*installation, target, found.id)
                .await
            {
                Ok(()) => {}
                // It took a job after all, and GitHub says so: not a runner to replace.
                Err(GitHubError::Validation { .. }) => return Ok(()),
                Err(err) => tracing::warn!(
                    runner = runner.runner_name,
                    error = %crate::telemetry::chain(&err),
                    "could not remove a stopped runner's registration; the orphan sweep will"
                ),
            }
        }
        let Some(job) = runner.for_job else {
            // A warm runner: no job owes it a replacement; the fill step launches another
            // if the pool is short.
            tracing::info!(
                runner = runner.runner_name,
                "a warm runner's task stopped before it took a job"
            );
            return Ok(());
        };
        if !replace {
            tracing::info!(
                runner = runner.runner_name,
                job.id = %job,
                "a runner's task stopped after it came up and its registration is gone: it likely ran a job; its job is checked with GitHub if it stays quiet"
            );
            return Ok(());
        }
        let reason = match (&end.stop_code, &end.stopped_reason) {
            (_, Some(reason)) => reason.clone(),
            (Some(code), None) => code.clone(),
            (None, None) => "ECS no longer knows the task (reason unknown)".to_string(),
        };
        self.replace(
            settings,
            pools,
            job,
            Debt::Owed,
            why,
            &reason,
            interruption.as_ref().map(|i| i.capacity_provider.as_str()),
            detail,
            pass,
        )
        .await
    }
}

/// Whether Spot reclaimed the task: ECS's `SpotInterruption`, or a `TerminationNotice` on
/// a capacity provider the pool names as Spot. A busy runner's interruption asks for its
/// run's re-run where the pool says so.
fn interruption(
    pools: &Pools,
    runner: &LiveRunner,
    end: &TaskEnd,
    busy: bool,
) -> Option<Interruption> {
    let ecs = pool(pools, &runner.pool).and_then(|p| p.settings.ecs.as_ref());
    let provider = end.capacity_provider.as_deref();
    let spot = match end.stop_code.as_deref() {
        Some("SpotInterruption") => true,
        Some("TerminationNotice") => provider.zip(ecs).is_some_and(|(p, e)| e.is_spot(p)),
        _ => false,
    };
    spot.then(|| Interruption {
        capacity_provider: provider.unwrap_or("FARGATE_SPOT").to_string(),
        rerun: busy && pool(pools, &runner.pool).is_some_and(|p| p.settings.rerun_interrupted),
    })
}

/// Idle runners by pool, oldest first.
pub(super) fn oldest_first(idle: &mut HashMap<String, Vec<Idle>>) {
    for runners in idle.values_mut() {
        runners.sort_by_key(|i| i.since);
    }
}
