//! dockhand's GitHub Apps, acting as one: one App, or several installed on the same orgs
//! and repositories, each with its own budget (see [`budget`](super::budget)).
//!
//! - A runner registration (JIT config) goes to the App with the most budget left: the
//!   most points, then the most of its installation's hourly limit, then the one used
//!   longest ago. Registrations choose one at a time, in arrival order, and wait (up to
//!   `[github.limits] max_wait`) for the first App with room; beyond that they are
//!   `RateLimited` until the earliest refill, and the worker defers the message.
//! - Every other call is made by the App the installation belongs to. An installation id
//!   belongs to one App: learnt when it registers, or asked of each App
//!   (`GET /app/installations/{id}`) the first time it is seen.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::budget::{Permit, Wait};
use super::{
    AppClient, GitHubError, JitConfig, JitRequest, RegisteredRunner, RunnerTarget, WorkflowJobView,
    WorkflowRunView,
};
use crate::config::{GitHubSettings, SecretResolver};
use crate::domain::{InstallationId, JobId, RunId, RunnerId};

/// A JIT config is a POST: 5 points of the secondary limit.
const JIT_POINTS: u32 = 5;

/// Budget room for one runner registration, with the App chosen for it
/// ([`GitHubApp::reserve_jit`]). Dropped unused, its concurrent slot is freed (its points
/// stay spent).
#[derive(Debug)]
pub struct JitReservation {
    app: usize,
    permit: Permit,
}

/// dockhand's GitHub App(s): cheap to clone, all clones sharing the Apps' caches and
/// budgets.
#[derive(Clone)]
pub struct GitHubApp {
    inner: Arc<Apps>,
    /// Calls yield to registrations for each App's budget ([`Self::background`]).
    background: bool,
}

struct Apps {
    apps: Vec<AppClient>,
    /// Which App (an index into `apps`) each installation belongs to, once known.
    routes: Mutex<HashMap<InstallationId, usize>>,
    /// Registrations choose an App one at a time, so that waiting for budget is first
    /// come, first served.
    turnstile: tokio::sync::Mutex<()>,
    /// When each App was last chosen (a sequence number), to break ties.
    chosen: Vec<AtomicU64>,
    sequence: AtomicU64,
    max_wait: Duration,
}

impl std::fmt::Debug for GitHubApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHubApp")
            .field("apps", &self.inner.apps)
            .finish_non_exhaustive()
    }
}

impl GitHubApp {
    /// Builds the App clients from `[github]`: reads each private key (from wherever its
    /// source says) and proves it can sign a JWT. Errors name the setting at fault.
    pub async fn from_settings(
        settings: &GitHubSettings,
        secrets: &SecretResolver<'_>,
    ) -> anyhow::Result<Self> {
        if settings.apps.is_empty() {
            settings
                .app_id
                .context("github.app_id: required to act as a GitHub App")?;
            settings
                .private_key
                .as_ref()
                .context("github.private_key: required to act as a GitHub App")?;
        }
        let mut apps = Vec::new();
        for (i, app) in settings.app_list().iter().enumerate() {
            let key_setting = if settings.apps.is_empty() {
                "github.private_key".to_string()
            } else {
                format!("github.app[{i}].private_key")
            };
            let pem = secrets
                .resolve(&app.private_key)
                .await
                .with_context(|| key_setting.clone())?;
            apps.push(AppClient::new(settings, app.id, &pem, &key_setting)?);
        }
        Ok(Self {
            inner: Arc::new(Apps {
                chosen: apps.iter().map(|_| AtomicU64::new(0)).collect(),
                apps,
                routes: Mutex::new(HashMap::new()),
                turnstile: tokio::sync::Mutex::new(()),
                sequence: AtomicU64::new(1),
                max_wait: settings.limits.max_wait,
            }),
            background: false,
        })
    }

