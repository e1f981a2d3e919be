//! Groups concurrent sends into batches of up to ten. A message that arrives alone is sent
//! at once, or after `linger` at most; messages that arrive while every batch slot is busy
//! wait together and leave as one batch.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};

use super::{MAX_BATCH, MessageId, OutgoingMessage, Queue, QueueError};
use crate::config::BatchSettings;
use crate::metrics as m;

struct Pending {
    message: OutgoingMessage,
    reply: oneshot::Sender<Result<MessageId, QueueError>>,
}

/// A cloneable handle for sending through the batcher. The batcher stops, after sending
/// everything it was given, once every handle is dropped.
#[derive(Clone, Debug)]
pub struct BatchSender {
    tx: mpsc::Sender<Pending>,
}

impl BatchSender {
    /// Starts the batcher; the handle resolves once it has drained.
    pub fn spawn(queue: Arc<dyn Queue>, settings: &BatchSettings) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(settings.max_in_flight * MAX_BATCH * 4);
        let task = tokio::spawn(run(queue, rx, settings.clone()));
        (Self { tx }, task)
    }

    /// Sends one message; resolves once the queue has accepted or refused it.
    pub async fn send(&self, message: OutgoingMessage) -> Result<MessageId, QueueError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Pending { message, reply })
            .await
            .map_err(|_| QueueError::unavailable("the sender is shutting down"))?;
        answer
            .await
            .map_err(|_| QueueError::unavailable("the batch was dropped"))?
    }
}

async fn run(queue: Arc<dyn Queue>, mut rx: mpsc::Receiver<Pending>, settings: BatchSettings) {
    let slots = Arc::new(Semaphore::new(settings.max_in_flight));
    let mut in_flight = JoinSet::new();
    loop {
        let slot = slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let Some(first) = rx.recv().await else { break };
        let mut batch = Vec::with_capacity(MAX_BATCH);
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        if batch.len() < MAX_BATCH && !settings.linger.is_zero() {
            let deadline = tokio::time::Instant::now() + settings.linger;
            while batch.len() < MAX_BATCH {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(p)) => batch.push(p),
                    _ => break,
                }
            }
        }
        let queue = queue.clone();
        in_flight.spawn(async move {
            send(&*queue, batch).await;
            drop(slot);
        });
        while in_flight.try_join_next().is_some() {}
    }
    while in_flight.join_next().await.is_some() {}
}

async fn send(queue: &dyn Queue, batch: Vec<Pending>) {
    let (messages, replies): (Vec<_>, Vec<_>) =
        batch.into_iter().map(|p| (p.message, p.reply)).unzip();
    metrics::histogram!(m::QUEUE_BATCH_SIZE).record(messages.len() as f64);
    let started = Instant::now();
    let results = queue.send_batch(messages).await;
    metrics::histogram!(m::QUEUE_SEND_SECONDS).record(started.elapsed().as_secs_f64());
    match results {
        Ok(results) => {
            for (reply, result) in replies.into_iter().zip(results) {
                count(&result);
                let _ = reply.send(result);
            }
        }
        Err(err) => {
            tracing::warn!(error = %crate::telemetry::chain(&err), "queue send failed");
            let transient = err.is_transient();
            for reply in replies {
                let result = Err(if transient {
                    QueueError::unavailable("the batch failed")
                } else {
                    QueueError::Rejected("the batch was refused".into())
                });
                count(&result);
                let _ = reply.send(result);
            }
        }
    }
}

fn count(result: &Result<MessageId, QueueError>) {
    let outcome = match result {
        Ok(_) => "ok",
        Err(e) if e.is_transient() => "unavailable",
        Err(_) => "rejected",
    };
    metrics::counter!(m::QUEUE_SEND_TOTAL, "outcome" => outcome).increment(1);
}
