//! The request around a body: method, GitHub's headers, and signatures right and wrong.

use std::fmt;

use axum::body::Body;
use axum::http::{HeaderValue, Method, Request};
use hmac::{Hmac, Mac};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::string::string_regex;

use super::{PATH, ROTATED_SECRET, SECRET};

/// Bytes that make a valid header value; printed lossily.
#[derive(Clone)]
pub(super) struct HeaderText(pub(super) Vec<u8>);

impl fmt::Debug for HeaderText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(&self.0))
    }
}

impl From<&str> for HeaderText {
    fn from(s: &str) -> Self {
        Self(s.as_bytes().to_vec())
    }
}

#[derive(Debug, Clone)]
pub(super) enum ContentType {
    /// `application/json`, or the form type for a form body.
    Natural,
    Absent,
    Given(HeaderText),
}

/// Which `X-Hub-Signature-256` headers the delivery carries: a valid one is printed by its
/// kind, never its value.
#[derive(Debug, Clone)]
pub(super) enum Signature {
    Absent,
    /// Only the SHA-1 `X-Hub-Signature`.
    LegacyOnly,
    Garbage(HeaderText),
    WithAnotherSecret,
    ForAnotherBody,
    /// The right one with one hex digit changed.
    NearMiss(Index),
    /// The right one, cut short.
    Truncated(Index),
    Valid,
    ValidUppercaseHex,
    ValidWithLegacy,
    Rotated,
    /// Two headers; the handler reads the first.
    ValidThenGarbage(HeaderText),
    GarbageThenValid(HeaderText),
}

/// The `X-Hub-Signature-256` values to send, and whether one is valid for the body.
pub(super) struct Signatures {
    pub(super) headers: Vec<Vec<u8>>,
    pub(super) valid: bool,
}

impl Signature {
    pub(super) fn values(&self, body: &[u8]) -> Signatures {
        let good = [hmac_header(SECRET, body), hmac_header(ROTATED_SECRET, body)];
        let headers = self.headers(body, &good[0], &good[1]);
        // The oracle: some header is `sha256=` and the hex HMAC of exactly this body under
        // a configured secret, computed here rather than by the code under test.
        let valid = headers
            .iter()
            .any(|v| v.starts_with(b"sha256=") && good.iter().any(|g| g.eq_ignore_ascii_case(v)));
        Signatures { headers, valid }
    }

    fn headers(&self, body: &[u8], signed: &[u8], rotated: &[u8]) -> Vec<Vec<u8>> {
        let valid = || signed.to_vec();
        match self {
            Self::Absent | Self::LegacyOnly => vec![],
            Self::Garbage(g) => vec![g.0.clone()],
            Self::WithAnotherSecret => vec![hmac_header("not-the-secret", body)],
            Self::ForAnotherBody => vec![hmac_header(SECRET, &[body, b" "].concat())],
            Self::NearMiss(i) => {
                let mut v = valid();
                let at = "sha256=".len() + i.index(64);
                v[at] = if v[at] == b'0' { b'1' } else { b'0' };
                vec![v]
            }
            Self::Truncated(i) => {
                let v = valid();
                vec![v[..i.index(v.len())].to_vec()]
            }
            Self::Valid | Self::ValidWithLegacy => vec![valid()],
            Self::ValidUppercaseHex => {
                let v = valid();
                vec![[&v[..7], &v[7..].to_ascii_uppercase()].concat()]
            }
            Self::Rotated => vec![rotated.to_vec()],
            Self::ValidThenGarbage(g) => vec![valid(), g.0.clone()],
            Self::GarbageThenValid(g) => vec![g.0.clone(), valid()],
        }
    }
}

fn hmac_header(secret: &str, body: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes())).into_bytes()
}

#[derive(Debug, Clone)]
pub(super) struct Headers {
    pub(super) method: Method,
    pub(super) query: Option<String>,
    pub(super) event: Option<HeaderText>,
    pub(super) delivery: Option<HeaderText>,
    pub(super) content_type: ContentType,
    pub(super) form: bool,
    pub(super) signature: Signature,
    /// Whether `Content-Length` is sent (always the true length, as hyper passes it on).
    pub(super) content_length: bool,
    pub(super) queue_up: bool,
}

