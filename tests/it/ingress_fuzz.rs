//! Property-based fuzzing of the webhook ingress (issue 13): arbitrary headers with raw
//! bytes, `workflow_job`-shaped JSON with fields removed, retyped and mangled, and
//! well-formed deliveries whose outcome is known, all through the real router in-process
//! (`tower::ServiceExt::oneshot`, no sockets) onto a queue that records what it is given.
//!
//! For every input: the handler answers rather than panics; the status is a documented one
//! and matches the answer's `outcome`; a method other than POST gets 405, a body over the
//! limit 413, and a POST without a valid signature for its exact body 401, so nothing
//! unsigned reaches the queue; a message reaches the queue only with a 202 `enqueued`, and
//! carries the job and delivery answered; 503 comes only while the queue is down; the answer
//! never echoes the body.
//!
//! `DOCKHAND_FUZZ_CASES` sets the cases per property (default 2,000: seconds in a debug
//! build). The seeds of failures are kept in `ingress_fuzz.proptest-regressions` and run
//! first. Inputs print as their recipe (headers, edits), with bodies cut short and no secret.

mod bodies;
mod harness;
mod headers;
mod values;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::Instant;

use axum::http::Method;
use dockhand::queue::envelope::Envelope;
use dockhand::synthetic::{SyntheticJob, workflow_job_payload};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestCaseError, TestRunner};
use serde_json::json;

use bodies::{Raw, Shaped, clean_body, json_body, raw_body};
use harness::{Answer, Harness};
use headers::{Headers, headers, job_headers, signed_headers};

const SECRET: &str = "fuzz-webhook-secret";
/// A second configured secret, as during a rotation.
const ROTATED_SECRET: &str = "fuzz-previous-secret";
const PATH: &str = "/webhook";
/// `webhook.max_body_bytes`, lower than the default so that bodies around it stay cheap.
const LIMIT: usize = 16 * 1024;
const MAX_LABELS: usize = 64;
const POOL_LABELS: [&str; 3] = ["self-hosted", "linux", "x64"];
const ALLOWED_ORG: &str = "octo-org";
/// Planted in bodies; an answer that contains it echoed the request.
const CANARY: &str = "zq-canary-7f3a";
const REGRESSIONS: &str = "tests/it/ingress_fuzz.proptest-regressions";
const DEFAULT_CASES: u32 = 2_000;
const ACTIONS: [&str; 4] = ["queued", "waiting", "in_progress", "completed"];

/// README's table of answers: (status, outcome).
const ANSWERS: [(u16, &str); 13] = [
    (202, "enqueued"),
    (200, "pong"),
    (202, "ignored_event"),
    (202, "ignored_action"),
    (202, "no_matching_pool"),
    (202, "not_allowed"),
    (401, "unauthorized"),
    (413, "payload_too_large"),
    (415, "unsupported_media_type"),
    (400, "malformed"),
    (408, "timeout"),
    (405, "method_not_allowed"),
    (503, "queue_unavailable"),
];

#[test]
fn raw_bytes_with_arbitrary_headers_get_documented_answers_and_enqueue_nothing_unsigned() {
    let strategy = (headers(), raw_body()).prop_map(|(headers, body)| Raw { headers, body });
    fuzz(
        &strategy,
        |r| (r.headers.clone(), r.body.0.clone()),
        |_, _| Ok(()),
        &[
            "unauthorized",
            "payload_too_large",
            "malformed",
            "method_not_allowed",
            "unsupported_media_type",
            "pong",
            "ignored_event",
        ],
    );
}

#[test]
fn mangled_workflow_job_payloads_get_documented_answers_and_enqueue_nothing_unsigned() {
    let strategy = (job_headers(), json_body()).prop_map(Shaped::new);
    fuzz(
        &strategy,
        |s| (s.headers.clone(), s.body.render()),
        |_, _| Ok(()),
        &[
            "enqueued",
            "unauthorized",
            "payload_too_large",
            "malformed",
            "unsupported_media_type",
        ],
    );
}

#[test]
fn signed_well_formed_deliveries_get_exactly_the_documented_outcome() {
    let strategy = (signed_headers(), clean_body()).prop_map(Shaped::well_formed);
    fuzz(
        &strategy,
        |s| (s.headers.clone(), s.body.render()),
        expect_documented_outcome,
        &[
            "enqueued",
            "ignored_action",
            "no_matching_pool",
            "not_allowed",
            "queue_unavailable",
        ],
    );
}

/// Found by the fuzzer (seed in the regressions file): an enum-typed field given as an
/// object was refused with the object's key in the reason (`workflow_job.conclusion.<key>`),
/// so the answer, and the log line, quoted the body.
#[test]
fn an_enum_field_given_as_an_object_is_refused_without_quoting_its_key() {
    let harness = Harness::new();
    for (pointer, field) in [
        ("/workflow_job/conclusion", "workflow_job.conclusion"),
        ("/workflow_job/status", "workflow_job.status"),
        ("/repository/owner/type", "repository.owner.type"),
    ] {
        let mut payload = workflow_job_payload(&SyntheticJob::default());
        *payload.pointer_mut(pointer).unwrap() = json!({ CANARY: false });
        let body = payload.to_string().into_bytes();
        let headers = Headers::github();
        let signatures = headers.signature.values(&body);
        let answer = harness
            .deliver(&headers, &signatures.headers, &body)
            .unwrap();
        assert_eq!(answer.status.as_u16(), 400, "{}", answer.text);
        let reply: serde_json::Value = serde_json::from_str(&answer.text).unwrap();
        assert_eq!(
            reply["error"],
            format!("field `{field}` has the wrong type or value")
        );
    }
}

