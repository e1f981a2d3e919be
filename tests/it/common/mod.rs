//! Shared test harness: each test gets its own ports, queue and temp dir, so tests run in
//! parallel against one moto_server.

pub mod dying_sqs;
pub mod fake_github;
pub mod gated_queue;
pub mod moto_ecs;
pub mod process;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::QueueAttributeName;
use dockhand::config::aws::StaticCredentials;
use dockhand::config::{
    AwsSettings, EcsLaunchSettings, LaunchType, PoolSettings, QueueKind, Secret, SecretSource,
    Settings,
};
use dockhand::queue::{Depth, OutgoingMessage, Queue, ReceivedMessage};
use dockhand::startup::{Application, Roles};
use dockhand::worker::outcome::{Outcome, Settled};
use dockhand::worker::{Step, Worker};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub mod stores;
pub mod webhook_sink;

pub const SECRET: &str = "test-webhook-secret";

/// The moto_server `scripts/test` started.
pub fn moto_url() -> String {
    std::env::var("DOCKHAND_TEST_MOTO_URL").unwrap_or_else(|_| {
        panic!(
            "DOCKHAND_TEST_MOTO_URL is not set: run the tests with scripts/test, which starts \
             moto_server, or point it at a running moto_server"
        )
    })
}

/// AWS settings pointing every client at moto.
pub fn moto_aws() -> AwsSettings {
    AwsSettings {
        region: Some("us-east-1".into()),
        endpoint_url: Some(moto_url()),
        credentials: Some(StaticCredentials {
            access_key_id: "testing".into(),
            secret_access_key: Some(Secret::from("testing")),
        }),
        ..AwsSettings::default()
    }
}

/// A fresh SQS queue with a dead-letter queue (redrive after `max_receives`), both named
/// uniquely for this test. Returns (queue URL, dead-letter URL).
pub async fn create_sqs_queue(max_receives: u32) -> (String, String) {
    let client = moto_aws().sqs_client().await;
    let name = format!("dockhand-{}", uuid::Uuid::new_v4().simple());
    let dlq = client
        .create_queue()
        .queue_name(format!("{name}-dlq"))
        .send()
        .await
        .expect("creating the DLQ in moto")
        .queue_url
        .unwrap();
    let dlq_arn = client
        .get_queue_attributes()
        .queue_url(&dlq)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()
        .remove(&QueueAttributeName::QueueArn)
        .unwrap();
    let policy = serde_json::json!({
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": max_receives.to_string(),
    });
    let url = client
        .create_queue()
        .queue_name(&name)
        .attributes(QueueAttributeName::RedrivePolicy, policy.to_string())
        .send()
        .await
        .expect("creating the queue in moto")
        .queue_url
        .unwrap();
    (url, dlq)
}

/// Settings for a test app: loopback port 0 everywhere, one pool, the test secret.
pub fn base_settings() -> Settings {
    let mut s = Settings::default();
    s.server.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    s.admin.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    s.server.shutdown_grace = Duration::from_secs(5);
    s.webhook.secrets = vec![SecretSource {
        value: Some(Secret::from(SECRET)),
        ..SecretSource::default()
    }];
    s.pools = vec![PoolSettings::new(
        "linux-x64",
        &["self-hosted", "linux", "x64"],
    )];
    s
}

/// Launch settings for a dry-run worker, which never calls ECS with them.
pub fn dry_run_launch_settings() -> EcsLaunchSettings {
    EcsLaunchSettings {
        cluster: "runners".into(),
        task_definition: "gha-runner:7".into(),
        container: "runner".into(),
        launch_type: Some(LaunchType::Fargate),
        capacity_providers: vec![],
        spot_capacity_providers: vec!["FARGATE_SPOT".into()],
        subnets: vec!["subnet-1".into()],
        security_groups: vec!["sg-1".into()],
        assign_public_ip: false,
        platform_version: None,
        environment: Default::default(),
        tags: Default::default(),
    }
}

