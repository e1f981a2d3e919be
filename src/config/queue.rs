//! `[queue]`: the durable queue between ingress and workers, SQS or embedded, and how the
//! ingress batches its sends.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Problems, check_http_url};

/// `[queue]`: the durable queue between ingress and workers.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueSettings {
    pub kind: QueueKind,
    /// `dockhand requeue` skips a message already requeued this many times, unless
    /// `--force`: a job that keeps dying needs a fix, not another replay.
    pub max_requeues: u32,
    pub sqs: SqsSettings,
    pub embedded: EmbeddedQueueSettings,
    pub batch: BatchSettings,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            kind: QueueKind::default(),
            max_requeues: 3,
            sqs: SqsSettings::default(),
            embedded: EmbeddedQueueSettings::default(),
            batch: BatchSettings::default(),
        }
    }
}

/// Which queue backend carries the jobs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueKind {
    #[default]
    Embedded,
    Sqs,
}

/// `[queue.sqs]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SqsSettings {
    pub url: Option<String>,
    /// The dead-letter queue; unset means the one named by the main queue's RedrivePolicy.
    pub dead_letter_url: Option<String>,
    /// Long-poll wait for receives (at most 20s).
    #[serde(with = "humantime_serde")]
    pub wait_time: Duration,
    #[serde(with = "humantime_serde")]
    pub visibility_timeout: Duration,
}

impl Default for SqsSettings {
    fn default() -> Self {
        Self {
            url: None,
            dead_letter_url: None,
            wait_time: Duration::from_secs(20),
            visibility_timeout: Duration::from_secs(60),
        }
    }
}

/// `[queue.embedded]`: a SQLite file with SQS's semantics, for single-node use.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddedQueueSettings {
    pub path: PathBuf,
    #[serde(with = "humantime_serde")]
    pub visibility_timeout: Duration,
    /// A message received this many times without being deleted goes to dead-letter
    /// on its next receive (SQS's maxReceiveCount). 20, as deploy/ sets SQS's: with the
    /// default backoff, over an hour of errors before a job is dead-lettered.
    pub max_receives: u32,
    /// How often a long-polling receive looks again for messages whose visibility expired.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
}

impl Default for EmbeddedQueueSettings {
    fn default() -> Self {
        Self {
            path: PathBuf::from("data/queue.db"),
            visibility_timeout: Duration::from_secs(60),
            max_receives: 20,
            poll_interval: Duration::from_millis(250),
        }
    }
}

/// `[queue.batch]`: how the ingress groups concurrent sends into batches of up to 10.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchSettings {
    /// How long a batch waits for company once started; a lone message waits no longer.
    #[serde(with = "humantime_serde")]
    pub linger: Duration,
    /// Batches in flight at once; more requests wait and so fill the next batch.
    pub max_in_flight: usize,
}

impl Default for BatchSettings {
    fn default() -> Self {
        Self {
            linger: Duration::from_millis(2),
            max_in_flight: 16,
        }
    }
}

impl QueueSettings {
    /// How long a received message stays invisible, for the configured backend.
    pub fn visibility_timeout(&self) -> Duration {
        match self.kind {
            QueueKind::Sqs => self.sqs.visibility_timeout,
            QueueKind::Embedded => self.embedded.visibility_timeout,
        }
    }

    /// How long a worker's receive waits for messages.
    pub fn receive_wait(&self) -> Duration {
        match self.kind {
            QueueKind::Sqs => self.sqs.wait_time,
            QueueKind::Embedded => Duration::from_secs(20),
        }
    }

    pub(super) fn check(&self, p: &mut Problems) {
        match self.kind {
            QueueKind::Sqs => {
                match &self.sqs.url {
                    None => p.add("queue.sqs.url", "required when queue.kind = \"sqs\""),
                    Some(url) => check_http_url("queue.sqs.url", url, p),
                }
                if let Some(url) = &self.sqs.dead_letter_url {
                    check_http_url("queue.sqs.dead_letter_url", url, p);
                }
                if self.sqs.wait_time > Duration::from_secs(20) {
                    p.add("queue.sqs.wait_time", "SQS allows at most 20s");
                }
                // The worker's heartbeat renews it every third of itself (or of the lease),
                // and SQS counts it in whole seconds.
                if self.sqs.visibility_timeout < Duration::from_secs(1)
                    || self.sqs.visibility_timeout > Duration::from_secs(12 * 3600)
                {
                    p.add(
                        "queue.sqs.visibility_timeout",
                        "must be between 1s and 12h (SQS's limit)",
                    );
                }
            }
            QueueKind::Embedded => {
                if self.embedded.path.as_os_str().is_empty() {
                    p.add("queue.embedded.path", "must not be empty");
                }
                if self.embedded.visibility_timeout < Duration::from_secs(1) {
                    p.add("queue.embedded.visibility_timeout", "must be at least 1s");
                }
                if self.embedded.max_receives == 0 {
                    p.add("queue.embedded.max_receives", "must be at least 1");
                }
                if self.embedded.poll_interval.is_zero() {
                    p.add("queue.embedded.poll_interval", "must be greater than zero");
                }
            }
        }
        if self.batch.linger > Duration::from_millis(50) {
            p.add(
                "queue.batch.linger",
                "at most 50ms: longer holds every lone webhook back",
            );
        }
        if !(1..=256).contains(&self.batch.max_in_flight) {
            p.add("queue.batch.max_in_flight", "must be between 1 and 256");
        }
    }
}
