//! Slow and hostile clients: a connection that stalls in its request head or its body is
//! closed within its timeout and counted, connections past the cap are refused at once,
//! and GitHub's deliveries are answered throughout (or, with the cap full, as soon as the
//! timeouts make room).

use crate::common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::process::eventually;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The header and body timeouts of these tests: short, with room for a busy machine.
const TIMEOUT: Duration = Duration::from_secs(1);
/// How late after its timeout a stalled connection may close on a busy machine.
const SLACK: Duration = Duration::from_secs(2);

fn slow_settings(dir: &tempfile::TempDir) -> dockhand::config::Settings {
    let mut s = embedded_settings(dir);
    s.server.header_timeout = TIMEOUT;
    s.server.body_timeout = TIMEOUT;
    s
}

async fn spawn(settings: dockhand::config::Settings, dir: tempfile::TempDir) -> TestApp {
    let mut app = spawn_app(settings).await;
    app.dir = Some(dir);
    app
}

fn webhook_addr(app: &TestApp) -> SocketAddr {
    let rest = app.webhook_url.trim_start_matches("http://");
    rest.split('/').next().unwrap().parse().unwrap()
}

fn admin_addr(app: &TestApp) -> SocketAddr {
    app.admin_url.trim_start_matches("http://").parse().unwrap()
}

/// A connection that sends part of a request head, then nothing more.
async fn stall_in_head(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"POST /webhook HTTP/1.1\r\nhost: dockhand\r\nx-github-ev")
        .await
        .unwrap();
    stream
}

/// Reads until the server closes the connection (an end of stream or a reset), and returns
/// what it sent and how long that took. Panics if it is still open after `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> (Duration, String) {
    let started = Instant::now();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(limit, async {
        let mut buf = [0u8; 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    assert!(read.is_ok(), "still open after {limit:?}; sent {answer:?}");
    (started.elapsed(), answer)
}

/// A signed delivery of a queued job, answered 202 and put on the queue, while slow
/// clients hold their connections.
async fn a_delivery_is_answered_at_once(app: &TestApp, job_id: u64) {
    let started = Instant::now();
    let (status, reply) = app.deliver(Delivery::signed(queued_job(job_id))).await;
    assert_eq!(status, 202, "{reply}");
    assert!(
        started.elapsed() < TIMEOUT,
        "answered only after {:?}",
        started.elapsed()
    );
    let messages = app.drain().await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].attributes["job-id"], job_id.to_string());
}

fn connections(listener: &str, outcome: &str) -> String {
    format!("dockhand_connections_total{{listener=\"{listener}\",outcome=\"{outcome}\"}}")
}

