//! Settings: built-in defaults, then a TOML file, then `DOCKHAND_*` environment variables
//! (`__` separates nesting levels: `DOCKHAND_QUEUE__KIND=sqs`). Everything is validated at
//! start-up, and every problem names its key.

pub mod aws;
pub mod github;
pub mod pool;
pub mod secret;
pub mod source;
pub mod worker;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

pub use aws::AwsSettings;
pub use github::GitHubSettings;
pub use pool::{EcsLaunchSettings, LaunchType, PoolSettings, RunnerScopeKind};
pub use secret::{SecretResolver, SecretSource};
pub use source::ConfigSource;
pub use worker::{StoreSettings, WorkerSettings};

/// Where `--config` points when it is not given.
pub const DEFAULT_CONFIG_PATH: &str = "config/dockhand.toml";

/// `DOCKHAND_*` variables with `__` for nesting, less those outside the known sections
/// (which are not configuration: `DOCKHAND_CONFIG`, test harness variables).
fn known_sections(env: Env) -> Env {
    env.split("__").filter(|key| {
        let section = key.as_str().split('.').next().unwrap_or_default();
        SECTIONS.iter().any(|s| s.eq_ignore_ascii_case(section))
    })
}

/// The top-level sections; environment variables outside them are not configuration.
const SECTIONS: &[&str] = &[
    "server", "admin", "webhook", "queue", "aws", "github", "worker", "store", "log", "reload",
    "pool",
];

/// The whole configuration tree.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub server: ServerSettings,
    pub admin: AdminSettings,
    pub webhook: WebhookSettings,
    pub queue: QueueSettings,
    pub aws: AwsSettings,
    pub github: GitHubSettings,
    pub worker: WorkerSettings,
    pub store: StoreSettings,
    pub log: LogSettings,
    pub reload: ReloadSettings,
    #[serde(rename = "pool")]
    pub pools: Vec<PoolSettings>,
}

/// `[server]`: where GitHub's webhooks arrive.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    /// The path GitHub POSTs to.
    pub path: String,
    /// How long a shutdown waits for in-flight requests and queue sends.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// A connection whose request head has not arrived this long after it opened (or
    /// after its previous answer) is closed.
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// A request whose body is not in this long after its head is answered 408 and its
    /// connection closed.
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
    /// Connections open at once; more are answered 503 and closed at once.
    pub max_connections: usize,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            path: "/webhook".to_string(),
            shutdown_grace: Duration::from_secs(20),
            header_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(10),
            max_connections: 1024,
        }
    }
}

/// `[admin]`: `/metrics`, `/healthz` and `/readyz`, with the same limits as `[server]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSettings {
    pub listen: SocketAddr,
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
    pub max_connections: usize,
}

impl Default for AdminSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 9090)),
            header_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(10),
            max_connections: 128,
        }
    }
}

/// `[webhook]`: what the ingress accepts.
#[derive(Debug, Clone, Deserialize, Serialize)]
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

/// `[queue]`: the durable queue between ingress and workers.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueSettings {
    pub kind: QueueKind,
    /// `dockhand requeue` skips a message already requeued this many times, unless
    /// `--force`: a job that keeps dying needs a fix, not another replay.
    pub max_requeues: u32,
    pub sqs: SqsSettings,
    pub embedded: EmbeddedQueueSettings,
    pub batch: BatchSettings,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            kind: QueueKind::default(),
            max_requeues: 3,
            sqs: SqsSettings::default(),
            embedded: EmbeddedQueueSettings::default(),
            batch: BatchSettings::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueKind {
    #[default]
    Embedded,
    Sqs,
}

/// `[queue.sqs]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SqsSettings {
    pub url: Option<String>,
    /// The dead-letter queue; unset means the one named by the main queue's RedrivePolicy.
    pub dead_letter_url: Option<String>,
    /// Long-poll wait for receives (at most 20s).
    #[serde(with = "humantime_serde")]
    pub wait_time: Duration,
    #[serde(with = "humantime_serde")]
    pub visibility_timeout: Duration,
}

impl Default for SqsSettings {
    fn default() -> Self {
        Self {
            url: None,
            dead_letter_url: None,
            wait_time: Duration::from_secs(20),
            visibility_timeout: Duration::from_secs(60),
        }
    }
}

/// `[queue.embedded]`: a SQLite file with SQS's semantics, for single-node use.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddedQueueSettings {
    pub path: PathBuf,
    #[serde(with = "humantime_serde")]
    pub visibility_timeout: Duration,
    /// A message received this many times without being deleted goes to dead-letter
    /// on its next receive (SQS's maxReceiveCount).
    pub max_receives: u32,
    /// How often a long-polling receive looks again for messages whose visibility expired.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
}

