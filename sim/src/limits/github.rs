//! GitHub's REST API rate limits
//! (<https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api>):
//!
//! - the secondary limit, per App: at most `points_per_window` points in any `window`
//!   (900 a minute), a GET or HEAD costing 1 point and any other method 5, counting every
//!   call made as the App or as any of its installations; and at most `concurrent` calls
//!   in flight at once;
//! - the primary limit, per installation (and per App for its JWT calls): `primary_limit`
//!   requests per `primary_window` (5,000 an hour), the window starting at its first call.
//!
//! A refused call costs nothing and is not performed.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use crate::clock::SimTime;

/// The limits, in simulated time.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaSettings {
    pub points_per_window: u32,
    pub window: Duration,
    /// Calls in flight at once, per App.
    pub concurrent: u32,
    /// The `retry-after` of a call refused for concurrency.
    pub concurrency_retry_after: Duration,
    pub primary_limit: u32,
    pub primary_window: Duration,
}

impl Default for QuotaSettings {
    fn default() -> Self {
        Self {
            points_per_window: 900,
            window: Duration::from_secs(60),
            concurrent: 100,
            concurrency_retry_after: Duration::from_secs(60),
            primary_limit: 5_000,
            primary_window: Duration::from_secs(3_600),
        }
    }
}

impl QuotaSettings {
    /// A call's points on the secondary limit: 1 for a read, 5 for a write.
    pub fn points(method: &str) -> u32 {
        if method.eq_ignore_ascii_case("GET") || method.eq_ignore_ascii_case("HEAD") {
            1
        } else {
            5
        }
    }
}

/// Which limit refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LimitKind {
    /// Points per minute, per App.
    Secondary,
    /// Calls in flight, per App.
    Concurrency,
    /// Requests per hour, per installation.
    Primary,
}

impl LimitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Secondary => "secondary",
            Self::Concurrency => "concurrency",
            Self::Primary => "primary",
        }
    }
}

/// Whose primary limit a call counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// The App itself (a JWT call).
    App(u64),
    Installation(u64),
}

/// A primary limit's state, as the `x-ratelimit-*` headers report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Primary {
    pub limit: u32,
    pub used: u32,
    /// When the window ends and `used` goes back to 0.
    pub reset: SimTime,
}

impl Primary {
    pub fn remaining(&self) -> u32 {
        self.limit.saturating_sub(self.used)
    }
}

/// Why a call was refused, and when it may be tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub kind: LimitKind,
    /// For the secondary limits: until enough points leave the window (or the concurrency
    /// wait); for the primary limit: until its window resets.
    pub retry_after: Duration,
    pub primary: Primary,
}

/// One App's secondary limit: its calls' points in the window, oldest first.
#[derive(Debug, Default)]
struct AppBudget {
    spent: VecDeque<(SimTime, u32)>,
    in_window: u32,
    in_flight: u32,
}

/// The limits' state for every App and installation, and what they refused.
#[derive(Debug)]
pub struct GitHubLimits {
    settings: QuotaSettings,
    apps: HashMap<u64, AppBudget>,
    /// Each scope's window: when it started, and requests in it.
    primary: HashMap<Scope, (SimTime, u32)>,
    refused: BTreeMap<(u64, LimitKind), u64>,
}

impl GitHubLimits {
    pub fn new(settings: QuotaSettings) -> Self {
        Self {
            settings,
            apps: HashMap::new(),
            primary: HashMap::new(),
            refused: BTreeMap::new(),
        }
    }

    /// Admits a call by `app` (as the App, or as one of its installations: `scope`) costing
    /// `points` at `now`, or refuses it. An admitted call is in flight until [`Self::done`].
    pub fn admit(
        &mut self,
        app: u64,
        scope: Scope,
        points: u32,
        now: SimTime,
    ) -> Result<Primary, Refusal> {
        let s = &self.settings;
        let (start, used) = self.primary.entry(scope).or_insert((now, 0));
        if now >= *start + s.primary_window {
            (*start, *used) = (now, 0);
        }
        let primary = Primary {
            limit: s.primary_limit,
            used: *used,
            reset: *start + s.primary_window,
        };
        let budget = self.apps.entry(app).or_default();
        while let Some(&(at, p)) = budget.spent.front()
            && at + s.window <= now
        {
            budget.spent.pop_front();
            budget.in_window -= p;
        }
        let refusal = if primary.used >= s.primary_limit {
            Some((LimitKind::Primary, primary.reset.saturating_sub(now)))
        } else if budget.in_flight >= s.concurrent {
            Some((LimitKind::Concurrency, s.concurrency_retry_after))
        } else if budget.in_window + points > s.points_per_window {
            Some((
                LimitKind::Secondary,
                Self::until_room(budget, s, points, now),
            ))
        } else {
            None
        };
        if let Some((kind, retry_after)) = refusal {
            *self.refused.entry((app, kind)).or_default() += 1;
            return Err(Refusal {
                kind,
                retry_after,
                primary,
            });
        }
        budget.spent.push_back((now, points));
        budget.in_window += points;
        budget.in_flight += 1;
        let used = &mut self.primary.get_mut(&scope).expect("entered above").1;
        *used += 1;
        Ok(Primary {
            used: *used,
            ..primary
        })
    }

