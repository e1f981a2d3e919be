//! What becomes of a processed message: deleted once its outcome is recorded, sent again
//! as a fresh delayed copy after an expected wait (so waiting spends none of its receives),
//! made visible again later after an error, or dead-lettered with its reason.

use std::sync::OnceLock;
use std::time::Duration;

use chrono::Utc;

use super::Worker;
use super::outcome::{Deferral, JobError, Outcome, Settled, backoff, rate_limit_delay};
use crate::domain::JobId;
use crate::metrics as m;
use crate::pool::Pool;
use crate::queue::{
    ATTR_DEAD_LETTER_REASON, ATTR_NOT_BEFORE, ATTR_UNKNOWN_POOL_SINCE, ATTR_WAITS, MAX_DELAY,
    OutgoingMessage, QueueError, ReceivedMessage,
};
use crate::store::{Deferred, Delivered};
use crate::telemetry::chain;

/// The longest visibility timeout SQS accepts.
const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);

impl Worker {
    /// A job whose pool this worker has not known for longer than the grace fails: its
    /// config is not merely behind the ingress's.
    pub(super) fn bound_unknown_pool(
        &self,
        message: &ReceivedMessage,
        result: Result<Outcome, JobError>,
    ) -> Result<Outcome, JobError> {
        let Err(JobError::Deferred(Deferral::UnknownPool(pool))) = &result else {
            return result;
        };
        let since = attribute_ms(message, ATTR_UNKNOWN_POOL_SINCE).unwrap_or_else(now_ms);
        let waited = Duration::from_millis((now_ms() - since).max(0) as u64);
        if waited < self.0.unknown_pool_grace {
            return result;
        }
        Err(JobError::Permanent(format!(
            "the ingress matched pool {pool}, which this worker's config has not had for {}s",
            waited.as_secs()
        )))
    }

    /// Acts on the result: delete, defer or dead-letter. The store already holds whatever
    /// the result depends on, so deleting now cannot lose a job. `pool` labels the jobs
    /// metric; a message that is not a job (an ECS task event) has none and is counted in
    /// its own.
    pub(super) async fn settle(
        &self,
        handling: &Handling<'_>,
        job: Option<JobId>,
        pool: Option<String>,
        result: Result<Outcome, JobError>,
    ) -> Settled {
        let message = handling.message;
        let settled = Settled::from(result);
        let label = settled.as_str();
        if let Some(pool) = pool {
            metrics::counter!(m::JOBS_TOTAL, "pool" => pool, "outcome" => label).increment(1);
        }
        match &settled {
            Settled::Done(_) => {
                tracing::info!(outcome = label, "done");
                self.delete(message).await;
            }
            Settled::Deferred(deferral) => {
                let delay = self.delay(handling, deferral);
                match deferral {
                    Deferral::Error(reason) => {
                        tracing::warn!(
                            outcome = label,
                            reason,
                            delay_s = delay.as_secs(),
                            "deferred"
                        )
                    }
                    _ => tracing::info!(outcome = label, delay_s = delay.as_secs(), "deferred"),
                }
                if deferral.is_expected() {
                    self.wait_again(message, deferral, delay).await;
                } else {
                    self.come_back_later(message, delay).await;
                }
            }
            Settled::Failed(reason) => {
                tracing::error!(reason, "failed permanently; dead-lettering");
                if self.dead_letter(message, reason).await
                    && let Some(job) = job
                    && let Err(err) = self.0.store.record_dead_lettered(job, reason).await
                {
                    tracing::warn!(error = %chain(&err), "could not note the dead letter in the job's history");
                }
            }
        }
        settled
    }

    /// How long a deferred message stays away: chosen once per handling, so that the job's
    /// history records the time it is in fact tried again.
    pub(super) fn delay(&self, handling: &Handling<'_>, deferral: &Deferral) -> Duration {
        *handling
            .delay
            .get_or_init(|| self.delay_for(handling.message, deferral))
    }

