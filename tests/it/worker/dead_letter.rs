//! A job that fails permanently with outside text (GitHub's or ECS's own message) as its
//! reason still reaches the dead-letter queue, the reason cut to fit its attribute.

use super::*;
use dockhand::worker::ATTR_DEAD_LETTER_REASON;

/// What the worker keeps of a reason in the dead-letter attribute.
const MAX_REASON_BYTES: usize = 256;

#[rstest]
#[case::sqs(QueueChoice::Sqs)]
#[case::embedded(QueueChoice::Embedded)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_multi_byte_failure_reason_is_cut_on_a_character_and_the_job_is_dead_lettered(
    #[case] queue: QueueChoice,
) {
    let env = Env::new(queue, Backend::Sqlite).await;
    // GitHub refuses the JIT call with a 422 whose message is two-byte characters. The
    // failure reason quotes it, so it is longer than the attribute allows.
    env.github
        .fail_next(Endpoint::JitConfig, Failure::Message(422, "é".repeat(150)));
    let worker = env.worker().await;
    let (status, _) = env.app.deliver(Delivery::signed(queued_job(962))).await;
    assert_eq!(status, 202);

    let settled = drain(&[&worker]).await;

    let [Settled::Failed(reason)] = &settled[..] else {
        panic!("one permanent failure: {settled:?}");
    };
    assert!(
        reason.len() > MAX_REASON_BYTES && !reason.is_char_boundary(MAX_REASON_BYTES),
        "the test needs byte {MAX_REASON_BYTES} of the reason inside a character: {reason}"
    );
    let job = worker.store().job(JobId(962)).await.unwrap().unwrap();
    assert_eq!(job.launch, LaunchState::Failed);
    assert_eq!(
        job.reason.as_deref(),
        Some(reason.as_str()),
        "the whole reason"
    );

    let dlq = env.app.queue.dead_letter_queue().await.unwrap().unwrap();
    let dead = common::drain(&*dlq).await;
    let [message] = &dead[..] else {
        panic!("one dead-lettered message, got {}", dead.len());
    };
    let cut = &message.attributes[ATTR_DEAD_LETTER_REASON];
    assert!(
        reason.starts_with(cut.as_str()),
        "a prefix of the reason: {cut}"
    );
    // The longest prefix that fits: one two-byte character short of the limit.
    assert_eq!(cut.len(), MAX_REASON_BYTES - 1, "{cut}");
    assert!(
        env.app.drain().await.is_empty(),
        "the message left the main queue"
    );
}
