//! Graceful shutdown: requests in flight when the signal comes are finished and their
//! messages sent; no 2xx is ever given for a message the queue does not hold.

use crate::common;

use std::time::Duration;

use common::*;
use sqlx::ConnectOptions;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_in_flight_requests_and_every_202_is_on_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = embedded_settings(&dir);
    settings.queue.batch.max_in_flight = 1;
    let app = spawn_app(settings.clone()).await;
    // The test holds the queue file's write lock, so every send waits: the requests are
    // surely in flight when shutdown comes, however slow the machine.
    let mut lock = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&settings.queue.embedded.path)
        .connect()
        .await
        .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut lock)
        .await
        .unwrap();

    let mut requests = tokio::task::JoinSet::new();
    for job_id in 1..=40u64 {
        let client = app.client.clone();
        let url = app.webhook_url.clone();
        requests.spawn(async move {
            let delivery = format!("shutdown-{job_id}");
            let sent = signed_request(&client, &url, &delivery, queued_job(job_id))
                .send()
                .await;
            sent.ok().map(|r| r.status().as_u16())
        });
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let queue = app.queue.clone();
    app.shutdown.cancel();
    tokio::time::sleep(Duration::from_millis(100)).await;
    sqlx::query("COMMIT").execute(&mut lock).await.unwrap();
    app.server.await.unwrap().expect("a clean shutdown");

    let statuses = requests.join_all().await;
    let accepted = statuses.iter().filter(|s| **s == Some(202)).count();
    assert!(
        statuses.iter().all(|s| matches!(s, Some(202) | None)),
        "only 202s or refused connections: {statuses:?}"
    );
    assert!(accepted > 0, "some requests were in flight: {statuses:?}");
    assert_eq!(drain(&*queue).await.len(), accepted);
}