async fn eventually_counted(app: &TestApp, series: &str, at_least: f64) -> f64 {
    eventually(series, Duration::from_secs(10), || async {
        sample(&app.metrics().await, series).filter(|n| *n >= at_least)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_header_is_closed_within_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn(slow_settings(&dir), dir).await;
    let mut stalled = stall_in_head(webhook_addr(&app)).await;
    let stalled_at = Instant::now();

    a_delivery_is_answered_at_once(&app, 41).await;

    let (_, answer) = closed_within(&mut stalled, TIMEOUT + SLACK).await;
    let lived = stalled_at.elapsed();
    assert!(
        lived >= TIMEOUT - Duration::from_millis(100),
        "closed after {lived:?}, before the timeout"
    );
    assert_eq!(answer, "", "a connection without a request gets no answer");
    assert_eq!(
        eventually_counted(&app, &connections("webhook", "timeout"), 1.0).await,
        1.0
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_trickled_a_byte_at_a_time_is_closed_within_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn(slow_settings(&dir), dir).await;
    let stream = TcpStream::connect(webhook_addr(&app)).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let opened_at = Instant::now();
    let trickle = tokio::spawn(async move {
        for byte in b"POST /webhook HTTP/1.1\r\nx-github-event: ".repeat(100) {
            if write.write_all(&[byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let closed = tokio::time::timeout(TIMEOUT + SLACK, async {
        let mut buf = [0u8; 64];
        while let Ok(n) = read.read(&mut buf).await {
            if n == 0 {
                return;
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "still open after {:?}", opened_at.elapsed());
    assert!(opened_at.elapsed() >= TIMEOUT - Duration::from_millis(100));
    trickle.abort();
    assert_eq!(
        eventually_counted(&app, &connections("webhook", "timeout"), 1.0).await,
        1.0
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_is_answered_408_and_closed_within_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn(slow_settings(&dir), dir).await;
    let body = queued_job(42);
    let head = format!(
        "POST /webhook HTTP/1.1\r\nhost: dockhand\r\nx-github-event: workflow_job\r\n\
         x-github-delivery: stalled-body\r\nx-hub-signature-256: {}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        sign(SECRET, &body),
        body.len()
    );
    let mut stalled = TcpStream::connect(webhook_addr(&app)).await.unwrap();
    stalled.write_all(head.as_bytes()).await.unwrap();
    stalled.write_all(&body[..body.len() / 2]).await.unwrap();
    let stalled_at = Instant::now();

    a_delivery_is_answered_at_once(&app, 43).await;

    let (_, answer) = closed_within(&mut stalled, TIMEOUT + SLACK).await;
    let lived = stalled_at.elapsed();
    assert!(
        lived >= TIMEOUT - Duration::from_millis(100),
        "closed after {lived:?}, before the timeout"
    );
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");
    assert!(answer.contains(r#""outcome":"timeout""#), "{answer}");
    assert!(
        app.drain().await.is_empty(),
        "the stalled job is not enqueued"
    );
    let metrics = app.metrics().await;
    let series = "dockhand_webhook_requests_total{event=\"workflow_job\",action=\"none\",outcome=\"timeout\"}";
    assert_eq!(sample(&metrics, series), Some(1.0), "{metrics}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_cap_connections_are_refused_at_once_and_a_delivery_gets_through_within_the_timeout()
 {
    const CAP: usize = 16;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = slow_settings(&dir);
    settings.server.max_connections = CAP;
    let app = spawn(settings, dir).await;
    let addr = webhook_addr(&app);

    let flood_at = Instant::now();
    let mut stalled = Vec::new();
    for _ in 0..CAP {
        stalled.push(stall_in_head(addr).await);
    }
    // The listener accepts in order, so every connection from here on finds the cap full
    // until the timeouts make room.
    let mut refused = tokio::task::JoinSet::new();
    for _ in 0..8 {
        refused.spawn(async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            closed_within(&mut stream, TIMEOUT / 2).await
        });
    }
    for (took, answer) in refused.join_all().await {
        assert!(took < TIMEOUT / 2, "refused after {took:?}");
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 503 "),
            "{answer}"
        );
    }
    assert!(
        flood_at.elapsed() < TIMEOUT,
        "the refusals came before the timeouts"
    );

    // GitHub's delivery, tried again as a redelivery would be, is answered once the
    // stalled connections time out.
    let delivered = eventually("the delivery", TIMEOUT + SLACK, || async {
        let body = queued_job(44);
        let request = signed_request(&app.client, &app.webhook_url, "through", body);
        let status = request.send().await.ok()?.status().as_u16();
        (status == 202).then(|| flood_at.elapsed())
    })
    .await;
    assert!(delivered >= TIMEOUT - Duration::from_millis(100));
    let messages = app.drain().await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].attributes["job-id"], "44");

    for stream in &mut stalled {
        closed_within(stream, SLACK).await;
    }
    let timeouts = eventually_counted(&app, &connections("webhook", "timeout"), CAP as f64).await;
    assert_eq!(timeouts, CAP as f64);
    let refusals = eventually_counted(&app, &connections("webhook", "refused"), 8.0).await;
    assert!(refusals >= 8.0, "{refusals}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_has_the_same_timeouts_and_cap() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = slow_settings(&dir);
    settings.admin.header_timeout = TIMEOUT;
    settings.admin.max_connections = 2;
    let app = spawn(settings, dir).await;
    let addr = admin_addr(&app);

    let mut stalled = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(b"GET /metr").await.unwrap();
        stalled.push(stream);
    }
    let mut third = TcpStream::connect(addr).await.unwrap();
    let (took, answer) = closed_within(&mut third, TIMEOUT / 2).await;
    assert!(took < TIMEOUT / 2, "refused after {took:?}");
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 503 "),
        "{answer}"
    );
    for stream in &mut stalled {
        closed_within(stream, TIMEOUT + SLACK).await;
    }

    assert_eq!(
        eventually_counted(&app, &connections("admin", "timeout"), 2.0).await,
        2.0
    );
    assert_eq!(
        sample(&app.metrics().await, &connections("admin", "refused")),
        Some(1.0)
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_connection_holds_up_shutdown_no_longer_than_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let settings = slow_settings(&dir);
    assert!(settings.server.shutdown_grace > TIMEOUT + SLACK);
    let app = spawn(settings, dir).await;
    let mut stalled = stall_in_head(webhook_addr(&app)).await;
    // An idle keep-alive connection is closed at once.
    let (status, _) = app.deliver(Delivery::signed(queued_job(45))).await;
    assert_eq!(status, 202);

    let stopping_at = Instant::now();
    app.shutdown.cancel();
    tokio::time::timeout(TIMEOUT + SLACK, app.server)
        .await
        .expect("stopped within the header timeout")
        .unwrap()
        .expect("a clean shutdown");
    assert!(stopping_at.elapsed() < TIMEOUT + SLACK);
    closed_within(&mut stalled, SLACK).await;
    assert_eq!(drain(&*app.queue).await.len(), 1);
}
