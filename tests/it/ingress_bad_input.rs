//! Every bad input gets its documented status, a short reason that does not echo the
//! request, and nothing on the queue.

use crate::common;

use common::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Asserts the answer and that the queue is still empty.
async fn assert_refused(app: &TestApp, answer: (u16, Value), status: u16, outcome: &str) {
    let (got_status, reply) = answer;
    assert_eq!(got_status, status, "{reply}");
    assert_eq!(reply["outcome"], outcome, "{reply}");
    assert!(
        app.drain().await.is_empty(),
        "a refused delivery must not be enqueued"
    );
    assert_eq!(app.queue.approximate_depth().await.unwrap().total(), 0);
}

fn payload() -> Value {
    dockhand::synthetic::workflow_job_payload(&Default::default())
}

#[tokio::test]
async fn a_missing_signature_is_rejected_with_401() {
    let app = spawn_embedded_app().await;
    let mut d = Delivery::signed(queued_job(1));
    d.signature = None;
    assert_refused(&app, app.deliver(d).await, 401, "unauthorized").await;
}

#[tokio::test]
async fn a_wrong_signature_is_rejected_with_401() {
    let app = spawn_embedded_app().await;
    let mut d = Delivery::signed(queued_job(1));
    d.body = queued_job(2);
    assert_refused(&app, app.deliver(d).await, 401, "unauthorized").await;
}

#[tokio::test]
async fn a_signature_made_with_another_secret_is_rejected_with_401() {
    let app = spawn_embedded_app().await;
    let mut d = Delivery::signed(queued_job(1));
    d.signature = Some(sign("some-other-secret", &d.body));
    assert_refused(&app, app.deliver(d).await, 401, "unauthorized").await;
}

#[tokio::test]
async fn only_the_legacy_sha1_signature_is_rejected_with_401() {
    let app = spawn_embedded_app().await;
    let body = queued_job(1);
    let response = app
        .client
        .post(&app.webhook_url)
        .header("x-github-event", "workflow_job")
        .header("x-github-delivery", "legacy")
        .header(
            "x-hub-signature",
            "sha1=0123456789abcdef0123456789abcdef01234567",
        )
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let reply: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert!(
        reply["error"].as_str().unwrap().contains("SHA-1"),
        "{reply}"
    );
    assert_refused(&app, (status, reply), 401, "unauthorized").await;
}

#[tokio::test]
async fn truncated_and_non_hex_signatures_are_rejected_with_401() {
    let app = spawn_embedded_app().await;
    let good = sign(SECRET, &queued_job(1));
    for bad in [
        good[..good.len() - 1].to_string(),
        format!("{}zz", &good[..good.len() - 2]),
        good.trim_start_matches("sha256=").to_string(),
        "sha256=".to_string(),
    ] {
        let mut d = Delivery::signed(queued_job(1));
        d.signature = Some(bad);
        assert_refused(&app, app.deliver(d).await, 401, "unauthorized").await;
    }
}