impl Default for EmbeddedQueueSettings {
    fn default() -> Self {
        Self {
            path: PathBuf::from("data/queue.db"),
            visibility_timeout: Duration::from_secs(60),
            max_receives: 5,
            poll_interval: Duration::from_millis(250),
        }
    }
}

/// `[queue.batch]`: how the ingress groups concurrent sends into batches of up to 10.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchSettings {
    /// How long a batch waits for company once started; a lone message waits no longer.
    #[serde(with = "humantime_serde")]
    pub linger: Duration,
    /// Batches in flight at once; more requests wait and so fill the next batch.
    pub max_in_flight: usize,
}

impl Default for BatchSettings {
    fn default() -> Self {
        Self {
            linger: Duration::from_millis(2),
            max_in_flight: 16,
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// A tracing filter, e.g. `info` or `dockhand=debug,info`. `RUST_LOG` wins when set.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            level: "info".to_string(),
            format: LogFormat::Auto,
        }
    }
}

/// `[reload]`: re-reading the configuration while running.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReloadSettings {
    /// How often the config file or SSM parameter is read again; pool changes apply
    /// without a restart. `0s` turns reloading off.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
}

impl Default for ReloadSettings {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(30),
        }
    }
}

/// `auto` is human-readable on a terminal and JSON otherwise.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Auto,
    Json,
    Pretty,
}

impl Settings {
    /// Loads and validates: defaults, then `path` (or the default path if it exists), then
    /// `DOCKHAND_*` variables.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with_env(path, Env::prefixed("DOCKHAND_"))
    }

    fn load_with_env(path: Option<&Path>, env: Env) -> Result<Self, ConfigError> {
        let toml = match path {
            Some(path) if !path.is_file() => {
                return Err(ConfigError::Missing(path.to_path_buf()));
            }
            Some(path) => Toml::file_exact(path),
            None => Toml::file(DEFAULT_CONFIG_PATH),
        };
        Self::layered(Some(toml), env)
    }

    /// Loads and validates TOML text (an SSM parameter's value) the same way.
    pub fn load_str(text: &str) -> Result<Self, ConfigError> {
        Self::layered(Some(Toml::string(text)), Env::prefixed("DOCKHAND_"))
    }

    /// Defaults, then the TOML, then the environment, then validation.
    fn layered(
        toml: Option<figment::providers::Data<Toml>>,
        env: Env,
    ) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(toml) = toml {
            figment = figment.merge(toml);
        }
        let settings: Settings = figment
            .merge(known_sections(env))
            .extract()
            .map_err(|e| ConfigError::Invalid(Box::new(e)))?;
        settings.validate()?;
        Ok(settings)
    }

    /// `[aws]` from the defaults and the environment alone: what it takes to reach the SSM
    /// parameter that holds the rest.
    pub fn aws_from_env() -> Result<AwsSettings, ConfigError> {
        Figment::from(Serialized::defaults(Settings::default()))
            .merge(known_sections(Env::prefixed("DOCKHAND_")))
            .extract_inner("aws")
            .map_err(|e| ConfigError::Invalid(Box::new(e)))
    }

    /// Every problem with the settings, each naming its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut p = Problems::default();
        if !self.server.path.starts_with('/') || self.server.path.contains(char::is_whitespace) {
            p.add("server.path", "must start with `/` and contain no spaces");
        }
        if self.server.listen == self.admin.listen && self.server.listen.port() != 0 {
            p.add("admin.listen", "must differ from server.listen");
        }
        let server = &self.server;
        check_connection_limits(
            "server",
            (server.header_timeout, server.body_timeout),
            server.max_connections,
            &mut p,
        );
        let admin = &self.admin;
        check_connection_limits(
            "admin",
            (admin.header_timeout, admin.body_timeout),
            admin.max_connections,
            &mut p,
        );
        self.webhook.check(&mut p);
        self.queue.check(&mut p);
        self.aws.check(&mut p);
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            p.add(
                "log.level",
                "not a valid filter (e.g. `info`, `dockhand=debug,info`)",
            );
        }
        if !self.reload.interval.is_zero() && self.reload.interval < Duration::from_secs(1) {
            p.add(
                "reload.interval",
                "at least 1s, or 0s to turn reloading off",
            );
        }
        self.github.check(&mut p);
        self.worker.check(&mut p);
        self.store.check(&mut p);
        pool::check_pools(&self.pools, &mut p);
        p.into_result()
    }

    /// The checks for a process that receives webhooks: it needs a secret to verify them.
    pub fn validate_for_ingress(&self) -> Result<(), ConfigError> {
        let mut p = Problems::default();
        if self.webhook.secrets.is_empty() {
            p.add(
                "webhook.secrets",
                "at least one secret is required (`{ value = .. }`, `{ file = .. }` or `{ ssm = .. }`)",
            );
        }
        p.into_result()
    }

    /// The stricter checks for a process that launches runners: the GitHub App and every
    /// pool's `[pool.ecs]` must be set, unless the worker is in dry-run mode.
    pub fn validate_for_workers(&self) -> Result<(), ConfigError> {
        let mut p = Problems::default();
        if !self.worker.dry_run {
            self.github.check_for_launching(&mut p);
        }
        for (i, pool) in self.pools.iter().enumerate() {
            if pool.ecs.is_none() {
                p.add(
                    format!("pool[{i}].ecs"),
                    "workers need [pool.ecs] launch settings",
                );
            }
        }
        p.into_result()
    }

    /// The settings as TOML with every secret replaced by `<redacted>`.
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

