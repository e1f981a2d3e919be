//! Workers: consume the queue and give every queued job exactly one runner.
//!
//! Each message is processed under a heartbeat that keeps it invisible (and the job's lease
//! alive) however slow GitHub or ECS are. Its outcome is recorded in the store before the
//! message is deleted; an expected wait sends a fresh delayed copy; an error pushes the
//! message's visibility out with backoff; a permanent failure sends it to the dead-letter
//! queue with a reason at once.

mod events;
mod heartbeat;
mod launch;
pub mod outcome;
mod prune;
mod settle;
mod takeover;
mod track;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::WorkerSettings;
use crate::domain::JobAction;
use crate::ecs::Launcher;
use crate::github::GitHubApp;
use crate::metrics as m;
use crate::pool::LivePools;
use crate::queue::envelope::Envelope;
use crate::queue::{Depth, MAX_BATCH, Queue, QueueError, ReceivedMessage};
use crate::store::Store;
use crate::telemetry::chain;
use heartbeat::Heartbeat;
use outcome::{Deferral, JobError, Outcome, Settled};
use settle::{Handling, attribute_ms, now_ms};

pub use crate::queue::ATTR_DEAD_LETTER_REASON;
use crate::queue::ATTR_NOT_BEFORE;

/// What a worker launches with: absent in dry-run mode.
#[derive(Clone)]
pub struct Launchers {
    pub github: GitHubApp,
    pub ecs: Launcher,
}

/// One worker process's consumer. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Worker(Arc<Inner>);

struct Inner {
    queue: Arc<dyn Queue>,
    dead_letter: Option<Arc<dyn Queue>>,
    store: Store,
    launchers: Option<Launchers>,
    pools: LivePools,
    settings: WorkerSettings,
    /// The queue's visibility timeout: the heartbeat renews it.
    visibility: Duration,
    /// Identifies this process in job leases.
    owner: String,
    /// How long a job whose pool the ingress matched may wait for this worker's config to
    /// know that pool, before it is dead-lettered.
    unknown_pool_grace: Duration,
    /// The reconciler ECS task events are handed to, once [`Worker::reconciler`] made it.
    events: std::sync::OnceLock<crate::lifecycle::Reconciler>,
}

/// What one [`Worker::process_next`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The queue had nothing to give.
    Empty,
    /// What became of each message received.
    Processed(Vec<Settled>),
}