/// Serves `app` on a free loopback port until the handle is aborted. Returns its base URL.
pub async fn serve_on_loopback(app: axum::Router) -> (String, JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (url, server)
}

/// Settings on the embedded queue in a fresh temp dir.
pub fn embedded_settings(dir: impl AsRef<std::path::Path>) -> Settings {
    let mut s = base_settings();
    s.queue.kind = QueueKind::Embedded;
    s.queue.embedded.path = dir.as_ref().join("queue.db");
    s
}

/// Settings on a fresh moto SQS queue.
pub async fn sqs_settings() -> Settings {
    let (url, _) = create_sqs_queue(3).await;
    let mut s = base_settings();
    s.aws = moto_aws();
    s.queue.kind = QueueKind::Sqs;
    s.queue.sqs.url = Some(url);
    s
}

/// A running ingress.
pub struct TestApp {
    pub webhook_url: String,
    pub admin_url: String,
    pub queue: Arc<dyn Queue>,
    pub client: reqwest::Client,
    pub shutdown: CancellationToken,
    pub server: JoinHandle<anyhow::Result<()>>,
    /// Keeps the embedded queue's directory alive for the test.
    pub dir: Option<tempfile::TempDir>,
}

pub async fn spawn_app(settings: Settings) -> TestApp {
    settings.validate().expect("test settings are valid");
    let server = Application::build(&settings, Roles::INGRESS)
        .await
        .expect("building the ingress");
    let webhook_url = format!("http://{}{}", server.webhook_addr(), settings.server.path);
    let admin_url = format!("http://{}", server.admin_addr());
    let queue = server.queue();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(server.run_until_stopped(shutdown.clone()));
    TestApp {
        webhook_url,
        admin_url,
        queue,
        client: reqwest::Client::new(),
        shutdown,
        server,
        dir: None,
    }
}

pub async fn spawn_embedded_app() -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let mut app = spawn_app(embedded_settings(&dir)).await;
    app.dir = Some(dir);
    app
}

/// A delivery as GitHub would send it.
pub struct Delivery {
    pub event: String,
    pub body: Vec<u8>,
    pub content_type: Option<String>,
    pub signature: Option<String>,
    pub delivery_id: String,
}

impl Delivery {
    /// A `workflow_job` delivery signed with the test secret.
    pub fn signed(body: impl Into<Vec<u8>>) -> Self {
        let body = body.into();
        Self {
            event: "workflow_job".into(),
            signature: Some(sign(SECRET, &body)),
            body,
            content_type: Some("application/json".into()),
            delivery_id: uuid::Uuid::new_v4().to_string(),
        }
    }

    pub fn event(mut self, event: &str) -> Self {
        self.event = event.into();
        self
    }
}

/// A `workflow_job` POST signed with the test secret, ready to send: for tests that fire
/// many deliveries from spawned tasks.
pub fn signed_request(
    client: &reqwest::Client,
    url: &str,
    delivery: &str,
    body: Vec<u8>,
) -> reqwest::RequestBuilder {
    client
        .post(url)
        .header("x-github-event", "workflow_job")
        .header("x-github-delivery", delivery)
        .header("x-hub-signature-256", sign(SECRET, &body))
        .header("content-type", "application/json")
        .body(body)
}

pub fn sign(secret: &str, body: &[u8]) -> String {
    dockhand::ingress::signature::sign(secret.as_bytes(), body)
}

/// A synthetic job's JSON body.
pub fn job_body(action: &str, job_id: u64, labels: &[&str]) -> Vec<u8> {
    dockhand::synthetic::workflow_job_payload(&dockhand::synthetic::SyntheticJob {
        action: action.into(),
        job_id,
        labels: labels.iter().map(|l| l.to_string()).collect(),
        installation_id: Some(99),
        ..Default::default()
    })
    .to_string()
    .into_bytes()
}

