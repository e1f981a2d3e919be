//! GitHub's webhook deliveries to dockhand's ingress: signed, and lost, duplicated or
//! reordered at the settings' rates. A delivery that gets no 2xx is failed, as GitHub
//! records it; it is sent again later if the settings say so (an operator's "Redeliver").
//! Every attempt is logged per App ([`log`]), and a logged delivery can be asked for again
//! ([`Sender::redeliver`], GitHub's redelivery API). During an [`IngressOutage`] every
//! attempt fails without reaching the ingress.

pub mod log;
mod outage;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use chrono::Utc;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::Semaphore;

use crate::model::Webhook;
use crate::settings::{AppSettings, WebhookSettings};
use log::{Attempt, DeliveryLog};
pub use outage::{IngressOutage, OutageAnswer};

/// What the deliveries came to. Every field counts deliveries (attempts for `failed`).
#[derive(Debug, Default)]
pub struct WebhookStats {
    pub events: AtomicU64,
    pub attempts: AtomicU64,
    pub accepted: AtomicU64,
    pub failed: AtomicU64,
    pub lost: AtomicU64,
    pub duplicated: AtomicU64,
    pub held: AtomicU64,
    pub in_flight: AtomicU64,
    /// Redeliveries asked for through the API and accepted (202).
    pub redeliveries: AtomicU64,
}

impl WebhookStats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

pub struct Sender {
    http: reqwest::Client,
    url: RwLock<Option<String>>,
    secret: Vec<u8>,
    settings: WebhookSettings,
    rng: Mutex<fastrand::Rng>,
    permits: Semaphore,
    pub stats: WebhookStats,
    /// Jobs whose `queued` delivery was accepted at least once.
    pub queued_accepted: Mutex<HashSet<u64>>,
    /// When the first delivery was sent (real time).
    pub first_sent: OnceLock<Instant>,
    /// Every attempt, per App.
    pub log: Mutex<DeliveryLog>,
    /// Each installation's App: whose log an attempt goes in.
    app_of: HashMap<u64, u64>,
}

/// `X-Hub-Signature-256` for a body.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