#[tokio::test]
async fn a_body_one_byte_over_the_limit_is_rejected_with_413() {
    let app = spawn_embedded_app().await;
    let limit = 1024 * 1024;
    let mut body = queued_job(1);
    body.resize(limit + 1, b' ');
    let d = Delivery::signed(body);
    assert_refused(&app, app.deliver(d).await, 413, "payload_too_large").await;

    // Exactly at the limit is read and judged on its merits (here: a valid job).
    let mut body = queued_job(1);
    body.resize(limit, b' ');
    let (status, reply) = app.deliver(Delivery::signed(body)).await;
    assert_eq!(status, 202, "{reply}");
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_is_cut_off_with_413() {
    let app = spawn_embedded_app().await;
    let addr = app.webhook_url.trim_start_matches("http://");
    let (host, path) = addr.split_once('/').unwrap();
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let head = format!(
        "POST /{path} HTTP/1.1\r\nhost: {host}\r\nx-github-event: workflow_job\r\n\
         x-github-delivery: chunked\r\nx-hub-signature-256: {}\r\n\
         transfer-encoding: chunked\r\nconnection: close\r\n\r\n",
        sign(SECRET, b"irrelevant")
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // 2 MiB in 64 KiB chunks, with no Content-Length to refuse it by up front. The server
    // may stop reading and answer before all of it is written.
    let chunk = vec![b'x'; 64 * 1024];
    for _ in 0..32 {
        let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
        if stream.write_all(&framed).await.is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(app.drain().await.is_empty());
}

#[tokio::test]
async fn an_empty_body_is_rejected_with_400() {
    let app = spawn_embedded_app().await;
    let answer = app.deliver(Delivery::signed(Vec::new())).await;
    assert_eq!(answer.1["error"], "body is empty");
    assert_refused(&app, answer, 400, "malformed").await;
}

#[tokio::test]
async fn invalid_utf8_is_rejected_with_400() {
    let app = spawn_embedded_app().await;
    let mut body = queued_job(1);
    body.splice(10..10, [0xff, 0xfe, 0xfd]);
    let answer = app.deliver(Delivery::signed(body)).await;
    assert_eq!(answer.1["error"], "body is not valid UTF-8");
    assert_refused(&app, answer, 400, "malformed").await;
}

#[tokio::test]
async fn a_json_array_is_rejected_with_400() {
    let app = spawn_embedded_app().await;
    let body = json!([payload()]).to_string();
    let answer = app.deliver(Delivery::signed(body)).await;
    assert_eq!(answer.1["error"], "body must be a JSON object");
    assert_refused(&app, answer, 400, "malformed").await;
}

#[tokio::test]
async fn a_workflow_job_without_an_id_is_rejected_with_400() {
    let app = spawn_embedded_app().await;
    let mut body = payload();
    body["workflow_job"].as_object_mut().unwrap().remove("id");
    let answer = app.deliver(Delivery::signed(body.to_string())).await;
    assert_eq!(answer.1["error"], "missing field `workflow_job.id`");
    assert_refused(&app, answer, 400, "malformed").await;
}

#[tokio::test]
async fn labels_that_are_not_a_list_are_rejected_with_400_without_echoing_them() {
    let app = spawn_embedded_app().await;
    let mut body = payload();
    body["workflow_job"]["labels"] = json!("self-hosted-sekrit-label");
    let answer = app.deliver(Delivery::signed(body.to_string())).await;
    assert_eq!(
        answer.1["error"],
        "field `workflow_job.labels` has the wrong type or value"
    );
    assert!(!answer.1.to_string().contains("sekrit"));
    assert_refused(&app, answer, 400, "malformed").await;
}

#[tokio::test]
async fn an_absurd_number_of_labels_is_rejected_with_400() {
    let app = spawn_embedded_app().await;
    let mut body = payload();
    body["workflow_job"]["labels"] =
        json!((0..10_000).map(|i| format!("l{i}")).collect::<Vec<_>>());
    let answer = app.deliver(Delivery::signed(body.to_string())).await;
    assert_eq!(answer.1["error"], "too many labels: 10000 (at most 64)");
    assert_refused(&app, answer, 400, "malformed").await;
}

#[tokio::test]
async fn an_unknown_action_is_ignored_with_202() {
    let app = spawn_embedded_app().await;
    let answer = app
        .deliver(Delivery::signed(job_body(
            "teleported",
            1,
            &["self-hosted"],
        )))
        .await;
    assert_refused(&app, answer, 202, "ignored_action").await;
}

#[tokio::test]
async fn an_unknown_event_is_ignored_with_202() {
    let app = spawn_embedded_app().await;
    let d = Delivery::signed(b"{\"action\":\"opened\"}".to_vec()).event("issues");
    assert_refused(&app, app.deliver(d).await, 202, "ignored_event").await;
}

#[tokio::test]
async fn a_missing_event_header_is_rejected_with_400() {
    let app = spawn_embedded_app().await;
    let body = queued_job(1);
    let response = app
        .client
        .post(&app.webhook_url)
        .header("x-github-delivery", "no-event")
        .header("x-hub-signature-256", sign(SECRET, &body))
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let reply: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_refused(&app, (status, reply), 400, "malformed").await;
}

#[tokio::test]
async fn the_wrong_http_method_is_rejected_with_405() {
    let app = spawn_embedded_app().await;
    for method in [
        reqwest::Method::GET,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
    ] {
        let response = app
            .client
            .request(method.clone(), &app.webhook_url)
            .header("x-github-event", "workflow_job")
            .body(queued_job(1))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 405, "{method}");
        assert_eq!(response.headers()["allow"], "POST");
    }
    assert!(app.drain().await.is_empty());
}

#[tokio::test]
async fn a_form_encoded_delivery_is_accepted_and_enqueued_once() {
    let app = spawn_embedded_app().await;
    let json = String::from_utf8(queued_job(77)).unwrap();
    let form: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &json)
        .finish();
    let mut d = Delivery::signed(form.into_bytes());
    d.content_type = Some("application/x-www-form-urlencoded".into());
    let (status, reply) = app.deliver(d).await;
    assert_eq!(
        (status, reply["outcome"].as_str()),
        (202, Some("enqueued")),
        "{reply}"
    );
    let messages = app.drain().await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].attributes["job-id"], "77");
}

