//! A pool's warm runners: how many idle runners to keep ready (`min_idle`), when
//! (`[[pool.schedule]]`), where they register (`warm_target`) and how long one may wait
//! (`max_idle_age`). See [`crate::lifecycle`] for the books.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Timelike as _, Utc};
use croner::Cron;
use serde::{Deserialize, Serialize};

use super::Problems;
use super::pool::{PoolSettings, RunnerScopeKind};

/// One `[[pool.schedule]]`: while the current minute matches `cron` in `timezone`, the
/// pool keeps `min_idle` idle runners instead of its own `min_idle`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WarmSchedule {
    /// A five-field cron expression (minute hour day-of-month month day-of-week), e.g.
    /// `* 8-18 * * Mon-Fri`: every minute from 08:00 to 18:59 on weekdays.
    pub cron: String,
    /// An IANA time zone, e.g. `Europe/Berlin`.
    #[serde(default = "default_timezone")]
    pub timezone: String,
    pub min_idle: u32,
}

fn default_timezone() -> String {
    "UTC".to_string()
}

pub(super) fn default_max_idle_age() -> Duration {
    Duration::from_secs(3600)
}

impl WarmSchedule {
    fn parsed(&self) -> Result<(Cron, chrono_tz::Tz), String> {
        let cron = Cron::from_str(&self.cron).map_err(|e| format!("`{}`: {e}", self.cron))?;
        let tz = chrono_tz::Tz::from_str(&self.timezone)
            .map_err(|_| format!("`{}` is not an IANA time zone", self.timezone))?;
        Ok((cron, tz))
    }

    /// Whether the entry is in force at `now`.
    fn matches(&self, now: DateTime<Utc>) -> bool {
        self.parsed().is_ok_and(|(cron, tz)| {
            // Minute granularity: a cron expression names minutes.
            let local = now.with_timezone(&tz);
            let minute = local
                .with_second(0)
                .and_then(|t| t.with_nanosecond(0))
                .unwrap_or(local);
            cron.is_time_matching(&minute).unwrap_or(false)
        })
    }
}

impl PoolSettings {
    /// The idle runners the pool keeps ready at `now`: the last `[[pool.schedule]]` entry
    /// that matches, or the pool's own `min_idle` when none does.
    pub fn min_idle_at(&self, now: DateTime<Utc>) -> u32 {
        self.schedule
            .iter()
            .rev()
            .find(|s| s.matches(now))
            .map_or(self.min_idle, |s| s.min_idle)
    }

    /// Whether the pool ever keeps warm runners.
    pub fn may_warm(&self) -> bool {
        self.min_idle > 0 || self.schedule.iter().any(|s| s.min_idle > 0)
    }

    pub(super) fn check_warm(&self, key: &str, p: &mut Problems) {
        let max = self.max_runners;
        if self.min_idle > max {
            p.add(
                format!("{key}.min_idle"),
                format!(
                    "{} is more than max_runners ({max}): max_runners caps warm runners too",
                    self.min_idle
                ),
            );
        }
        for (i, schedule) in self.schedule.iter().enumerate() {
            let key = format!("{key}.schedule[{i}]");
            if let Err(problem) = schedule.parsed() {
                let field = if problem.contains("time zone") {
                    "timezone"
                } else {
                    "cron"
                };
                p.add(format!("{key}.{field}"), problem);
            }
            if schedule.min_idle > max {
                p.add(
                    format!("{key}.min_idle"),
                    format!(
                        "{} is more than the pool's max_runners ({max})",
                        schedule.min_idle
                    ),
                );
            }
        }
        if self.max_idle_age < Duration::from_secs(60) {
            p.add(format!("{key}.max_idle_age"), "must be at least 1m");
        }
        if !self.may_warm() {
            return;
        }
        match (&self.warm_target, self.scope) {
            (None, _) => p.add(
                format!("{key}.warm_target"),
                "a pool with min_idle needs warm_target: the organization (scope = \"org\") or owner/repo (scope = \"repo\") its warm runners register on",
            ),
            (Some(t), RunnerScopeKind::Org) if t.is_empty() || t.contains('/') => p.add(
                format!("{key}.warm_target"),
                format!("`{t}`: with scope = \"org\", name the organization"),
            ),
            (Some(t), RunnerScopeKind::Repo)
                if t.split('/').filter(|s| !s.is_empty()).count() != 2 =>
            {
                p.add(
                    format!("{key}.warm_target"),
                    format!("`{t}`: with scope = \"repo\", name owner/repo"),
                )
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn pool(schedule: Vec<WarmSchedule>) -> PoolSettings {
        let mut pool = PoolSettings::new("linux", &["self-hosted"]);
        pool.min_idle = 1;
        pool.schedule = schedule;
        pool
    }

    fn entry(cron: &str, tz: &str, min_idle: u32) -> WarmSchedule {
        WarmSchedule {
            cron: cron.into(),
            timezone: tz.into(),
            min_idle,
        }
    }

    #[test]
    fn a_matching_entry_sets_the_target_in_its_time_zone() {
        let pool = pool(vec![entry("* 8-18 * * Mon-Fri", "Europe/Berlin", 4)]);
        // Wednesday 2026-12-02, 07:30 UTC is 08:30 in Berlin (CET, UTC+1).
        let working = Utc.with_ymd_and_hms(2026, 12, 2, 7, 30, 0).unwrap();
        assert_eq!(pool.min_idle_at(working), 4);
        // 18:30 UTC is 19:30 in Berlin: the window is over.
        let evening = Utc.with_ymd_and_hms(2026, 12, 2, 18, 30, 0).unwrap();
        assert_eq!(pool.min_idle_at(evening), 1);
        // Saturday.
        let weekend = Utc.with_ymd_and_hms(2026, 12, 5, 10, 0, 0).unwrap();
        assert_eq!(pool.min_idle_at(weekend), 1);
    }

    #[test]
    fn the_last_matching_entry_wins() {
        let pool = pool(vec![
            entry("* * * * *", "UTC", 2),
            entry("* 12 * * *", "UTC", 6),
        ]);
        let noon = Utc.with_ymd_and_hms(2026, 12, 2, 12, 15, 42).unwrap();
        assert_eq!(pool.min_idle_at(noon), 6);
        let morning = Utc.with_ymd_and_hms(2026, 12, 2, 9, 0, 0).unwrap();
        assert_eq!(pool.min_idle_at(morning), 2);
    }

    #[test]
    fn bad_entries_and_targets_are_named() {
        let mut pool = pool(vec![
            entry("not cron", "UTC", 1),
            entry("* * * * *", "Mars/Olympus", 1),
            entry("* * * * *", "UTC", 99),
        ]);
        pool.max_runners = 10;
        pool.min_idle = 11;
        let mut p = Problems::default();
        pool.check_warm("pool[0]", &mut p);
        let text = p.to_string();
        for key in [
            "pool[0].min_idle: 11 is more than max_runners (10)",
            "pool[0].schedule[0].cron",
            "pool[0].schedule[1].timezone",
            "pool[0].schedule[2].min_idle",
            "pool[0].warm_target",
        ] {
            assert!(text.contains(key), "{key} missing from:\n{text}");
        }
    }
}
