//! The ingress against moto's SQS: what lands on the queue, and what does not.

use crate::common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use dockhand::config::{QueueKind, SecretSource};
use dockhand::domain::{JobAction, JobId};
use dockhand::queue::envelope::{ATTR_ACTION, ATTR_JOB_ID, ATTR_VERSION, Envelope};

#[tokio::test]
async fn a_signed_queued_event_for_a_matching_pool_lands_on_sqs_exactly_once() {
    let app = spawn_app(sqs_settings().await).await;
    let delivery = Delivery::signed(queued_job(4242));
    let delivery_id = delivery.delivery_id.clone();

    let (status, reply) = app.deliver(delivery).await;

    assert_eq!(status, 202, "{reply}");
    assert_eq!(reply["outcome"], "enqueued");
    assert_eq!(reply["job_id"], 4242);
    assert_eq!(reply["delivery"], delivery_id.as_str());
    let messages = app.drain().await;
    assert_eq!(messages.len(), 1);
    let message = &messages[0];
    assert_eq!(message.attributes[ATTR_JOB_ID], "4242");
    assert_eq!(message.attributes[ATTR_ACTION], "queued");
    assert_eq!(message.attributes[ATTR_VERSION], "1");
    let envelope = Envelope::decode(&message.body).unwrap();
    assert_eq!(envelope.v, 1);
    assert_eq!(envelope.pool.as_deref(), Some("linux-x64"));
    assert_eq!(envelope.event.job.id, JobId(4242));
    assert_eq!(envelope.event.action, JobAction::Queued);
    assert_eq!(envelope.event.delivery.0, delivery_id);
    assert_eq!(envelope.event.job.labels.0, ["self-hosted", "linux"]);
    assert_eq!(envelope.event.repository.full_name, "octo-org/hello-world");
    assert_eq!(envelope.event.installation_id.map(|i| i.0), Some(99));
    // The envelope carries the parsed event, not GitHub's 8 KB payload.
    assert!(message.body.len() < 1024, "{}", message.body.len());
    app.stop().await;
}

