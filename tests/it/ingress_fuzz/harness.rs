//! The ingress under test: the real router, on a queue that records what it is sent.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::http::StatusCode;
use dockhand::config::{BatchSettings, PoolSettings, WebhookSettings};
use dockhand::ingress::signature::WebhookKeys;
use dockhand::ingress::{IngressState, router};
use dockhand::pool::{LivePools, Pools};
use dockhand::queue::batch::BatchSender;
use dockhand::queue::{
    Depth, MessageId, OutgoingMessage, Queue, QueueError, ReceiptHandle, ReceivedMessage,
};
use proptest::test_runner::TestCaseError;
use secrecy::SecretString;
use serde_json::Value;
use tower::ServiceExt;

use super::headers::Headers;
use super::{ALLOWED_ORG, LIMIT, MAX_LABELS, PATH, POOL_LABELS, ROTATED_SECRET, SECRET};

/// The real router, on a queue that records what it is sent.
pub(super) struct Harness {
    runtime: tokio::runtime::Runtime,
    router: Router,
    queue: Arc<RecordingQueue>,
}

/// The answer to one delivery, and what it put on the queue.
pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) outcome: String,
    pub(super) job_id: Option<u64>,
    pub(super) text: String,
    /// The length of the body it answered.
    pub(super) body_len: usize,
    pub(super) sent: Vec<OutgoingMessage>,
}

impl Harness {
    pub(super) fn new() -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let queue = Arc::new(RecordingQueue::default());
        let settings = WebhookSettings {
            max_body_bytes: LIMIT,
            max_labels: MAX_LABELS,
            allowed_orgs: vec![ALLOWED_ORG.into()],
            ..WebhookSettings::default()
        };
        let keys = WebhookKeys::new(&[
            SecretString::from(SECRET),
            SecretString::from(ROTATED_SECRET),
        ]);
        let pools = Pools::from_settings(&[PoolSettings::new("linux-x64", &POOL_LABELS)]);
        // No linger: each delivery's message goes at once, so a case takes microseconds.
        let batch = BatchSettings {
            linger: Duration::ZERO,
            ..BatchSettings::default()
        };
        let sender = runtime.block_on(async { BatchSender::spawn(queue.clone(), &batch).0 });
        let state = IngressState::new(&settings, keys, LivePools::fixed(pools), sender);
        Self {
            router: router(PATH, state),
            runtime,
            queue,
        }
    }

    pub(super) fn deliver(
        &self,
        headers: &Headers,
        signatures: &[Vec<u8>],
        body: &[u8],
    ) -> Result<Answer, TestCaseError> {
        self.queue.down.store(!headers.queue_up, Ordering::SeqCst);
        let request = headers.request(signatures, body);
        let (status, bytes) = self.runtime.block_on(async {
            let response = self
                .router
                .clone()
                .oneshot(request)
                .await
                .expect("infallible");
            let status = response.status();
            (
                status,
                axum::body::to_bytes(response.into_body(), 4096).await,
            )
        });
        let fail = |why: &str| TestCaseError::fail(format!("{status}: {why}"));
        let text = String::from_utf8(bytes.map_err(|_| fail("answer over 4 KiB"))?.to_vec())
            .map_err(|_| fail("answer not UTF-8"))?;
        let reply: Value = serde_json::from_str(&text).map_err(|_| fail("answer not JSON"))?;
        Ok(Answer {
            status,
            outcome: reply["outcome"].as_str().unwrap_or("<none>").to_string(),
            job_id: reply["job_id"].as_u64(),
            text,
            body_len: body.len(),
            sent: self.queue.take(),
        })
    }
}

/// Keeps what it is sent until [`RecordingQueue::take`]; refuses sends while `down`.
#[derive(Debug, Default)]
struct RecordingQueue {
    sent: Mutex<Vec<OutgoingMessage>>,
    down: AtomicBool,
}

impl RecordingQueue {
    fn take(&self) -> Vec<OutgoingMessage> {
        std::mem::take(&mut *self.sent.lock().unwrap())
    }
}

#[async_trait]
impl Queue for RecordingQueue {
    async fn send_batch(
        &self,
        messages: Vec<OutgoingMessage>,
    ) -> Result<Vec<Result<MessageId, QueueError>>, QueueError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(QueueError::Unavailable("the fuzzing queue is down".into()));
        }
        let mut sent = self.sent.lock().unwrap();
        let ids = messages
            .into_iter()
            .map(|message| {
                sent.push(message);
                Ok(MessageId(sent.len().to_string()))
            })
            .collect();
        Ok(ids)
    }

    async fn receive_with_visibility(
        &self,
        _max: usize,
        _wait: Duration,
        _visibility: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        Ok(Vec::new())
    }

    fn visibility_timeout(&self) -> Duration {
        Duration::from_secs(30)
    }

    fn location(&self) -> String {
        "memory (ingress fuzzing)".into()
    }

    async fn change_visibility(&self, _: &ReceiptHandle, _: Duration) -> Result<(), QueueError> {
        Err(QueueError::InvalidReceipt)
    }

    async fn delete(&self, _: &ReceiptHandle) -> Result<(), QueueError> {
        Err(QueueError::InvalidReceipt)
    }

    async fn approximate_depth(&self) -> Result<Depth, QueueError> {
        let visible = self.sent.lock().unwrap().len() as u64;
        Ok(Depth {
            visible,
            in_flight: 0,
        })
    }

    async fn ping(&self) -> Result<(), QueueError> {
        Ok(())
    }

    async fn dead_letter_queue(&self) -> Result<Option<Arc<dyn Queue>>, QueueError> {
        Ok(None)
    }
}
