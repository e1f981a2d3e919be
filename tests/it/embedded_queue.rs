//! The embedded queue keeps SQS's semantics: visibility, receive counts, dead-lettering
//! after max receives, and durability across restarts.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::common::{assert_depth_counts_in_flight_apart, drain};
use dockhand::config::EmbeddedQueueSettings;
use dockhand::queue::ATTR_DEAD_LETTER_REASON;
use dockhand::queue::embedded::EmbeddedQueue;
use dockhand::queue::{OutgoingMessage, Queue, QueueError};

fn settings(dir: &tempfile::TempDir) -> EmbeddedQueueSettings {
    EmbeddedQueueSettings {
        path: dir.path().join("nested/queue.db"),
        visibility_timeout: Duration::from_millis(300),
        max_receives: 3,
        poll_interval: Duration::from_millis(20),
    }
}

pub(crate) fn message(body: &str) -> OutgoingMessage {
    OutgoingMessage {
        body: body.into(),
        attributes: [("job-id".to_string(), body.to_string())].into(),
        delay: Duration::ZERO,
    }
}

async fn open(dir: &tempfile::TempDir) -> Arc<dyn Queue> {
    Arc::new(EmbeddedQueue::open(&settings(dir)).await.unwrap())
}

#[tokio::test]
async fn a_received_message_is_invisible_until_its_visibility_expires_then_redelivered() {
    let dir = tempfile::tempdir().unwrap();
    let queue = open(&dir).await;
    queue.send(message("a")).await.unwrap();

    let first = queue.receive(10, Duration::ZERO).await.unwrap();
    assert_eq!(first.len(), 1);
    assert!(queue.receive(10, Duration::ZERO).await.unwrap().is_empty());

    tokio::time::sleep(Duration::from_millis(400)).await;
    let again = queue.receive(10, Duration::ZERO).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, first[0].id);
    assert_ne!(
        again[0].receipt, first[0].receipt,
        "each receive gets a new handle"
    );
    assert_eq!(again[0].body, "a");
    assert_eq!(again[0].attributes["job-id"], "a");
}

#[tokio::test]
async fn the_depth_counts_waiting_and_in_flight_messages_apart() {
    let dir = tempfile::tempdir().unwrap();
    assert_depth_counts_in_flight_apart(&*open(&dir).await).await;
}

#[tokio::test]
async fn the_receive_count_rises_with_each_receive() {
    let dir = tempfile::tempdir().unwrap();
    let queue = open(&dir).await;
    queue.send(message("a")).await.unwrap();
    for expected in 1..=3 {
        let got = queue.receive(1, Duration::ZERO).await.unwrap();
        assert_eq!(got[0].receive_count, expected);
        queue
            .change_visibility(&got[0].receipt, Duration::ZERO)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn past_max_receives_a_message_moves_to_dead_letter_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let queue = open(&dir).await;
    queue.send(message("poison")).await.unwrap();
    queue.send(message("fine")).await.unwrap();
    for _ in 0..3 {
        let got = queue.receive(1, Duration::ZERO).await.unwrap();
        assert_eq!(got[0].body, "poison");
        queue
            .change_visibility(&got[0].receipt, Duration::ZERO)
            .await
            .unwrap();
    }
    // The fourth receive moves "poison" aside and delivers the next message instead.
    let got = queue.receive(10, Duration::ZERO).await.unwrap();
    assert_eq!(
        got.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
        ["fine"]
    );

    let dlq = queue
        .dead_letter_queue()
        .await
        .unwrap()
        .expect("a dead-letter queue");
    let dead = drain(&*dlq).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body, "poison");
    assert_eq!(dead[0].attributes["job-id"], "poison");
    assert_eq!(
        dead[0].attributes[ATTR_DEAD_LETTER_REASON],
        "exceeded max receives (3)"
    );
    assert!(dlq.dead_letter_queue().await.unwrap().is_none());
}

#[tokio::test]
async fn delete_removes_a_message_and_a_void_receipt_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let queue = open(&dir).await;
    queue.send(message("a")).await.unwrap();
    let first = queue.receive(1, Duration::ZERO).await.unwrap().remove(0);
    queue
        .change_visibility(&first.receipt, Duration::ZERO)
        .await
        .unwrap();
    let second = queue.receive(1, Duration::ZERO).await.unwrap().remove(0);

    // The first receive's handle died with the second receive.
    assert!(matches!(
        queue.delete(&first.receipt).await,
        Err(QueueError::InvalidReceipt)
    ));
    queue.delete(&second.receipt).await.unwrap();
    assert!(matches!(
        queue.delete(&second.receipt).await,
        Err(QueueError::InvalidReceipt)
    ));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(queue.receive(10, Duration::ZERO).await.unwrap().is_empty());
    assert_eq!(queue.approximate_depth().await.unwrap().total(), 0);
}

#[tokio::test]
async fn a_restart_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    {
        let queue = open(&dir).await;
        queue.send(message("waiting")).await.unwrap();
        queue.send(message("in-flight")).await.unwrap();
        let got = queue.receive(1, Duration::ZERO).await.unwrap();
        assert_eq!(got[0].body, "waiting");
        queue
            .change_visibility(&got[0].receipt, Duration::from_millis(200))
            .await
            .unwrap();
        let got = queue.receive(1, Duration::ZERO).await.unwrap();
        assert_eq!(got[0].body, "in-flight");
    }
    // Reopened, as a new process would: both messages are still there, each with the
    // receive count it had.
    let queue = open(&dir).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let got = drain(&*queue).await;
    let mut seen: Vec<(String, u32)> = got
        .iter()
        .map(|m| (m.body.clone(), m.receive_count))
        .collect();
    seen.sort();
    assert_eq!(seen, [("in-flight".into(), 2), ("waiting".into(), 2)]);
}

#[tokio::test]
async fn a_long_poll_returns_as_soon_as_a_message_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let queue = open(&dir).await;
    let receiver = {
        let queue = queue.clone();
        tokio::spawn(async move { queue.receive(10, Duration::from_secs(30)).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    queue.send(message("late")).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), receiver)
        .await
        .expect("the receive ends well before its 30s wait")
        .unwrap()
        .unwrap();
    assert_eq!(got[0].body, "late");
}

#[tokio::test]
async fn concurrent_receivers_never_get_the_same_message() {
    let dir = tempfile::tempdir().unwrap();
    let queue = open(&dir).await;
    for chunk in (0..200).collect::<Vec<_>>().chunks(10) {
        let batch = chunk.iter().map(|i| message(&i.to_string())).collect();
        let results = queue.send_batch(batch).await.unwrap();
        assert!(results.iter().all(Result::is_ok));
    }
    let mut receivers = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let queue = queue.clone();
        receivers.spawn(async move {
            let mut got = Vec::new();
            loop {
                let batch = queue.receive(10, Duration::ZERO).await.unwrap();
                if batch.is_empty() {
                    return got;
                }
                got.extend(batch.into_iter().map(|m| m.body));
            }
        });
    }
    let all: Vec<String> = receivers.join_all().await.into_iter().flatten().collect();
    let unique: HashSet<&String> = all.iter().collect();
    assert_eq!(all.len(), 200);
    assert_eq!(unique.len(), 200);
}
