//! `[store]`: where workers keep job and runner state.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Problems;

/// `[store]`: job and runner state.
#[derive(Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    /// `sqlite://PATH` (single node) or `postgres://...` (scale-out). It may hold a
    /// password, so it is rendered (`config check`) and debugged through [`redact_url`].
    #[serde(serialize_with = "serialize_redacted")]
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

impl fmt::Debug for StoreSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreSettings")
            .field("url", &redact_url(&self.url))
            .field("migrate_on_start", &self.migrate_on_start)
            .field("max_connections", &self.max_connections)
            .field("retention", &self.retention)
            .field("prune_interval", &self.prune_interval)
            .finish()
    }
}

fn serialize_redacted<S: serde::Serializer>(url: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redact_url(url))
}

/// `url` with its password, in the user part or as a `password=` parameter, shown as
/// `<redacted>`; the rest as it is.
#[must_use]
pub fn redact_url(url: &str) -> String {
    const HIDDEN: &str = "<redacted>";
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let mut out = match base.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            let (authority, path) = rest.split_at(authority_end);
            let authority = match authority.rsplit_once('@') {
                Some((user, host)) => match user.split_once(':') {
                    Some((name, _password)) => format!("{name}:{HIDDEN}@{host}"),
                    None => authority.to_string(),
                },
                None => authority.to_string(),
            };
            format!("{scheme}://{authority}{path}")
        }
        None => base.to_string(),
    };
    if let Some(query) = query {
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}={HIDDEN}"),
                _ => pair.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&pairs.join("&"));
    }
    out
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
