//! The webhook traffic: every job queued once, some delivered twice (a redelivery: same
//! body, new `X-GitHub-Delivery`), shuffled, signed, and sent from a bounded number of
//! concurrent clients.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dockhand::ingress::signature::sign;
use dockhand::synthetic::{SyntheticJob, workflow_job_payload};

use crate::dockhand::{POOL_LABELS, SECRET};

/// Job ids start here, far from anything a real org would have.
const FIRST_JOB_ID: u64 = 7_100_000_000;
/// Every job comes from this installation, so dockhand never looks one up.
pub const INSTALLATION_ID: u64 = 4242;

/// One delivery, ready to send.
pub struct Delivery {
    /// Index into the job list.
    pub job: usize,
    pub id: String,
    pub body: String,
    pub signature: String,
}

/// The jobs and their deliveries, in sending order.
pub struct Traffic {
    pub job_ids: Vec<u64>,
    pub deliveries: Vec<Delivery>,
}

impl Traffic {
    /// `jobs` queued jobs, `duplicate_percent` of them delivered a second time, shuffled
    /// with `seed` (the same seed gives the same traffic).
    pub fn build(jobs: usize, duplicate_percent: usize, seed: u64) -> Self {
        let mut rng = fastrand::Rng::with_seed(seed);
        let job_ids: Vec<u64> = (0..jobs as u64).map(|i| FIRST_JOB_ID + i).collect();
        let bodies: Vec<String> = job_ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                workflow_job_payload(&SyntheticJob {
                    job_id: *id,
                    run_id: 900_000_000 + i as u64,
                    labels: POOL_LABELS.iter().map(|l| l.to_string()).collect(),
                    repo: format!("load-org/repo-{}", i % 20),
                    installation_id: Some(INSTALLATION_ID),
                    ..SyntheticJob::default()
                })
                .to_string()
            })
            .collect();
        let mut order: Vec<usize> = (0..jobs).collect();
        let mut twice: Vec<usize> = (0..jobs).collect();
        rng.shuffle(&mut twice);
        twice.truncate(jobs * duplicate_percent / 100);
        order.extend(twice);
        rng.shuffle(&mut order);
        let deliveries = order
            .into_iter()
            .map(|job| Delivery {
                job,
                id: uuid::Uuid::from_u128(rng.u128(..)).to_string(),
                signature: sign(SECRET.as_bytes(), bodies[job].as_bytes()),
                body: bodies[job].clone(),
            })
            .collect();
        Self {
            job_ids,
            deliveries,
        }
    }
}

/// What sending saw. Instants share the clock of the fakes (one process).
pub struct Sent {
    pub started: Instant,
    pub finished: Instant,
    /// Per job: when its first delivery was sent, and when the first 202 came back.
    pub first_sent: Vec<Option<Instant>>,
    pub first_accepted: Vec<Option<Instant>>,
    /// Per delivery answered 202: sent → 202.
    pub ingress: Vec<Duration>,
    /// The slowest of those: (seconds since the first send, sent → 202), slowest first.
    pub slowest: Vec<(f64, Duration)>,
    /// Answers by `status outcome` (`0 error` when the request failed).
    pub answers: BTreeMap<String, u64>,
}

struct Answered {
    job: usize,
    sent: Instant,
    accepted: Option<Instant>,
    answer: String,
}

/// Sends every delivery to `url`, `clients` at a time: as fast as they go, or with
/// `rate` (deliveries per second), each delivery at its due time (if a client is free).
pub async fn send_all(
    http: &reqwest::Client,
    url: &str,
    traffic: Arc<Traffic>,
    clients: usize,
    rate: Option<f64>,
) -> Sent {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (http, url, traffic, next) =
            (http.clone(), url.to_string(), traffic.clone(), next.clone());
        tasks.spawn(async move {
            let mut seen = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(delivery) = traffic.deliveries.get(i) else {
                    return seen;
                };
                if let Some(rate) = rate {
                    let due = started + Duration::from_secs_f64(i as f64 / rate);
                    tokio::time::sleep_until(due.into()).await;
                }
                seen.push(deliver(&http, &url, delivery).await);
            }
        });
    }
    let jobs = traffic.job_ids.len();
    let mut sent = Sent {
        started,
        finished: started,
        first_sent: vec![None; jobs],
        first_accepted: vec![None; jobs],
        ingress: Vec::new(),
        slowest: Vec::new(),
        answers: BTreeMap::new(),
    };
    while let Some(seen) = tasks.join_next().await {
        for a in seen.expect("a client task panicked") {
            let first = &mut sent.first_sent[a.job];
            *first = Some(first.map_or(a.sent, |t| t.min(a.sent)));
            if let Some(accepted) = a.accepted {
                let took = accepted.saturating_duration_since(a.sent);
                sent.ingress.push(took);
                let at = a.sent.saturating_duration_since(started).as_secs_f64();
                sent.slowest.push((at, took));
                let first = &mut sent.first_accepted[a.job];
                *first = Some(first.map_or(accepted, |t| t.min(accepted)));
            }
            *sent.answers.entry(a.answer).or_default() += 1;
        }
    }
    sent.slowest.sort_by_key(|s| std::cmp::Reverse(s.1));
    sent.slowest.truncate(5);
    sent.finished = Instant::now();
    sent
}

async fn deliver(http: &reqwest::Client, url: &str, delivery: &Delivery) -> Answered {
    let sent = Instant::now();
    let response = http
        .post(url)
        .header("content-type", "application/json")
        .header("user-agent", "GitHub-Hookshot/dockhand-load")
        .header("x-github-event", "workflow_job")
        .header("x-github-delivery", &delivery.id)
        .header("x-hub-signature-256", &delivery.signature)
        .body(delivery.body.clone())
        .send()
        .await;
    let (status, body) = match response {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.text().await.unwrap_or_default())
        }
        Err(_) => (0, String::new()),
    };
    let accepted = (status == 202).then(Instant::now);
    let outcome = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("outcome")?.as_str().map(str::to_string))
        .unwrap_or_else(|| {
            if status == 0 {
                "error".into()
            } else {
                "?".into()
            }
        });
    Answered {
        job: delivery.job,
        sent,
        accepted,
        answer: format!("{status} {outcome}"),
    }
}
