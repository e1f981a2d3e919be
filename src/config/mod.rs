//! Settings: built-in defaults, then a TOML file, then `DOCKHAND_*` environment variables
//! (`__` separates nesting levels: `DOCKHAND_QUEUE__KIND=sqs`). Everything is validated at
//! start-up, and every problem names its key.

pub mod aws;
pub mod github;
pub mod lifecycle;
pub mod log;
pub mod pool;
pub mod queue;
pub mod redelivery;
pub mod roles;
pub mod secret;
pub mod server;
pub mod source;
mod ssm;
pub mod store;
pub mod warm;
pub mod webhook;
pub mod worker;

use std::fmt;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

pub use aws::{AwsSettings, RunTaskPacing};
pub use github::{GitHubAppSettings, GitHubLimits, GitHubSettings};
pub use lifecycle::LifecycleSettings;
pub use log::{LogFormat, LogSettings, ReloadSettings};
pub use pool::{EcsLaunchSettings, LaunchType, PoolSettings, RunnerScopeKind};
pub use queue::{BatchSettings, EmbeddedQueueSettings, QueueKind, QueueSettings, SqsSettings};
pub use redelivery::RedeliverySettings;
pub use roles::Roles;
pub use secret::{Secret, SecretResolver, SecretSource};
pub use server::{AdminSettings, ServerSettings};
pub use source::ConfigSource;
pub use store::StoreSettings;
pub use warm::WarmSchedule;
pub use webhook::WebhookSettings;
pub use worker::WorkerSettings;

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
    "server",
    "admin",
    "webhook",
    "queue",
    "aws",
    "github",
    "worker",
    "lifecycle",
    "redelivery",
    "store",
    "log",
    "reload",
    "pool",
];

/// The whole configuration tree.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub server: ServerSettings,
    pub admin: AdminSettings,
    pub webhook: WebhookSettings,
    pub queue: QueueSettings,
    pub aws: AwsSettings,
    pub github: GitHubSettings,
    pub worker: WorkerSettings,
    pub lifecycle: LifecycleSettings,
    pub redelivery: RedeliverySettings,
    pub store: StoreSettings,
    pub log: LogSettings,
    pub reload: ReloadSettings,
    #[serde(rename = "pool")]
    pub pools: Vec<PoolSettings>,
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
    fn load_str(text: &str) -> Result<Self, ConfigError> {
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
    fn aws_from_env() -> Result<AwsSettings, ConfigError> {
        Figment::from(Serialized::defaults(Settings::default()))
            .merge(known_sections(Env::prefixed("DOCKHAND_")))
            .extract_inner("aws")
            .map_err(|e| ConfigError::Invalid(Box::new(e)))
    }

    /// Every problem with the settings, each naming its key. A process checks more for its
    /// roles: [`Settings::validate_for`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut p = Problems::default();
        self.server.check(&self.admin, &mut p);
        self.webhook.check(&mut p);
        self.queue.check(&mut p);
        self.aws.check(&mut p);
        self.log.check(&mut p);
        self.reload.check(&mut p);
        self.github.check(&mut p);
        self.worker.check(&mut p);
        self.lifecycle.check(&mut p);
        self.redelivery.check(&mut p);
        self.store.check(&mut p);
        pool::check_pools(&self.pools, &mut p);
        p.into_result()
    }

    /// The settings as TOML, every [`Secret`] shown as `<redacted>`.
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

/// Adds a problem unless `url` is an http(s) URL with a host.
fn check_http_url(key: &str, url: &str, p: &mut Problems) {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
        _ => p.add(key, format!("`{url}` is not an http(s) URL")),
    }
}

/// Problems found while validating, each with the key it concerns.
#[derive(Debug, Default)]
pub struct Problems(Vec<(String, String)>);

impl Problems {
    /// Records that the setting `key` is wrong, and how.
    pub(crate) fn add(&mut self, key: impl Into<String>, message: impl Into<String>) {
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