    /// A deferral as the job's history records it: why, in words, and until when.
    pub(super) fn deferred(
        &self,
        handling: &Handling<'_>,
        deferral: &Deferral,
        pool: Option<&str>,
    ) -> Deferred {
        let until = Utc::now()
            + chrono::Duration::from_std(self.delay(handling, deferral)).unwrap_or_default();
        let in_pool = pool.map(|p| format!(" of pool {p}")).unwrap_or_default();
        let (why, reason) = match deferral {
            Deferral::Capacity => (
                "capacity",
                format!("no launch option{in_pool} had capacity in ECS"),
            ),
            Deferral::RateLimit(wait) => (
                "rate_limit",
                format!("GitHub's rate limit; it resets in {}s", wait.as_secs()),
            ),
            Deferral::PoolFull => (
                "pool_full",
                pool.map_or("the pool is full".to_string(), |p| {
                    format!("pool {p} is full")
                }),
            ),
            Deferral::Held(wait) => (
                "held",
                format!(
                    "another worker holds the launch's lease for {}s more",
                    wait.as_secs()
                ),
            ),
            Deferral::UnknownPool(name) => (
                "unknown_pool",
                format!(
                    "the ingress matched pool {name}, which this worker's config does not have (yet)"
                ),
            ),
            Deferral::NotYet(_) => ("not_yet", "an earlier wait is not over".to_string()),
            Deferral::Error(message) => ("error", message.clone()),
        };
        let mut deferred = Deferred::new(why, reason, until);
        deferred.pool = match deferral {
            Deferral::UnknownPool(name) => Some(name.clone()),
            _ => pool.map(str::to_string),
        };
        deferred
    }

    /// A wait before (or without) this worker's claim: noted in the job's history, with the
    /// pool's live runners and cap when it is full. A note that fails to write is logged;
    /// the wait goes on.
    pub(super) async fn wait_unclaimed(
        &self,
        delivered: &Delivered<'_>,
        handling: &Handling<'_>,
        deferral: Deferral,
        pool: Option<(&Pool, (u64, u32))>,
    ) -> Result<Outcome, JobError> {
        let mut deferred = self.deferred(handling, &deferral, pool.map(|(p, _)| p.name.as_str()));
        if let (Deferral::PoolFull, Some((_, (live, max)))) = (&deferral, pool) {
            deferred.reason = format!("{} ({live} of {max})", deferred.reason);
            deferred.live = Some(live);
            deferred.max = Some(max);
        }
        if let Err(err) = self.0.store.record_deferral(delivered, &deferred).await {
            tracing::warn!(error = %chain(&err), "could not note the wait in the job's history");
        }
        Err(JobError::Deferred(deferral))
    }

    /// How long a deferred message stays away.
    fn delay_for(&self, message: &ReceivedMessage, deferral: &Deferral) -> Duration {
        let s = &self.0.settings;
        let waits = attribute_ms(message, ATTR_WAITS).unwrap_or(0).max(0) as u32;
        match deferral {
            Deferral::RateLimit(wait) => rate_limit_delay(*wait),
            // Come back when the holder's lease ends: by then it has launched (and this copy
            // is a duplicate) or crashed (and this copy takes over).
            Deferral::Held(wait) => *wait + Duration::from_secs(1),
            Deferral::NotYet(left) => *left,
            _ => backoff(
                message.receive_count.saturating_add(waits),
                s.backoff_base,
                s.backoff_max,
            ),
        }
    }

    /// An error: the message comes back after `delay`, one receive nearer the dead-letter
    /// queue.
    async fn come_back_later(&self, message: &ReceivedMessage, delay: Duration) {
        let delay = delay.min(MAX_VISIBILITY);
        if let Err(err) = self
            .0
            .queue
            .change_visibility(&message.receipt, delay)
            .await
        {
            tracing::warn!(error = %chain(&err), "could not defer; the message reappears after its visibility timeout");
        }
    }

