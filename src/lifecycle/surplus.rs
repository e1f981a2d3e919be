//! Step 5 of a pass: idle surplus. A pool has surplus when more of its runners are idle
//! (task running, no job taken) than it has jobs waiting for a runner plus the idle
//! runners it keeps warm (`min_idle`, or its schedule's). The surplus, oldest idle first,
//! once idle longer than `idle_timeout`, is removed: its registration deleted first, then
//! its task stopped. In a pool that keeps warm runners, an idle runner older than
//! `max_idle_age` is recycled the same way, and the fill step launches a fresh one. GitHub
//! refuses to delete a runner that is running a job (422); that refusal is the only
//! authority on "busy", so such a runner is left alone, whatever an earlier listing said.

use anyhow::Context;
use chrono::Utc;

use super::tasks::{Idle, oldest_first, registration_of};
use super::{Pass, Reconciler, Seen, pool, pool_label, reap_detail};
use crate::config::LifecycleSettings;
use crate::ecs::TaskArn;
use crate::github::GitHubError;
use crate::metrics as m;
use crate::pool::Pools;
use crate::store::EventKind;

impl Reconciler {
    pub(super) async fn remove_surplus(
        &self,
        settings: &LifecycleSettings,
        pools: &Pools,
        seen: &Seen,
        pass: &mut Pass,
    ) -> anyhow::Result<()> {
        let waiting = self.0.store.waiting_jobs().await?;
        let mut idle = seen.idle.clone();
        oldest_first(&mut idle);
        let now = Utc::now().timestamp_millis();
        let at = self.now();
        let timeout = settings.idle_timeout.as_millis() as i64;
        let mut failed = None;
        for (pool_name, runners) in &idle {
            let of_pool = pool(pools, pool_name).map(|p| &p.settings);
            let warm = of_pool.map_or(0, |s| s.min_idle_at(at));
            let max_age = of_pool
                .filter(|_| warm > 0)
                .map(|s| s.max_idle_age.as_millis() as i64);
            let wanted = waiting.get(pool_name).copied().unwrap_or(0) as usize + warm as usize;
            let surplus = runners.len().saturating_sub(wanted);
            let mut removed = 0;
            let mut due = Vec::new();
            for idle in runners {
                let age = now - idle.since;
                if removed < surplus && age >= timeout {
                    removed += 1;
                    due.push((idle, Why::Surplus));
                } else if max_age.is_some_and(|max| age >= max) {
                    due.push((idle, Why::Aged));
                }
            }
            for (idle, why) in due {
                if let Err(err) = self.remove_idle(settings, pools, idle, why, pass).await {
                    tracing::warn!(
                        runner = idle.runner.runner_name,
                        error = format!("{err:#}"),
                        "could not remove an idle runner; trying again next pass"
                    );
                    failed.get_or_insert(err);
                }
            }
        }
        match failed {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    async fn remove_idle(
        &self,
        settings: &LifecycleSettings,
        pools: &Pools,
        idle: &Idle,
        why: Why,
        pass: &mut Pass,
    ) -> anyhow::Result<()> {
        let runner = &idle.runner;
        let idle_for = std::time::Duration::from_millis(
            (Utc::now().timestamp_millis() - idle.since).max(0) as u64,
        );
        let idle_for =
            humantime::format_duration(std::time::Duration::from_secs(idle_for.as_secs()));
        let words = match why {
            Why::Surplus => format!(
                "dockhand: idle surplus runner, idle for {idle_for} (lifecycle.idle_timeout {})",
                humantime::format_duration(settings.idle_timeout)
            ),
            Why::Aged => format!(
                "dockhand: warm runner recycled, idle for {idle_for} (pool {}'s max_idle_age {})",
                runner.pool,
                humantime::format_duration(
                    pool(pools, &runner.pool)
                        .map_or_else(Default::default, |p| p.settings.max_idle_age)
                )
            ),
        };
        let detail = reap_detail(
            why.label(),
            &runner.runner_name,
            Some(&runner.task_arn),
            &words,
        );
        if self
            .would(
                settings.dry_run,
                runner.for_job,
                "remove_runner",
                detail.clone(),
            )
            .await
        {
            pass.would += 1;
            return Ok(());
        }
        let label = pool_label(pools, Some(&runner.pool));
        if let Some((installation, target)) = registration_of(pools, runner) {
            let id = match runner.runner_id {
                Some(id) => Some(id),
                None => self
                    .0
                    .github
                    .find_runner(installation, &target, &runner.runner_name)
                    .await?
                    .map(|r| r.id),
            };
            if let Some(id) = id {
                match self.0.github.delete_runner(installation, &target, id).await {
                    Ok(()) => {}
                    Err(GitHubError::Validation { message }) => {
                        pass.refused += 1;
                        metrics::counter!(m::REAP_REFUSED_TOTAL, "pool" => label).increment(1);
                        tracing::info!(
                            runner = runner.runner_name,
                            "GitHub refused to remove an idle runner: it has just taken a job; left alone"
                        );
                        let mut detail = detail;
                        detail["github"] = message.into();
                        if let Some(job) = runner.ran_job.or(runner.for_job) {
                            self.0
                                .store
                                .note(job, EventKind::ReapRefused, detail)
                                .await?;
                        }
                        return Ok(());
                    }
                    Err(err) => return Err(err).context("removing an idle runner's registration"),
                }
            }
        }
        let cluster = runner.cluster.clone().or_else(|| {
            pool(pools, &runner.pool)
                .and_then(|p| p.settings.ecs.as_ref())
                .map(|e| e.cluster.clone())
        });
        if let Some(cluster) = cluster {
            self.0
                .ecs
                .stop_task(&cluster, &TaskArn(runner.task_arn.clone()), &words)
                .await
                .context("stopping an idle runner's task")?;
        }
        self.0
            .store
            .record_reaped(&runner.runner_name, runner.for_job, detail)
            .await?;
        pass.reaped += 1;
        metrics::counter!(m::RUNNERS_REAPED_TOTAL, "pool" => label, "reason" => why.label())
            .increment(1);
        tracing::info!(runner = runner.runner_name, job.id = ?runner.for_job, reason = why.label(), "removed an idle runner");
        Ok(())
    }
}

/// Why an idle runner is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Why {
    /// Beyond the waiting jobs and the warm target, past `idle_timeout`.
    Surplus,
    /// Idle past its pool's `max_idle_age`: recycled for a fresh one.
    Aged,
}

impl Why {
    /// The `reason` of the history entry and of `dockhand_runners_reaped_total`.
    fn label(self) -> &'static str {
        match self {
            Self::Surplus => "idle",
            Self::Aged => "max_idle_age",
        }
    }
}
