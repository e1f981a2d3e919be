//! Step 6 of a pass: warm runners. Each pool with a `min_idle` target (its own, or its
//! schedule's) keeps that many idle runners ready, counting runners, not identities:
//!
//! ```text
//! settled idle = spare (registered or launched, no job taken)
//!              + coming (launches owed to jobs, no runner on record yet)
//!              - waiting (jobs GitHub has queued, each of which takes a spare runner)
//! ```
//!
//! When the settled idle count is below the target, warm runners are launched for the
//! difference, within `max_runners`, one per free warm slot. A queued job still launches
//! its own runner: a warm runner serves it at once, and the job's own runner, once up,
//! is the idle runner that restores the pool, so nothing else is launched.
//!
//! A warm runner's row (its name from slot and generation) is written before it is
//! registered, so a crash never launches a slot twice; a row left without a task for two
//! leases is resumed (its task found by `startedBy`) or removed here.
//!
//! A warm runner whose task fails to start is not replaced at once forever: after
//! [`PAUSE_AFTER`] such failures in a pool within [`PAUSE_WINDOW`] (an image that cannot be
//! pulled, a subnet out of addresses), the pool's fills pause until the window has passed,
//! so a broken pool does not spend ECS and GitHub quota every pass. Jobs still launch their
//! own runners, whose failures the replacement cap bounds.

use std::time::Duration;

use anyhow::Context;

use super::{Pass, Reconciler};
use crate::config::LifecycleSettings;
use crate::domain::InstallationId;
use crate::ecs::{LaunchError, LaunchSpec, Placement, TaskArn};
use crate::github::{GitHubError, JitRequest, RunnerTarget};
use crate::metrics as m;
use crate::pool::{Pool, Pools};
use crate::store::{Registration, WarmIntent};

/// The closed label set of `dockhand_warm_launches_total{outcome}`.
pub(super) const OUTCOMES: [&str; 5] = ["launched", "failed", "resumed", "abandoned", "paused"];

/// Warm runners of a pool that failed to start within [`PAUSE_WINDOW`] that pause its fills.
pub const PAUSE_AFTER: u64 = 3;
/// How far back failed warm starts count.
pub const PAUSE_WINDOW: Duration = Duration::from_secs(600);

/// ECS `startedBy` of a warm runner's task: how a resumed fill finds it.
pub fn warm_started_by(runner_name: &str) -> String {
    format!("dockhand-warm-{runner_name}")
}

