//! `[github]`: the GitHub App or Apps dockhand acts as, and the budget it keeps within
//! GitHub's rate limits.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Problems, SecretSource};

/// `[github]`: the GitHub App(s) dockhand acts as, and where its API is.
///
/// One App is `app_id` and `private_key`; several are `[[github.app]]` entries. Each App
/// must be installed on every org or repository the pools serve.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GitHubSettings {
    /// The REST API root: `https://api.github.com`, or `https://HOST/api/v3` for GitHub
    /// Enterprise Server.
    pub api_url: String,
    /// The GitHub App's id, when dockhand acts as one App. Required by workers that launch
    /// (not in dry-run), unless `[[github.app]]` lists the Apps.
    pub app_id: Option<u64>,
    /// The App's private key (PEM), from a value, a file or an SSM SecureString.
    pub private_key: Option<SecretSource>,
    /// Several Apps (`[[github.app]]`): runner registrations are spread over them by the
    /// budget each has left, so N Apps start about N times as many runners a minute.
    #[serde(rename = "app", skip_serializing_if = "Vec::is_empty")]
    pub apps: Vec<GitHubAppSettings>,
    /// Upper bound on one GitHub API call.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    pub limits: GitHubLimits,
}

/// `[[github.app]]`: one GitHub App.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GitHubAppSettings {
    pub id: u64,
    /// The App's private key (PEM), from a value, a file or an SSM SecureString.
    pub private_key: SecretSource,
}

/// `[github.limits]`: the budget each App keeps, so calls wait for it rather than trip
/// GitHub's limits. The defaults are GitHub's documented limits
/// (<https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api>).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GitHubLimits {
    /// The secondary limit, per App: points a minute, where a GET costs 1 point and a
    /// POST, PATCH, PUT or DELETE 5 (a JIT config is a POST). GitHub: 900.
    pub points_per_minute: u32,
    /// Points that may go at once after a quiet spell (3 JIT configs at 15). The rest of
    /// the minute's points, less a second's worth kept back for network jitter, are spread
    /// evenly, so the burst plus a minute's refill stays under `points_per_minute`.
    pub points_burst: u32,
    /// Requests in flight at once, per App. GitHub: at most 100.
    pub concurrent: u32,
    /// Requests kept back on each installation's hourly primary limit (read from the
    /// answers' `x-ratelimit-*` headers): registrations stop short of it, so the clean-up
    /// of runners can still go through.
    pub primary_reserve: u32,
    /// How long a call waits for budget. A registration that would wait longer is
    /// deferred (without counting towards the dead-letter limit) until the earliest
    /// refill.
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
}

impl Default for GitHubLimits {
    fn default() -> Self {
        Self {
            points_per_minute: 900,
            points_burst: 15,
            concurrent: 100,
            primary_reserve: 100,
            max_wait: Duration::from_secs(30),
        }
    }
}

impl Default for GitHubSettings {
    fn default() -> Self {
        Self {
            api_url: "https://api.github.com".to_string(),
            app_id: None,
            private_key: None,
            apps: Vec::new(),
            request_timeout: Duration::from_secs(10),
            limits: GitHubLimits::default(),
        }
    }
}

impl GitHubSettings {
    pub(super) fn check(&self, p: &mut Problems) {
        super::check_http_url("github.api_url", &self.api_url, p);
        if let Some(key) = &self.private_key {
            key.check("github.private_key", p);
        }
        if !self.apps.is_empty() && (self.app_id.is_some() || self.private_key.is_some()) {
            p.add(
                "github.app",
                "set either `[[github.app]]` entries or `app_id` and `private_key`, not both",
            );
        }
        let mut ids = std::collections::HashSet::new();
        for (i, app) in self.apps.iter().enumerate() {
            app.private_key
                .check(&format!("github.app[{i}].private_key"), p);
            if !ids.insert(app.id) {
                p.add(
                    format!("github.app[{i}].id"),
                    format!("App {} is listed twice", app.id),
                );
            }
        }
        if self.request_timeout.is_zero() {
            p.add("github.request_timeout", "must be greater than zero");
        }
        let limits = &self.limits;
        // A JIT config costs 5 points: fewer could never register a runner.
        if limits.points_per_minute < 5 {
            p.add("github.limits.points_per_minute", "must be at least 5");
        }
        if limits.points_burst < 5
            || limits.points_burst + limits.points_per_minute / 60 >= limits.points_per_minute
        {
            p.add(
                "github.limits.points_burst",
                "must be at least 5 (one JIT config), and with a second's points less than \
                 points_per_minute",
            );
        }
        if limits.concurrent == 0 {
            p.add("github.limits.concurrent", "must be at least 1");
        }
    }

    /// Whether the App is configured well enough to launch runners.
    pub(super) fn check_for_launching(&self, p: &mut Problems) {
        if !self.apps.is_empty() {
            return;
        }
        if self.app_id.is_none() {
            p.add(
                "github.app_id",
                "required unless worker.dry_run = true (or list `[[github.app]]` entries)",
            );
        }
        if self.private_key.is_none() {
            p.add(
                "github.private_key",
                "required unless worker.dry_run = true",
            );
        }
    }

    /// The Apps to act as: the `[[github.app]]` entries, or the one App of `app_id` and
    /// `private_key`. Empty when neither is set.
    pub fn app_list(&self) -> Vec<GitHubAppSettings> {
        if !self.apps.is_empty() {
            return self.apps.clone();
        }
        match (self.app_id, &self.private_key) {
            (Some(id), Some(key)) => vec![GitHubAppSettings {
                id,
                private_key: key.clone(),
            }],
            _ => Vec::new(),
        }
    }
}
