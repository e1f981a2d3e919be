//! One App's budget within GitHub's rate limits, so calls wait for room rather than trip
//! a limit (<https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api>):
//! - the secondary limit: points a minute (a GET costs 1, a POST, PATCH, PUT or DELETE 5),
//!   paced by a GCRA limiter (governor);
//! - at most `concurrent` requests in flight;
//! - the primary hourly limit of each installation (and of the App's JWT), as the answers'
//!   `x-ratelimit-remaining` and `x-ratelimit-reset` report it ([`PrimaryLimits`]);
//! - a limit GitHub answered all the same (403 or 429 with `retry-after`): no call until
//!   it has passed.
//!
//! GitHub counts its points per minute. A limiter allowing a burst of B points
//! (`points_burst`) and refilling at r a second admits at most B + 60·r points in any
//! minute; r is set to (limit − B − limit/60) / 60 s so that this stays a second's points
//! under the limit, room for calls that network jitter bunches on arrival.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use http::{HeaderMap, StatusCode};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::primary::PrimaryLimits;
use crate::config::GitHubLimits;
use crate::domain::InstallationId;
use crate::metrics as m;

/// What a call costs in secondary-limit points.
pub(super) fn points(method: &http::Method) -> u32 {
    match *method {
        http::Method::GET | http::Method::HEAD | http::Method::OPTIONS => 1,
        _ => 5,
    }
}

type Limiter = RateLimiter<NotKeyed, InMemoryState, DefaultClock, StateInformationMiddleware>;

/// One App's budget; see the module's doc.
pub(super) struct Budget {
    app: String,
    limiter: Limiter,
    clock: DefaultClock,
    burst: u32,
    per_point: Duration,
    concurrent: Arc<Semaphore>,
    max_wait: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// No call before this: GitHub answered a limit.
    blocked_until: Option<Instant>,
    /// The primary limits GitHub's answers report.
    primary: PrimaryLimits,
    /// Points left after the last call, and when.
    points: Option<(u32, Instant)>,
    /// Whether the JIT call's rate-limit resource has been logged.
    resource_logged: bool,
}

/// Room for one call: the points are spent, and the call holds one of the App's
/// concurrent slots until this is dropped.
pub(super) struct Permit {
    _slot: OwnedSemaphorePermit,
}

impl std::fmt::Debug for Permit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Permit")
    }
}

/// Why a call cannot go now: the earliest it could.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Wait(pub Duration);

/// What kind of limit a refused answer was, for `dockhand_github_limit_answers_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LimitKind {
    Secondary,
    Primary,
}

impl LimitKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Secondary => "secondary",
            Self::Primary => "primary",
        }
    }
}

impl Budget {
    pub fn new(app: u64, limits: &GitHubLimits) -> Self {
        let per_minute = limits.points_per_minute.max(7);
        // GitHub counts a call when it arrives, dockhand when it leaves: a second's points
        // are kept back, so calls bunched by up to a second of network jitter still fit.
        let margin = (per_minute / 60).max(1);
        let burst = limits.points_burst.clamp(5, per_minute - margin - 1);
        let per_point = Duration::from_secs(60) / (per_minute - burst - margin);
        let quota = Quota::with_period(per_point)
            .expect("a positive period")
            .allow_burst(NonZeroU32::new(burst).expect("at least 5"));
        // The limit answers exist at 0 from the start, so an alert on their increase
        // sees the first one.
        for kind in [LimitKind::Secondary, LimitKind::Primary] {
            metrics::counter!(m::GITHUB_LIMIT_ANSWERS_TOTAL, "app" => app.to_string(), "kind" => kind.as_str())
                .increment(0);
        }
        let clock = DefaultClock::default();
        let limiter = RateLimiter::direct_with_clock(quota, clock.clone())
            .with_middleware::<StateInformationMiddleware>();
        Self {
            app: app.to_string(),
            limiter,
            clock,
            burst,
            per_point,
            concurrent: Arc::new(Semaphore::new(limits.concurrent.max(1) as usize)),
            max_wait: limits.max_wait,
            state: Mutex::new(State {
                primary: PrimaryLimits::new(u64::from(limits.primary_reserve)),
                ..State::default()
            }),
        }
    }

