//! GitHub's primary (hourly) limits as its answers report them: `x-ratelimit-remaining`
//! and `x-ratelimit-reset`, per credential (an installation, or the App's JWT) and per
//! resource (`x-ratelimit-resource`). Registrations draw on the resource JIT answers name,
//! and stop short of a reserve kept for clean-up.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderMap;

use super::budget::Wait;
use super::error::header_u64;
use crate::domain::InstallationId;

/// One App's primary limits, as last reported.
#[derive(Default)]
pub(super) struct PrimaryLimits {
    /// Per credential (`None` is the App's JWT) and resource (`core`, ...).
    limits: HashMap<(Option<InstallationId>, String), Primary>,
    /// The resource JIT configs draw on, once a JIT answer has said; `core` until then.
    jit_resource: Option<String>,
    /// Requests kept back for clean-up (`[github.limits] primary_reserve`).
    reserve: u64,
}

#[derive(Clone, Copy)]
struct Primary {
    remaining: u64,
    reset: SystemTime,
}

impl PrimaryLimits {
    pub fn new(reserve: u64) -> Self {
        Self {
            reserve,
            ..Self::default()
        }
    }

    /// Learns from an answer made as `installation` (`jit`: a JIT config GitHub accepted).
    /// Returns the resource it names (`core` when none) and, when it reports a limit, the
    /// lowest remaining of the App's credentials and resources.
    pub fn learn(
        &mut self,
        installation: Option<InstallationId>,
        headers: &HeaderMap,
        jit: bool,
    ) -> (String, Option<u64>) {
        let resource = headers
            .get("x-ratelimit-resource")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("core")
            .to_string();
        if jit {
            self.jit_resource = Some(resource.clone());
        }
        let (Some(remaining), Some(reset)) = (
            header_u64(headers, "x-ratelimit-remaining"),
            header_u64(headers, "x-ratelimit-reset"),
        ) else {
            return (resource, None);
        };
        let reset = UNIX_EPOCH + Duration::from_secs(reset);
        self.limits.insert(
            (installation, resource.clone()),
            Primary { remaining, reset },
        );
        let lowest = self.limits.values().map(|p| p.remaining).min();
        (resource, lowest)
    }

    /// What `installation` has left of the limit JIT configs draw on (`None`: unknown,
    /// never answered; `u64::MAX` once its hour has reset).
    pub fn remaining(&self, installation: Option<InstallationId>) -> Option<u64> {
        let primary = self.jit_primary(installation)?;
        Some(if primary.reset <= SystemTime::now() {
            u64::MAX
        } else {
            primary.remaining
        })
    }

    /// Whether a registration as `installation` leaves the reserve for clean-up: if not,
    /// how long until the installation's hour resets.
    pub fn room(&self, installation: Option<InstallationId>) -> Result<(), Wait> {
        let Some(primary) = self.jit_primary(installation) else {
            return Ok(());
        };
        let now = SystemTime::now();
        if primary.remaining > self.reserve || primary.reset <= now {
            return Ok(());
        }
        let wait = primary.reset.duration_since(now).unwrap_or_default();
        Err(Wait(wait.max(Duration::from_secs(1))))
    }

    fn jit_primary(&self, installation: Option<InstallationId>) -> Option<&Primary> {
        let resource = self.jit_resource.as_deref().unwrap_or("core");
        self.limits.get(&(installation, resource.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(remaining: u64, reset_in: u64) -> HeaderMap {
        let reset = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + reset_in;
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-remaining", remaining.into());
        h.insert("x-ratelimit-reset", reset.into());
        h
    }

    #[test]
    fn the_primary_reserve_is_kept_for_clean_up() {
        let mut limits = PrimaryLimits::new(100);
        let inst = Some(InstallationId(7));
        assert_eq!(limits.room(inst), Ok(()), "unknown: go");
        limits.learn(inst, &headers(101, 600), false);
        assert_eq!(limits.room(inst), Ok(()));
        assert_eq!(limits.remaining(inst), Some(101));
        limits.learn(inst, &headers(100, 600), false);
        let Wait(wait) = limits.room(inst).unwrap_err();
        assert!(wait > Duration::from_secs(590), "{wait:?}");
        // Another installation of the App is not held back.
        assert_eq!(limits.room(Some(InstallationId(8))), Ok(()));
    }

    #[test]
    fn registrations_follow_the_resource_jit_answers_name() {
        let mut limits = PrimaryLimits::new(100);
        let inst = Some(InstallationId(7));
        let mut jit = headers(4000, 600);
        jit.insert(
            "x-ratelimit-resource",
            "actions_runner_registration".parse().unwrap(),
        );
        limits.learn(inst, &jit, true);
        // `core` running low does not hold registrations back: they draw on their own.
        limits.learn(inst, &headers(10, 600), false);
        assert_eq!(limits.room(inst), Ok(()));
        assert_eq!(limits.remaining(inst), Some(4000));
    }
}