impl Worker {
    pub async fn new(
        queue: Arc<dyn Queue>,
        store: Store,
        launchers: Option<Launchers>,
        pools: LivePools,
        settings: WorkerSettings,
        visibility: Duration,
        unknown_pool_grace: Duration,
    ) -> Result<Self, QueueError> {
        let dead_letter = queue.dead_letter_queue().await?;
        if dead_letter.is_none() {
            tracing::warn!(
                "the queue has no dead-letter queue: permanently failing messages will be retried until they expire"
            );
        }
        let owner = format!(
            "{}-{}",
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let store = store.acting_as(&owner);
        Ok(Self(Arc::new(Inner {
            queue,
            dead_letter,
            store,
            launchers,
            pools,
            settings,
            visibility,
            owner,
            unknown_pool_grace,
            events: std::sync::OnceLock::new(),
        })))
    }

    /// Receives and processes messages until `shutdown`, then stops receiving and lets
    /// in-flight messages finish within `worker.shutdown_grace`; any still unfinished are
    /// dropped and reappear on the queue when their visibility expires.
    pub async fn run_until_stopped(
        self,
        wait: Duration,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let slots = Arc::new(Semaphore::new(self.0.settings.concurrency));
        let mut in_flight = JoinSet::new();
        tracing::info!(
            concurrency = self.0.settings.concurrency,
            dry_run = self.0.launchers.is_none(),
            "worker started"
        );
        loop {
            // Wait for a free slot, then ask for as many messages as there are free slots.
            let first = tokio::select! {
                p = slots.clone().acquire_owned() => p.expect("never closed"),
                () = shutdown.cancelled() => break,
            };
            let want = (slots.available_permits() + 1).min(MAX_BATCH);
            let received = tokio::select! {
                r = self.0.queue.receive(want, wait) => r,
                () = shutdown.cancelled() => break,
            };
            let messages = match received {
                Ok(messages) => messages,
                Err(err) => {
                    metrics::counter!(m::QUEUE_RECEIVE_TOTAL, "outcome" => "error").increment(1);
                    tracing::warn!(error = %chain(&err), "receive failed; retrying in 1s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let mut first = Some(first);
            for message in messages {
                let permit = match first.take() {
                    Some(p) => p,
                    None => slots.clone().acquire_owned().await.expect("never closed"),
                };
                let worker = self.clone();
                in_flight.spawn(async move {
                    worker.process(message).await;
                    drop(permit);
                });
            }
            while in_flight.try_join_next().is_some() {}
        }
        tracing::info!(in_flight = in_flight.len(), "worker stopping");
        let drained = tokio::time::timeout(self.0.settings.shutdown_grace, async {
            while in_flight.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                unfinished = in_flight.len(),
                "shutdown grace over; unfinished messages will reappear on the queue"
            );
            in_flight.abort_all();
        }
        tracing::info!("worker stopped");
        Ok(())
    }

    pub fn store(&self) -> &Store {
        &self.0.store
    }

    /// The lifecycle reconciler on this worker's store, queues, launchers and pools, named
    /// by its lease owner; `None` in dry-run mode, which has no launchers. The ECS task
    /// events this worker receives go to the first one made.
    pub fn reconciler(
        &self,
        settings: tokio::sync::watch::Receiver<crate::config::LifecycleSettings>,
    ) -> Option<crate::lifecycle::Reconciler> {
        let inner = &self.0;
        let launchers = inner.launchers.as_ref()?;
        let reconciler = crate::lifecycle::Reconciler::new(
            inner.store.clone(),
            launchers.github.clone(),
            launchers.ecs.clone(),
            inner.queue.clone(),
            inner.dead_letter.clone(),
            inner.pools.clone(),
            settings,
            inner.owner.clone(),
        );
        let _ = inner.events.set(reconciler.clone());
        Some(reconciler)
    }

    /// What the main queue holds: messages waiting, and messages received or deferred but
    /// not yet settled.
    pub async fn backlog(&self) -> Result<Depth, QueueError> {
        self.0.queue.approximate_depth().await
    }

    /// Polls queue depths and runner counts into their gauges until `shutdown`.
    pub fn spawn_gauges(&self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let worker = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(worker.0.settings.depth_poll_interval);
            loop {
                tokio::select! {
                    _ = tick.tick() => worker.poll_gauges().await,
                    () = shutdown.cancelled() => return,
                }
            }
        })
    }

    /// Sets the gauges read from the queues and the store (every `depth_poll_interval`
    /// while running; tests call it directly).
    pub async fn poll_gauges(&self) {
        let inner = &self.0;
        let queues = [
            Some(("main", &inner.queue)),
            inner.dead_letter.as_ref().map(|q| ("dead_letter", q)),
        ];
        for (name, queue) in queues.into_iter().flatten() {
            match queue.approximate_depth().await {
                Ok(depth) => {
                    metrics::gauge!(m::QUEUE_MESSAGES, "queue" => name).set(depth.visible as f64);
                    metrics::gauge!(m::QUEUE_MESSAGES_IN_FLIGHT, "queue" => name)
                        .set(depth.in_flight as f64);
                }
                Err(err) => {
                    tracing::warn!(queue = name, error = %chain(&err), "could not read the queue depth")
                }
            }
        }
        match inner.store.runner_counts().await {
            Ok(counts) => {
                for pool in inner.pools.current().iter() {
                    for state in crate::store::RunnerState::ALL {
                        let n = counts
                            .iter()
                            .find(|(p, s, _)| *p == pool.name && *s == state)
                            .map_or(0, |(_, _, n)| *n);
                        metrics::gauge!(m::RUNNERS, "pool" => pool.name.clone(), "state" => state.as_str())
                            .set(n as f64);
                    }
                }
            }
            Err(err) => tracing::warn!(error = %chain(&err), "could not count runners"),
        }
        match inner.store.idle_runner_counts().await {
            Ok(counts) => {
                let now = chrono::Utc::now();
                for pool in inner.pools.current().iter() {
                    let n = counts.get(&pool.name).copied().unwrap_or(0);
                    metrics::gauge!(m::RUNNERS, "pool" => pool.name.clone(), "state" => "idle")
                        .set(n as f64);
                    metrics::gauge!(m::WARM_TARGET, "pool" => pool.name.clone())
                        .set(f64::from(pool.settings.min_idle_at(now)));
                }
            }
            Err(err) => tracing::warn!(error = %chain(&err), "could not count idle runners"),
        }
    }

    /// Receives one batch without waiting and processes it (for tests and tools that
    /// drive the worker step by step).
    pub async fn process_next(&self) -> Result<Step, QueueError> {
        let messages = self.0.queue.receive(MAX_BATCH, Duration::ZERO).await?;
        if messages.is_empty() {
            return Ok(Step::Empty);
        }
        let mut set = JoinSet::new();
        for message in messages {
            let worker = self.clone();
            set.spawn(async move { worker.process(message).await });
        }
        Ok(Step::Processed(set.join_all().await))
    }

    /// Processes one message to its end: recorded and deleted, deferred, or dead-lettered.
    pub async fn process(&self, message: ReceivedMessage) -> Settled {
        metrics::counter!(m::QUEUE_RECEIVE_TOTAL, "outcome" => "ok").increment(1);
        let received = Instant::now();
        let span = tracing::info_span!(
            "job",
            sqs.message_id = %message.id,
            job.id = tracing::field::Empty,
            job.action = tracing::field::Empty,
            pool = tracing::field::Empty,
        );
        async {
            let handling = Handling::new(&message);
            let envelope = match Envelope::decode(&message.body) {
                Ok(envelope) => envelope,
                Err(err) => {
                    if let Some(event) = crate::lifecycle::TaskEvent::recognise(&message.body) {
                        return self.task_event(&handling, event).await;
                    }
                    let failure = Err(JobError::Permanent(err.to_string()));
                    return self
                        .settle(&handling, None, Some("none".to_string()), failure)
                        .await;
                }
            };
            let job = Some(envelope.event.job.id);
            let span = tracing::Span::current();
            span.record("job.id", envelope.event.job.id.0);
            span.record("job.action", envelope.event.action.as_str());
            if let Some(left) = attribute_ms(&message, ATTR_NOT_BEFORE)
                .and_then(|t| (t - now_ms()).try_into().ok())
                .filter(|left: &u64| *left > 0)
            {
                let wait = Err(JobError::Deferred(Deferral::NotYet(Duration::from_millis(
                    left,
                ))));
                return self
                    .settle(&handling, job, Some("none".to_string()), wait)
                    .await;
            }
            let heartbeat = Heartbeat::start(self, &message);
            let result = match envelope.event.action {
                JobAction::Queued => {
                    self.launch(&envelope, &heartbeat, received, &handling)
                        .await
                }
                JobAction::InProgress | JobAction::Completed => self.track(&envelope).await,
                JobAction::Waiting => Ok(Outcome::Tracked),
            };
            heartbeat.stop().await;
            let result = self.bound_unknown_pool(&message, result);
            let pool = self.pool_label(&envelope);
            self.settle(&handling, job, Some(pool), result).await
        }
        .instrument(span)
        .await
    }

    /// The pool label: a configured pool's name (a closed set), or `none`.
    fn pool_label(&self, envelope: &Envelope) -> String {
        self.0
            .pools
            .current()
            .match_job(&envelope.event.job.labels)
            .map_or_else(|| "none".to_string(), |p| p.name.clone())
    }
}
