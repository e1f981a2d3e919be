//! `[lifecycle]`: the reconciler that follows every runner to its end (see
//! [`crate::lifecycle`]). Every value reloads without a restart.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Problems;

/// Most replacements `max_replacements` may allow.
const MAX_REPLACEMENTS: u32 = 20;

/// `[lifecycle]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LifecycleSettings {
    /// Runs the reconciler in `serve` and in every `worker` (one of them leads).
    pub enabled: bool,
    /// Log and record in the job history what a pass would do, and do nothing.
    pub dry_run: bool,
    /// How often the leader runs a pass.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// How long the leader's lease lasts: another process takes over within this long
    /// after the leader dies.
    #[serde(with = "humantime_serde")]
    pub leader_lease: Duration,
    /// A task still PROVISIONING or PENDING this long is stopped, and its job replaced.
    #[serde(with = "humantime_serde")]
    pub pending_timeout: Duration,
    /// A surplus runner idle this long is removed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// A launched job GitHub has not started after this long is checked with GitHub.
    #[serde(with = "humantime_serde")]
    pub verify_after: Duration,
    /// How many times one job's runner is replaced before the job is dead-lettered.
    pub max_replacements: u32,
    /// How often registrations and tasks nobody accounts for are swept.
    #[serde(with = "humantime_serde")]
    pub orphan_interval: Duration,
    /// A tagged task the store does not know is left alone this long after its creation
    /// (a launch may be recording it).
    #[serde(with = "humantime_serde")]
    pub orphan_grace: Duration,
}

impl Default for LifecycleSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            dry_run: false,
            interval: Duration::from_secs(30),
            leader_lease: Duration::from_secs(60),
            pending_timeout: Duration::from_secs(600),
            idle_timeout: Duration::from_secs(300),
            verify_after: Duration::from_secs(600),
            max_replacements: 3,
            orphan_interval: Duration::from_secs(600),
            orphan_grace: Duration::from_secs(600),
        }
    }
}

impl LifecycleSettings {
    pub(super) fn check(&self, p: &mut Problems) {
        let second = Duration::from_secs(1);
        if self.interval < Duration::from_millis(100) {
            p.add("lifecycle.interval", "must be at least 100ms");
        }
        for (key, value) in [
            ("leader_lease", self.leader_lease),
            ("pending_timeout", self.pending_timeout),
            ("idle_timeout", self.idle_timeout),
            ("verify_after", self.verify_after),
            ("orphan_interval", self.orphan_interval),
        ] {
            if value < second {
                p.add(format!("lifecycle.{key}"), "must be at least 1s");
            }
        }
        if self.max_replacements > MAX_REPLACEMENTS {
            p.add(
                "lifecycle.max_replacements",
                format!("must be between 0 and {MAX_REPLACEMENTS}"),
            );
        }
    }
}
