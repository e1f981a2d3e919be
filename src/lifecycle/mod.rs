//! The runner lifecycle: a reconciler that follows every runner dockhand launched to its
//! end. It runs in `serve` and in every worker; one process at a time leads, by a lease in
//! the store. Each pass of the leader:
//! 1. describes every task the store believes live, 100 a call, and records what ECS says
//!    (`tasks`);
//! 2. gives the job of a runner whose task stopped before it took a job a new attempt, up
//!    to `max_replacements`, then dead-letters it (`replace`);
//! 3. stops tasks stuck starting past `pending_timeout`, and 4. tasks running past their
//!    pool's `max_runtime` (`tasks`);
//! 5. removes idle runners beyond the jobs waiting for them and the pool's `min_idle`,
//!    after `idle_timeout`, and recycles idle runners older than `max_idle_age`: the
//!    registration first, and only if GitHub agrees it is not running a job (`surplus`);
//! 6. launches warm runners up to each pool's `min_idle` target (`warm`);
//! 7. asks GitHub about jobs gone quiet past `verify_after`, heals the store from what it
//!    says, or replaces the runner (`quiet`);
//! 8. every `orphan_interval`, removes registrations and tasks nobody accounts for
//!    (`orphans`);
//! 9. records a busy runner whose task died as finished, so it stops counting as live;
//! 10. asks GitHub to re-run the workflow runs of jobs Spot interrupted, once they
//!     complete (`reruns`).
//!
//! The leader also runs the webhook recovery loop, when one is attached
//! ([`Reconciler::redeliver_with`], see [`crate::redelivery`]).
//!
//! ECS task events (`events`) are the fast path: a worker that receives one from the queue
//! acts on its task at once, as step 1 would.
//!
//! Every action is written to the job's history and counted in a metric. With
//! `lifecycle.dry_run` a pass only logs and records what it would do.

mod events;
mod orphans;
mod quiet;
mod replace;
mod reruns;
mod stops;
mod surplus;
mod tasks;
mod warm;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::{LifecycleSettings, RedeliverySettings};
use crate::domain::JobId;
use crate::ecs::Launcher;
use crate::github::GitHubApp;
use crate::metrics as m;
use crate::pool::{LivePools, Pool, Pools};
use crate::queue::Queue;
use crate::redelivery::Recovery;
use crate::store::{EventKind, Store};
use crate::telemetry::chain;
pub use events::{TaskEvent, TaskEventError, TaskEventOutcome};
pub use warm::warm_started_by;

/// The role name of the reconciler's lease in the store.
pub const ROLE: &str = "reconciler";

/// What one pass did, for logs and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pass {
    /// Tasks described, and those found stopped.
    pub described: usize,
    pub stopped: usize,
    pub replaced: usize,
    pub dead_lettered: usize,
    /// Runners and tasks removed or stopped (idle, pending, max runtime, orphan).
    pub reaped: usize,
    /// Idle runners GitHub refused to remove: they had just taken a job.
    pub refused: usize,
    pub verified: usize,
    pub healed: usize,
    /// Actions a dry run would have taken.
    pub would: usize,
    /// Whether the orphan sweep ran.
    pub swept: bool,
    /// Workflow runs GitHub was asked to re-run (jobs Spot interrupted).
    pub reruns: usize,
    /// Warm runners launched.
    pub warmed: usize,
}

/// The reconciler. Cheap to clone.
#[derive(Clone)]
pub struct Reconciler(Arc<Inner>);

struct Inner {
    store: Store,
    github: GitHubApp,
    ecs: Launcher,
    queue: Arc<dyn Queue>,
    dead_letter: Option<Arc<dyn Queue>>,
    pools: LivePools,
    settings: watch::Receiver<LifecycleSettings>,
    /// Names this process in the leader lease.
    owner: String,
    /// When the orphan sweep last ran.
    last_sweep: Mutex<Option<Instant>>,
    /// Milliseconds added to the wall clock where schedules are read (tests move time).
    skew_ms: AtomicI64,
    /// The webhook recovery loop the leader runs beside its passes, once attached.
    recovery: OnceLock<Recovery>,
}

