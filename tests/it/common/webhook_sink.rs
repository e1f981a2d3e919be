//! A webhook that answers every delivery with a status the test sets, and keeps the
//! `X-GitHub-Delivery` guid of each: where the fake GitHub delivers when a test needs no
//! ingress.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use tokio::task::JoinHandle;

#[derive(Clone, Default)]
struct Shared {
    status: Arc<AtomicU16>,
    received: Arc<Mutex<Vec<String>>>,
}

/// The running webhook; it stops when dropped.
pub struct WebhookSink {
    pub url: String,
    shared: Shared,
    server: JoinHandle<()>,
}

impl Drop for WebhookSink {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl WebhookSink {
    /// Answers every delivery `status` until told otherwise.
    pub async fn start(status: u16) -> Self {
        let shared = Shared::default();
        shared.status.store(status, Ordering::SeqCst);
        let app = Router::new().fallback(receive).with_state(shared.clone());
        let (url, server) = super::serve_on_loopback(app).await;
        Self {
            url,
            shared,
            server,
        }
    }

    pub fn answer(&self, status: u16) {
        self.shared.status.store(status, Ordering::SeqCst);
    }

    /// The guid of every delivery received, in order.
    pub fn received(&self) -> Vec<String> {
        self.shared.received.lock().unwrap().clone()
    }
}

async fn receive(State(shared): State<Shared>, headers: HeaderMap) -> StatusCode {
    let guid = headers
        .get("x-github-delivery")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    shared.received.lock().unwrap().push(guid);
    StatusCode::from_u16(shared.status.load(Ordering::SeqCst)).expect("a valid status")
}
