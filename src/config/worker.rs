//! `[worker]`: how workers consume the queue.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Problems;

/// `[worker]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerSettings {
    /// Messages processed at once by one process.
    pub concurrency: usize,
    /// Do everything but the GitHub and ECS calls: log and record what would launch.
    pub dry_run: bool,
    /// How long a claim on a job's launch lasts before another worker may take it over.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// First delay before a transiently failed message comes back; doubles per attempt.
    #[serde(with = "humantime_serde")]
    pub backoff_base: Duration,
    /// Longest delay before a deferred message comes back.
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// On shutdown, how long in-flight jobs may take to finish; unfinished messages are
    /// left to reappear on the queue.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// How often the queue depths are polled for `dockhand_queue_messages`.
    #[serde(with = "humantime_serde")]
    pub depth_poll_interval: Duration,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            concurrency: 8,
            dry_run: false,
            lease: Duration::from_secs(120),
            backoff_base: Duration::from_secs(5),
            backoff_max: Duration::from_secs(300),
            shutdown_grace: Duration::from_secs(30),
            depth_poll_interval: Duration::from_secs(30),
        }
    }
}

impl WorkerSettings {
    pub(super) fn check(&self, p: &mut Problems) {
        if !(1..=1024).contains(&self.concurrency) {
            p.add("worker.concurrency", "must be between 1 and 1024");
        }
        if self.lease < Duration::from_secs(1) {
            p.add("worker.lease", "must be at least 1s");
        }
        if self.backoff_base.is_zero() || self.backoff_max < self.backoff_base {
            p.add(
                "worker.backoff_max",
                "backoff_base must be > 0 and backoff_max >= backoff_base",
            );
        }
        if self.backoff_max > Duration::from_secs(12 * 3600) {
            p.add("worker.backoff_max", "at most 12h (SQS's visibility limit)");
        }
    }
}