impl Headers {
    /// A delivery as GitHub sends it.
    pub(super) fn github() -> Self {
        Self {
            method: Method::POST,
            query: None,
            event: Some("workflow_job".into()),
            delivery: Some("72d3162e-cc78-11e3-81ab-4c9367dc0958".into()),
            content_type: ContentType::Natural,
            form: false,
            signature: Signature::Valid,
            content_length: true,
            queue_up: true,
        }
    }

    pub(super) fn request(&self, signatures: &[Vec<u8>], body: &[u8]) -> Request<Body> {
        let uri = match &self.query {
            Some(q) => format!("{PATH}?{q}"),
            None => PATH.to_string(),
        };
        let value = |bytes: &[u8]| HeaderValue::from_bytes(bytes).expect("a valid header value");
        let mut request = Request::builder().method(self.method.clone()).uri(uri);
        if let Some(event) = &self.event {
            request = request.header("x-github-event", value(&event.0));
        }
        if let Some(delivery) = &self.delivery {
            request = request.header("x-github-delivery", value(&delivery.0));
        }
        match (&self.content_type, self.form) {
            (ContentType::Natural, false) => {
                request = request.header("content-type", "application/json")
            }
            (ContentType::Natural, true) => {
                request = request.header("content-type", "application/x-www-form-urlencoded");
            }
            (ContentType::Absent, _) => {}
            (ContentType::Given(ct), _) => request = request.header("content-type", value(&ct.0)),
        }
        for signature in signatures {
            request = request.header("x-hub-signature-256", value(signature));
        }
        if matches!(
            self.signature,
            Signature::LegacyOnly | Signature::ValidWithLegacy
        ) {
            request = request.header(
                "x-hub-signature",
                "sha1=0123456789abcdef0123456789abcdef01234567",
            );
        }
        if self.content_length {
            request = request.header("content-length", body.len());
        }
        request
            .body(Body::from(body.to_vec()))
            .expect("a valid request")
    }
}

fn header_text() -> impl Strategy<Value = HeaderText> {
    let byte = any::<u8>().prop_map(|b| {
        if b == b'\t' || (b >= 0x20 && b != 0x7f) {
            b
        } else {
            b'?'
        }
    });
    vec(byte, 0..48).prop_map(HeaderText)
}

fn garbage_signature() -> impl Strategy<Value = HeaderText> {
    prop_oneof![
        header_text(),
        vec(select(b"0123456789abcdefABCDEFxz ".to_vec()), 0..80)
            .prop_map(|hex| HeaderText([b"sha256=".as_slice(), &hex].concat())),
    ]
}

fn signature(valid_weight: u32) -> impl Strategy<Value = Signature> {
    prop_oneof![
        valid_weight => Just(Signature::Valid),
        1 => Just(Signature::ValidUppercaseHex),
        1 => Just(Signature::ValidWithLegacy),
        1 => Just(Signature::Rotated),
        1 => garbage_signature().prop_map(Signature::ValidThenGarbage),
        1 => garbage_signature().prop_map(Signature::GarbageThenValid),
        1 => Just(Signature::Absent),
        1 => Just(Signature::LegacyOnly),
        2 => garbage_signature().prop_map(Signature::Garbage),
        1 => Just(Signature::WithAnotherSecret),
        1 => Just(Signature::ForAnotherBody),
        1 => any::<Index>().prop_map(Signature::NearMiss),
        1 => any::<Index>().prop_map(Signature::Truncated),
    ]
}

fn event(workflow_job_weight: u32) -> impl Strategy<Value = Option<HeaderText>> {
    let other = [
        "ping",
        "issues",
        "workflow_run",
        "WORKFLOW_JOB",
        "workflow_job ",
        "",
    ];
    prop_oneof![
        workflow_job_weight => Just(Some("workflow_job".into())),
        2 => Just(Some("ping".into())),
        2 => select(other.to_vec()).prop_map(|e| Some(e.into())),
        1 => header_text().prop_map(Some),
        1 => Just(None),
    ]
}

