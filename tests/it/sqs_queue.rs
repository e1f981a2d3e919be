//! The SQS queue's own rules, against moto: SQS counts visibility in whole seconds, so a
//! shorter wait must round up, never down to "visible now".

use std::time::Duration;

use dockhand::config::SqsSettings;
use dockhand::queue::Queue;
use dockhand::queue::sqs::SqsQueue;

use crate::common::{create_sqs_queue, moto_aws};
use crate::embedded_queue::message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sub_second_visibility_rounds_up_to_a_second_not_down_to_zero() {
    let (url, _dlq) = create_sqs_queue(5).await;
    let queue = SqsQueue::new(
        moto_aws().sqs_client().await,
        &SqsSettings {
            url: Some(url),
            ..Default::default()
        },
    );
    let queue: &dyn Queue = &queue;
    queue.send(message("job 1")).await.unwrap();
    let got = queue.receive(1, Duration::ZERO).await.unwrap();
    assert_eq!(got.len(), 1);

    // A deferral of 600 ms (a short backoff): the message stays away, not back at once.
    queue
        .change_visibility(&got[0].receipt, Duration::from_millis(600))
        .await
        .unwrap();
    let at_once = queue.receive(1, Duration::ZERO).await.unwrap();
    assert!(at_once.is_empty(), "the message came back at once");

    // A receive asking for 600 ms hides it too.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let again = queue
        .receive_with_visibility(1, Duration::ZERO, Duration::from_millis(600))
        .await
        .unwrap();
    assert_eq!(again.len(), 1, "visible again after its second");
    let hidden = queue.receive(1, Duration::ZERO).await.unwrap();
    assert!(
        hidden.is_empty(),
        "a 600 ms receive left the message visible"
    );
}
