//! The ingress's per-event CPU work, without HTTP or the queue: signature check, parse,
//! pool match and envelope, on GitHub-shaped `workflow_job` bodies of about 8, 16 and
//! 25 KB. Throughput is reported in events/s; criterion runs on one thread, so that is
//! per core. See docs/benchmarks.md.
//!
//!   cargo bench --bench ingress
//!
//! Groups:
//! - `event`: everything the handler does per delivery between reading the body and
//!   handing the message to the batcher (mirrors `ingress::handle` and `enqueue`)
//! - `signature`: `WebhookKeys::verify` alone (HMAC-SHA256 over the whole body)
//! - `parse`: `parse_workflow_job` alone
//! - `envelope`: `Envelope::new(..).to_message()` alone

use std::hint::black_box;
use std::time::Duration;

use chrono::Utc;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use secrecy::SecretString;

use dockhand::config::PoolSettings;
use dockhand::domain::{DeliveryId, JobEvent};
use dockhand::ingress::Allowlist;
use dockhand::ingress::signature::{WebhookKeys, sign};
use dockhand::ingress::webhook::{Parsed, parse_workflow_job};
use dockhand::pool::Pools;
use dockhand::queue::OutgoingMessage;
use dockhand::queue::envelope::Envelope;
use dockhand::synthetic::{SyntheticJob, workflow_job_payload};

const SECRET: &str = "bench-webhook-secret";
const DELIVERY: &str = "72d3162e-cc78-11e3-81ab-4c9367dc0958";
const MAX_LABELS: usize = 64;

/// One payload size: a signed, GitHub-shaped `queued` delivery.
struct Case {
    name: &'static str,
    body: Vec<u8>,
    signature: String,
}

/// (name, steps, accepted size range in bytes): each step adds about 130 bytes.
const SIZES: [(&str, usize, std::ops::Range<usize>); 3] = [
    ("8KB", 4, 7_000..9_500),
    ("16KB", 66, 15_000..17_500),
    ("25KB", 130, 23_000..26_500),
];

fn cases() -> Vec<Case> {
    SIZES
        .iter()
        .map(|(name, steps, range)| {
            let body = workflow_job_payload(&SyntheticJob {
                steps: *steps,
                installation_id: Some(42),
                ..SyntheticJob::default()
            })
            .to_string()
            .into_bytes();
            assert!(
                range.contains(&body.len()),
                "{name}: {} bytes is outside {range:?}",
                body.len()
            );
            eprintln!("payload {name}: {steps} steps, {} bytes", body.len());
            let signature = sign(SECRET.as_bytes(), &body);
            Case {
                name,
                body,
                signature,
            }
        })
        .collect()
}

struct Ingress {
    keys: WebhookKeys,
    allowlist: Allowlist,
    pools: Pools,
}

impl Ingress {
    fn new() -> Self {
        Self {
            keys: WebhookKeys::new(&[SecretString::from(SECRET)]),
            allowlist: Allowlist::default(),
            pools: Pools::from_settings(&[PoolSettings::new(
                "linux-x64",
                &["self-hosted", "linux", "x64"],
            )]),
        }
    }

    fn verify(&self, case: &Case) {
        self.keys
            .verify(Some(case.signature.as_bytes()), false, &case.body)
            .expect("the signature matches");
    }

    fn parse(body: &[u8]) -> JobEvent {
        match parse_workflow_job(body, DeliveryId(DELIVERY.to_string()), MAX_LABELS) {
            Ok(Parsed::Job(event)) => *event,
            other => panic!("not a job event: {other:?}"),
        }
    }

    /// What `ingress::handle` + `enqueue` do for one JSON delivery, minus HTTP and the
    /// queue send: verify, copy the body (the handler parses from a `Vec`), parse, filter,
    /// match a pool, build the message.
    fn event(&self, case: &Case) -> OutgoingMessage {
        self.verify(case);
        let json = case.body.to_vec();
        let event = Self::parse(&json);
        assert!(self.allowlist.allows(&event.repository));
        let pool = self
            .pools
            .match_job(&event.job.labels)
            .map(|p| p.name.clone());
        assert!(pool.is_some());
        Envelope::new(event, pool, Utc::now()).to_message()
    }
}

fn group<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(1))
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    g
}

fn benches(c: &mut Criterion) {
    let ingress = Ingress::new();
    let cases = cases();

    let mut g = group(c, "event");
    for case in &cases {
        g.bench_with_input(BenchmarkId::from_parameter(case.name), case, |b, case| {
            b.iter(|| ingress.event(black_box(case)))
        });
    }
    g.finish();

    let mut g = group(c, "signature");
    for case in &cases {
        g.bench_with_input(BenchmarkId::from_parameter(case.name), case, |b, case| {
            b.iter(|| ingress.verify(black_box(case)))
        });
    }
    g.finish();

    let mut g = group(c, "parse");
    for case in &cases {
        g.bench_with_input(BenchmarkId::from_parameter(case.name), case, |b, case| {
            b.iter(|| Ingress::parse(black_box(&case.body)))
        });
    }
    g.finish();

    let mut g = group(c, "envelope");
    for case in &cases {
        let event = Ingress::parse(&case.body);
        g.bench_with_input(
            BenchmarkId::from_parameter(case.name),
            &event,
            |b, event| {
                b.iter_batched(
                    || event.clone(),
                    |event| Envelope::new(event, Some("linux-x64".into()), Utc::now()).to_message(),
                    criterion::BatchSize::SmallInput,
                )
            },
        );
    }
    g.finish();
}

criterion_group!(ingress, benches);
criterion_main!(ingress);
