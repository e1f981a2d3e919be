//! The values the payload edits put in: text, numbers, JSON, labels, actions and owners,
//! weighted towards what a parser could mistake for something valid.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::Value;

use super::{ACTIONS, ALLOWED_ORG, CANARY};

pub(super) fn text() -> impl Strategy<Value = String> {
    let words = [
        "queued",
        "completed",
        "requested",
        "self-hosted",
        "linux",
        "LINUX",
        "x64",
        "octo-org",
        "octo-org/hello-world",
        "2024-05-01T10:00:00Z",
        "2024-13-45T99:00:00Z",
        "",
        " ",
        "İ",
        "ß",
        "ǅ",
        "\u{0}",
        "\u{feff}",
        "\u{202e}",
        "🦀",
        CANARY,
    ];
    prop_oneof![
        8 => select(words.to_vec()).prop_map(String::from),
        8 => vec(any::<char>(), 0..24).prop_map(String::from_iter),
        1 => (0..20_000usize).prop_map(|n| "x".repeat(n)),
    ]
}

pub(super) fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        select(vec![
            0u64,
            1,
            u64::from(u32::MAX),
            u64::from(u32::MAX) + 1,
            u64::MAX
        ])
        .prop_map(Value::from),
        select(vec![-1i64, i64::MIN]).prop_map(Value::from),
        select(vec![0.5f64, -0.0, 1e300, f64::MIN_POSITIVE]).prop_map(Value::from),
    ]
}

/// An object key: often the canary, since a key is what a parser is likeliest to quote.
pub(super) fn key() -> impl Strategy<Value = String> {
    prop_oneof![3 => text(), 1 => Just(CANARY.to_string())]
}

pub(super) fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        number(),
        text().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 24, 5, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..5).prop_map(Value::Array),
            vec((key(), inner), 0..5).prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Labels a pool asks for, in other cases, and one it does not.
pub(super) const LABEL_WORDS: [&str; 7] = [
    "self-hosted",
    "linux",
    "x64",
    "Self-Hosted",
    "LINUX",
    "X64",
    "gpu",
];

pub(super) fn label_word() -> impl Strategy<Value = String> {
    let words: Vec<&str> = LABEL_WORDS.into_iter().chain(["ubuntu-latest"]).collect();
    prop_oneof![
        6 => select(words).prop_map(String::from),
        1 => text(),
    ]
}

pub(super) fn action() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => Just("queued".to_string()),
        3 => select(ACTIONS.to_vec()).prop_map(String::from),
        1 => select(vec!["requested", "Queued", "queued ", ""]).prop_map(String::from),
    ]
}

pub(super) fn owner() -> impl Strategy<Value = String> {
    let others = [
        "Octo-Org",
        "OCTO-ORG",
        "other-org",
        "octo-org-2",
        "ｏｃｔｏ-org",
        "octo-orğ",
    ];
    prop_oneof![
        6 => Just(ALLOWED_ORG.to_string()),
        2 => select(others.to_vec()).prop_map(String::from),
    ]
}