/// A strategy from a regex, compiled once (a `&str` strategy compiles it for every case).
fn matching(regex: &str) -> impl Strategy<Value = String> {
    string_regex(regex).expect("a valid regex")
}

fn uuid() -> impl Strategy<Value = String> {
    matching("[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
}

fn delivery() -> impl Strategy<Value = Option<HeaderText>> {
    prop_oneof![
        18 => uuid().prop_map(|d| Some(d.as_str().into())),
        1 => header_text().prop_map(Some),
        1 => Just(None),
    ]
}

fn content_type() -> impl Strategy<Value = ContentType> {
    let given = [
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/x-www-form-urlencoded",
        "text/plain",
        "multipart/form-data; boundary=x",
        ";",
        "",
    ];
    prop_oneof![
        12 => Just(ContentType::Natural),
        2 => Just(ContentType::Absent),
        2 => select(given.to_vec()).prop_map(|ct| ContentType::Given(ct.into())),
        1 => header_text().prop_map(ContentType::Given),
    ]
}

fn method() -> impl Strategy<Value = Method> {
    let others = [
        Method::GET,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::OPTIONS,
    ];
    prop_oneof![30 => Just(Method::POST), 1 => select(others.to_vec())]
}

fn query() -> impl Strategy<Value = Option<String>> {
    prop_oneof![9 => Just(None), 1 => matching("[a-z0-9=&%]{0,16}").prop_map(Some)]
}

fn queue_up() -> impl Strategy<Value = bool> {
    prop_oneof![15 => Just(true), 1 => Just(false)]
}

/// Headers for the raw-bytes property: anything goes, valid signatures in about a third.
pub(super) fn headers() -> impl Strategy<Value = Headers> {
    (
        (method(), query(), event(6), delivery()),
        (
            content_type(),
            any::<bool>(),
            signature(4),
            any::<bool>(),
            queue_up(),
        ),
    )
        .prop_map(
            |(
                (method, query, event, delivery),
                (content_type, form, signature, content_length, queue_up),
            )| {
                Headers {
                    method,
                    query,
                    event,
                    delivery,
                    content_type,
                    form,
                    signature,
                    content_length,
                    queue_up,
                }
            },
        )
}

/// Headers for `workflow_job` bodies: mostly what GitHub sends, mostly signed.
pub(super) fn job_headers() -> impl Strategy<Value = Headers> {
    (
        (method(), query(), event(40), delivery()),
        (content_type(), signature(20), any::<bool>(), queue_up()),
    )
        .prop_map(
            |(
                (method, query, event, delivery),
                (content_type, signature, content_length, queue_up),
            )| {
                Headers {
                    method,
                    query,
                    event,
                    delivery,
                    content_type,
                    form: false,
                    signature,
                    content_length,
                    queue_up,
                }
            },
        )
}

/// Headers as GitHub sends them, with a signature valid for the body.
pub(super) fn signed_headers() -> impl Strategy<Value = Headers> {
    let signature = prop_oneof![
        6 => Just(Signature::Valid),
        1 => Just(Signature::ValidUppercaseHex),
        1 => Just(Signature::ValidWithLegacy),
        1 => Just(Signature::Rotated),
        1 => garbage_signature().prop_map(Signature::ValidThenGarbage),
    ];
    let content_type = prop_oneof![
        4 => Just(ContentType::Natural),
        1 => Just(ContentType::Absent),
        1 => Just(ContentType::Given("application/json; charset=utf-8".into())),
    ];
    let delivery = prop_oneof![uuid(), matching("[ -~]{1,40}")];
    (signature, content_type, delivery, any::<bool>(), queue_up()).prop_map(
        |(signature, content_type, delivery, content_length, queue_up)| Headers {
            method: Method::POST,
            query: None,
            event: Some("workflow_job".into()),
            delivery: Some(delivery.as_str().into()),
            content_type,
            form: false,
            signature,
            content_length,
            queue_up,
        },
    )
}
