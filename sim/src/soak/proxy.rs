//! The AWS endpoint of the scale-out soak: it routes SQS calls to moto and ECS calls to the
//! simulator (dockhand has one `aws.endpoint_url`), and fails a settable share of the SQS
//! calls: half before moto sees them, half after (the answer is lost, the effect is not).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use tokio::task::JoinHandle;

use crate::faults::{Fault, FaultSettings, Faults};

struct Proxy {
    http: reqwest::Client,
    moto: String,
    ecs: String,
    faults: Faults,
    calls: AtomicU64,
    pub failed: AtomicU64,
}

pub struct AwsProxy {
    pub url: String,
    proxy: Arc<Proxy>,
    task: JoinHandle<()>,
}

impl Drop for AwsProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl AwsProxy {
    pub async fn start(moto: &str, ecs: &str, seed: u64, error_rate: f64) -> anyhow::Result<Self> {
        let proxy = Arc::new(Proxy {
            http: reqwest::Client::builder().no_proxy().build()?,
            moto: moto.trim_end_matches('/').to_string(),
            ecs: ecs.trim_end_matches('/').to_string(),
            faults: Faults::new(seed, FaultSettings::rate(error_rate, 0.0)),
            calls: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        });
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let app = Router::new().fallback(forward).with_state(proxy.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { url, proxy, task })
    }

    /// SQS calls failed on purpose so far.
    pub fn sqs_failed(&self) -> u64 {
        self.proxy.failed.load(Ordering::Relaxed)
    }
}

async fn forward(
    State(proxy): State<Arc<Proxy>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let sqs = !target.starts_with("AmazonEC2ContainerService");
    let base = if sqs { &proxy.moto } else { &proxy.ecs };
    let n = proxy.calls.fetch_add(1, Ordering::Relaxed);
    // Each call is its own key: SQS calls repeat (receives) and carry no identity.
    let fault = if sqs {
        proxy.faults.decide("sqs", &n.to_string())
    } else {
        Fault::None
    };
    let before = n % 2 == 0;
    if fault == Fault::Error && before {
        return injected(&proxy);
    }
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut request = proxy.http.request(method, format!("{base}{path}"));
    for (name, value) in &headers {
        if name != header::HOST && name != header::CONTENT_LENGTH {
            request = request.header(name, value);
        }
    }
    let answer = match request.body(body).send().await {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    if fault == Fault::Error {
        return injected(&proxy);
    }
    let status = answer.status();
    let mut response = Response::builder().status(status.as_u16());
    for (name, value) in answer.headers() {
        if name != header::CONTENT_LENGTH && name != header::TRANSFER_ENCODING {
            response = response.header(name, value);
        }
    }
    let bytes = answer.bytes().await.unwrap_or_default();
    response
        .body(axum::body::Body::from(bytes))
        .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response())
}

fn injected(proxy: &Proxy) -> Response {
    proxy.failed.fetch_add(1, Ordering::Relaxed);
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [(header::CONTENT_TYPE, "application/x-amz-json-1.0")],
        r#"{"__type":"com.amazonaws.sqs#InternalError","message":"injected by the soak's proxy"}"#,
    )
        .into_response()
}
