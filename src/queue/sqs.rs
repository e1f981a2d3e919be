//! The SQS backend.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::config::http::HttpResponse;
use aws_sdk_sqs::error::SdkError;
use aws_sdk_sqs::types::{
    MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName,
    SendMessageBatchRequestEntry,
};
use chrono::DateTime;

use super::{
    Attributes, Depth, MessageId, OutgoingMessage, Queue, QueueError, ReceiptHandle,
    ReceivedMessage,
};
use crate::config::SqsSettings;

/// SQS's longest long-poll.
const MAX_WAIT: Duration = Duration::from_secs(20);

/// One SQS queue.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    url: String,
    /// An explicit dead-letter queue; otherwise the main queue's RedrivePolicy names it.
    dead_letter_url: Option<String>,
    visibility_timeout: Duration,
    is_dead_letter: bool,
}

impl SqsQueue {
    /// The main queue named by the settings. Panics if `url` is unset: validation requires it.
    pub fn new(client: Client, settings: &SqsSettings) -> Self {
        Self {
            client,
            url: settings
                .url
                .clone()
                .expect("queue.sqs.url is validated as required"),
            dead_letter_url: settings.dead_letter_url.clone(),
            visibility_timeout: settings.visibility_timeout,
            is_dead_letter: false,
        }
    }

    fn with_url(&self, url: String) -> Self {
        Self {
            url,
            dead_letter_url: None,
            is_dead_letter: true,
            ..self.clone()
        }
    }

    /// Finds the dead-letter queue's URL from the main queue's RedrivePolicy.
    async fn redrive_target(&self) -> Result<Option<String>, QueueError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::RedrivePolicy)
            .send()
            .await
            .map_err(|e| classify(e, |_| false))?;
        let Some(policy) = out
            .attributes
            .and_then(|mut a| a.remove(&QueueAttributeName::RedrivePolicy))
        else {
            return Ok(None);
        };
        let arn = serde_json::from_str::<serde_json::Value>(&policy)
            .ok()
            .and_then(|p| p["deadLetterTargetArn"].as_str().map(str::to_string))
            .ok_or_else(|| QueueError::Rejected("unreadable RedrivePolicy".into()))?;
        // arn:aws:sqs:<region>:<account>:<name>
        let parts: Vec<&str> = arn.split(':').collect();
        let [_, _, "sqs", _, account, name] = parts[..] else {
            return Err(QueueError::Rejected(
                format!("RedrivePolicy names `{arn}`, not an SQS queue ARN").into(),
            ));
        };
        let out = self
            .client
            .get_queue_url()
            .queue_name(name)
            .queue_owner_aws_account_id(account)
            .send()
            .await
            .map_err(|e| classify(e, |_| false))?;
        Ok(out.queue_url)
    }
}

/// Classifies an SDK error with the SDK's own structure: no answer, a timeout or an
/// unreadable answer is transient; so is a 5xx or a throttling error the operation's own
/// predicate recognises. Anything else the service refused is permanent.
pub(crate) fn classify<E>(
    err: SdkError<E, HttpResponse>,
    throttled: impl Fn(&E) -> bool,
) -> QueueError
where
    E: std::error::Error + Send + Sync + 'static,
{
    let transient = match &err {
        SdkError::ServiceError(service) => {
            throttled(service.err()) || service.raw().status().is_server_error()
        }
        SdkError::ConstructionFailure(_) => false,
        _ => true,
    };
    if transient {
        QueueError::Unavailable(Box::new(err))
    } else {
        QueueError::Rejected(Box::new(err))
    }
}

/// SQS `DelaySeconds`: whole seconds, rounded up so a message is never seen early, at most
/// [`super::MAX_DELAY`].
fn delay_seconds(delay: Duration) -> i32 {
    whole_seconds_up(delay.min(super::MAX_DELAY))
}

/// SQS's longest visibility timeout: 12 hours.
const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);

/// SQS `VisibilityTimeout`: whole seconds, rounded up, at most 12 hours. Rounding down
/// would turn a 600 ms deferral into 0, "visible now", and bring the message straight back.
fn visibility_seconds(visibility: Duration) -> i32 {
    whole_seconds_up(visibility.min(MAX_VISIBILITY))
}

fn whole_seconds_up(d: Duration) -> i32 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)) as i32
}

fn sqs_attributes(attributes: &Attributes) -> HashMap<String, MessageAttributeValue> {
    attributes
        .iter()
        .map(|(k, v)| {
            let value = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(v)
                .build()
                .expect("data_type is set");
            (k.clone(), value)
        })
        .collect()
}

