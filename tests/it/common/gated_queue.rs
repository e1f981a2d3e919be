//! A queue in front of a real one that can hold a `ChangeMessageVisibility` call in flight,
//! and records the order in which those calls landed: for proving which of two racing
//! visibility changes has the last word.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use dockhand::queue::{
    Depth, MessageId, OutgoingMessage, Queue, QueueError, ReceiptHandle, ReceivedMessage,
};
use tokio::sync::Notify;

/// One visibility change, as it landed on the real queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Landed {
    /// The order in which the call was made (0 for the first).
    pub call: usize,
    pub timeout: Duration,
    /// Whether this was the call the gate held.
    pub held: bool,
}

#[derive(Debug, Default)]
struct Gate {
    calls: usize,
    armed: bool,
    landed: Vec<Landed>,
}

/// Delegates everything to the inner queue. Once [`GatedQueue::arm`] is called, the next
/// visibility change waits until [`GatedQueue::open`] before it reaches the inner queue.
#[derive(Debug, Clone)]
pub struct GatedQueue {
    inner: Arc<dyn Queue>,
    gate: Arc<Mutex<Gate>>,
    holding: Arc<Notify>,
    opened: Arc<Notify>,
}

impl GatedQueue {
    pub fn new(inner: Arc<dyn Queue>) -> Self {
        Self {
            inner,
            gate: Arc::default(),
            holding: Arc::default(),
            opened: Arc::default(),
        }
    }

    /// Holds the next visibility change until [`GatedQueue::open`].
    pub fn arm(&self) {
        self.gate.lock().unwrap().armed = true;
    }

    /// Waits until a visibility change is being held.
    pub async fn wait_until_holding(&self) {
        tokio::time::timeout(Duration::from_secs(30), self.holding.notified())
            .await
            .expect("a visibility change reached the gate");
    }

    /// Lets the held call through.
    pub fn open(&self) {
        self.opened.notify_one();
    }

    /// How many visibility changes were made so far, held or not.
    pub fn calls(&self) -> usize {
        self.gate.lock().unwrap().calls
    }

    /// The visibility changes that reached the inner queue, in the order they landed.
    pub fn landed(&self) -> Vec<Landed> {
        self.gate.lock().unwrap().landed.clone()
    }
}

#[async_trait]
impl Queue for GatedQueue {
    async fn send_batch(
        &self,
        messages: Vec<OutgoingMessage>,
    ) -> Result<Vec<Result<MessageId, QueueError>>, QueueError> {
        self.inner.send_batch(messages).await
    }

    async fn receive_with_visibility(
        &self,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        self.inner
            .receive_with_visibility(max, wait, visibility)
            .await
    }

    fn visibility_timeout(&self) -> Duration {
        self.inner.visibility_timeout()
    }

    fn location(&self) -> String {
        self.inner.location()
    }

    async fn change_visibility(
        &self,
        receipt: &ReceiptHandle,
        timeout: Duration,
    ) -> Result<(), QueueError> {
        let (call, held) = {
            let mut gate = self.gate.lock().unwrap();
            gate.calls += 1;
            (gate.calls - 1, std::mem::take(&mut gate.armed))
        };
        if held {
            self.holding.notify_one();
            self.opened.notified().await;
        }
        let result = self.inner.change_visibility(receipt, timeout).await;
        self.gate.lock().unwrap().landed.push(Landed {
            call,
            timeout,
            held,
        });
        result
    }

    async fn delete(&self, receipt: &ReceiptHandle) -> Result<(), QueueError> {
        self.inner.delete(receipt).await
    }

    async fn approximate_depth(&self) -> Result<Depth, QueueError> {
        self.inner.approximate_depth().await
    }

    async fn ping(&self) -> Result<(), QueueError> {
        self.inner.ping().await
    }

    async fn dead_letter_queue(&self) -> Result<Option<Arc<dyn Queue>>, QueueError> {
        self.inner.dead_letter_queue().await
    }
}