/// Runs `property` and the invariants on every case; on failure, shrinks and panics with
/// the minimal input. Counts outcomes, and asserts the generators reached the interesting
/// ones, so a generator that stops reaching past the signature cannot pass unnoticed.
fn fuzz<S: Strategy>(
    strategy: &S,
    request: impl Fn(&S::Value) -> (Headers, Vec<u8>),
    property: impl Fn(&S::Value, &Answer) -> Result<(), TestCaseError>,
    reached: &[&str],
) {
    let name = std::thread::current()
        .name()
        .unwrap_or("ingress_fuzz")
        .to_string();
    let harness = Harness::new();
    let seen = RefCell::new(BTreeMap::<String, u64>::new());
    let cases = cases();
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(REGRESSIONS))),
        ..Config::default()
    });
    let started = Instant::now();
    let result = runner.run(strategy, |input| {
        let (headers, body) = request(&input);
        let signatures = headers.signature.values(&body);
        let answer = harness.deliver(&headers, &signatures.headers, &body)?;
        *seen.borrow_mut().entry(answer.outcome.clone()).or_default() += 1;
        check_invariants(&headers, signatures.valid, &answer)?;
        property(&input, &answer)
    });
    let elapsed = started.elapsed();
    let seen = seen.into_inner();
    let run: u64 = seen.values().sum();
    eprintln!(
        "{name}: {run} cases in {:.1} s ({:.0}/s); outcomes {seen:?}",
        elapsed.as_secs_f64(),
        run as f64 / elapsed.as_secs_f64()
    );
    if let Err(err) = result {
        panic!("{err}");
    }
    if cases >= 1_000 {
        for outcome in reached {
            assert!(
                seen.contains_key(*outcome),
                "{name} never reached {outcome}"
            );
        }
    }
}

fn cases() -> u32 {
    std::env::var("DOCKHAND_FUZZ_CASES").map_or(DEFAULT_CASES, |v| {
        v.parse().expect("DOCKHAND_FUZZ_CASES is a number of cases")
    })
}

/// What holds for every delivery, whatever it is.
fn check_invariants(headers: &Headers, signed: bool, answer: &Answer) -> Result<(), TestCaseError> {
    let (status, outcome) = (answer.status.as_u16(), answer.outcome.as_str());
    let len = answer.body_len;
    prop_assert!(
        ANSWERS.contains(&(status, outcome)),
        "undocumented answer {status} {outcome}"
    );
    prop_assert!(!answer.text.contains(CANARY), "the answer echoed the body");
    if headers.method != Method::POST {
        prop_assert_eq!(status, 405);
    } else if len > LIMIT {
        prop_assert_eq!(status, 413);
    } else {
        prop_assert_ne!(status, 413, "{} bytes is within the limit", len);
        if !signed {
            prop_assert_eq!(status, 401, "{} without a valid signature", outcome);
        }
    }
    if status == 503 {
        prop_assert!(!headers.queue_up, "503 while the queue was up");
    }
    match answer.sent.as_slice() {
        [] => prop_assert_ne!(outcome, "enqueued", "answered enqueued, sent nothing"),
        [message] => {
            prop_assert!(signed, "sent an unsigned job");
            prop_assert_eq!((status, outcome), (202, "enqueued"));
            let envelope = Envelope::decode(&message.body)
                .map_err(|e| TestCaseError::fail(format!("the message is no envelope: {e}")))?;
            prop_assert_eq!(Some(envelope.event.job.id.0), answer.job_id);
            let delivery = headers.delivery.as_ref().map(|d| d.0.as_slice());
            prop_assert_eq!(Some(envelope.event.delivery.0.as_bytes()), delivery);
        }
        more => prop_assert!(false, "one delivery sent {} messages", more.len()),
    }
    Ok(())
}

/// For deliveries that are signed, well-formed and within the limit: the outcome the
/// README's table gives, worked out from the job alone.
fn expect_documented_outcome(input: &Shaped, answer: &Answer) -> Result<(), TestCaseError> {
    let job = &input.body.job;
    let served = job
        .labels
        .iter()
        .all(|l| POOL_LABELS.iter().any(|p| p.eq_ignore_ascii_case(l)));
    let expected = if answer.body_len > LIMIT {
        "payload_too_large"
    } else if !ACTIONS.contains(&job.action.as_str()) {
        "ignored_action"
    } else if !job.owner.eq_ignore_ascii_case(ALLOWED_ORG) {
        "not_allowed"
    } else if job.action == "queued" && !served {
        "no_matching_pool"
    } else if !input.headers.queue_up {
        "queue_unavailable"
    } else {
        "enqueued"
    };
    prop_assert_eq!(answer.outcome.as_str(), expected);
    if let [message] = answer.sent.as_slice() {
        let envelope = Envelope::decode(&message.body).expect("checked by the invariants");
        prop_assert_eq!(envelope.event.job.id.0, job.job_id);
        prop_assert_eq!(envelope.event.action.as_str(), job.action.as_str());
        prop_assert_eq!(&envelope.event.repository.owner, &job.owner);
        prop_assert_eq!(envelope.pool.is_some(), served);
    }
    Ok(())
}
