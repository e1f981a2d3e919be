//! The durable queue between ingress and workers: one trait, two backends (SQS, and an
//! embedded SQLite file with the same semantics), plus the envelope that travels on it.

pub mod batch;
pub mod embedded;
pub mod envelope;
pub mod sqs;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;

use crate::config::{AwsSettings, QueueKind, QueueSettings};

/// SQS's limit on messages per batch, which the embedded queue keeps too.
pub const MAX_BATCH: usize = 10;

/// Message attributes: small string values beside the body (SQS `MessageAttributes`).
pub type Attributes = BTreeMap<String, String>;

/// Why a message was dead-lettered: set by the worker that gave up on it, or by the
/// embedded queue past max receives. SQS's own redrive sets none.
pub const ATTR_DEAD_LETTER_REASON: &str = "dead-letter-reason";
/// The most of a reason [`ATTR_DEAD_LETTER_REASON`] keeps, in bytes.
pub const MAX_DEAD_LETTER_REASON_BYTES: usize = 256;
/// How many times a message had been received when it was dead-lettered.
pub const ATTR_DEAD_LETTER_RECEIVES: &str = "dead-letter-receives";
/// How many expected waits (a full pool, no capacity, a held lease, a rate limit) the
/// message has been through. Each one sends a fresh delayed copy, whose receive count starts
/// again, so waiting never moves a message towards the dead-letter queue; this carries the
/// count on, for backoff.
pub const ATTR_WAITS: &str = "wait-count";
/// Unix milliseconds before which the message's wait is not over: set when the wait is
/// longer than one delayed send allows ([`MAX_DELAY`]), so the copies chain.
pub const ATTR_NOT_BEFORE: &str = "not-before";
/// Unix milliseconds when a worker first found no pool for the message's job, while the
/// ingress had matched one (a config reload the worker has not made yet).
pub const ATTR_UNKNOWN_POOL_SINCE: &str = "unknown-pool-since";
/// How many times `dockhand requeue` has moved a message back to the main queue.
pub const ATTR_REQUEUE_COUNT: &str = "requeue-count";
/// The reason a requeued message was dead-lettered the time before, kept apart so that a
/// second death by SQS's redrive (which sets no reason) is not reported with a stale one.
pub const ATTR_PREVIOUS_DEAD_LETTER_REASON: &str = "previous-dead-letter-reason";

/// `reason` cut to fit [`ATTR_DEAD_LETTER_REASON`]: its longest prefix of at most
/// [`MAX_DEAD_LETTER_REASON_BYTES`] that ends on a character. A reason may quote GitHub's or
/// ECS's text, so the limit may fall inside a character.
pub fn dead_letter_reason(reason: &str) -> &str {
    &reason[..reason.floor_char_boundary(MAX_DEAD_LETTER_REASON_BYTES)]
}

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    pub body: String,
    pub attributes: Attributes,
    /// How long the message stays invisible after it is sent (SQS `DelaySeconds`, rounded
    /// up to whole seconds there, at most [`MAX_DELAY`]).
    pub delay: Duration,
}

/// The longest delay a send may ask for (SQS's limit on `DelaySeconds`).
pub const MAX_DELAY: Duration = Duration::from_secs(15 * 60);

impl From<&ReceivedMessage> for OutgoingMessage {
    /// The same body and attributes, to send on to another queue.
    fn from(message: &ReceivedMessage) -> Self {
        Self {
            body: message.body.clone(),
            attributes: message.attributes.clone(),
            delay: Duration::ZERO,
        }
    }
}

/// The queue's id for a message, stable across receives.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MessageId(pub String);

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The handle of one receive of a message: needed to delete it or change its visibility,
/// and void once the message is received again.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReceiptHandle(pub String);

/// A message as received.
#[derive(Debug, Clone)]
pub struct ReceivedMessage {
    pub id: MessageId,
    pub receipt: ReceiptHandle,
    pub body: String,
    pub attributes: Attributes,
    /// How many times the message has been received, this time included.
    pub receive_count: u32,
    pub sent_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Why a queue operation failed. Callers branch on [`QueueError::is_transient`].
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The queue could not be reached or answered with a server-side or throttling
    /// error: trying again later may succeed.
    #[error("queue unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The queue refused the request itself (too large, bad attribute, no such queue):
    /// trying again will not help.
    #[error("queue refused the request")]
    Rejected(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The receipt handle is unknown or void (the message was deleted or received again).
    #[error("receipt handle is no longer valid")]
    InvalidReceipt,
}

impl QueueError {
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }

