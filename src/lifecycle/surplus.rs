//! Step 5 of a pass: idle surplus. A pool has surplus when more of its runners are idle
//! (task running, no job taken) than it has jobs waiting for a runner. The surplus, oldest
//! idle first, once idle longer than `idle_timeout`, is removed: its registration deleted
//! first, then its task stopped. GitHub refuses to delete a runner that is running a job
//! (422); that refusal is the only authority on "busy", so such a runner is left alone,
//! whatever an earlier listing said.

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
        let timeout = settings.idle_timeout.as_millis() as i64;
        let mut failed = None;
        for (pool_name, runners) in &idle {
            let wanted = waiting.get(pool_name).copied().unwrap_or(0) as usize;
            let surplus = runners.len().saturating_sub(wanted);
            let due = runners
                .iter()
                .filter(|i| now - i.since >= timeout)
                .take(surplus);
            for idle in due {
                if let Err(err) = self.remove_idle(settings, pools, idle, pass).await {
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
        pass: &mut Pass,
    ) -> anyhow::Result<()> {
        let runner = &idle.runner;
        let idle_for = std::time::Duration::from_millis(
            (Utc::now().timestamp_millis() - idle.since).max(0) as u64,
        );
        let words = format!(
            "dockhand: idle surplus runner, idle for {} (lifecycle.idle_timeout {})",
            humantime::format_duration(std::time::Duration::from_secs(idle_for.as_secs())),
            humantime::format_duration(settings.idle_timeout)
        );
        let detail = reap_detail("idle", &runner.runner_name, Some(&runner.task_arn), &words);
        if self
            .would(
                settings.dry_run,
                Some(runner.for_job),
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
                        self.0
                            .store
                            .note(runner.for_job, EventKind::ReapRefused, detail)
                            .await?;
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
            .record_reaped(&runner.runner_name, Some(runner.for_job), detail)
            .await?;
        pass.reaped += 1;
        metrics::counter!(m::RUNNERS_REAPED_TOTAL, "pool" => label, "reason" => "idle")
            .increment(1);
        tracing::info!(runner = runner.runner_name, job.id = %runner.for_job, "removed an idle surplus runner");
        Ok(())
    }
}
