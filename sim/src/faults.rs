//! Injected faults on the simulated APIs: a settable share of 5xx answers and of timeouts.
//!
//! A fault is decided by hashing the seed with the operation, the request's identity (the
//! job, task or runner it is about) and how many times that request was made before. So
//! the same seed fails the same requests however the calls interleave, and a failing run
//! can be replayed.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;
use std::time::Duration;

/// What the fault settings say of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// Answer normally.
    None,
    /// Answer a 5xx without doing anything.
    Error,
    /// Do the work, then hold the answer back for [`FaultSettings::hold`]: the caller
    /// times out not knowing that it succeeded.
    Timeout,
}

/// Rates are fractions (0.05 is 5%).
#[derive(Debug, Clone)]
pub struct FaultSettings {
    pub error_rate: f64,
    pub timeout_rate: f64,
    /// How long a timed-out answer is held (real time); longer than the client waits.
    pub hold: Duration,
}

impl Default for FaultSettings {
    fn default() -> Self {
        Self {
            error_rate: 0.0,
            timeout_rate: 0.0,
            hold: Duration::from_secs(30),
        }
    }
}

impl FaultSettings {
    pub fn rate(error_rate: f64, timeout_rate: f64) -> Self {
        Self {
            error_rate,
            timeout_rate,
            ..Self::default()
        }
    }
}

/// Decides faults for one API.
#[derive(Debug)]
pub struct Faults {
    seed: u64,
    settings: FaultSettings,
    seen: Mutex<HashMap<(String, String), u64>>,
    injected: Mutex<HashMap<(&'static str, Fault), u64>>,
}

impl Faults {
    pub fn new(seed: u64, settings: FaultSettings) -> Self {
        Self {
            seed,
            settings,
            seen: Mutex::default(),
            injected: Mutex::default(),
        }
    }

    pub fn hold(&self) -> Duration {
        self.settings.hold
    }

    /// The fault for the `n`th call of `operation` about `key`.
    pub fn decide(&self, operation: &'static str, key: &str) -> Fault {
        if self.settings.error_rate <= 0.0 && self.settings.timeout_rate <= 0.0 {
            return Fault::None;
        }
        let n = {
            let mut seen = self.seen.lock().unwrap();
            let n = seen
                .entry((operation.to_string(), key.to_string()))
                .or_default();
            *n += 1;
            *n
        };
        let mut hasher = DefaultHasher::new();
        (self.seed, operation, key, n).hash(&mut hasher);
        let draw = (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64;
        let fault = if draw < self.settings.error_rate {
            Fault::Error
        } else if draw < self.settings.error_rate + self.settings.timeout_rate {
            Fault::Timeout
        } else {
            Fault::None
        };
        if fault != Fault::None {
            *self
                .injected
                .lock()
                .unwrap()
                .entry((operation, fault))
                .or_default() += 1;
        }
        fault
    }

    /// Faults injected so far, by operation and kind.
    pub fn injected(&self) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = self
            .injected
            .lock()
            .unwrap()
            .iter()
            .map(|((op, fault), n)| (format!("{op} {fault:?}"), *n))
            .collect();
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_fails_the_same_requests_in_any_order() {
        let settings = FaultSettings::rate(0.2, 0.1);
        let a = Faults::new(7, settings.clone());
        let b = Faults::new(7, settings);
        let keys: Vec<String> = (0..200).map(|i| format!("job-{i}")).collect();
        let forward: Vec<Fault> = keys.iter().map(|k| a.decide("RunTask", k)).collect();
        let mut backward: Vec<Fault> = keys.iter().rev().map(|k| b.decide("RunTask", k)).collect();
        backward.reverse();
        assert_eq!(forward, backward);
        let errors = forward.iter().filter(|f| **f == Fault::Error).count();
        assert!((20..=60).contains(&errors), "{errors} errors of 200 at 20%");
        assert!(forward.contains(&Fault::Timeout));
    }

    #[test]
    fn no_rate_no_fault() {
        let faults = Faults::new(1, FaultSettings::default());
        assert!((0..100).all(|i| faults.decide("x", &i.to_string()) == Fault::None));
    }
}