impl Reconciler {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Store,
        github: GitHubApp,
        ecs: Launcher,
        queue: Arc<dyn Queue>,
        dead_letter: Option<Arc<dyn Queue>>,
        pools: LivePools,
        settings: watch::Receiver<LifecycleSettings>,
        owner: String,
    ) -> Self {
        Self(Arc::new(Inner {
            store,
            // Following runners to their end can wait a little; starting them cannot.
            github: github.background(),
            ecs,
            queue,
            dead_letter,
            pools,
            settings,
            owner,
            last_sweep: Mutex::new(None),
            skew_ms: AtomicI64::new(0),
            recovery: OnceLock::new(),
        }))
    }

    /// Attaches the webhook recovery loop, on this reconciler's store and Apps: the leader
    /// runs it from [`Reconciler::spawn`] on. Answers it (the one attached first, if this is
    /// called twice).
    pub fn redeliver_with(&self, settings: RedeliverySettings) -> Recovery {
        self.0
            .recovery
            .get_or_init(|| Recovery::new(self.0.store.clone(), &self.0.github, settings))
            .clone()
    }

    /// The same reconciler (and its clones) reading schedules `skew` away from the wall
    /// clock (for tests).
    pub fn with_clock_skew(self, skew: chrono::TimeDelta) -> Self {
        self.0
            .skew_ms
            .store(skew.num_milliseconds(), Ordering::Relaxed);
        self
    }

    /// Now, as pool schedules are read.
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        let skew = self.0.skew_ms.load(Ordering::Relaxed);
        chrono::Utc::now() + chrono::TimeDelta::milliseconds(skew)
    }

    /// Leads when it can and runs a pass every `interval` while it leads, until
    /// `shutdown`; then gives the lease up so another process leads at once. The lease is
    /// renewed every third of `leader_lease`, beside the passes, so a slow pass does not
    /// lose it.
    pub fn spawn(&self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        self.zero_counters();
        let this = self.clone();
        // The first sweep comes one orphan interval after the start: a process that has
        // just started lets launches under way record what they did first.
        *self.0.last_sweep.lock().expect("sweep lock") = Some(Instant::now());
        tokio::spawn(async move {
            let (leading_tx, leading) = watch::channel(false);
            let recovering = async {
                if let Some(recovery) = this.0.recovery.get() {
                    recovery.run(leading.clone(), shutdown.clone()).await;
                }
            };
            tokio::join!(
                this.clone().hold_lease(leading_tx, shutdown.clone()),
                this.run_passes(leading.clone(), shutdown.clone()),
                recovering,
            );
        })
    }

    /// Every counter at 0 for each configured pool and label value, so dashboards and
    /// `increase()` see a series before its first event.
    fn zero_counters(&self) {
        for pool in self.0.pools.current().iter() {
            let name = pool.name.clone();
            for code in tasks::STOP_CODES {
                metrics::counter!(m::RUNNER_STOPS_TOTAL, "pool" => name.clone(), "stop_code" => code).increment(0);
            }
            for reason in ["task_stopped", "pending_timeout", "quiet"] {
                metrics::counter!(m::JOBS_REPLACED_TOTAL, "pool" => name.clone(), "reason" => reason).increment(0);
            }
            for reason in [
                "idle",
                "max_idle_age",
                "pending_timeout",
                "max_runtime",
                "orphan",
            ] {
                metrics::counter!(m::RUNNERS_REAPED_TOTAL, "pool" => name.clone(), "reason" => reason).increment(0);
            }
            metrics::counter!(m::REPLACEMENTS_EXHAUSTED_TOTAL, "pool" => name.clone()).increment(0);
            metrics::counter!(m::REAP_REFUSED_TOTAL, "pool" => name.clone()).increment(0);
            for outcome in reruns::OUTCOMES {
                metrics::counter!(m::RERUNS_TOTAL, "outcome" => outcome, "pool" => name.clone())
                    .increment(0);
            }
            for when in ["before_job", "during_job"] {
                metrics::counter!(m::SPOT_INTERRUPTIONS_TOTAL, "pool" => name.clone(), "when" => when).increment(0);
            }
            for outcome in warm::OUTCOMES {
                metrics::counter!(m::WARM_LAUNCHES_TOTAL, "pool" => name.clone(), "outcome" => outcome).increment(0);
            }
            metrics::counter!(m::JOBS_HEALED_TOTAL, "pool" => name).increment(0);
        }
        for kind in ["task", "registration"] {
            metrics::counter!(m::ORPHANS_FOUND_TOTAL, "kind" => kind).increment(0);
        }
        for outcome in TaskEventOutcome::ALL {
            metrics::counter!(m::TASK_EVENTS_TOTAL, "outcome" => outcome.as_str()).increment(0);
        }
        metrics::counter!(m::TASK_EVENTS_TOTAL, "outcome" => "error").increment(0);
    }

    /// The name this process leads under.
    pub fn owner(&self) -> &str {
        &self.0.owner
    }

    /// Takes and renews the lease, publishing whether this process leads.
    async fn hold_lease(self, leading: watch::Sender<bool>, shutdown: CancellationToken) {
        let inner = &self.0;
        loop {
            let settings = inner.settings.borrow().clone();
            metrics::gauge!(m::RECONCILE_ENABLED).set(if settings.enabled { 1.0 } else { 0.0 });
            let leads = settings.enabled
                && match inner
                    .store
                    .try_lead(ROLE, &inner.owner, settings.leader_lease)
                    .await
                {
                    Ok(leads) => leads,
                    Err(err) => {
                        tracing::warn!(error = %chain(&err), "could not renew the reconciler's lease");
                        false
                    }
                };
            if leads != *leading.borrow() {
                tracing::info!(leads, "reconciler leadership changed");
            }
            metrics::gauge!(m::RECONCILE_LEADER).set(if leads { 1.0 } else { 0.0 });
            leading.send_replace(leads);
            let beat = (settings.leader_lease / 3).max(Duration::from_millis(100));
            tokio::select! {
                () = tokio::time::sleep(beat) => {}
                () = shutdown.cancelled() => break,
            }
        }
        if *leading.borrow() {
            if let Err(err) = inner.store.resign(ROLE, &inner.owner).await {
                tracing::warn!(error = %chain(&err), "could not give up the reconciler's lease");
            }
            metrics::gauge!(m::RECONCILE_LEADER).set(0.0);
        }
    }

    async fn run_passes(&self, mut leading: watch::Receiver<bool>, shutdown: CancellationToken) {
        loop {
            let interval = self.0.settings.borrow().interval;
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = shutdown.cancelled() => return,
            }
            if !*leading.borrow_and_update() {
                tokio::select! {
                    _ = leading.changed() => continue,
                    () = shutdown.cancelled() => return,
                }
            }
            let started = Instant::now();
            let outcome = match self.pass().await {
                Ok(pass) => {
                    let seconds = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
                    metrics::gauge!(m::RECONCILE_LAST_PASS).set(seconds);
                    let idle = Pass {
                        described: pass.described,
                        ..Pass::default()
                    };
                    if pass != idle {
                        tracing::info!(?pass, "reconcile pass");
                    }
                    "ok"
                }
                Err(err) => {
                    tracing::warn!(
                        error = format!("{err:#}"),
                        "reconcile pass failed; trying again next interval"
                    );
                    "error"
                }
            };
            metrics::histogram!(m::RECONCILE_SECONDS, "outcome" => outcome)
                .record(started.elapsed().as_secs_f64());
        }
    }

    /// One pass over everything (tests call it directly; [`Reconciler::spawn`] only while
    /// leading). Each step goes on when another fails; the first error is returned.
    pub async fn pass(&self) -> anyhow::Result<Pass> {
        let settings = self.0.settings.borrow().clone();
        let pools = self.0.pools.current();
        let mut pass = Pass::default();
        let seen = self.follow_tasks(&settings, &pools, &mut pass).await?;
        let mut first_error = None;
        if let Err(err) = self
            .remove_surplus(&settings, &pools, &seen, &mut pass)
            .await
        {
            first_error.get_or_insert(err);
        }
        if let Err(err) = self.fill_warm(&settings, &pools, &mut pass).await {
            first_error.get_or_insert(err);
        }
        if let Err(err) = self.verify_quiet(&settings, &pools, &seen, &mut pass).await {
            first_error.get_or_insert(err);
        }
        if let Err(err) = self.follow_reruns(&settings, &pools, &mut pass).await {
            first_error.get_or_insert(err);
        }
        let due = {
            let last = self.0.last_sweep.lock().expect("sweep lock");
            last.is_none_or(|at| at.elapsed() >= settings.orphan_interval)
        };
        if due {
            // A sweep that failed part-way waits for the next interval too: it pages through
            // everything, and is not worth repeating every pass while GitHub or ECS falter.
            *self.0.last_sweep.lock().expect("sweep lock") = Some(Instant::now());
            pass.swept = true;
            if let Err(err) = self.sweep_orphans(&settings, &pools, &mut pass).await {
                first_error.get_or_insert(err);
            }
        }
        match first_error {
            Some(err) => Err(err),
            None => Ok(pass),
        }
    }

    /// In a dry run: logs and records (on `job`, when known) what would be done, and
    /// answers true; the caller then does nothing.
    async fn would(&self, dry_run: bool, job: Option<JobId>, action: &str, detail: Value) -> bool {
        if !dry_run {
            return false;
        }
        tracing::info!(job.id = job.map(|j| j.0), action, %detail, "dry run: the reconciler would act");
        if let Some(job) = job {
            let mut detail = detail;
            detail["action"] = action.into();
            if let Err(err) = self.0.store.note(job, EventKind::Would, detail).await {
                tracing::warn!(error = %chain(&err), "could not record a dry run's action");
            }
        }
        true
    }
}

/// A pool by name in the pools in force.
fn pool<'a>(pools: &'a Pools, name: &str) -> Option<&'a Pool> {
    pools.iter().find(|p| p.name == name)
}

/// The pool label of a metric: a configured pool's name, or `unknown`.
fn pool_label(pools: &Pools, name: Option<&str>) -> String {
    name.and_then(|n| pool(pools, n))
        .map_or_else(|| "unknown".to_string(), |p| p.name.clone())
}

/// What one pass saw of the live runners, for the steps after the first: per pool, the
/// idle runners (task running, no job taken) and those still starting.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    pub idle: HashMap<String, Vec<tasks::Idle>>,
    pub starting: HashMap<String, usize>,
}

impl Seen {
    fn spare(&self, pool: &str) -> usize {
        self.idle.get(pool).map_or(0, Vec::len) + self.starting.get(pool).copied().unwrap_or(0)
    }
}

/// The history detail of a reap.
fn reap_detail(reason: &str, runner: &str, task: Option<&str>, words: &str) -> Value {
    json!({ "reason": reason, "runner": runner, "task": task, "why": words })
}