impl Reconciler {
    pub(super) async fn fill_warm(
        &self,
        settings: &LifecycleSettings,
        pools: &Pools,
        pass: &mut Pass,
    ) -> anyhow::Result<()> {
        let mut failed = None;
        if let Err(err) = self.resume_stale(settings, pools).await {
            failed.get_or_insert(err);
        }
        let now = self.now();
        for pool in pools.iter() {
            let target = pool.settings.min_idle_at(now);
            metrics::gauge!(m::WARM_TARGET, "pool" => pool.name.clone()).set(f64::from(target));
            if target == 0 {
                continue;
            }
            if let Err(err) = self.fill_pool(settings, pool, target, pass).await {
                tracing::warn!(
                    pool = pool.name,
                    error = format!("{err:#}"),
                    "could not fill the pool's warm runners; trying again next pass"
                );
                failed.get_or_insert(err);
            }
        }
        match failed {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    async fn fill_pool(
        &self,
        settings: &LifecycleSettings,
        pool: &Pool,
        target: u32,
        pass: &mut Pass,
    ) -> anyhow::Result<()> {
        let (Some(ecs), Some(warm_target)) = (&pool.settings.ecs, &pool.settings.warm_target)
        else {
            return Ok(());
        };
        let books = self.0.store.warm_books(&pool.name).await?;
        let short = i64::from(target) - books.settled_idle();
        let room = i64::from(pool.settings.max_runners) - (books.live + books.coming) as i64;
        let want = short.min(room).max(0) as u32;
        if want == 0 {
            return Ok(());
        }
        let failures = self
            .0
            .store
            .warm_start_failures(&pool.name, PAUSE_WINDOW.as_millis() as i64)
            .await?;
        if failures >= PAUSE_AFTER {
            tracing::warn!(
                pool = pool.name,
                failures,
                held_back = want,
                window = %humantime::format_duration(PAUSE_WINDOW),
                "warm runners keep failing to start; the pool's fills pause until fewer have failed within the window"
            );
            metrics::counter!(m::WARM_LAUNCHES_TOTAL, "pool" => pool.name.clone(), "outcome" => "paused").increment(u64::from(want));
            return Ok(());
        }
        let detail = serde_json::json!({
            "pool": pool.name, "target": target, "launch": want, "books": format!("{books:?}"),
        });
        if self
            .would(settings.dry_run, None, "launch_warm", detail)
            .await
        {
            pass.would += want as usize;
            return Ok(());
        }
        let names = self
            .0
            .store
            .claim_warm_slots(&pool.name, target, want, warm_target, &ecs.cluster)
            .await?;
        tracing::info!(
            pool = pool.name,
            target,
            ?books,
            launching = names.len(),
            "filling the pool's warm runners"
        );
        let mut failed = None;
        for name in names {
            match self.launch_warm(pool, warm_target, &name).await {
                Ok(()) => {
                    pass.warmed += 1;
                    metrics::counter!(m::WARM_LAUNCHES_TOTAL, "pool" => pool.name.clone(), "outcome" => "launched").increment(1);
                }
                Err(err) => {
                    metrics::counter!(m::WARM_LAUNCHES_TOTAL, "pool" => pool.name.clone(), "outcome" => "failed").increment(1);
                    tracing::warn!(
                        runner = name,
                        error = format!("{err:#}"),
                        "could not launch a warm runner"
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

    /// Registers and launches one warm runner whose row is written. A failure that may
    /// have left a registration or a task keeps the row for [`Self::resume_stale`].
    async fn launch_warm(&self, pool: &Pool, warm_target: &str, name: &str) -> anyhow::Result<()> {
        let inner = &self.0;
        let ecs = pool
            .settings
            .ecs
            .as_ref()
            .context("the pool has no [pool.ecs]")?;
        let target = RunnerTarget::for_repo(pool.settings.scope, warm_target);
        let installation = inner
            .github
            .installation_for(&target)
            .await
            .with_context(|| format!("looking up the App's installation on {target}"))?;
        inner
            .store
            .record_warm_installation(name, installation)
            .await?;
        let request = JitRequest {
            name: name.to_string(),
            runner_group: pool.settings.runner_group.clone(),
            labels: pool.labels.clone(),
            work_folder: pool.settings.work_folder.clone(),
        };
        let jit = inner
            .github
            .generate_jit_config(installation, &target, &request)
            .await
            .context("registering a warm runner")?;
        inner
            .store
            .record_warm_registration(
                name,
                Registration {
                    runner_id: jit.runner_id,
                    installation: Some(jit.installation),
                    app_id: Some(jit.app_id),
                },
            )
            .await?;
        let spec = LaunchSpec {
            pool: &pool.name,
            ecs,
            job_id: None,
            runner_name: name,
            jit_config: &jit.encoded,
            client_token: &format!("dockhand-{name}"),
            started_by: &warm_started_by(name),
            placement: &Placement::default(),
        };
        match inner.ecs.run_task(&spec).await {
            Ok(task) => {
                inner.store.record_runner_task(name, &task.arn.0).await?;
                tracing::info!(runner = name, task = task.arn.0, "launched a warm runner");
                Ok(())
            }
            // No answer: ECS may have started it; the row stays for the resume.
            Err(err @ LaunchError::Unavailable(_)) => Err(err.into()),
            Err(err) => {
                self.forget(jit.installation, &target, name, Some(jit.runner_id))
                    .await?;
                Err(anyhow::Error::new(err).context("running a warm runner's task"))
            }
        }
    }

    /// Warm rows left without a task for two leases (a fill that crashed or lost its
    /// answer): the task, if ECS started one, is recorded; otherwise the registration is
    /// deleted and the row marked removed, which frees its slot.
    async fn resume_stale(
        &self,
        settings: &LifecycleSettings,
        pools: &Pools,
    ) -> anyhow::Result<()> {
        let stale_ms = stale_after(settings).as_millis() as i64;
        let mut failed = None;
        for intent in self.0.store.stale_warm_intents(stale_ms).await? {
            if settings.dry_run {
                tracing::info!(
                    runner = intent.runner_name,
                    "dry run: would resume or remove a warm runner left part-way"
                );
                continue;
            }
            if let Err(err) = self.resume(pools, &intent).await {
                tracing::warn!(
                    runner = intent.runner_name,
                    error = format!("{err:#}"),
                    "could not resume a warm runner left part-way"
                );
                failed.get_or_insert(err);
            }
        }
        match failed {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    async fn resume(&self, pools: &Pools, intent: &WarmIntent) -> anyhow::Result<()> {
        let inner = &self.0;
        let label = intent.pool.clone();
        if let Some(cluster) = &intent.cluster
            && let Some(task) = inner
                .ecs
                .find_task(cluster, &warm_started_by(&intent.runner_name))
                .await
                .context("looking for a warm runner's task")?
        {
            let TaskArn(arn) = task;
            inner
                .store
                .record_runner_task(&intent.runner_name, &arn)
                .await?;
            metrics::counter!(m::WARM_LAUNCHES_TOTAL, "pool" => label, "outcome" => "resumed")
                .increment(1);
            tracing::info!(
                runner = intent.runner_name,
                task = arn,
                "resumed a warm runner: its task was started"
            );
            return Ok(());
        }
        let scope = super::pool(pools, &intent.pool)
            .map(|p| p.settings.scope)
            .unwrap_or_default();
        let target = RunnerTarget::for_repo(scope, &intent.target);
        match intent.installation_id {
            Some(installation) => {
                self.forget(installation, &target, &intent.runner_name, intent.runner_id)
                    .await?;
            }
            // Nothing was registered: the installation is recorded before GitHub is asked.
            None => {
                inner
                    .store
                    .record_runner_removed(&intent.runner_name)
                    .await?
            }
        }
        metrics::counter!(m::WARM_LAUNCHES_TOTAL, "pool" => label, "outcome" => "abandoned")
            .increment(1);
        tracing::info!(
            runner = intent.runner_name,
            "removed a warm runner left part-way; its slot is free"
        );
        Ok(())
    }

    /// Deletes a warm runner's registration (found by name when its id is unknown) and
    /// marks it removed; a registration GitHub does not list is gone already.
    async fn forget(
        &self,
        installation: InstallationId,
        target: &RunnerTarget,
        name: &str,
        runner_id: Option<crate::domain::RunnerId>,
    ) -> anyhow::Result<()> {
        let github = &self.0.github;
        let id = match runner_id {
            Some(id) => Some(id),
            None => github
                .find_runner(installation, target, name)
                .await
                .context("looking up a warm runner's registration")?
                .map(|r| r.id),
        };
        if let Some(id) = id {
            match github.delete_runner(installation, target, id).await {
                Ok(()) | Err(GitHubError::NotFound) => {}
                Err(err) => {
                    return Err(err).context("removing a warm runner's registration");
                }
            }
        }
        self.0.store.record_runner_removed(name).await?;
        Ok(())
    }
}

/// How long a warm row may stay without a task before it is resumed or removed: two
/// leader leases, by when a leader that wrote it and stalled has lost the lead.
fn stale_after(settings: &LifecycleSettings) -> Duration {
    settings.leader_lease * 2
}
