//! GitHub's webhook deliveries to dockhand's ingress: signed, and lost, duplicated or
//! reordered at the settings' rates. A delivery that gets no 2xx is failed, as GitHub
//! records it; it is sent again later if the settings say so (an operator's "Redeliver").

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::Semaphore;

use crate::model::Webhook;
use crate::settings::WebhookSettings;

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
}

/// `X-Hub-Signature-256` for a body.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

impl Sender {
    pub fn new(secret: &str, settings: WebhookSettings, seed: u64) -> anyhow::Result<Arc<Self>> {
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

    async fn deliver(&self, hook: &Webhook, id: &str) {
        let signature = sign(&self.secret, hook.body.as_bytes());
        loop {
            let url = self.url.read().unwrap().clone();
            let accepted = match url {
                None => false,
                Some(url) => {
                    let _permit = self.permits.acquire().await.expect("never closed");
                    self.stats.attempts.fetch_add(1, Ordering::Relaxed);
                    self.first_sent.get_or_init(Instant::now);
                    let response = self
                        .http
                        .post(url)
                        .header("content-type", "application/json")
                        .header("user-agent", "GitHub-Hookshot/dockhand-sim")
                        .header("x-github-event", "workflow_job")
                        .header("x-github-delivery", id)
                        .header("x-github-hook-installation-target-type", "integration")
                        .header("x-hub-signature-256", &signature)
                        .body(hook.body.clone())
                        .send()
                        .await;
                    response.is_ok_and(|r| r.status().is_success())
                }
            };
            if accepted {
                self.stats.accepted.fetch_add(1, Ordering::Relaxed);
                if hook.action == "queued" {
                    self.queued_accepted.lock().unwrap().insert(hook.job);
                }
                return;
            }
            self.stats.failed.fetch_add(1, Ordering::Relaxed);
            match self.settings.redeliver_failed_after {
                Some(after) => tokio::time::sleep(after).await,
                None => return,
            }
        }
    }

    pub fn in_flight(&self) -> u64 {
        WebhookStats::get(&self.stats.in_flight)
    }
}
