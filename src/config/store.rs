//! `[store]`: where workers keep job and runner state.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Problems;

/// `[store]`: job and runner state.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    /// `sqlite://PATH` (single node) or `postgres://...` (scale-out).
    pub url: String,
    /// Run migrations at start. SQLite always migrates itself; for Postgres this is the
    /// choice between `dockhand migrate` as a deploy step and migrating on start.
    pub migrate_on_start: bool,
    pub max_connections: u32,
    /// How long finished jobs and runners are kept before workers prune them; live ones
    /// are kept whatever their age.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// How often a worker prunes.
    #[serde(with = "humantime_serde")]
    pub prune_interval: Duration,
}

/// The shortest retention accepted: a finished row must outlive any redelivery of its
/// webhook, or a late `queued` copy would launch the job again.
pub const MIN_RETENTION: Duration = Duration::from_secs(3600);

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            url: "sqlite://data/dockhand.db".to_string(),
            migrate_on_start: false,
            max_connections: 10,
            retention: Duration::from_secs(14 * 24 * 3600),
            prune_interval: Duration::from_secs(3600),
        }
    }
}

impl StoreSettings {
    pub(super) fn check(&self, p: &mut Problems) {
        if !(self.url.starts_with("sqlite:")
            || self.url.starts_with("postgres://")
            || self.url.starts_with("postgresql://"))
        {
            p.add(
                "store.url",
                "must start with sqlite:, postgres:// or postgresql://",
            );
        }
        if self.max_connections == 0 {
            p.add("store.max_connections", "must be at least 1");
        }
        if self.retention < MIN_RETENTION {
            p.add("store.retention", "must be at least 1h");
        }
        if self.prune_interval < Duration::from_secs(60) {
            p.add("store.prune_interval", "must be at least 1m");
        }
    }
}
