//! A proxy in front of moto's SQS that dies after a set number of SendMessage calls: from
//! then on it answers every request 503, like an endpoint that has gone away mid-run. A
//! test can also take it down and bring it back ([`DyingSqs::set_down`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tokio::task::JoinHandle;

use crate::common::moto_ecs::faults::forward_to;
use crate::common::moto_url;

#[derive(Clone)]
struct Proxy {
    sends_left: Arc<AtomicUsize>,
    dead: Arc<std::sync::atomic::AtomicBool>,
    http: reqwest::Client,
    upstream: String,
}

/// The running proxy; it stops when dropped.
pub struct DyingSqs {
    pub url: String,
    dead: Arc<std::sync::atomic::AtomicBool>,
    server: JoinHandle<()>,
}

impl Drop for DyingSqs {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl DyingSqs {
    /// Forwards everything to moto until `sends` SendMessage calls have gone through.
    pub async fn start(sends: usize) -> Self {
        let proxy = Proxy {
            sends_left: Arc::new(AtomicUsize::new(sends)),
            dead: Arc::default(),
            http: reqwest::Client::new(),
            upstream: moto_url(),
        };
        let dead = proxy.dead.clone();
        let app = Router::new().fallback(handle).with_state(proxy);
        let (url, server) = crate::common::serve_on_loopback(app).await;
        Self { url, dead, server }
    }

    /// Answers every request 503 while `down`, and forwards them again once not.
    pub fn set_down(&self, down: bool) {
        self.dead.store(down, Ordering::SeqCst);
    }
}

async fn handle(
    State(proxy): State<Proxy>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // awsJson 1.0: `X-Amz-Target: AmazonSQS.SendMessage`.
    let is_send = headers
        .get("x-amz-target")
        .is_some_and(|t| t.as_bytes().ends_with(b".SendMessage"));
    if is_send
        && proxy
            .sends_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_err()
    {
        proxy.dead.store(true, Ordering::SeqCst);
    }
    if proxy.dead.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    forward_to(&proxy.http, &proxy.upstream, method, uri, headers, body).await
}
