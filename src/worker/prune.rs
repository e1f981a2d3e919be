//! The worker's periodic prune of finished jobs and runners (see [`Store::prune`]).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Worker;
use crate::metrics as m;
use crate::store::Store;
use crate::telemetry::chain;

impl Worker {
    /// Prunes finished rows older than `retention` every `every` until `shutdown`. Every
    /// worker prunes; concurrent passes only find less to delete.
    pub fn spawn_pruning(
        &self,
        retention: Duration,
        every: Duration,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let store = self.store().clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = tick.tick() => prune_once(&store, retention).await,
                    () = shutdown.cancelled() => return,
                }
            }
        })
    }
}

async fn prune_once(store: &Store, retention: Duration) {
    match store.prune(retention).await {
        Ok(pruned) => {
            metrics::counter!(m::STORE_PRUNED_TOTAL, "table" => "jobs").increment(pruned.jobs);
            metrics::counter!(m::STORE_PRUNED_TOTAL, "table" => "runners")
                .increment(pruned.runners);
            metrics::counter!(m::STORE_PRUNED_TOTAL, "table" => "job_history")
                .increment(pruned.history);
            metrics::counter!(m::STORE_PRUNED_TOTAL, "table" => "reruns").increment(pruned.reruns);
            if pruned.jobs > 0 || pruned.runners > 0 {
                tracing::info!(
                    jobs = pruned.jobs,
                    runners = pruned.runners,
                    history = pruned.history,
                    retention_s = retention.as_secs(),
                    "pruned finished rows from the store"
                );
            }
        }
        Err(err) => {
            tracing::warn!(error = %chain(&err), "could not prune the store; trying again next time")
        }
    }
}