    /// How long a call waits for room before it gives up (`[github.limits] max_wait`).
    pub fn max_wait(&self) -> Duration {
        self.max_wait
    }

    /// Room for a call of `points` now, or the earliest it could go.
    pub fn try_acquire(&self, points: u32) -> Result<Permit, Wait> {
        if let Some(wait) = self.blocked() {
            return Err(Wait(wait));
        }
        let slot = self
            .concurrent
            .clone()
            .try_acquire_owned()
            .map_err(|_| Wait(Duration::from_millis(50)))?;
        let n = NonZeroU32::new(points.clamp(1, self.burst)).expect("at least 1");
        match self.limiter.check_n(n) {
            Ok(Ok(snapshot)) => {
                let left = snapshot.remaining_burst_capacity();
                self.lock().points = Some((left, Instant::now()));
                metrics::gauge!(m::GITHUB_BUDGET_REMAINING, "app" => self.app.clone(), "limit" => "points")
                    .set(f64::from(left));
                Ok(Permit { _slot: slot })
            }
            Ok(Err(not_until)) => Err(Wait(not_until.wait_time_from(self.clock.now()))),
            Err(_) => unreachable!("points are clamped to the burst"),
        }
    }

    /// Room for a call of `points`, waiting up to `max_wait` for it. Records the time
    /// waited.
    pub async fn acquire(&self, points: u32, max_wait: Duration) -> Result<Permit, Wait> {
        let started = Instant::now();
        loop {
            match self.try_acquire(points) {
                Ok(permit) => {
                    self.waited(started.elapsed());
                    return Ok(permit);
                }
                Err(Wait(wait)) if started.elapsed() + wait <= max_wait => {
                    tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
                }
                Err(wait) => return Err(wait),
            }
        }
    }

    /// Waits, up to `max_wait`, until the App's points are full again: no registration
    /// is waiting for them. Background calls (the reconciler's) go after this, so a burst
    /// of registrations is not slowed by following runners to their end, which can wait;
    /// after `max_wait` they go regardless, so they are never starved for longer.
    pub async fn yield_to_registrations(&self) {
        let started = Instant::now();
        while !self.is_free() && started.elapsed() < self.max_wait {
            tokio::time::sleep(self.recheck()).await;
        }
    }

    /// Whether the App's points are full: nothing is waiting for them.
    pub fn is_free(&self) -> bool {
        self.points_now() >= self.burst
    }

    /// How often a background call looks again: while a JIT config's points come back.
    pub fn recheck(&self) -> Duration {
        (self.per_point * 5).max(Duration::from_millis(10))
    }

    /// Records time a call waited for this App's budget.
    pub fn waited(&self, waited: Duration) {
        metrics::histogram!(m::GITHUB_BUDGET_WAIT_SECONDS, "app" => self.app.clone())
            .record(waited.as_secs_f64());
    }

    /// The points the App has now, by the limiter's last report and its refill since.
    pub fn points_now(&self) -> u32 {
        match self.lock().points {
            None => self.burst,
            Some((left, at)) => {
                let refilled = at.elapsed().as_nanos() / self.per_point.as_nanos().max(1);
                (u128::from(left) + refilled).min(u128::from(self.burst)) as u32
            }
        }
    }

    /// See [`PrimaryLimits::remaining`].
    pub fn primary_remaining(&self, installation: Option<InstallationId>) -> Option<u64> {
        self.lock().primary.remaining(installation)
    }

    /// See [`PrimaryLimits::room`].
    pub fn primary_room(&self, installation: Option<InstallationId>) -> Result<(), Wait> {
        self.lock().primary.room(installation)
    }

