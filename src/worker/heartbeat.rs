//! The heartbeat: keeps a message invisible, and its job's lease alive, however slow GitHub
//! or ECS are, and notices when the lease was taken over.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;

use super::Worker;
use crate::queue::ReceivedMessage;
use crate::telemetry::chain;

/// Keeps a message invisible, and the job's lease alive, while it is processed.
pub(super) struct Heartbeat {
    stop: watch::Sender<Option<crate::domain::JobId>>,
    task: tokio::task::JoinHandle<()>,
    /// Set when renewing the lease found it taken over by another worker.
    lost: Arc<AtomicBool>,
}

impl Heartbeat {
    pub(super) fn start(worker: &Worker, message: &ReceivedMessage) -> Self {
        let (stop, mut claimed) = watch::channel(None);
        let lost = Arc::new(AtomicBool::new(false));
        let lost_flag = lost.clone();
        let inner = worker.0.clone();
        let receipt = message.receipt.clone();
        let period = inner.visibility.min(inner.settings.lease) / 3;
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            loop {
                tokio::select! {
                    biased;
                    changed = claimed.changed() => {
                        if changed.is_err() { return; }
                        continue;
                    }
                    _ = tick.tick() => {}
                }
                if let Err(err) = inner
                    .queue
                    .change_visibility(&receipt, inner.visibility)
                    .await
                {
                    tracing::warn!(error = %chain(&err), "heartbeat could not extend visibility");
                }
                let job = *claimed.borrow();
                let Some(job) = job else { continue };
                match inner
                    .store
                    .renew_lease(job, &inner.owner, inner.settings.lease)
                    .await
                {
                    Ok(()) => {}
                    Err(err @ crate::store::StoreError::LeaseLost(_)) => {
                        tracing::warn!(error = %err, "the lease was taken over; stopping before the next step");
                        lost_flag.store(true, Ordering::Release);
                    }
                    Err(err) => {
                        tracing::warn!(error = %chain(&err), "heartbeat could not renew the lease")
                    }
                }
            }
        });
        Self { stop, task, lost }
    }

    /// Whether renewing the lease found it taken over.
    pub(super) fn lease_lost(&self) -> bool {
        self.lost.load(Ordering::Acquire)
    }

    /// From now on the heartbeat renews this job's lease too.
    pub(super) fn claimed(&self, job: crate::domain::JobId) {
        let _ = self.stop.send(Some(job));
    }

    /// Stops the heartbeat and waits for it to end, so that a visibility change it has in
    /// flight lands before the caller's own (a deferral's delay, or a delete).
    pub(super) async fn stop(self) {
        drop(self.stop);
        if self.task.await.is_err() {
            tracing::error!("the heartbeat task panicked");
        }
    }
}
