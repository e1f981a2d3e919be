//! Pacing: a GCRA limiter (governor) that makes a caller wait its turn instead of being
//! refused. ECS RunTask calls use it (`[aws.run_task]`: ECS allows an account 20 RunTask
//! calls a second and launches Fargate tasks from a bucket of 100 refilling at 20 a
//! second; calls beyond are throttled, and a burst of jobs turns into a storm of retries),
//! and so do the webhook recovery loop's redeliveries (`[redelivery] per_second`).

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

/// Paces calls; clones share one limiter.
#[derive(Clone)]
pub(crate) struct Pacer {
    limiter: Arc<RateLimiter<NotKeyed, InMemoryState, DefaultClock>>,
    clock: DefaultClock,
    /// The histogram the waits are recorded in, if any.
    waits: Option<&'static str>,
}

impl std::fmt::Debug for Pacer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pacer").finish_non_exhaustive()
    }
}

impl Pacer {
    /// `per_second` calls a second after a first `burst` (validated settings: a rate that is
    /// not positive counts as 1 a second), each wait recorded in the histogram `waits`.
    pub fn new(per_second: f64, burst: u32, waits: Option<&'static str>) -> Self {
        let per_second = if per_second.is_finite() && per_second > 0.0 {
            per_second
        } else {
            1.0
        };
        let period = Duration::from_secs_f64(1.0 / per_second).max(Duration::from_nanos(1));
        let quota = Quota::with_period(period)
            .expect("a positive period")
            .allow_burst(NonZeroU32::new(burst.max(1)).expect("at least 1"));
        let clock = DefaultClock::default();
        Self {
            limiter: Arc::new(RateLimiter::direct_with_clock(quota, clock.clone())),
            clock,
            waits,
        }
    }

    /// Waits for this call's turn.
    pub async fn ready(&self) {
        let started = Instant::now();
        while let Err(not_until) = self.limiter.check() {
            let wait = not_until.wait_time_from(self.clock.now());
            tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
        }
        if let Some(waits) = self.waits {
            metrics::histogram!(waits).record(started.elapsed().as_secs_f64());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_burst_goes_at_once_and_the_rest_at_the_rate() {
        let pacer = Pacer::new(100.0, 5, None);
        let started = Instant::now();
        for _ in 0..5 {
            pacer.ready().await;
        }
        assert!(
            started.elapsed() < Duration::from_millis(5),
            "the burst waited"
        );
        for _ in 0..10 {
            pacer.ready().await;
        }
        // 10 more at 100 a second: about 100 ms.
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(90) && took < Duration::from_millis(400),
            "{took:?}"
        );
    }
}
