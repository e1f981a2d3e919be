//! `[server]` and `[admin]`: where GitHub's webhooks arrive, and where `/metrics`,
//! `/healthz` and `/readyz` are served.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Problems, SecretSource};

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

/// `[admin]`: `/metrics`, `/healthz` and `/readyz`, and a worker's `/jobs` and `/runners`,
/// with the same kind of limits as `[server]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSettings {
    pub listen: SocketAddr,
    /// When set, `/jobs` and `/runners` answer only requests with `Authorization: Bearer
    /// <token>` (401 otherwise); `/metrics`, `/healthz` and `/readyz` stay open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<SecretSource>,
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
            token: None,
            header_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(10),
            max_connections: 128,
        }
    }
}

impl ServerSettings {
    /// Checks `[server]` and `[admin]`, and that they listen in different places.
    pub(super) fn check(&self, admin: &AdminSettings, p: &mut Problems) {
        if !self.path.starts_with('/') || self.path.contains(char::is_whitespace) {
            p.add("server.path", "must start with `/` and contain no spaces");
        }
        if self.listen == admin.listen && self.listen.port() != 0 {
            p.add("admin.listen", "must differ from server.listen");
        }
        if let Some(token) = &admin.token {
            token.check("admin.token", p);
        }
        check_connection_limits(
            "server",
            (self.header_timeout, self.body_timeout),
            self.max_connections,
            p,
        );
        check_connection_limits(
            "admin",
            (admin.header_timeout, admin.body_timeout),
            admin.max_connections,
            p,
        );
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