/// A queued job the default pool can serve.
pub fn queued_job(job_id: u64) -> Vec<u8> {
    job_body("queued", job_id, &["self-hosted", "linux"])
}

impl TestApp {
    pub async fn deliver(&self, d: Delivery) -> (u16, serde_json::Value) {
        let mut request = self
            .client
            .post(&self.webhook_url)
            .header("x-github-event", &d.event)
            .header("x-github-delivery", &d.delivery_id)
            .body(d.body);
        if let Some(ct) = d.content_type {
            request = request.header("content-type", ct);
        }
        if let Some(sig) = d.signature {
            request = request.header("x-hub-signature-256", sig);
        }
        let response = request.send().await.expect("the ingress answers");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let json = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("a JSON answer, got {status}: {text}"));
        (status, json)
    }

    /// Receives every message currently on the queue (each stays invisible afterwards).
    pub async fn drain(&self) -> Vec<ReceivedMessage> {
        drain(&*self.queue).await
    }

    pub async fn metrics(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.admin_url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Stops the app the way SIGTERM would, and waits for it.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.server.await.unwrap().expect("a clean shutdown");
    }
}

pub async fn drain(queue: &dyn Queue) -> Vec<ReceivedMessage> {
    let mut all = Vec::new();
    loop {
        let batch = queue.receive(10, Duration::ZERO).await.expect("receive");
        if batch.is_empty() {
            return all;
        }
        all.extend(batch);
    }
}

/// On an empty queue whose visibility timeout outlasts the check: the depth counts waiting
/// messages and received (in-flight) ones apart, and a deleted one in neither.
pub async fn assert_depth_counts_in_flight_apart(queue: &dyn Queue) {
    for body in ["a", "b"] {
        queue
            .send(OutgoingMessage {
                body: body.into(),
                attributes: Default::default(),
                delay: Duration::ZERO,
            })
            .await
            .unwrap();
    }
    let depth = |visible, in_flight| Depth { visible, in_flight };
    assert_eq!(queue.approximate_depth().await.unwrap(), depth(2, 0));

    let got = queue.receive(1, Duration::ZERO).await.unwrap();
    assert_eq!(queue.approximate_depth().await.unwrap(), depth(1, 1));
    queue.delete(&got[0].receipt).await.unwrap();
    assert_eq!(queue.approximate_depth().await.unwrap(), depth(1, 0));
}

/// The value of one sample line of `/metrics`, e.g.
/// `dockhand_webhook_requests_total{action="queued",event="workflow_job",outcome="enqueued"}`.
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

/// Runs the workers until their queue holds nothing: every message received, settled and
/// deleted. A deferred message is waited for until it comes back and is settled, so a test
/// that expects a message to stay on the queue steps with `process_next` instead. Returns
/// what became of each message, in the order they were settled.
pub async fn drain_workers(workers: &[&Worker]) -> Vec<Settled> {
    let mut settled = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut any = false;
        for step in process_next_on_each(workers).await {
            if let Step::Processed(batch) = step {
                any = true;
                settled.extend(batch);
            }
        }
        if any {
            continue;
        }
        let backlog = workers[0]
            .backlog()
            .await
            .expect("reading the queue's depth");
        if backlog.total() == 0 {
            return settled;
        }
        assert!(
            Instant::now() < deadline,
            "the queue never drained ({backlog:?} left): {settled:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn process_next_on_each(workers: &[&Worker]) -> Vec<Step> {
    let mut set = tokio::task::JoinSet::new();
    for worker in workers {
        let worker = (*worker).clone();
        set.spawn(async move { worker.process_next().await.unwrap() });
    }
    set.join_all().await
}

/// How many of `settled` are `Done(outcome)`.
pub fn count_done(settled: &[Settled], outcome: Outcome) -> usize {
    settled
        .iter()
        .filter(|s| **s == Settled::Done(outcome))
        .count()
}
