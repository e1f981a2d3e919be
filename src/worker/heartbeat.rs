//! The heartbeat: keeps a message invisible, and its job's lease alive, however slow GitHub
//! or ECS are, and notices when the lease was taken over.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;

use super::Worker;
use crate::domain::JobId;
use crate::queue::ReceivedMessage;
use crate::store::StoreError;
use crate::telemetry::chain;

/// Keeps a message invisible, and the job's lease alive, while it is processed.
pub(super) struct Heartbeat {
    stop: watch::Sender<Option<JobId>>,
    task: tokio::task::JoinHandle<()>,
    /// Set when renewing the lease found it taken over by another worker.
    lost: Arc<AtomicBool>,
}

impl Heartbeat {
    /// Starts two beats, each on its own clock: one keeps the message invisible, the other
    /// the job's lease alive once it is claimed. Neither waits for the other, so a queue call
    /// that hangs cannot let the lease lapse, nor a slow store the message's visibility.
    pub(super) fn start(worker: &Worker, message: &ReceivedMessage) -> Self {
        let (stop, claimed) = watch::channel(None);
        let lost = Arc::new(AtomicBool::new(false));
        let lost_flag = lost.clone();
        let inner = worker.0.clone();
        let receipt = message.receipt.clone();
        let period = inner.visibility.min(inner.settings.lease) / 3;
        let task = tokio::spawn(async move {
            let visibility = {
                let (inner, mut stop) = (inner.clone(), claimed.clone());
                async move {
                    let mut tick =
                        tokio::time::interval_at(tokio::time::Instant::now() + period, period);
                    while next_beat(&mut stop, &mut tick).await {
                        if let Err(err) = inner
                            .queue
                            .change_visibility(&receipt, inner.visibility)
                            .await
                        {
                            tracing::warn!(error = %chain(&err), "heartbeat could not extend visibility");
                        }
                    }
                }
            };
            let lease = {
                let mut claimed = claimed;
                async move {
                    let mut tick =
                        tokio::time::interval_at(tokio::time::Instant::now() + period, period);
                    while next_beat(&mut claimed, &mut tick).await {
                        let job = *claimed.borrow();
                        let Some(job) = job else { continue };
                        match inner
                            .store
                            .renew_lease(job, &inner.owner, inner.settings.lease)
                            .await
                        {
                            Ok(()) => {}
                            Err(err @ StoreError::LeaseLost(_)) => {
                                tracing::warn!(error = %err, "the lease was taken over; stopping before the next step");
                                lost_flag.store(true, Ordering::Release);
                            }
                            Err(err) => {
                                tracing::warn!(error = %chain(&err), "heartbeat could not renew the lease")
                            }
                        }
                    }
                }
            };
            tokio::join!(visibility, lease);
        });
        Self { stop, task, lost }
    }

    /// Whether renewing the lease found it taken over.
    pub(super) fn lease_lost(&self) -> bool {
        self.lost.load(Ordering::Acquire)
    }

    /// From now on the heartbeat renews this job's lease too.
    pub(super) fn claimed(&self, job: JobId) {
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

/// Waits for the next beat: `true` when it is due, `false` once the heartbeat is stopped.
/// A claim (a change on the channel) is not a beat.
async fn next_beat(
    stop: &mut watch::Receiver<Option<JobId>>,
    tick: &mut tokio::time::Interval,
) -> bool {
    loop {
        tokio::select! {
            biased;
            changed = stop.changed() => {
                if changed.is_err() {
                    return false;
                }
            }
            _ = tick.tick() => return true,
        }
    }
}
