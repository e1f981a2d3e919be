//! `[redelivery]`: bringing back webhooks GitHub failed to deliver (see
//! [`crate::redelivery`]).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Problems;

/// How long GitHub keeps an App's deliveries: 3 days on github.com, 7 on GitHub Enterprise
/// Server. `lookback` may not reach further.
pub const MAX_LOOKBACK: Duration = Duration::from_secs(7 * 24 * 3600);
/// Most redeliveries of one event `max_attempts` may allow.
const MAX_ATTEMPTS: u32 = 10;

/// `[redelivery]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedeliverySettings {
    /// Runs the recovery loop in the reconciler's leader (so only where `[lifecycle]` is
    /// enabled).
    pub enabled: bool,
    /// How often the leader reads each App's delivery log.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// How far back the first pass reads, and the oldest failure ever redelivered.
    #[serde(with = "humantime_serde")]
    pub lookback: Duration,
    /// Redeliveries asked for one event (one delivery guid) before giving it up.
    pub max_attempts: u32,
    /// Redeliveries asked for per second, at most, over all Apps.
    pub per_second: f64,
}

impl Default for RedeliverySettings {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: Duration::from_secs(120),
            lookback: Duration::from_secs(6 * 3600),
            max_attempts: 3,
            per_second: 5.0,
        }
    }
}

impl RedeliverySettings {
    pub(super) fn check(&self, p: &mut Problems) {
        if self.interval < Duration::from_secs(1) {
            p.add("redelivery.interval", "must be at least 1s");
        }
        if self.lookback < self.interval || self.lookback > MAX_LOOKBACK {
            p.add(
                "redelivery.lookback",
                "must be at least `interval` and at most 7d (GitHub keeps 3 days of \
                 deliveries; GitHub Enterprise Server 7)",
            );
        }
        if !(1..=MAX_ATTEMPTS).contains(&self.max_attempts) {
            p.add(
                "redelivery.max_attempts",
                format!("must be between 1 and {MAX_ATTEMPTS}"),
            );
        }
        if !(self.per_second.is_finite() && self.per_second > 0.0 && self.per_second <= 100.0) {
            p.add(
                "redelivery.per_second",
                "must be more than 0 and at most 100",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(settings: &RedeliverySettings) -> String {
        let mut p = Problems::default();
        settings.check(&mut p);
        p.to_string()
    }

    #[test]
    fn the_defaults_are_valid() {
        assert_eq!(problems(&RedeliverySettings::default()), "");
    }

    #[test]
    fn each_bad_value_names_its_key() {
        let bad = RedeliverySettings {
            enabled: true,
            interval: Duration::from_millis(500),
            lookback: Duration::from_secs(8 * 24 * 3600),
            max_attempts: 0,
            per_second: f64::NAN,
        };
        let text = problems(&bad);
        for key in [
            "redelivery.interval",
            "redelivery.lookback",
            "redelivery.max_attempts",
            "redelivery.per_second",
        ] {
            assert!(text.contains(key), "{key} in {text}");
        }
        let short = RedeliverySettings {
            lookback: Duration::from_secs(60),
            ..RedeliverySettings::default()
        };
        assert!(problems(&short).contains("redelivery.lookback"));
    }
}
