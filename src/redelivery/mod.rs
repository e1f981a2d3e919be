//! Missed webhooks come back. GitHub never delivers a failed webhook again by itself: if
//! the ingress was down, slow (over 10 s) or answered 503, that job's event is lost, and
//! the reconciler cannot follow a job it never heard of. GitHub keeps each App's delivery
//! log for 3 days (7 on GitHub Enterprise Server) and redelivers any of them on request.
//!
//! Every `[redelivery] interval`, while its process leads the reconciler, a pass:
//! 1. reads each App's log (`GET /app/hook/deliveries`, newest first) back to the last
//!    pass's newest delivery (less an overlap) or, the first time, to `lookback` (`log`);
//! 2. records in the store each event (delivery guid) whose `workflow_job` delivery
//!    failed, and settles as recovered each event one of whose deliveries, in any App's
//!    log, succeeded; then moves each App's checkpoint on;
//! 3. asks GitHub to deliver again (`POST /app/hook/deliveries/{id}/attempts`), `queued`
//!    events first, then oldest first failure first, at most `per_second`, each event whose
//!    newest delivery failed and was not redelivered yet; an event is given up after
//!    `max_attempts` (`ask`).
//!
//! While an App's webhook still looks down (its newest delivery got no answer, or a 502,
//! 503 or 504), its redeliveries would fail too and spend the events' attempts: the pass
//! asks for one only, as a probe that does not count, and looks again sooner. Once a
//! delivery gets through, the rest follow.
//!
//! A redelivery carries the original guid and payload; the store's dedupe by job makes
//! it harmless when the event got through after all. The state lives in the store, so a
//! restart or a new leader goes on where the last pass stopped.

mod ask;
mod log;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::RedeliverySettings;
use crate::github::GitHubApp;
use crate::metrics as m;
use crate::pacing::Pacer;
use crate::store::Store;

/// The outcomes of `dockhand_webhook_redeliveries_total`.
pub const OUTCOMES: [&str; 4] = ["requested", "recovered", "refused", "exhausted"];
/// Events asked for in one pass, at most; the rest wait for the next.
const MAX_ASKS_PER_PASS: u32 = 1_000;
/// After a probe of a webhook that looked down, the next pass comes this soon (or at
/// `interval`, if sooner), so the rest follow shortly after the webhook answers again.
const PROBE_RECHECK: Duration = Duration::from_secs(15);
/// An ask whose redelivery has not shown up in the log after this long (or three
/// intervals, if longer) is made again: it was lost.
const STALE_ASK: Duration = Duration::from_secs(600);

/// What one pass did, for logs and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryPass {
    /// Deliveries read from the logs, of any event.
    pub read: usize,
    /// Failed `workflow_job` deliveries among them.
    pub failed: usize,
    /// Redeliveries GitHub accepted.
    pub requested: usize,
    /// Events that got through since they failed.
    pub recovered: usize,
    /// Redeliveries GitHub refused.
    pub refused: usize,
    /// Events given up.
    pub exhausted: usize,
    /// Events not asked for because their App's webhook still looks down.
    pub held: usize,
    /// Asks made while the webhook looked down, to see whether it answers again.
    pub probes: usize,
}

/// The recovery loop. Cheap to clone.
#[derive(Clone)]
pub struct Recovery(Arc<Inner>);

struct Inner {
    store: Store,
    /// A background handle: reading logs and asking for redeliveries wait for
    /// registrations.
    github: GitHubApp,
    settings: RedeliverySettings,
    pacer: Pacer,
}

impl Recovery {
    pub fn new(store: Store, github: &GitHubApp, settings: RedeliverySettings) -> Self {
        let pacer = Pacer::new(settings.per_second, 1, None);
        Self(Arc::new(Inner {
            store,
            github: github.background(),
            settings,
            pacer,
        }))
    }

