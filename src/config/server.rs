//! `[server]` and `[admin]`: where GitHub's webhooks arrive, and where `/metrics`,
//! `/healthz` and `/readyz` are served.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Problems;

/// `[server]`: where GitHub's webhooks arrive.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    /// The path GitHub POSTs to.
    pub path: String,
    /// How long a shutdown waits for in-flight requests and queue sends.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            path: "/webhook".to_string(),
            shutdown_grace: Duration::from_secs(20),
        }
    }
}

/// `[admin]`: `/metrics`, `/healthz` and `/readyz`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSettings {
    pub listen: SocketAddr,
}

impl Default for AdminSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 9090)),
        }
    }
}

impl ServerSettings {
    /// Checks `[server]`, and that `[admin]` listens elsewhere.
    pub(super) fn check(&self, admin: &AdminSettings, p: &mut Problems) {
        if !self.path.starts_with('/') || self.path.contains(char::is_whitespace) {
            p.add("server.path", "must start with `/` and contain no spaces");
        }
        if self.listen == admin.listen && self.listen.port() != 0 {
            p.add("admin.listen", "must differ from server.listen");
        }
    }
}
