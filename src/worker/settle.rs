//! What becomes of a processed message: deleted once its outcome is recorded, sent again
//! as a fresh delayed copy after an expected wait (so waiting spends none of its receives),
//! made visible again later after an error, or dead-lettered with its reason.

use std::time::Duration;

use super::Worker;
use super::outcome::{Deferral, JobError, Outcome, Settled, backoff, rate_limit_delay};
use crate::metrics as m;
use crate::queue::{
    ATTR_DEAD_LETTER_REASON, ATTR_NOT_BEFORE, ATTR_UNKNOWN_POOL_SINCE, ATTR_WAITS, MAX_DELAY,
    OutgoingMessage, QueueError, ReceivedMessage,
};
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
    /// the result depends on, so deleting now cannot lose a job.
    pub(super) async fn settle(
        &self,
        message: &ReceivedMessage,
        pool: String,
        result: Result<Outcome, JobError>,
    ) -> Settled {
        let settled = Settled::from(result);
        let label = settled.as_str();
        metrics::counter!(m::JOBS_TOTAL, "pool" => pool, "outcome" => label).increment(1);
        match &settled {
            Settled::Done(_) => {
                tracing::info!(outcome = label, "done");
                self.delete(message).await;
            }
            Settled::Deferred(deferral) => {
                let delay = self.delay_for(message, deferral);
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
                self.dead_letter(message, reason).await;
            }
        }
        settled
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
    /// Never deletes a message whose dead-letter send failed.
    async fn dead_letter(&self, message: &ReceivedMessage, reason: &str) {
        let Some(dlq) = &self.0.dead_letter else {
            tracing::error!("no dead-letter queue; leaving the message to expire by max receives");
            return;
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
            Ok(_) => self.delete(message).await,
            Err(err) => tracing::error!(
                error = %chain(&err),
                "dead-letter send failed; the message stays on the queue"
            ),
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