    /// Runs a pass every `interval` while `leading` is true, the first as soon as it is,
    /// until `shutdown`; a pass stops asking at `shutdown` (an ask sent to a stopping
    /// process's ingress would fail, and spend the event's attempt).
    pub async fn run(&self, mut leading: watch::Receiver<bool>, shutdown: CancellationToken) {
        Self::zero_counters();
        loop {
            tokio::select! {
                led = leading.wait_for(|leads| *leads) => if led.is_err() { return },
                () = shutdown.cancelled() => return,
            }
            let started = Instant::now();
            let mut next = self.0.settings.interval;
            let outcome = match self.pass_until(&shutdown).await {
                Ok(pass) => {
                    if pass
                        != (RecoveryPass {
                            read: pass.read,
                            ..RecoveryPass::default()
                        })
                    {
                        tracing::info!(?pass, "webhook recovery pass");
                    }
                    if pass.probes > 0 {
                        next = next.min(PROBE_RECHECK);
                    }
                    "ok"
                }
                Err(err) => {
                    tracing::warn!(
                        error = format!("{err:#}"),
                        "webhook recovery pass failed; trying again next interval"
                    );
                    "error"
                }
            };
            metrics::counter!(m::WEBHOOK_RECOVERY_PASSES_TOTAL, "outcome" => outcome).increment(1);
            tokio::select! {
                () = tokio::time::sleep(next.saturating_sub(started.elapsed())) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// Every counter at 0, so dashboards and `increase()` see a series before its first
    /// event.
    fn zero_counters() {
        for outcome in OUTCOMES {
            metrics::counter!(m::WEBHOOK_REDELIVERIES_TOTAL, "outcome" => outcome).increment(0);
        }
        for outcome in ["ok", "error"] {
            metrics::counter!(m::WEBHOOK_RECOVERY_PASSES_TOTAL, "outcome" => outcome).increment(0);
        }
    }

    /// One pass over every App's log (tests call it directly; [`Recovery::run`] only while
    /// leading). An App whose log cannot be read is left for the next pass, and the others
    /// go on; the first error is returned.
    pub async fn pass(&self) -> anyhow::Result<RecoveryPass> {
        self.pass_until(&CancellationToken::new()).await
    }

    /// [`Recovery::pass`], asking for nothing more once `shutdown` is cancelled.
    pub async fn pass_until(&self, shutdown: &CancellationToken) -> anyhow::Result<RecoveryPass> {
        let inner = &*self.0;
        let now = Utc::now();
        let since = now - chrono::TimeDelta::from_std(inner.settings.lookback)?;
        let mut pass = RecoveryPass::default();
        let mut first_error: Option<anyhow::Error> = None;
        let mut failed = Vec::new();
        let mut succeeded = HashSet::new();
        let mut checkpoints = Vec::new();
        // Whether each App whose log was read has its webhook down.
        let mut down = HashMap::new();
        for app_id in inner.github.app_ids() {
            let checkpoint = inner.store.redelivery_checkpoint(app_id).await?;
            match log::read(&inner.github, app_id, log::floor(checkpoint, since)).await {
                Ok(read) => {
                    pass.read += read.deliveries;
                    down.insert(app_id, read.webhook_down());
                    failed.extend(read.failed);
                    succeeded.extend(read.succeeded);
                    checkpoints.extend(read.newest.map(|newest| (app_id, newest)));
                }
                Err(err) => {
                    tracing::warn!(github.app = app_id, error = %err, "could not read the App's webhook delivery log");
                    first_error.get_or_insert(anyhow::Error::new(err).context(format!(
                        "reading GitHub App {app_id}'s webhook delivery log"
                    )));
                }
            }
        }
        // An event that got through in any App's log needs nothing more.
        failed.retain(|f| !succeeded.contains(&f.guid));
        pass.failed = failed.len();
        inner.store.record_failed_deliveries(&failed).await?;
        for guid in inner.store.unrecovered_deliveries(since).await? {
            if succeeded.contains(&guid) && inner.store.delivery_recovered(&guid).await? {
                pass.recovered += 1;
                metrics::counter!(m::WEBHOOK_REDELIVERIES_TOTAL, "outcome" => "recovered")
                    .increment(1);
            }
        }
        // Only once what was read is recorded: a pass cut short reads it again.
        for (app_id, newest) in checkpoints {
            inner
                .store
                .advance_redelivery_checkpoint(app_id, newest)
                .await?;
        }
        self.ask_due(since, &down, shutdown, &mut pass).await?;
        let oldest = inner.store.oldest_unrecovered_delivery(since).await?;
        let age = oldest.map_or(0.0, |t| (now - t).num_milliseconds().max(0) as f64 / 1000.0);
        metrics::gauge!(m::WEBHOOK_UNRECOVERED_OLDEST_SECONDS).set(age);
        inner.store.prune_failed_deliveries(since).await?;
        match first_error {
            Some(err) => Err(err),
            None => Ok(pass),
        }
    }

    /// Asks older than this are lost (see [`STALE_ASK`]).
    fn stale_before(&self) -> chrono::DateTime<Utc> {
        let stale = STALE_ASK.max(self.0.settings.interval * 3);
        Utc::now() - chrono::TimeDelta::from_std(stale).expect("a few intervals")
    }
}