impl Sender {
    /// A sender for `apps`' webhooks (each event comes once per App, with its
    /// installation).
    pub fn new(
        secret: &str,
        settings: WebhookSettings,
        apps: &[AppSettings],
        seed: u64,
    ) -> anyhow::Result<Arc<Self>> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .no_proxy()
            .build()?;
        Ok(Arc::new(Self {
            http,
            url: RwLock::new(None),
            secret: secret.as_bytes().to_vec(),
            permits: Semaphore::new(settings.senders.max(1)),
            settings,
            rng: Mutex::new(fastrand::Rng::with_seed(seed ^ 0x5eed_beef)),
            stats: WebhookStats::default(),
            queued_accepted: Mutex::default(),
            first_sent: OnceLock::new(),
            log: Mutex::default(),
            app_of: apps.iter().map(|a| (a.installation_id, a.id)).collect(),
        }))
    }

    /// Where deliveries go from now on: the ingress's webhook URL.
    pub fn set_url(&self, url: &str) {
        *self.url.write().unwrap() = Some(url.to_string());
    }

    /// Decides this delivery's fate, and sends it (and its duplicate) in the background.
    pub fn send(self: &Arc<Self>, hook: Webhook) {
        self.stats.events.fetch_add(1, Ordering::Relaxed);
        let (lost, duplicate, same_id, delays) = {
            let mut rng = self.rng.lock().unwrap();
            let s = &self.settings;
            let mut delay = || {
                if rng.f64() < s.reorder {
                    Duration::from_millis(rng.u64(0..=s.max_delay.as_millis() as u64))
                } else {
                    Duration::ZERO
                }
            };
            let delays = (delay(), delay());
            (
                rng.f64() < s.loss,
                rng.f64() < s.duplicate,
                rng.f64() < s.duplicate_same_id,
                delays,
            )
        };
        if lost {
            self.stats.lost.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let hook = Arc::new(hook);
        let id = uuid::Uuid::new_v4().to_string();
        self.spawn(hook.clone(), id.clone(), delays.0);
        if duplicate {
            self.stats.duplicated.fetch_add(1, Ordering::Relaxed);
            let id = if same_id {
                id
            } else {
                uuid::Uuid::new_v4().to_string()
            };
            self.spawn(hook, id, delays.1);
        }
    }

    fn spawn(self: &Arc<Self>, hook: Arc<Webhook>, id: String, delay: Duration) {
        let this = self.clone();
        this.stats.in_flight.fetch_add(1, Ordering::Relaxed);
        if !delay.is_zero() {
            this.stats.held.fetch_add(1, Ordering::Relaxed);
        }
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            this.deliver(&hook, &id).await;
            this.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
        });
    }

    /// Attempts a delivery until it is accepted, or (without operator redeliveries) once.
    async fn deliver(&self, hook: &Arc<Webhook>, guid: &str) {
        while !self.attempt(hook, guid).await {
            match self.settings.redeliver_failed_after {
                Some(after) => tokio::time::sleep(after).await,
                None => return,
            }
        }
    }

    /// One attempt to deliver `hook` under `guid`, logged in its App's log. Returns whether
    /// the ingress accepted it (a 2xx).
    async fn attempt(&self, hook: &Arc<Webhook>, guid: &str) -> bool {
        let url = self.url.read().unwrap().clone();
        let Some(url) = url else {
            self.stats.failed.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        let _permit = self.permits.acquire().await.expect("never closed");
        self.stats.attempts.fetch_add(1, Ordering::Relaxed);
        let first = *self.first_sent.get_or_init(Instant::now);
        let (started, delivered_at) = (Instant::now(), Utc::now());
        let outage = self
            .settings
            .outage
            .and_then(|o| o.attempt_at(first, started));
        let attempt = match outage {
            Some(attempt) => attempt,
            None => self.post(&url, hook, guid).await,
        };
        let app = self.app_of.get(&hook.installation).copied().unwrap_or(0);
        self.log
            .lock()
            .unwrap()
            .record(app, hook, guid, delivered_at, started.elapsed(), attempt);
        if !attempt.succeeded() {
            self.stats.failed.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        self.stats.accepted.fetch_add(1, Ordering::Relaxed);
        if hook.action == "queued" {
            self.queued_accepted.lock().unwrap().insert(hook.job);
        }
        true
    }

    /// POSTs the delivery to the ingress, as GitHub does, and says how it went (no answer
    /// within 10 s is a timeout).
    async fn post(&self, url: &str, hook: &Webhook, guid: &str) -> Attempt {
        let response = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header("user-agent", "GitHub-Hookshot/dockhand-sim")
            .header("x-github-event", "workflow_job")
            .header("x-github-delivery", guid)
            .header("x-github-hook-installation-target-type", "integration")
            .header(
                "x-hub-signature-256",
                sign(&self.secret, hook.body.as_bytes()),
            )
            .body(hook.body.clone())
            .send()
            .await;
        match response {
            Ok(r) => Attempt::Answered(r.status().as_u16()),
            Err(e) if e.is_timeout() => Attempt::TimedOut,
            Err(_) => Attempt::FailedToConnect,
        }
    }

    /// GitHub's redelivery API: sends the event delivery `id` of App `app`'s log carried
    /// again, now, once, under the same guid (logged as a redelivery). `false` for an id
    /// the App's log does not hold.
    pub fn redeliver(self: &Arc<Self>, app: u64, id: u64) -> bool {
        let Some((hook, guid)) = self.log.lock().unwrap().event_of(app, id) else {
            return false;
        };
        self.stats.redeliveries.fetch_add(1, Ordering::Relaxed);
        self.stats.in_flight.fetch_add(1, Ordering::Relaxed);
        let this = self.clone();
        tokio::spawn(async move {
            this.attempt(&hook, &guid).await;
            this.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
        });
        true
    }

    pub fn in_flight(&self) -> u64 {
        WebhookStats::get(&self.stats.in_flight)
    }
}