    /// A handle on the same Apps (caches and budgets) whose calls yield to registrations:
    /// each waits, up to `max_wait`, for its App's points to be full, which they are not
    /// while registrations wait for them. For the reconciler, whose reads and clean-up can
    /// wait a little while a burst of jobs waits for runners.
    pub fn background(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            background: true,
        }
    }

    /// The Apps' ids, in configuration order.
    pub fn app_ids(&self) -> Vec<u64> {
        self.inner.apps.iter().map(AppClient::id).collect()
    }

    /// The first App's installation on `target`'s account, for events that carry none
    /// (see [`AppClient::installation_for`]).
    pub async fn installation_for(
        &self,
        target: &RunnerTarget,
    ) -> Result<InstallationId, GitHubError> {
        self.yield_on(0).await;
        let id = self.inner.apps[0].installation_for(target).await?;
        self.route(id, 0);
        Ok(id)
    }

    /// Registers a just-in-time runner on `target` with the App that has the most budget
    /// left: [`Self::reserve_jit`], then [`Self::register`].
    pub async fn generate_jit_config(
        &self,
        installation: InstallationId,
        target: &RunnerTarget,
        request: &JitRequest,
    ) -> Result<JitConfig, GitHubError> {
        let reservation = self.reserve_jit(installation, target).await?;
        self.register(reservation, installation, target, request)
            .await
    }

    /// Budget room for one runner registration on `target`, with the App that has the most
    /// left (see the module's doc): taken before anything is recorded, so a registration
    /// that must wait for budget is deferred with nothing to clean up.
    pub async fn reserve_jit(
        &self,
        installation: InstallationId,
        target: &RunnerTarget,
    ) -> Result<JitReservation, GitHubError> {
        if self.background {
            // Any App free of registrations will do.
            let apps = &self.inner.apps;
            let started = Instant::now();
            while !apps.iter().any(|a| a.budget().is_free())
                && started.elapsed() < self.inner.max_wait
            {
                tokio::time::sleep(apps[0].budget().recheck()).await;
            }
        }
        let (app, permit) = self.choose(installation, target).await?;
        Ok(JitReservation { app, permit })
    }

    /// Registers a just-in-time runner on `target` with the reserved room. `installation`
    /// is the event's: with one App it is the one used; with several, each App acts as its
    /// own installation on the target's account. A secondary limit GitHub answers all the
    /// same sends the registration to the next App. The config names the App and
    /// installation that registered it.
    pub async fn register(
        &self,
        reservation: JitReservation,
        installation: InstallationId,
        target: &RunnerTarget,
        request: &JitRequest,
    ) -> Result<JitConfig, GitHubError> {
        let mut reserved = Some(reservation);
        let mut refused = None;
        for _ in 0..self.inner.apps.len() {
            let JitReservation { app, permit } = match reserved.take() {
                Some(reservation) => reservation,
                None => self.reserve_jit(installation, target).await?,
            };
            let as_installation = self.installation_of(app, installation, target).await?;
            match self.inner.apps[app]
                .generate_jit_config(as_installation, target, request, permit)
                .await
            {
                Err(err @ GitHubError::RateLimited { .. }) => refused = Some(err),
                Ok(jit) => {
                    self.route(jit.installation, app);
                    return Ok(jit);
                }
                Err(err) => return Err(err),
            }
        }
        Err(refused.expect("at least one App was tried"))
    }

    /// See [`AppClient::find_runner`].
    pub async fn find_runner(
        &self,
        installation: InstallationId,
        target: &RunnerTarget,
        name: &str,
    ) -> Result<Option<RegisteredRunner>, GitHubError> {
        let app = self.app_for(installation).await;
        app.find_runner(installation, target, name).await
    }

    /// See [`AppClient::delete_runner`]. Made by the App the installation belongs to: the
    /// one that registered the runner.
    pub async fn delete_runner(
        &self,
        installation: InstallationId,
        target: &RunnerTarget,
        runner: RunnerId,
    ) -> Result<(), GitHubError> {
        let app = self.app_for(installation).await;
        app.delete_runner(installation, target, runner).await
    }

    /// See [`AppClient::list_runners`].
    pub async fn list_runners(
        &self,
        installation: InstallationId,
        target: &RunnerTarget,
    ) -> Result<Vec<RegisteredRunner>, GitHubError> {
        let app = self.app_for(installation).await;
        app.list_runners(installation, target).await
    }

    /// See [`AppClient::workflow_job`].
    pub async fn workflow_job(
        &self,
        installation: InstallationId,
        owner: &str,
        repo: &str,
        job: JobId,
    ) -> Result<WorkflowJobView, GitHubError> {
        let app = self.app_for(installation).await;
        app.workflow_job(installation, owner, repo, job).await
    }

    /// See [`AppClient::workflow_run`].
    pub async fn workflow_run(
        &self,
        installation: InstallationId,
        owner: &str,
        repo: &str,
        run: RunId,
    ) -> Result<WorkflowRunView, GitHubError> {
        let app = self.app_for(installation).await;
        app.workflow_run(installation, owner, repo, run).await
    }

    /// See [`AppClient::rerun_failed_jobs`].
    pub async fn rerun_failed_jobs(
        &self,
        installation: InstallationId,
        owner: &str,
        repo: &str,
        run: RunId,
    ) -> Result<(), GitHubError> {
        let app = self.app_for(installation).await;
        app.rerun_failed_jobs(installation, owner, repo, run).await
    }

    /// The App to register the next runner on `target` with, and its budget room for the
    /// JIT config; see the module's doc.
    async fn choose(
        &self,
        installation: InstallationId,
        target: &RunnerTarget,
    ) -> Result<(usize, Permit), GitHubError> {
        let inner = &*self.inner;
        let started = Instant::now();
        let Ok(_turn) = tokio::time::timeout(inner.max_wait, inner.turnstile.lock()).await else {
            // As many registrations are ahead as the Apps serve within the wait.
            return Err(GitHubError::RateLimited {
                retry_after: inner.max_wait,
            });
        };
        loop {
            let known: Vec<Option<InstallationId>> = (0..inner.apps.len())
                .map(|app| self.known_installation(app, installation, target))
                .collect();
            let mut order: Vec<usize> = (0..inner.apps.len()).collect();
            order.sort_by_key(|&app| {
                let budget = inner.apps[app].budget();
                (
                    std::cmp::Reverse(budget.points_now()),
                    std::cmp::Reverse(budget.primary_remaining(known[app]).unwrap_or(u64::MAX)),
                    inner.chosen[app].load(Ordering::Relaxed),
                )
            });
            let mut earliest = Duration::MAX;
            for app in order {
                let budget = inner.apps[app].budget();
                let room = budget
                    .primary_room(known[app])
                    .and_then(|()| budget.try_acquire(JIT_POINTS));
                match room {
                    Ok(permit) => {
                        budget.waited(started.elapsed());
                        let turn = inner.sequence.fetch_add(1, Ordering::Relaxed);
                        inner.chosen[app].store(turn, Ordering::Relaxed);
                        return Ok((app, permit));
                    }
                    Err(Wait(wait)) => earliest = earliest.min(wait),
                }
            }
            if started.elapsed() + earliest > inner.max_wait {
                tracing::info!(
                    retry_after_ms = earliest.as_millis() as u64,
                    "every GitHub App is out of budget; deferring the registration"
                );
                return Err(GitHubError::RateLimited {
                    retry_after: earliest,
                });
            }
            tokio::time::sleep(earliest.max(Duration::from_millis(1))).await;
        }
    }

    /// App `app`'s installation on `target`'s account if known without asking GitHub.
    fn known_installation(
        &self,
        app: usize,
        installation: InstallationId,
        target: &RunnerTarget,
    ) -> Option<InstallationId> {
        if self.inner.apps.len() == 1 || self.routed(installation) == Some(app) {
            return Some(installation);
        }
        self.inner.apps[app].cached_installation(target)
    }

    /// App `app`'s installation on `target`'s account: the event's when it is that App's
    /// (always, with one App), else looked up with the App's JWT (and cached).
    async fn installation_of(
        &self,
        app: usize,
        installation: InstallationId,
        target: &RunnerTarget,
    ) -> Result<InstallationId, GitHubError> {
        if let Some(known) = self.known_installation(app, installation, target) {
            return Ok(known);
        }
        let id = self.inner.apps[app].installation_for(target).await?;
        self.route(id, app);
        Ok(id)
    }

    /// The App `installation` belongs to: known, or asked of each App in turn. One that no
    /// App claims (or that cannot be asked now) goes to the first App, whose call then
    /// fails as GitHub says.
    async fn app_for(&self, installation: InstallationId) -> &AppClient {
        let app = self.route_of(installation).await;
        self.yield_on(app).await;
        &self.inner.apps[app]
    }

    /// The App with id `app_id`, once a background handle has waited for its budget (see
    /// [`Self::background`]); `None` if no App has that id.
    pub(super) async fn app_by_id(&self, app_id: u64) -> Option<&AppClient> {
        let app = self.inner.apps.iter().position(|a| a.id() == app_id)?;
        self.yield_on(app).await;
        Some(&self.inner.apps[app])
    }

    /// For a background handle, waits for App `app`'s budget to be free of registrations
    /// (see [`Self::background`]).
    async fn yield_on(&self, app: usize) {
        if self.background {
            self.inner.apps[app].budget().yield_to_registrations().await;
        }
    }

    /// The index of the App `installation` belongs to (see [`Self::app_for`]).
    async fn route_of(&self, installation: InstallationId) -> usize {
        let apps = &self.inner.apps;
        if apps.len() == 1 {
            return 0;
        }
        if let Some(app) = self.routed(installation) {
            return app;
        }
        for (index, app) in apps.iter().enumerate() {
            match app.owns_installation(installation).await {
                Ok(true) => {
                    self.route(installation, index);
                    return index;
                }
                Ok(false) => {}
                Err(err) => {
                    tracing::warn!(github.app = app.id(), github.installation = %installation, error = %err, "could not ask the App whether the installation is its own");
                }
            }
        }
        0
    }

    fn routed(&self, installation: InstallationId) -> Option<usize> {
        self.lock_routes().get(&installation).copied()
    }

    fn route(&self, installation: InstallationId, app: usize) {
        self.lock_routes().insert(installation, app);
    }

    fn lock_routes(&self) -> std::sync::MutexGuard<'_, HashMap<InstallationId, usize>> {
        self.inner.routes.lock().expect("route lock")
    }
}