#[tokio::test]
async fn non_matching_ignored_and_refused_events_leave_the_queue_empty() {
    let mut settings = sqs_settings().await;
    settings.webhook.allowed_orgs = vec!["octo-org".into()];
    let app = spawn_app(settings).await;

    let gpu_job = job_body("queued", 1, &["self-hosted", "gpu"]);
    let (status, reply) = app.deliver(Delivery::signed(gpu_job)).await;
    assert_eq!(
        (status, reply["outcome"].as_str()),
        (202, Some("no_matching_pool"))
    );

    let push = Delivery::signed(b"{\"ref\":\"refs/heads/main\"}".to_vec()).event("push");
    let (status, reply) = app.deliver(push).await;
    assert_eq!(
        (status, reply["outcome"].as_str()),
        (202, Some("ignored_event"))
    );

    let ping = Delivery::signed(b"{\"zen\":\"Keep it logically awesome.\"}".to_vec()).event("ping");
    let (status, reply) = app.deliver(ping).await;
    assert_eq!((status, reply["outcome"].as_str()), (200, Some("pong")));

    let unknown_action = job_body("escalated", 2, &["self-hosted"]);
    let (status, reply) = app.deliver(Delivery::signed(unknown_action)).await;
    assert_eq!(
        (status, reply["outcome"].as_str()),
        (202, Some("ignored_action"))
    );

    let mut other_org = dockhand::synthetic::workflow_job_payload(&Default::default());
    other_org["repository"]["full_name"] = "evil-org/repo".into();
    other_org["repository"]["owner"]["login"] = "evil-org".into();
    let (status, reply) = app.deliver(Delivery::signed(other_org.to_string())).await;
    assert_eq!(
        (status, reply["outcome"].as_str()),
        (202, Some("not_allowed"))
    );

    assert!(app.drain().await.is_empty());
    let metrics = app.metrics().await;
    for outcome in ["no_matching_pool", "ignored_action", "not_allowed"] {
        let series = format!(
            "dockhand_webhook_requests_total{{event=\"workflow_job\",action=\"{}\",outcome=\"{outcome}\"}}",
            if outcome == "ignored_action" {
                "unknown"
            } else {
                "queued"
            }
        );
        assert_eq!(
            sample(&metrics, &series),
            Some(1.0),
            "{series} in\n{metrics}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn later_actions_are_enqueued_for_any_job_so_workers_can_track_runners() {
    let app = spawn_app(sqs_settings().await).await;
    for (i, action) in ["waiting", "in_progress", "completed"]
        .into_iter()
        .enumerate()
    {
        let body = job_body(action, 100 + i as u64, &["some-other-runner"]);
        let (status, reply) = app.deliver(Delivery::signed(body)).await;
        assert_eq!(
            (status, reply["outcome"].as_str()),
            (202, Some("enqueued")),
            "{action}"
        );
    }
    let actions: HashSet<String> = app
        .drain()
        .await
        .iter()
        .map(|m| m.attributes[ATTR_ACTION].clone())
        .collect();
    assert_eq!(
        actions,
        HashSet::from(["waiting".into(), "in_progress".into(), "completed".into()])
    );
    app.stop().await;
}

#[tokio::test]
async fn with_sqs_unreachable_the_answer_is_503_never_2xx() {
    let mut settings = base_settings();
    settings.aws = moto_aws();
    settings.aws.sqs.endpoint_url = Some("http://127.0.0.1:9".into());
    settings.aws.operation_timeout = Duration::from_secs(2);
    settings.queue.kind = QueueKind::Sqs;
    settings.queue.sqs.url = Some("http://127.0.0.1:9/000000000000/nowhere".into());
    let app = spawn_app(settings).await;

    let (status, reply) = app.deliver(Delivery::signed(queued_job(7))).await;

    assert_eq!(status, 503, "{reply}");
    assert_eq!(reply["outcome"], "queue_unavailable");
    let ready = app
        .client
        .get(format!("{}/readyz", app.admin_url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 503);
    let metrics = app.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            "dockhand_queue_send_total{outcome=\"unavailable\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_queue_that_does_not_exist_answers_503() {
    let mut settings = sqs_settings().await;
    settings.queue.sqs.url = Some(format!("{}/000000000000/no-such-queue", moto_url()));
    let app = spawn_app(settings).await;
    let (status, reply) = app.deliver(Delivery::signed(queued_job(8))).await;
    assert_eq!(status, 503, "{reply}");
    app.stop().await;
}

#[tokio::test]
async fn a_concurrent_burst_of_500_signed_requests_gives_exactly_500_messages() {
    let app = spawn_app(sqs_settings().await).await;
    let mut requests = tokio::task::JoinSet::new();
    for job_id in 1..=500u64 {
        let client = app.client.clone();
        let url = app.webhook_url.clone();
        requests.spawn(async move {
            let delivery = format!("burst-{job_id}");
            let response = signed_request(&client, &url, &delivery, queued_job(job_id))
                .send()
                .await
                .unwrap();
            response.status().as_u16()
        });
    }
    let statuses = requests.join_all().await;
    assert!(statuses.iter().all(|s| *s == 202), "{statuses:?}");

    let messages = app.drain().await;
    let ids: HashSet<String> = messages
        .iter()
        .map(|m| m.attributes[ATTR_JOB_ID].clone())
        .collect();
    assert_eq!(messages.len(), 500);
    assert_eq!(ids.len(), 500);
    // Concurrent requests were batched: fewer SQS calls than messages.
    let metrics = app.metrics().await;
    let batches = sample(&metrics, "dockhand_queue_batch_size_count").unwrap();
    assert!(batches < 500.0, "{batches} batches for 500 messages");
    assert_eq!(
        sample(&metrics, "dockhand_queue_send_total{outcome=\"ok\"}"),
        Some(500.0)
    );
    app.stop().await;
}

#[tokio::test]
async fn a_webhook_secret_can_come_from_an_ssm_securestring() {
    let name = format!("/dockhand-test/{}/webhook", uuid::Uuid::new_v4().simple());
    moto_aws()
        .ssm_client()
        .await
        .put_parameter()
        .name(&name)
        .value("from-ssm-secret")
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .unwrap();
    let mut settings = sqs_settings().await;
    settings.webhook.secrets = vec![SecretSource {
        ssm: Some(name),
        ..SecretSource::default()
    }];
    let app = spawn_app(settings).await;

    let body = queued_job(5);
    let mut delivery = Delivery::signed(body.clone());
    delivery.signature = Some(sign("from-ssm-secret", &body));
    let (status, _) = app.deliver(delivery).await;
    assert_eq!(status, 202);
    let (status, _) = app.deliver(Delivery::signed(body)).await;
    assert_eq!(
        status, 401,
        "the default test secret is not configured here"
    );
    assert_eq!(app.drain().await.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn sqs_redrives_to_the_dead_letter_queue_its_policy_names() {
    let (url, dlq_url) = create_sqs_queue(2).await;
    let mut settings = base_settings();
    settings.aws = moto_aws();
    settings.queue.kind = QueueKind::Sqs;
    settings.queue.sqs.url = Some(url);
    let queue = dockhand::queue::connect(&settings.queue, &settings.aws)
        .await
        .unwrap();
    queue
        .send(dockhand::queue::OutgoingMessage {
            body: "poison".into(),
            attributes: [("job-id".to_string(), "1".to_string())].into(),
            delay: std::time::Duration::ZERO,
        })
        .await
        .unwrap();

    for expected_count in 1..=2 {
        let got = queue.receive(10, Duration::ZERO).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].receive_count, expected_count);
        queue
            .change_visibility(&got[0].receipt, Duration::ZERO)
            .await
            .unwrap();
    }
    assert!(queue.receive(10, Duration::ZERO).await.unwrap().is_empty());

    let dlq = queue.dead_letter_queue().await.unwrap().expect("a DLQ");
    let dead = drain(&*dlq).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body, "poison");
    assert_eq!(dead[0].attributes["job-id"], "1");
    // The DLQ found from the RedrivePolicy is the one created for it: a message sent to
    // that URL directly comes out of it.
    let direct = dockhand::queue::sqs::SqsQueue::new(
        moto_aws().sqs_client().await,
        &dockhand::config::SqsSettings {
            url: Some(dlq_url),
            ..Default::default()
        },
    );
    let marker = format!("marker-{}", uuid::Uuid::new_v4());
    let queue_dyn: &dyn dockhand::queue::Queue = &direct;
    queue_dyn
        .send(dockhand::queue::OutgoingMessage {
            body: marker.clone(),
            attributes: Default::default(),
            delay: std::time::Duration::ZERO,
        })
        .await
        .unwrap();
    let found = drain(&*dlq).await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].body, marker);
}

#[tokio::test]
async fn the_sqs_depth_counts_waiting_and_in_flight_messages_apart() {
    let mut settings = sqs_settings().await;
    settings.queue.sqs.visibility_timeout = Duration::from_secs(30);
    let queue = dockhand::queue::connect(&settings.queue, &settings.aws)
        .await
        .unwrap();
    assert_depth_counts_in_flight_apart(&*queue).await;
}

#[tokio::test]
async fn readyz_and_healthz_answer_when_the_queue_is_reachable() {
    let app = spawn_app(sqs_settings().await).await;
    for path in ["healthz", "readyz"] {
        let response = app
            .client
            .get(format!("{}/{path}", app.admin_url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "{path}");
    }
    app.stop().await;
}
