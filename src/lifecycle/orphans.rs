//! Step 7, every `orphan_interval`: what nobody accounts for.
//! - Registrations named by dockhand (`dh-`) on the targets of recent jobs and the pools'
//!   warm targets, that GitHub
//!   shows offline and not busy, whose runner the store shows finished, removed, stopped,
//!   or does not know at all, are deleted.
//! - Tasks dockhand tagged (`dockhand:runner`) in the pools' clusters, meant to run, whose
//!   runner the store does not know or has seen finish, are stopped once older than
//!   `orphan_grace` (a launch may still be recording a younger one).
//!
//! Listings are read to the end: the runner list page by page, ListTasks page by page and
//! DescribeTasks 100 tasks a call.

use std::collections::BTreeSet;

use anyhow::Context;
use chrono::Utc;

use super::{Pass, Reconciler, pool, pool_label, reap_detail};
use crate::config::LifecycleSettings;
use crate::domain::InstallationId;
use crate::ecs::TaskArn;
use crate::github::RunnerTarget;
use crate::metrics as m;
use crate::pool::Pools;
use crate::store::{EventKind, Standing};

/// Whether the error is GitHub's 404: the installation or target is gone.
fn is_not_found(err: &anyhow::Error) -> bool {
    matches!(
        err.downcast_ref::<crate::github::GitHubError>(),
        Some(crate::github::GitHubError::NotFound)
    )
}

/// The prefix of every runner name dockhand registers (see the worker's `runner_name`).
const NAME_PREFIX: &str = "dh-";
/// How far back the jobs whose targets are swept go.
const TARGETS_SINCE_MS: i64 = 7 * 24 * 3600 * 1000;

impl Reconciler {
    pub(super) async fn sweep_orphans(
        &self,
        settings: &LifecycleSettings,
        pools: &Pools,
        pass: &mut Pass,
    ) -> anyhow::Result<()> {
        let registrations = self.sweep_registrations(settings, pools, pass).await;
        let tasks = self.sweep_tasks(settings, pools, pass).await;
        registrations.and(tasks)
    }

    async fn sweep_registrations(
        &self,
        settings: &LifecycleSettings,
        pools: &Pools,
        pass: &mut Pass,
    ) -> anyhow::Result<()> {
        let since = Utc::now().timestamp_millis() - TARGETS_SINCE_MS;
        let mut targets: Vec<(InstallationId, RunnerTarget, String)> = Vec::new();
        let mut failed = None;
        // The targets of recent jobs, and where pools register warm runners.
        let mut sources = self.0.store.recent_repos(since).await?;
        sources.extend(pools.iter().filter_map(|p| {
            let target = p.settings.warm_target.clone()?;
            Some((p.name.clone(), target, None))
        }));
        for (pool_name, repo, installation) in sources {
            let Some(pool) = pool(pools, &pool_name) else {
                continue;
            };
            let target = RunnerTarget::for_repo(pool.settings.scope, &repo);
            // A job from an org or repo webhook named no installation: the App's on the
            // target's account acts, as it did for the launch (looked up once, cached).
            let installation = match installation {
                Some(installation) => installation,
                None => match self.0.github.installation_for(&target).await {
                    Ok(installation) => installation,
                    Err(crate::github::GitHubError::NotFound) => continue,
                    Err(err) => {
                        failed.get_or_insert(
                            anyhow::Error::new(err)
                                .context(format!("looking up the App's installation on {target}")),
                        );
                        continue;
                    }
                },
            };
            if !targets
                .iter()
                .any(|(i, t, _)| *i == installation && *t == target)
            {
                targets.push((installation, target, pool_name));
            }
        }
        // One target's failure (an installation gone: 404) does not stop the others.
        for (installation, target, pool_name) in &targets {
            match self
                .sweep_target(settings, pools, *installation, target, pool_name, pass)
                .await
            {
                Ok(()) => {}
                Err(err) if is_not_found(&err) => {
                    tracing::debug!(%target, "no runners to sweep: the App cannot see this target");
                }
                Err(err) => {
                    tracing::warn!(%target, error = format!("{err:#}"), "could not sweep a target's registrations");
                    failed.get_or_insert(err);
                }
            }
        }
        failed.map_or(Ok(()), Err)
    }