    /// How long until the oldest calls have left the window and `points` more fit.
    fn until_room(budget: &AppBudget, s: &QuotaSettings, points: u32, now: SimTime) -> Duration {
        let mut left = budget.in_window;
        for &(at, p) in &budget.spent {
            left -= p;
            if left + points <= s.points_per_window {
                return (at + s.window).saturating_sub(now);
            }
        }
        s.window
    }

    /// An admitted call of `app` has been answered.
    pub fn done(&mut self, app: u64) {
        if let Some(budget) = self.apps.get_mut(&app) {
            budget.in_flight = budget.in_flight.saturating_sub(1);
        }
    }

    /// Calls refused, by App and limit.
    pub fn refused(&self) -> Vec<(u64, LimitKind, u64)> {
        self.refused
            .iter()
            .map(|(&(app, kind), &n)| (app, kind, n))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SimTime {
        Duration::from_secs(secs)
    }

    /// Admits a call and answers it at once.
    fn call(
        limits: &mut GitHubLimits,
        app: u64,
        points: u32,
        now: SimTime,
    ) -> Result<Primary, Refusal> {
        let result = limits.admit(app, Scope::Installation(app * 10), points, now);
        if result.is_ok() {
            limits.done(app);
        }
        result
    }

    #[test]
    fn the_sliding_window_refuses_with_the_wait_until_enough_points_leave_it() {
        let mut limits = GitHubLimits::new(QuotaSettings::default());
        // 100 JIT configs (500 points) at 0 s, 80 more (400) at 20 s: the window is full.
        for _ in 0..100 {
            call(&mut limits, 1, 5, at(0)).unwrap();
        }
        for _ in 0..80 {
            call(&mut limits, 1, 5, at(20)).unwrap();
        }
        let refusal = call(&mut limits, 1, 5, at(30)).unwrap_err();
        assert_eq!(refusal.kind, LimitKind::Secondary);
        // The first call's points leave the window at 60 s: 30 s from now.
        assert_eq!(refusal.retry_after, Duration::from_secs(30));
        // A GET fits no better: every point of the window is spent.
        assert_eq!(
            call(&mut limits, 1, 1, at(59)).unwrap_err().retry_after,
            at(1)
        );
        // Another App has its own window.
        assert!(call(&mut limits, 2, 5, at(30)).is_ok());
        // At 60 s the first 500 points have left; 100 JIT configs fit, the 101st waits
        // until the 20 s calls leave at 80 s.
        for _ in 0..100 {
            call(&mut limits, 1, 5, at(60)).unwrap();
        }
        let refusal = call(&mut limits, 1, 5, at(60)).unwrap_err();
        assert_eq!(refusal.retry_after, Duration::from_secs(20));
        assert_eq!(
            limits.refused(),
            vec![(1, LimitKind::Secondary, 3)],
            "refusals counted by App and kind"
        );
    }

    #[test]
    fn a_refused_call_costs_nothing() {
        let settings = QuotaSettings {
            points_per_window: 10,
            ..QuotaSettings::default()
        };
        let mut limits = GitHubLimits::new(settings);
        call(&mut limits, 1, 5, at(0)).unwrap();
        call(&mut limits, 1, 5, at(1)).unwrap();
        for _ in 0..50 {
            call(&mut limits, 1, 5, at(2)).unwrap_err();
        }
        // Only the two admitted calls were in the window: at 60 s one has left.
        assert!(call(&mut limits, 1, 5, at(60)).is_ok());
    }

    #[test]
    fn more_than_100_calls_in_flight_are_refused_for_60_seconds() {
        let mut limits = GitHubLimits::new(QuotaSettings::default());
        for _ in 0..100 {
            limits.admit(1, Scope::App(1), 1, at(0)).unwrap();
        }
        let refusal = limits.admit(1, Scope::App(1), 1, at(0)).unwrap_err();
        assert_eq!(
            (refusal.kind, refusal.retry_after),
            (LimitKind::Concurrency, Duration::from_secs(60))
        );
        limits.done(1);
        assert!(limits.admit(1, Scope::Installation(7), 1, at(0)).is_ok());
    }

    #[test]
    fn the_primary_bucket_counts_each_installation_and_resets_an_hour_after_its_first_call() {
        let settings = QuotaSettings {
            primary_limit: 3,
            ..QuotaSettings::default()
        };
        let mut limits = GitHubLimits::new(settings);
        let first = call(&mut limits, 1, 1, at(100)).unwrap();
        assert_eq!(
            (first.limit, first.used, first.remaining(), first.reset),
            (3, 1, 2, at(3_700))
        );
        call(&mut limits, 1, 1, at(200)).unwrap();
        let last = call(&mut limits, 1, 1, at(300)).unwrap();
        assert_eq!((last.used, last.remaining(), last.reset), (3, 0, at(3_700)));
        let refusal = call(&mut limits, 1, 1, at(400)).unwrap_err();
        assert_eq!(refusal.kind, LimitKind::Primary);
        assert_eq!(refusal.primary.remaining(), 0);
        assert_eq!(refusal.retry_after, at(3_300));
        // The App's own (JWT) calls have their own bucket.
        assert!(limits.admit(1, Scope::App(1), 1, at(400)).is_ok());
        limits.done(1);
        let fresh = call(&mut limits, 1, 1, at(3_700)).unwrap();
        assert_eq!((fresh.used, fresh.reset), (1, at(7_300)));
    }
}
