//! Bodies: raw bytes, and `workflow_job` payloads edited as JSON, then as text.

use std::fmt;

use dockhand::synthetic::{SyntheticJob, workflow_job_payload};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use serde_json::Value;

use super::headers::{ContentType, Headers};
use super::values::{LABEL_WORDS, action, json_value, label_word, owner, text};
use super::{CANARY, LIMIT};

/// Printed as its length and a short prefix.
#[derive(Clone)]
pub(super) struct RawBytes(pub(super) Vec<u8>);

impl fmt::Debug for RawBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = &self.0[..self.0.len().min(64)];
        write!(
            f,
            "{} bytes: {:?}",
            self.0.len(),
            bytes::Bytes::copy_from_slice(shown)
        )?;
        if shown.len() < self.0.len() {
            f.write_str("...")
        } else {
            Ok(())
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct Raw {
    pub(super) headers: Headers,
    pub(super) body: RawBytes,
}

pub(super) fn raw_body() -> impl Strategy<Value = RawBytes> {
    let jsonish = b"{}[]\":,.-+eE0123456789 \n\ttruefalsn\\u/abcdXYZ".to_vec();
    let sizes = vec![0, 1, LIMIT - 1, LIMIT, LIMIT + 1, 2 * LIMIT];
    prop_oneof![
        4 => vec(any::<u8>(), 0..512),
        4 => vec(select(jsonish), 0..512),
        1 => (select(sizes), any::<u8>()).prop_map(|(n, b)| vec![b; n]),
    ]
    .prop_map(RawBytes)
}

/// The synthetic job a body starts from.
#[derive(Debug, Clone)]
pub(super) struct Job {
    pub(super) action: String,
    pub(super) job_id: u64,
    pub(super) labels: Vec<String>,
    pub(super) owner: String,
    installation_id: Option<u64>,
    steps: usize,
}

impl Job {
    fn payload(&self) -> Value {
        workflow_job_payload(&SyntheticJob {
            action: self.action.clone(),
            job_id: self.job_id,
            run_id: 940463255,
            labels: self.labels.clone(),
            repo: format!("{}/hello-world", self.owner),
            installation_id: self.installation_id,
            steps: self.steps,
        })
    }
}

/// A delivery body: a job, edited as JSON, then as text, encoded, and sized.
#[derive(Debug, Clone)]
pub(super) struct JsonBody {
    pub(super) job: Job,
    edits: Vec<Edit>,
    mangle: Mangle,
    form: Form,
    size: Size,
}

#[derive(Debug, Clone)]
pub(super) struct Shaped {
    pub(super) headers: Headers,
    pub(super) body: JsonBody,
}

impl Shaped {
    /// The headers follow the body's encoding: a form is sent as one, unless the headers
    /// name another type on purpose.
    pub(super) fn new((mut headers, body): (Headers, JsonBody)) -> Self {
        headers.form = !matches!(body.form, Form::Json);
        Self { headers, body }
    }

    /// As [`Shaped::new`], and a form is always sent as one.
    pub(super) fn well_formed(parts: (Headers, JsonBody)) -> Self {
        let mut shaped = Self::new(parts);
        if shaped.headers.form {
            shaped.headers.content_type = ContentType::Natural;
        }
        shaped
    }
}

#[derive(Debug, Clone)]
enum Edit {
    Remove(&'static str),
    Set(&'static str, Value),
    Labels(LabelShape),
    /// Replaces the value with raw JSON text that `serde_json::Value` cannot hold.
    Raw(&'static str, Token),
    /// Adds a key dockhand does not know to the object at the pointer.
    Unknown(&'static str, String, Value),
}

#[derive(Debug, Clone)]
enum LabelShape {
    Words(Vec<String>),
    Numbered(usize),
    Values(Vec<Value>),
    NotAList(Value),
    Nested(usize),
}

#[derive(Debug, Clone)]
enum Token {
    Literal(&'static str),
    Nested { depth: usize, object: bool },
}

/// Damage done to the serialized text.
#[derive(Debug, Clone)]
enum Mangle {
    None,
    Truncate(Index),
    Splice(Index, Vec<u8>),
    Overwrite(Index, u8),
    ByteOrderMark,
    DuplicateKey(&'static str, Value),
    InAnArray,
}

#[derive(Debug, Clone, Copy)]
enum Form {
    Json,
    /// `payload=<urlencoded JSON>`, sometimes among other fields.
    Payload {
        first: bool,
    },
    WithoutPayload,
}

#[derive(Debug, Clone, Copy)]
enum Size {
    AsIs,
    /// Padded with whitespace (or `&` in a form) to the limit plus this.
    Limit(isize),
}

const REQUIRED: [&str; 10] = [
    "/action",
    "/workflow_job",
    "/workflow_job/id",
    "/workflow_job/run_id",
    "/workflow_job/status",
    "/workflow_job/labels",
    "/repository",
    "/repository/full_name",
    "/repository/owner",
    "/repository/owner/login",
];
const OPTIONAL: [&str; 12] = [
    "/workflow_job/run_attempt",
    "/workflow_job/conclusion",
    "/workflow_job/runner_id",
    "/workflow_job/runner_name",
    "/workflow_job/runner_group_id",
    "/workflow_job/runner_group_name",
    "/workflow_job/created_at",
    "/workflow_job/started_at",
    "/workflow_job/completed_at",
    "/installation",
    "/installation/id",
    "/repository/owner/type",
];
/// Fields dockhand never reads.
const UNREAD: [&str; 7] = [
    "/workflow_job/steps",
    "/workflow_job/name",
    "/workflow_job/workflow_name",
    "/workflow_job/head_sha",
    "/repository/name",
    "/organization",
    "/sender",
];
const OBJECTS: [&str; 5] = [
    "",
    "/workflow_job",
    "/repository",
    "/repository/owner",
    "/installation",
];

impl Edit {
    fn apply(&self, v: &mut Value, raw: &mut Vec<String>) {
        let (pointer, value) = match self {
            Self::Remove(pointer) => {
                if let Some((parent, key)) = parent(v, pointer) {
                    parent.remove(key);
                }
                return;
            }
            Self::Set(pointer, value) => (*pointer, value.clone()),
            Self::Labels(shape) => ("/workflow_job/labels", shape.value()),
            Self::Raw(pointer, token) => {
                raw.push(token.text());
                (*pointer, Value::String(placeholder(raw.len() - 1)))
            }
            Self::Unknown(object, key, value) => {
                if let Some(Value::Object(o)) = v.pointer_mut(object) {
                    o.insert(key.clone(), value.clone());
                }
                return;
            }
        };
        if let Some((parent, key)) = parent(v, pointer) {
            parent.insert(key.to_string(), value);
        }
    }
}

/// The object holding the pointer's last key, if there is one.
fn parent<'v>(
    v: &'v mut Value,
    pointer: &'static str,
) -> Option<(&'v mut serde_json::Map<String, Value>, &'static str)> {
    let (parent, key) = pointer.rsplit_once('/')?;
    Some((v.pointer_mut(parent)?.as_object_mut()?, key))
}

fn placeholder(i: usize) -> String {
    format!("@@raw-{i}@@")
}

impl LabelShape {
    fn value(&self) -> Value {
        match self {
            Self::Words(words) => Value::from(words.clone()),
            Self::Numbered(n) => Value::from((0..*n).map(|i| format!("l{i}")).collect::<Vec<_>>()),
            Self::Values(values) => Value::Array(values.clone()),
            Self::NotAList(value) => value.clone(),
            Self::Nested(depth) => {
                (0..*depth).fold(Value::from("linux"), |v, _| Value::Array(vec![v]))
            }
        }
    }
}

impl Token {
    fn text(&self) -> String {
        match self {
            Self::Literal(text) => (*text).to_string(),
            Self::Nested {
                depth,
                object: false,
            } => format!("{}{}", "[".repeat(*depth), "]".repeat(*depth)),
            Self::Nested {
                depth,
                object: true,
            } => {
                format!("{}1{}", "{\"a\":".repeat(*depth), "}".repeat(*depth))
            }
        }
    }
}

impl Mangle {
    fn apply(&self, mut text: Vec<u8>) -> Vec<u8> {
        match self {
            Self::None => {}
            Self::Truncate(i) => text.truncate(i.index(text.len().max(1))),
            Self::Splice(i, bytes) => {
                let at = i.index(text.len() + 1);
                text.splice(at..at, bytes.iter().copied());
            }
            Self::Overwrite(i, byte) => {
                if !text.is_empty() {
                    let at = i.index(text.len());
                    text[at] = *byte;
                }
            }
            Self::ByteOrderMark => {
                text.splice(0..0, "\u{feff}".bytes());
            }
            Self::DuplicateKey(key, value) => {
                let anchor: &[u8] = if ["id", "labels"].contains(key) {
                    b"\"workflow_job\":{"
                } else {
                    b"{"
                };
                if let Some(at) = find(&text, anchor) {
                    let field = format!("\"{key}\":{value},");
                    let at = at + anchor.len();
                    text.splice(at..at, field.into_bytes());
                }
            }
            Self::InAnArray => {
                text.insert(0, b'[');
                text.push(b']');
            }
        }
        text
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

impl JsonBody {
    pub(super) fn render(&self) -> Vec<u8> {
        let mut v = self.job.payload();
        let mut raw = Vec::new();
        for edit in &self.edits {
            edit.apply(&mut v, &mut raw);
        }
        let mut text = v.to_string();
        for (i, token) in raw.iter().enumerate() {
            text = text.replacen(&format!("\"{}\"", placeholder(i)), token, 1);
        }
        let json = self.mangle.apply(text.into_bytes());
        let (mut body, pad) = match self.form {
            Form::Json => (json, b' '),
            Form::Payload { first } => {
                let mut form = form_urlencoded::Serializer::new(String::new());
                if !first {
                    form.append_pair("other", CANARY);
                }
                let json = String::from_utf8_lossy(&json);
                (
                    form.append_pair("payload", &json).finish().into_bytes(),
                    b'&',
                )
            }
            Form::WithoutPayload => (format!("other={CANARY}").into_bytes(), b'&'),
        };
        if let Size::Limit(offset) = self.size {
            let target = LIMIT.saturating_add_signed(offset);
            if body.len() < target {
                body.resize(target, pad);
            }
        }
        body
    }
}

fn labels() -> impl Strategy<Value = LabelShape> {
    prop_oneof![
        4 => vec(label_word(), 0..6).prop_map(LabelShape::Words),
        1 => select(vec![63, 64, 65, 1_000, 10_000]).prop_map(LabelShape::Numbered),
        1 => vec(json_value(), 0..4).prop_map(LabelShape::Values),
        1 => json_value().prop_map(LabelShape::NotAList),
        1 => (1..200usize).prop_map(LabelShape::Nested),
    ]
}

fn token() -> impl Strategy<Value = Token> {
    let literals = [
        "18446744073709551615",
        "18446744073709551616",
        "-18446744073709551616",
        "-1",
        "-0",
        "4294967296",
        "1e400",
        "-1e400",
        "1E-400",
        "0.5",
        "1.0",
        "1e2",
        "01",
        "1.",
        ".5",
        "123456789012345678901234567890123456789",
        "NaN",
        "Infinity",
        "true",
        "null",
        "\"\\ud800\"",
        "\"\\udc00\\ud800\"",
        "\"\\u0000\"",
        "\"\\uDBFF\\uDFFF\"",
        "\"\\x\"",
        "\"2024-05-01T10:00:00+25:00\"",
        "\"+275760-09-13T00:00:00Z\"",
        "{}",
        "[]",
        "",
    ];
    prop_oneof![
        3 => select(literals.to_vec()).prop_map(Token::Literal),
        1 => (select(vec![1, 64, 126, 127, 128, 129, 1_000, 8_000]), any::<bool>())
            .prop_map(|(depth, object)| Token::Nested { depth, object }),
    ]
}

fn any_field() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        3 => select(REQUIRED.to_vec()),
        2 => select(OPTIONAL.to_vec()),
        1 => select(UNREAD.to_vec()),
    ]
}

fn unknown_key() -> impl Strategy<Value = Edit> {
    (
        select(OBJECTS.to_vec()),
        prop_oneof![Just(CANARY.to_string()), text()],
        json_value(),
    )
        .prop_map(|(object, key, value)| Edit::Unknown(object, key, value))
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        3 => any_field().prop_map(Edit::Remove),
        4 => (any_field(), json_value()).prop_map(|(field, value)| Edit::Set(field, value)),
        3 => labels().prop_map(Edit::Labels),
        2 => (any_field(), token()).prop_map(|(field, token)| Edit::Raw(field, token)),
        1 => unknown_key(),
    ]
}

fn job_with(labels: impl Strategy<Value = Vec<String>>) -> impl Strategy<Value = Job> {
    (
        action(),
        any::<u64>(),
        labels,
        owner(),
        any::<Option<u64>>(),
        0..8usize,
    )
        .prop_map(
            |(action, job_id, labels, owner, installation_id, steps)| Job {
                action,
                job_id,
                labels,
                owner,
                installation_id,
                steps,
            },
        )
}

fn job() -> impl Strategy<Value = Job> {
    job_with(vec(label_word(), 0..5))
}

/// A job whose required fields are all there and well-typed; its labels may still miss.
fn clean_job() -> impl Strategy<Value = Job> {
    let words: Vec<&str> = LABEL_WORDS.into_iter().chain(["🦀"]).collect();
    job_with(vec(select(words).prop_map(String::from), 0..5))
}

fn size() -> impl Strategy<Value = Size> {
    prop_oneof![
        8 => Just(Size::AsIs),
        1 => select(vec![-1, 0, 1, 100]).prop_map(Size::Limit),
    ]
}

pub(super) fn json_body() -> impl Strategy<Value = JsonBody> {
    let mangle = prop_oneof![
        12 => Just(Mangle::None),
        1 => any::<Index>().prop_map(Mangle::Truncate),
        1 => (any::<Index>(), vec(any::<u8>(), 1..8)).prop_map(|(i, b)| Mangle::Splice(i, b)),
        1 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mangle::Overwrite(i, b)),
        1 => Just(Mangle::ByteOrderMark),
        1 => (select(vec!["action", "workflow_job", "id", "labels"]), json_value())
            .prop_map(|(key, value)| Mangle::DuplicateKey(key, value)),
        1 => Just(Mangle::InAnArray),
    ];
    let form = prop_oneof![
        8 => Just(Form::Json),
        2 => any::<bool>().prop_map(|first| Form::Payload { first }),
        1 => Just(Form::WithoutPayload),
    ];
    (job(), vec(edit(), 0..4), mangle, form, size()).prop_map(|(job, edits, mangle, form, size)| {
        JsonBody {
            job,
            edits,
            mangle,
            form,
            size,
        }
    })
}

/// Only edits that leave a well-formed delivery: optional fields gone or null, unread
/// fields anything, unknown keys anywhere.
pub(super) fn clean_body() -> impl Strategy<Value = JsonBody> {
    let removable = [OPTIONAL.as_slice(), UNREAD.as_slice()].concat();
    let edit = prop_oneof![
        2 => select(removable).prop_map(Edit::Remove),
        1 => select(OPTIONAL.to_vec()).prop_map(|field| Edit::Set(field, Value::Null)),
        2 => (select(UNREAD.to_vec()), json_value())
            .prop_map(|(field, value)| Edit::Set(field, value)),
        2 => unknown_key(),
    ];
    let form = prop_oneof![
        4 => Just(Form::Json),
        1 => any::<bool>().prop_map(|first| Form::Payload { first }),
    ];
    let size = prop_oneof![
        8 => Just(Size::AsIs),
        1 => select(vec![-1, 0]).prop_map(Size::Limit),
    ];
    (clean_job(), vec(edit, 0..4), form, size).prop_map(|(job, edits, form, size)| JsonBody {
        job,
        edits,
        mangle: Mangle::None,
        form,
        size,
    })
}
