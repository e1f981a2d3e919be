//! `[store]`: where workers keep job and runner state.

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
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            url: "sqlite://data/dockhand.db".to_string(),
            migrate_on_start: false,
            max_connections: 10,
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
    }
}
