//! `[webhook]`: what the ingress accepts.

use serde::{Deserialize, Serialize};

use super::{Problems, SecretSource};

/// `[webhook]`: what the ingress accepts.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookSettings {
    /// Any of these may sign a delivery, so a secret can be rotated without downtime.
    pub secrets: Vec<SecretSource>,
    /// Larger bodies are refused with 413 before they are read in full.
    pub max_body_bytes: usize,
    /// Jobs asking for more labels than this are refused as malformed.
    pub max_labels: usize,
    /// When either allowlist is non-empty, only these orgs (owners) or `owner/name`
    /// repositories are accepted; others are answered 202 and dropped.
    pub allowed_orgs: Vec<String>,
    pub allowed_repos: Vec<String>,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            secrets: Vec::new(),
            max_body_bytes: 1024 * 1024,
            max_labels: 64,
            allowed_orgs: Vec::new(),
            allowed_repos: Vec::new(),
        }
    }
}

impl WebhookSettings {
    pub(super) fn check(&self, p: &mut Problems) {
        for (i, secret) in self.secrets.iter().enumerate() {
            secret.check(&format!("webhook.secrets[{i}]"), p);
        }
        if !(1024..=25 * 1024 * 1024).contains(&self.max_body_bytes) {
            p.add(
                "webhook.max_body_bytes",
                "must be between 1024 and 26214400 (GitHub caps payloads at 25 MB)",
            );
        }
        if !(1..=1000).contains(&self.max_labels) {
            p.add("webhook.max_labels", "must be between 1 and 1000");
        }
        for (i, repo) in self.allowed_repos.iter().enumerate() {
            let parts: Vec<&str> = repo.split('/').collect();
            if parts.len() != 2 || parts.iter().any(|s| s.is_empty()) {
                p.add(
                    format!("webhook.allowed_repos[{i}]"),
                    "must be `owner/name`",
                );
            }
        }
        if self
            .allowed_orgs
            .iter()
            .any(|o| o.is_empty() || o.contains('/'))
        {
            p.add("webhook.allowed_orgs", "entries are bare owner names");
        }
    }

    /// The check for a process that receives webhooks: it needs a secret to verify them.
    pub(super) fn check_for_ingress(&self, p: &mut Problems) {
        if self.secrets.is_empty() {
            p.add(
                "webhook.secrets",
                "at least one secret is required (`{ value = .. }`, `{ file = .. }` or `{ ssm = .. }`)",
            );
        }
    }
}