impl WebhookSettings {
    fn check(&self, p: &mut Problems) {
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
}

impl QueueSettings {
    /// How long a received message stays invisible, for the configured backend.
    pub fn visibility_timeout(&self) -> Duration {
        match self.kind {
            QueueKind::Sqs => self.sqs.visibility_timeout,
            QueueKind::Embedded => self.embedded.visibility_timeout,
        }
    }

    /// How long a worker's receive waits for messages.
    pub fn receive_wait(&self) -> Duration {
        match self.kind {
            QueueKind::Sqs => self.sqs.wait_time,
            QueueKind::Embedded => Duration::from_secs(20),
        }
    }

    fn check(&self, p: &mut Problems) {
        match self.kind {
            QueueKind::Sqs => {
                match &self.sqs.url {
                    None => p.add("queue.sqs.url", "required when queue.kind = \"sqs\""),
                    Some(url) => check_http_url("queue.sqs.url", url, p),
                }
                if let Some(url) = &self.sqs.dead_letter_url {
                    check_http_url("queue.sqs.dead_letter_url", url, p);
                }
                if self.sqs.wait_time > Duration::from_secs(20) {
                    p.add("queue.sqs.wait_time", "SQS allows at most 20s");
                }
                if self.sqs.visibility_timeout > Duration::from_secs(12 * 3600) {
                    p.add("queue.sqs.visibility_timeout", "SQS allows at most 12h");
                }
            }
            QueueKind::Embedded => {
                if self.embedded.path.as_os_str().is_empty() {
                    p.add("queue.embedded.path", "must not be empty");
                }
                if self.embedded.visibility_timeout < Duration::from_secs(1) {
                    p.add("queue.embedded.visibility_timeout", "must be at least 1s");
                }
                if self.embedded.max_receives == 0 {
                    p.add("queue.embedded.max_receives", "must be at least 1");
                }
                if self.embedded.poll_interval.is_zero() {
                    p.add("queue.embedded.poll_interval", "must be greater than zero");
                }
            }
        }
        if self.batch.linger > Duration::from_millis(50) {
            p.add(
                "queue.batch.linger",
                "at most 50ms: longer holds every lone webhook back",
            );
        }
        if !(1..=256).contains(&self.batch.max_in_flight) {
            p.add("queue.batch.max_in_flight", "must be between 1 and 256");
        }
    }
}

/// The limits a listener puts on its clients: timeouts in seconds, not minutes (a stalled
/// connection holds a file descriptor until one fires), and a cap that is not zero.
fn check_connection_limits(
    section: &str,
    (header_timeout, body_timeout): (Duration, Duration),
    max_connections: usize,
    p: &mut Problems,
) {
    for (key, timeout) in [
        ("header_timeout", header_timeout),
        ("body_timeout", body_timeout),
    ] {
        if timeout.is_zero() || timeout > Duration::from_secs(300) {
            p.add(
                format!("{section}.{key}"),
                "must be greater than zero and at most 5m",
            );
        }
    }
    if !(1..=1_000_000).contains(&max_connections) {
        p.add(
            format!("{section}.max_connections"),
            "must be between 1 and 1000000",
        );
    }
}

pub(crate) fn check_http_url(key: &str, url: &str, p: &mut Problems) {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
        _ => p.add(key, format!("`{url}` is not an http(s) URL")),
    }
}

/// Problems found while validating, each with the key it concerns.
#[derive(Debug, Default)]
pub struct Problems(Vec<(String, String)>);

impl Problems {
    pub fn add(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push((key.into(), message.into()));
    }

    fn into_result(self) -> Result<(), ConfigError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Problems(self))
        }
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (key, message) in &self.0 {
            writeln!(f, "  {key}: {message}")?;
        }
        Ok(())
    }
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {} does not exist", .0.display())]
    Missing(PathBuf),
    /// The file or SSM parameter could not be read.
    #[error("cannot read the configuration from {source_name}")]
    Unreadable {
        source_name: String,
        #[source]
        error: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A type error or unknown key; figment's message names the key.
    #[error("invalid configuration: {0}")]
    Invalid(Box<figment::Error>),
    #[error("invalid configuration:\n{0}")]
    Problems(Problems),
}

#[cfg(test)]
mod tests;