    /// Learns from an answer: the primary limit it reports, the resource a JIT config
    /// draws on (logged once), and a limit GitHub answered after all.
    pub fn observe(
        &self,
        installation: Option<InstallationId>,
        status: StatusCode,
        headers: &HeaderMap,
        jit: bool,
        refused: Option<(LimitKind, Duration)>,
    ) {
        let mut state = self.lock();
        let (resource, lowest) =
            state
                .primary
                .learn(installation, headers, jit && status.is_success());
        if let Some(lowest) = lowest {
            metrics::gauge!(m::GITHUB_BUDGET_REMAINING, "app" => self.app.clone(), "limit" => "primary")
                .set(lowest as f64);
        }
        if jit && status.is_success() && !state.resource_logged {
            state.resource_logged = true;
            tracing::info!(
                github.app = self.app,
                github.ratelimit_resource = resource,
                "GitHub counts JIT configs against this rate-limit resource"
            );
        }
        if let Some((kind, wait)) = refused {
            metrics::counter!(m::GITHUB_LIMIT_ANSWERS_TOTAL, "app" => self.app.clone(), "kind" => kind.as_str())
                .increment(1);
            tracing::warn!(
                github.app = self.app,
                kind = kind.as_str(),
                retry_after_s = wait.as_secs(),
                "GitHub answered a rate limit; this App's calls wait it out"
            );
            if kind == LimitKind::Secondary {
                let until = Instant::now() + wait;
                state.blocked_until = Some(state.blocked_until.map_or(until, |b| b.max(until)));
            }
        }
    }

    fn blocked(&self) -> Option<Duration> {
        let until = self.lock().blocked_until?;
        until.checked_duration_since(Instant::now())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("budget lock")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(points_per_minute: u32) -> GitHubLimits {
        GitHubLimits {
            points_per_minute,
            ..GitHubLimits::default()
        }
    }

    #[test]
    fn a_minute_never_admits_more_than_the_limit() {
        // 900 a minute: a burst of 15, 15 kept back, then 870 a minute: at most 885 points
        // in any 60 s.
        let budget = Budget::new(1, &limits(900));
        assert_eq!(budget.burst, 15);
        let mut admitted = 0;
        while budget.try_acquire(5).is_ok() {
            admitted += 5;
        }
        assert_eq!(admitted, 15, "the burst");
        let wait = budget.try_acquire(5).unwrap_err().0;
        // 5 points at 870 a minute: about 345 ms.
        assert!(
            wait > Duration::from_millis(300) && wait <= Duration::from_millis(345),
            "{wait:?}"
        );
        assert_eq!(budget.per_point, Duration::from_secs(60) / 870);
    }

    #[tokio::test]
    async fn background_calls_wait_for_full_points_but_never_past_max_wait() {
        let fast = Budget::new(
            1,
            &GitHubLimits {
                points_per_minute: 61_050,
                ..GitHubLimits::default()
            },
        );
        while fast.try_acquire(5).is_ok() {}
        assert!(!fast.is_free());
        let started = Instant::now();
        fast.yield_to_registrations().await;
        // 30 points back at 1 ms each.
        assert!(fast.is_free());
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );

        let slow = Budget::new(
            1,
            &GitHubLimits {
                max_wait: Duration::from_millis(50),
                ..GitHubLimits::default()
            },
        );
        while slow.try_acquire(5).is_ok() {}
        let started = Instant::now();
        slow.yield_to_registrations().await;
        // Full again only after 2 s; the wait stops at 50 ms.
        assert!(!slow.is_free());
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(50) && waited < Duration::from_millis(900),
            "{waited:?}"
        );
    }

    #[test]
    fn gets_are_cheap_and_writes_cost_five() {
        assert_eq!(points(&http::Method::GET), 1);
        assert_eq!(points(&http::Method::POST), 5);
        assert_eq!(points(&http::Method::DELETE), 5);
    }

    #[test]
    fn concurrency_is_bounded() {
        let budget = Budget::new(
            1,
            &GitHubLimits {
                concurrent: 2,
                ..GitHubLimits::default()
            },
        );
        let a = budget.try_acquire(1).unwrap();
        let _b = budget.try_acquire(1).unwrap();
        assert!(budget.try_acquire(1).is_err());
        drop(a);
        assert!(budget.try_acquire(1).is_ok());
    }

    #[test]
    fn a_limit_answered_blocks_the_app_until_it_passes() {
        let budget = Budget::new(1, &GitHubLimits::default());
        budget.observe(
            None,
            StatusCode::FORBIDDEN,
            &HeaderMap::new(),
            false,
            Some((LimitKind::Secondary, Duration::from_secs(30))),
        );
        let Wait(wait) = budget.try_acquire(1).unwrap_err();
        assert!(wait > Duration::from_secs(29), "{wait:?}");
    }
}