#[tokio::test]
async fn a_form_delivery_without_payload_is_rejected_with_400() {
    let app = spawn_embedded_app().await;
    let mut d = Delivery::signed(b"something=else".to_vec());
    d.content_type = Some("application/x-www-form-urlencoded".into());
    assert_refused(&app, app.deliver(d).await, 400, "malformed").await;
}

#[tokio::test]
async fn another_content_type_is_rejected_with_415() {
    let app = spawn_embedded_app().await;
    let mut d = Delivery::signed(queued_job(1));
    d.content_type = Some("text/plain".into());
    assert_refused(&app, app.deliver(d).await, 415, "unsupported_media_type").await;
}

#[tokio::test]
async fn refusals_are_counted_by_outcome() {
    let app = spawn_embedded_app().await;
    let mut d = Delivery::signed(queued_job(1));
    d.signature = None;
    app.deliver(d).await;
    app.deliver(Delivery::signed(Vec::new())).await;
    let metrics = app.metrics().await;
    for series in [
        "dockhand_webhook_requests_total{event=\"workflow_job\",action=\"none\",outcome=\"unauthorized\"}",
        "dockhand_webhook_requests_total{event=\"workflow_job\",action=\"none\",outcome=\"malformed\"}",
    ] {
        assert_eq!(
            sample(&metrics, series),
            Some(1.0),
            "{series} in\n{metrics}"
        );
    }
}

#[tokio::test]
async fn deliveries_without_github_timestamps_or_run_attempt_are_enqueued_with_them_empty() {
    let app = spawn_embedded_app().await;
    for (job_id, action) in [(31u64, "in_progress"), (32, "completed")] {
        let mut body: Value =
            serde_json::from_slice(&job_body(action, job_id, &["linux"])).unwrap();
        let job = body["workflow_job"].as_object_mut().unwrap();
        for key in ["created_at", "run_attempt", "started_at", "completed_at"] {
            job.remove(key);
        }
        let (status, reply) = app.deliver(Delivery::signed(body.to_string())).await;
        assert_eq!(
            (status, &reply["outcome"]),
            (202, &json!("enqueued")),
            "{reply}"
        );

        let messages = app.drain().await;
        assert_eq!(messages.len(), 1, "{action}");
        let envelope = dockhand::queue::envelope::Envelope::decode(&messages[0].body).unwrap();
        assert_eq!(envelope.event.job.id.0, job_id);
        assert_eq!(envelope.event.action.as_str(), action);
        let job = &envelope.event.job;
        assert_eq!(
            (
                job.created_at,
                job.run_attempt,
                job.started_at,
                job.completed_at
            ),
            (None, None, None, None),
            "{action}"
        );
    }
}

#[tokio::test]
async fn a_delivery_missing_a_field_the_worker_needs_is_rejected_with_400() {
    let app = spawn_embedded_app().await;
    for (parent, key, field) in [
        ("/workflow_job", "id", "workflow_job.id"),
        ("/workflow_job", "run_id", "workflow_job.run_id"),
        ("/workflow_job", "status", "workflow_job.status"),
        ("/workflow_job", "labels", "workflow_job.labels"),
        ("/repository", "full_name", "repository.full_name"),
        ("/repository/owner", "login", "repository.owner.login"),
    ] {
        let mut body = payload();
        body.pointer_mut(parent)
            .and_then(Value::as_object_mut)
            .unwrap()
            .remove(key)
            .unwrap();
        let answer = app.deliver(Delivery::signed(body.to_string())).await;
        assert_eq!(answer.1["error"], format!("missing field `{field}`"));
        assert_refused(&app, answer, 400, "malformed").await;
    }
}
