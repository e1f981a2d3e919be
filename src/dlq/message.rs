//! What a dead-lettered message says (read from its envelope, or from its attributes when
//! the body is poison) and the message sent back when it is requeued.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::queue::envelope::{ATTR_ACTION, ATTR_JOB_ID, Envelope};
use crate::queue::{
    ATTR_DEAD_LETTER_REASON, ATTR_DEAD_LETTER_RECEIVES, ATTR_NOT_BEFORE,
    ATTR_PREVIOUS_DEAD_LETTER_REASON, ATTR_REQUEUE_COUNT, ATTR_UNKNOWN_POOL_SINCE, ATTR_WAITS,
    OutgoingMessage, ReceivedMessage,
};

/// The reason shown for a message that carries none: SQS's own redrive moved it.
pub const REDRIVE_REASON: &str =
    "none recorded: moved by the queue's redrive policy after maxReceiveCount receives";

/// The message attributes EventBridge puts on an event it could not deliver to its target
/// and sent to the rule's dead-letter queue instead.
const EVENTBRIDGE_ERROR_CODE: &str = "ERROR_CODE";
const EVENTBRIDGE_ERROR_MESSAGE: &str = "ERROR_MESSAGE";

/// The `action` shown for an ECS task state change event.
pub const TASK_EVENT_ACTION: &str = "ecs_task_event";

/// One dead-lettered message, as `dlq list` shows it.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub job_id: Option<u64>,
    pub repo: Option<String>,
    pub action: Option<String>,
    pub pool: Option<String>,
    /// How many times it was received before it was dead-lettered. Where SQS's redrive
    /// moved it, SQS's approximate count, which earlier scans of the DLQ also raised.
    pub receives: u32,
    /// How many times `dockhand requeue` has already moved it back.
    pub requeues: u32,
    /// When the ingress accepted the delivery; for a body that is not an envelope, when the
    /// message was sent.
    pub since: Option<DateTime<Utc>>,
    pub reason: String,
    pub message: ReceivedMessage,
}

impl DeadLetter {
    /// Reads what it can: the envelope first, then the attributes (a poison body has only
    /// those).
    pub fn read(message: ReceivedMessage) -> Self {
        let envelope = Envelope::decode(&message.body).ok();
        let attr = |name: &str| message.attributes.get(name);
        let number = |name: &str| attr(name).and_then(|v| v.parse::<u64>().ok());
        Self {
            job_id: match &envelope {
                Some(e) => Some(e.event.job.id.0),
                None => number(ATTR_JOB_ID),
            },
            repo: envelope
                .as_ref()
                .map(|e| e.event.repository.full_name.clone()),
            action: match &envelope {
                Some(e) => Some(e.event.action.as_str().to_string()),
                None if crate::lifecycle::TaskEvent::recognise(&message.body)
                    .is_some_and(|e| e.is_ok()) =>
                {
                    Some(TASK_EVENT_ACTION.to_string())
                }
                None => attr(ATTR_ACTION).cloned(),
            },
            pool: envelope.as_ref().and_then(|e| e.pool.clone()),
            receives: number(ATTR_DEAD_LETTER_RECEIVES)
                .map(|n| n as u32)
                // Our own receive is in SQS's count; the earlier ones are not ours to tell.
                .unwrap_or(message.receive_count.saturating_sub(1)),
            requeues: requeue_count(&message),
            since: envelope.as_ref().map(|e| e.received_at).or(message.sent_at),
            reason: attr(ATTR_DEAD_LETTER_REASON)
                .cloned()
                .or_else(|| {
                    let code = attr(EVENTBRIDGE_ERROR_CODE)?;
                    let words = attr(EVENTBRIDGE_ERROR_MESSAGE).map_or("", String::as_str);
                    Some(format!(
                        "EventBridge could not deliver it to the queue: {code}: {words}"
                    ))
                })
                .unwrap_or_else(|| REDRIVE_REASON.to_string()),
            message,
        }
    }

    /// How long ago [`DeadLetter::since`] was.
    pub fn age(&self, now: DateTime<Utc>) -> Option<Duration> {
        self.since.map(|t| (now - t).to_std().unwrap_or_default())
    }
}