    async fn sweep_target(
        &self,
        settings: &LifecycleSettings,
        pools: &Pools,
        installation: InstallationId,
        target: &RunnerTarget,
        pool_name: &str,
        pass: &mut Pass,
    ) -> anyhow::Result<()> {
        let runners = self
            .0
            .github
            .list_runners(installation, target)
            .await
            .with_context(|| format!("listing the runners of {target}"))?;
        for runner in runners {
            if !runner.name.starts_with(NAME_PREFIX) || runner.busy || runner.status != "offline" {
                continue;
            }
            let (standing, job) = self.0.store.standing(&runner.name).await?;
            if standing == Standing::Live {
                continue;
            }
            metrics::counter!(m::ORPHANS_FOUND_TOTAL, "kind" => "registration").increment(1);
            let words = format!(
                "dockhand: orphaned registration (the store shows its runner {})",
                if standing == Standing::Done {
                    "done"
                } else {
                    "unknown"
                }
            );
            let detail = reap_detail("orphan", &runner.name, None, &words);
            if self
                .would(settings.dry_run, job, "delete_registration", detail.clone())
                .await
            {
                pass.would += 1;
                continue;
            }
            match self
                .0
                .github
                .delete_runner(installation, target, runner.id)
                .await
            {
                Ok(()) => {}
                Err(crate::github::GitHubError::Validation { .. }) => continue,
                Err(err) => return Err(err).context("deleting an orphaned registration"),
            }
            pass.reaped += 1;
            let label = pool_label(pools, Some(pool_name));
            metrics::counter!(m::RUNNERS_REAPED_TOTAL, "pool" => label, "reason" => "orphan")
                .increment(1);
            tracing::info!(runner = runner.name, "deleted an orphaned registration");
            if let Some(job) = job {
                self.0.store.note(job, EventKind::Reaped, detail).await?;
            }
        }
        Ok(())
    }

    async fn sweep_tasks(
        &self,
        settings: &LifecycleSettings,
        pools: &Pools,
        pass: &mut Pass,
    ) -> anyhow::Result<()> {
        let clusters: BTreeSet<(String, String)> = pools
            .iter()
            .filter_map(|p| p.settings.ecs.as_ref())
            .map(|e| (e.cluster.clone(), e.container.clone()))
            .collect();
        let now = Utc::now().timestamp_millis();
        let grace = settings.orphan_grace.as_millis() as i64;
        for (cluster, container) in clusters {
            let tasks = self
                .0
                .ecs
                .running_tasks(&cluster, &container)
                .await
                .with_context(|| format!("listing the tasks of cluster {cluster}"))?;
            for task in tasks {
                let Some(name) = &task.runner_tag else {
                    continue;
                };
                let created = task.created_at.map_or(now, |t| t.timestamp_millis());
                if now - created < grace {
                    continue;
                }
                let (standing, job) = self.0.store.standing(name).await?;
                if standing == Standing::Live {
                    continue;
                }
                metrics::counter!(m::ORPHANS_FOUND_TOTAL, "kind" => "task").increment(1);
                let words = format!(
                    "dockhand: orphaned task (the store shows its runner {})",
                    if standing == Standing::Done {
                        "done"
                    } else {
                        "unknown"
                    }
                );
                let detail = reap_detail("orphan", name, Some(&task.arn), &words);
                if self
                    .would(settings.dry_run, job, "stop_task", detail.clone())
                    .await
                {
                    pass.would += 1;
                    continue;
                }
                self.0
                    .ecs
                    .stop_task(&cluster, &TaskArn(task.arn.clone()), &words)
                    .await
                    .context("stopping an orphaned task")?;
                pass.reaped += 1;
                let pool_name = job.and(name.strip_prefix(NAME_PREFIX)).and_then(|rest| {
                    pools
                        .iter()
                        .map(|p| p.name.as_str())
                        .find(|p| rest.starts_with(&format!("{p}-")))
                });
                let label = pool_label(pools, pool_name);
                metrics::counter!(m::RUNNERS_REAPED_TOTAL, "pool" => label, "reason" => "orphan")
                    .increment(1);
                tracing::info!(task = task.arn, runner = name, "stopped an orphaned task");
                if let Some(job) = job {
                    self.0.store.note(job, EventKind::Reaped, detail).await?;
                }
            }
        }
        Ok(())
    }
}