#[async_trait]
impl Queue for SqsQueue {
    async fn send_batch(
        &self,
        messages: Vec<OutgoingMessage>,
    ) -> Result<Vec<Result<MessageId, QueueError>>, QueueError> {
        if let [message] = &messages[..] {
            let out = self
                .client
                .send_message()
                .queue_url(&self.url)
                .message_body(&message.body)
                .set_message_attributes(Some(sqs_attributes(&message.attributes)))
                .delay_seconds(delay_seconds(message.delay))
                .send()
                .await
                .map_err(|e| classify(e, |e| e.is_request_throttled() || e.is_kms_throttled()))?;
            return Ok(vec![Ok(MessageId(out.message_id.unwrap_or_default()))]);
        }
        let entries = messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(&m.body)
                    .set_message_attributes(Some(sqs_attributes(&m.attributes)))
                    .delay_seconds(delay_seconds(m.delay))
                    .build()
                    .expect("id and body are set")
            })
            .collect();
        let out = self
            .client
            .send_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| classify(e, |e| e.is_request_throttled() || e.is_kms_throttled()))?;
        let mut results: Vec<Result<MessageId, QueueError>> = (0..messages.len())
            .map(|_| Err(QueueError::unavailable("SQS did not report on this entry")))
            .collect();
        for ok in out.successful {
            if let Ok(i) = ok.id.parse::<usize>()
                && let Some(slot) = results.get_mut(i)
            {
                *slot = Ok(MessageId(ok.message_id));
            }
        }
        for failed in out.failed {
            if let Ok(i) = failed.id.parse::<usize>()
                && let Some(slot) = results.get_mut(i)
            {
                let reason = format!(
                    "SQS refused a batch entry: {}",
                    failed.message.as_deref().unwrap_or(&failed.code)
                );
                *slot = Err(if failed.sender_fault {
                    QueueError::Rejected(reason.into())
                } else {
                    QueueError::Unavailable(reason.into())
                });
            }
        }
        Ok(results)
    }

    fn visibility_timeout(&self) -> Duration {
        self.visibility_timeout
    }

    fn location(&self) -> String {
        self.url.clone()
    }

    async fn receive_with_visibility(
        &self,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        let wait = wait.min(MAX_WAIT);
        // A long poll legitimately outlasts the usual operation timeout.
        let long_poll = aws_sdk_sqs::config::Config::builder().timeout_config(
            aws_sdk_sqs::config::timeout::TimeoutConfig::builder()
                .operation_timeout(wait + Duration::from_secs(10))
                .build(),
        );
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max.clamp(1, super::MAX_BATCH) as i32)
            .wait_time_seconds(wait.as_secs() as i32)
            .visibility_timeout(visibility_seconds(visibility))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .message_attribute_names("All")
            .customize()
            .config_override(long_poll)
            .send()
            .await
            .map_err(|e| classify(e, |e| e.is_request_throttled() || e.is_kms_throttled()))?;
        Ok(out
            .messages
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| {
                let system = m.attributes.unwrap_or_default();
                let number = |name: &MessageSystemAttributeName| {
                    system.get(name).and_then(|v| v.parse::<i64>().ok())
                };
                Some(ReceivedMessage {
                    id: MessageId(m.message_id?),
                    receipt: ReceiptHandle(m.receipt_handle?),
                    body: m.body.unwrap_or_default(),
                    attributes: m
                        .message_attributes
                        .unwrap_or_default()
                        .into_iter()
                        .filter_map(|(k, v)| Some((k, v.string_value?)))
                        .collect(),
                    receive_count: number(&MessageSystemAttributeName::ApproximateReceiveCount)
                        .unwrap_or(1) as u32,
                    sent_at: number(&MessageSystemAttributeName::SentTimestamp)
                        .and_then(DateTime::from_timestamp_millis),
                })
            })
            .collect())
    }

    async fn change_visibility(
        &self,
        receipt: &ReceiptHandle,
        timeout: Duration,
    ) -> Result<(), QueueError> {
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(&receipt.0)
            .visibility_timeout(visibility_seconds(timeout))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                if e.as_service_error().is_some_and(|s| {
                    s.is_receipt_handle_is_invalid() || s.is_message_not_inflight()
                }) {
                    return QueueError::InvalidReceipt;
                }
                classify(e, |e| e.is_request_throttled())
            })
    }

    async fn delete(&self, receipt: &ReceiptHandle) -> Result<(), QueueError> {
        self.client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(&receipt.0)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                if e.as_service_error()
                    .is_some_and(|s| s.is_receipt_handle_is_invalid() || s.is_invalid_id_format())
                {
                    return QueueError::InvalidReceipt;
                }
                classify(e, |e| e.is_request_throttled())
            })
    }

    async fn approximate_depth(&self) -> Result<Depth, QueueError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .map_err(|e| classify(e, |_| false))?;
        let attributes = out.attributes.unwrap_or_default();
        let count = |name: QueueAttributeName| -> u64 {
            attributes
                .get(&name)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Ok(Depth {
            visible: count(QueueAttributeName::ApproximateNumberOfMessages),
            in_flight: count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
                + count(QueueAttributeName::ApproximateNumberOfMessagesDelayed),
        })
    }

    async fn ping(&self) -> Result<(), QueueError> {
        self.client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify(e, |_| false))
    }

    async fn dead_letter_queue(&self) -> Result<Option<Arc<dyn Queue>>, QueueError> {
        if self.is_dead_letter {
            return Ok(None);
        }
        let url = match &self.dead_letter_url {
            Some(url) => Some(url.clone()),
            None => self.redrive_target().await?,
        };
        Ok(url.map(|url| Arc::new(self.with_url(url)) as Arc<dyn Queue>))
    }
}