    pub(crate) fn unavailable(message: impl Into<String>) -> Self {
        Self::Unavailable(message.into().into())
    }
}

/// One queue. Implementations are cheap to share behind an `Arc`.
#[async_trait]
pub trait Queue: Send + Sync + fmt::Debug {
    /// Sends up to [`MAX_BATCH`] messages; one result per message, in order.
    async fn send_batch(
        &self,
        messages: Vec<OutgoingMessage>,
    ) -> Result<Vec<Result<MessageId, QueueError>>, QueueError>;

    /// Receives up to `max` messages, waiting up to `wait` for the first to arrive. Each is
    /// invisible to other receivers until the queue's visibility timeout passes.
    async fn receive(
        &self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        self.receive_with_visibility(max, wait, self.visibility_timeout())
            .await
    }

    /// Receives as [`Queue::receive`] does, each message invisible for `visibility` instead
    /// (the dead-letter tools peek and hold messages this way).
    async fn receive_with_visibility(
        &self,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError>;

    /// How long a received message stays invisible unless told otherwise.
    fn visibility_timeout(&self) -> Duration;

    /// Where the queue is, for people: a URL, or a file and the queue in it.
    fn location(&self) -> String;

    /// Makes a received message visible again after `timeout` from now.
    async fn change_visibility(
        &self,
        receipt: &ReceiptHandle,
        timeout: Duration,
    ) -> Result<(), QueueError>;

    async fn delete(&self, receipt: &ReceiptHandle) -> Result<(), QueueError>;

    /// About how many messages the queue holds, visible or not.
    async fn approximate_depth(&self) -> Result<Depth, QueueError>;

    /// Whether the queue answers at all (for `/readyz`).
    async fn ping(&self) -> Result<(), QueueError>;

    /// The queue this one dead-letters into, if it has one.
    async fn dead_letter_queue(&self) -> Result<Option<Arc<dyn Queue>>, QueueError>;
}

/// How many messages a queue holds (approximately, on SQS), by whether a consumer can
/// receive them now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Depth {
    /// Waiting to be received.
    pub visible: u64,
    /// Received and not yet deleted, or delayed: they become visible later.
    pub in_flight: u64,
}

impl Depth {
    /// Every message the queue holds: nothing is left to do only when this is 0.
    pub fn total(self) -> u64 {
        self.visible + self.in_flight
    }
}

impl dyn Queue + '_ {
    /// Sends one message.
    pub async fn send(&self, message: OutgoingMessage) -> Result<MessageId, QueueError> {
        self.send_batch(vec![message])
            .await?
            .pop()
            .unwrap_or_else(|| Err(QueueError::unavailable("empty batch result")))
    }
}

/// Opens the configured main queue.
pub async fn connect(
    settings: &QueueSettings,
    aws: &AwsSettings,
) -> anyhow::Result<Arc<dyn Queue>> {
    Ok(match settings.kind {
        QueueKind::Embedded => Arc::new(
            embedded::EmbeddedQueue::open(&settings.embedded)
                .await
                .with_context(|| {
                    format!(
                        "opening the embedded queue at {}",
                        settings.embedded.path.display()
                    )
                })?,
        ),
        QueueKind::Sqs => Arc::new(sqs::SqsQueue::new(aws.sqs_client().await, &settings.sqs)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_letter_reason_is_cut_on_a_character_boundary() {
        let ascii = "x".repeat(300);
        assert_eq!(dead_letter_reason(&ascii), &ascii[..256]);
        // Byte 256 falls inside the 128th "é": the cut comes before it.
        let accented = format!("x{}", "é".repeat(200));
        assert_eq!(dead_letter_reason(&accented), &accented[..255]);
        // A four-byte character straddling the limit, from each of its inner bytes.
        for pad in 253..256 {
            let crab = format!("{}🦀tail", "x".repeat(pad));
            assert_eq!(dead_letter_reason(&crab), "x".repeat(pad), "{pad}");
        }
        let exact = format!("{}é", "x".repeat(254));
        assert_eq!(dead_letter_reason(&exact), exact);
        assert_eq!(dead_letter_reason("short"), "short");
        assert_eq!(dead_letter_reason(""), "");
    }
}