    /// An expected wait: a fresh copy, delayed (in links of at most [`MAX_DELAY`]), replaces
    /// the message, so waiting spends none of its receives. Should the send fail, the
    /// message itself comes back later instead.
    async fn wait_again(&self, message: &ReceivedMessage, deferral: &Deferral, delay: Duration) {
        let mut copy = OutgoingMessage::from(message);
        let attributes = &mut copy.attributes;
        if !matches!(deferral, Deferral::NotYet(_)) {
            let waits = attribute_ms(message, ATTR_WAITS).unwrap_or(0).max(0) + 1;
            attributes.insert(ATTR_WAITS.to_string(), waits.to_string());
        }
        if delay > MAX_DELAY {
            let until = now_ms() + delay.as_millis() as i64;
            attributes.insert(ATTR_NOT_BEFORE.to_string(), until.to_string());
        } else {
            attributes.remove(ATTR_NOT_BEFORE);
        }
        if matches!(deferral, Deferral::UnknownPool(_)) {
            attributes
                .entry(ATTR_UNKNOWN_POOL_SINCE.to_string())
                .or_insert_with(|| now_ms().to_string());
        } else {
            attributes.remove(ATTR_UNKNOWN_POOL_SINCE);
        }
        copy.delay = delay.min(MAX_DELAY);
        match self.0.queue.send(copy).await {
            Ok(_) => self.delete(message).await,
            Err(err) => {
                tracing::warn!(error = %chain(&err), "could not send the delayed copy; the message itself comes back later");
                self.come_back_later(message, delay).await;
            }
        }
    }

    async fn delete(&self, message: &ReceivedMessage) {
        let outcome = match self.0.queue.delete(&message.receipt).await {
            Ok(()) => "ok",
            Err(QueueError::InvalidReceipt) => {
                // Received again elsewhere meanwhile; that copy will find the job done.
                tracing::debug!("receipt void at delete");
                "stale"
            }
            Err(err) => {
                tracing::warn!(error = %chain(&err), "delete failed; the message will come back and be found done");
                "error"
            }
        };
        metrics::counter!(m::QUEUE_DELETE_TOTAL, "outcome" => outcome).increment(1);
    }

    /// Sends the message on to the dead-letter queue with its reason, then deletes it.
    /// Never deletes a message whose dead-letter send failed. Answers whether it was sent.
    async fn dead_letter(&self, message: &ReceivedMessage, reason: &str) -> bool {
        let Some(dlq) = &self.0.dead_letter else {
            tracing::error!("no dead-letter queue; leaving the message to expire by max receives");
            return false;
        };
        let mut copy = OutgoingMessage::from(message);
        copy.attributes.insert(
            ATTR_DEAD_LETTER_REASON.to_string(),
            crate::queue::dead_letter_reason(reason).to_string(),
        );
        copy.attributes.insert(
            crate::queue::ATTR_DEAD_LETTER_RECEIVES.to_string(),
            message.receive_count.to_string(),
        );
        match dlq.send(copy).await {
            Ok(_) => {
                self.delete(message).await;
                true
            }
            Err(err) => {
                tracing::error!(
                    error = %chain(&err),
                    "dead-letter send failed; the message stays on the queue"
                );
                false
            }
        }
    }
}

/// One message being handled, and the delay a deferral of it waits, once chosen.
pub(super) struct Handling<'a> {
    pub message: &'a ReceivedMessage,
    delay: OnceLock<Duration>,
}

impl<'a> Handling<'a> {
    pub fn new(message: &'a ReceivedMessage) -> Self {
        Self {
            message,
            delay: OnceLock::new(),
        }
    }
}

/// An integer attribute (a count, or unix milliseconds), if the message has a readable one.
pub(super) fn attribute_ms(message: &ReceivedMessage, name: &str) -> Option<i64> {
    message.attributes.get(name)?.parse().ok()
}

pub(super) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
