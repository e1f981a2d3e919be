//! `[log]` and `[reload]`: what the process says, and how often it reads its configuration
//! again.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Problems;

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
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

/// `auto` is human-readable on a terminal and JSON otherwise.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Auto,
    Json,
    Pretty,
}

/// `[reload]`: re-reading the configuration while running.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
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

impl LogSettings {
    pub(super) fn check(&self, p: &mut Problems) {
        if tracing_subscriber::EnvFilter::try_new(&self.level).is_err() {
            p.add(
                "log.level",
                "not a valid filter (e.g. `info`, `dockhand=debug,info`)",
            );
        }
    }
}

impl ReloadSettings {
    pub(super) fn check(&self, p: &mut Problems) {
        if !self.interval.is_zero() && self.interval < Duration::from_secs(1) {
            p.add(
                "reload.interval",
                "at least 1s, or 0s to turn reloading off",
            );
        }
    }
}