fn requeue_count(message: &ReceivedMessage) -> u32 {
    message
        .attributes
        .get(ATTR_REQUEUE_COUNT)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The message to send back: the same body and attributes, with the requeue count raised
/// and the dead-letter bookkeeping of this death moved aside, so that a later death is
/// reported with its own reason.
pub fn requeued(message: &ReceivedMessage) -> OutgoingMessage {
    let mut out = OutgoingMessage::from(message);
    out.attributes.insert(
        ATTR_REQUEUE_COUNT.to_string(),
        (requeue_count(message) + 1).to_string(),
    );
    out.attributes.remove(ATTR_DEAD_LETTER_RECEIVES);
    // A requeue starts afresh: no wait carried over.
    for waiting in [ATTR_WAITS, ATTR_NOT_BEFORE, ATTR_UNKNOWN_POOL_SINCE] {
        out.attributes.remove(waiting);
    }
    if let Some(reason) = out.attributes.remove(ATTR_DEAD_LETTER_REASON) {
        out.attributes
            .insert(ATTR_PREVIOUS_DEAD_LETTER_REASON.to_string(), reason);
    }
    out
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::queue::{MessageId, ReceiptHandle};

    /// A dead letter received 4 times, sent `sent_minutes_ago`.
    pub(in crate::dlq) fn dead(
        attributes: &[(&str, &str)],
        body: &str,
        sent_minutes_ago: i64,
    ) -> DeadLetter {
        DeadLetter::read(ReceivedMessage {
            id: MessageId("m".into()),
            receipt: ReceiptHandle("r".into()),
            body: body.into(),
            attributes: attributes
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            receive_count: 4,
            sent_at: Some(Utc::now() - chrono::Duration::minutes(sent_minutes_ago)),
        })
    }

    #[test]
    fn a_poison_body_is_read_from_its_attributes_and_sqs_redrive_has_its_own_reason() {
        let entry = dead(&[("job-id", "12"), ("action", "queued")], "garbage", 5);
        assert_eq!(entry.job_id, Some(12));
        assert_eq!(entry.action.as_deref(), Some("queued"));
        assert_eq!(entry.repo, None);
        assert_eq!(entry.reason, REDRIVE_REASON);
        // SQS's count, less this receive.
        assert_eq!(entry.receives, 3);
        let age = entry.age(Utc::now()).unwrap();
        assert!((299..=301).contains(&age.as_secs()), "{age:?}");
    }

    #[test]
    fn an_event_eventbridge_could_not_deliver_says_so() {
        let body = serde_json::json!({
            "source": "aws.ecs",
            "detail-type": "ECS Task State Change",
            "id": "e-1",
            "detail": {"taskArn": "arn:aws:ecs:us-east-1:1:task/c/t", "lastStatus": "STOPPED"}
        })
        .to_string();
        let entry = dead(
            &[
                (
                    "RULE_ARN",
                    "arn:aws:events:us-east-1:1:rule/dockhand-runner-tasks",
                ),
                ("ERROR_CODE", "SDK_CLIENT_ERROR"),
                ("ERROR_MESSAGE", "Unable to invoke Client"),
            ],
            &body,
            5,
        );
        assert_eq!(entry.action.as_deref(), Some(TASK_EVENT_ACTION));
        assert_eq!(entry.job_id, None);
        assert_eq!(
            entry.reason,
            "EventBridge could not deliver it to the queue: SDK_CLIENT_ERROR: Unable to invoke Client"
        );
    }

    #[test]
    fn a_requeued_message_counts_the_requeue_and_moves_the_reason_aside() {
        let message = ReceivedMessage {
            id: MessageId("m".into()),
            receipt: ReceiptHandle("r".into()),
            body: "{}".into(),
            attributes: [
                ("job-id", "1"),
                ("requeue-count", "2"),
                ("dead-letter-reason", "ECS: quota"),
                ("dead-letter-receives", "1"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            receive_count: 1,
            sent_at: None,
        };
        let out = requeued(&message);
        assert_eq!(out.body, "{}");
        let attributes: Vec<(&str, &str)> = out
            .attributes
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            attributes,
            [
                ("job-id", "1"),
                ("previous-dead-letter-reason", "ECS: quota"),
                ("requeue-count", "3"),
            ]
        );
    }
}
