//! `[github]`: the GitHub App dockhand acts as.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Problems, SecretSource};

/// `[github]`: the GitHub App dockhand acts as, and where its API is.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GitHubSettings {
    /// The REST API root: `https://api.github.com`, or `https://HOST/api/v3` for GitHub
    /// Enterprise Server.
    pub api_url: String,
    /// The GitHub App's id. Required by workers that launch (not in dry-run).
    pub app_id: Option<u64>,
    /// The App's private key (PEM), from a value, a file or an SSM SecureString.
    pub private_key: Option<SecretSource>,
    /// Upper bound on one GitHub API call.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
}

impl Default for GitHubSettings {
    fn default() -> Self {
        Self {
            api_url: "https://api.github.com".to_string(),
            app_id: None,
            private_key: None,
            request_timeout: Duration::from_secs(10),
        }
    }
}

impl GitHubSettings {
    pub(super) fn check(&self, p: &mut Problems) {
        super::check_http_url("github.api_url", &self.api_url, p);
        if let Some(key) = &self.private_key {
            key.check("github.private_key", p);
        }
        if self.request_timeout.is_zero() {
            p.add("github.request_timeout", "must be greater than zero");
        }
    }

    /// Whether the App is configured well enough to launch runners.
    pub(super) fn check_for_launching(&self, p: &mut Problems) {
        if self.app_id.is_none() {
            p.add("github.app_id", "required unless worker.dry_run = true");
        }
        if self.private_key.is_none() {
            p.add(
                "github.private_key",
                "required unless worker.dry_run = true",
            );
        }
    }
}
