//! SQLite's writers take turns in this process (`dockhand::write_gate`): a store or queue
//! write waits while another holds the file's turn, and reads do not.

use std::sync::Arc;
use std::time::Duration;

use dockhand::config::EmbeddedQueueSettings;
use dockhand::domain::JobId;
use dockhand::queue::Queue;
use dockhand::queue::embedded::EmbeddedQueue;
use dockhand::store::{Claim, LaunchState};
use dockhand::write_gate::WriteGate;

use crate::common::stores::{Backend, TestStore};
use crate::embedded_queue::message;
use crate::store::event;

const LEASE: Duration = Duration::from_secs(60);
/// Long enough for a write that was not held up to have finished many times over.
const HELD: Duration = Duration::from_millis(300);

fn store_file(fresh: &TestStore) -> std::path::PathBuf {
    let url = &fresh.settings.url;
    url.trim_start_matches("sqlite://").into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_write_waits_for_the_files_turn_and_a_read_does_not() {
    let fresh = TestStore::new(Backend::Sqlite).await;
    let store = fresh.connect().await;
    let held = WriteGate::for_file(&store_file(&fresh)).turn().await;

    let claim = tokio::spawn({
        let store = store.clone();
        async move {
            store
                .claim(&event("queued", 7), "pool", "worker-a", LEASE)
                .await
        }
    });
    tokio::time::sleep(HELD).await;
    assert!(
        !claim.is_finished(),
        "the claim went ahead of the held turn"
    );
    // Reads go on meanwhile, and see nothing of the waiting write.
    assert_eq!(store.launch_state(JobId(7)).await.unwrap(), None);

    drop(held);
    let claimed = tokio::time::timeout(Duration::from_secs(5), claim)
        .await
        .expect("the claim finishes once the turn is free")
        .unwrap()
        .unwrap();
    assert!(matches!(claimed, Claim::Acquired { attempt: 1, .. }));
    assert_eq!(
        store.launch_state(JobId(7)).await.unwrap(),
        Some(LaunchState::Launching)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_send_waits_for_the_files_turn_and_an_empty_poll_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let settings = EmbeddedQueueSettings {
        path: dir.path().join("queue.db"),
        visibility_timeout: Duration::from_secs(30),
        max_receives: 3,
        poll_interval: Duration::from_millis(20),
    };
    let queue: Arc<dyn Queue> = Arc::new(EmbeddedQueue::open(&settings).await.unwrap());
    let held = WriteGate::for_file(&settings.path).turn().await;

    // Nothing is visible: the receive looks without writing, so it is not held up.
    let empty = tokio::time::timeout(HELD, queue.receive(10, Duration::ZERO))
        .await
        .expect("an empty poll does not wait for the write turn")
        .unwrap();
    assert!(empty.is_empty());

    let send = tokio::spawn({
        let queue = queue.clone();
        async move { queue.send(message("job 1")).await }
    });
    tokio::time::sleep(HELD).await;
    assert!(!send.is_finished(), "the send went ahead of the held turn");
    assert_eq!(queue.approximate_depth().await.unwrap().visible, 0);

    drop(held);
    tokio::time::timeout(Duration::from_secs(5), send)
        .await
        .expect("the send finishes once the turn is free")
        .unwrap()
        .unwrap();
    let got = queue.receive(10, Duration::ZERO).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, "job 1");
}
