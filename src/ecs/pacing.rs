//! RunTask pacing: ECS allows an account 20 RunTask calls a second and launches Fargate
//! tasks from a bucket of 100 refilling at 20 a second. Calls beyond that are throttled,
//! and every throttled call is retried; a burst of jobs then turns into a storm of
//! retries. Each process therefore paces its own RunTask calls (`[aws.run_task]`, a GCRA
//! limiter from governor): a call waits its turn instead.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use crate::config::RunTaskPacing;
use crate::metrics as m;

/// Paces RunTask calls; clones share one limiter.
#[derive(Clone)]
pub(super) struct Pacer {
    limiter: Arc<RateLimiter<NotKeyed, InMemoryState, DefaultClock>>,
    clock: DefaultClock,
}

impl std::fmt::Debug for Pacer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pacer").finish_non_exhaustive()
    }
}

impl Pacer {
    pub fn new(pacing: &RunTaskPacing) -> Self {
        let per_second = if pacing.per_second.is_finite() && pacing.per_second > 0.0 {
            pacing.per_second
        } else {
            RunTaskPacing::default().per_second
        };
        let period = Duration::from_secs_f64(1.0 / per_second).max(Duration::from_nanos(1));
        let quota = Quota::with_period(period)
            .expect("a positive period")
            .allow_burst(NonZeroU32::new(pacing.burst.max(1)).expect("at least 1"));
        let clock = DefaultClock::default();
        Self {
            limiter: Arc::new(RateLimiter::direct_with_clock(quota, clock.clone())),
            clock,
        }
    }

    /// Waits until this process may call RunTask again.
    pub async fn ready(&self) {
        let started = Instant::now();
        while let Err(not_until) = self.limiter.check() {
            let wait = not_until.wait_time_from(self.clock.now());
            tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
        }
        metrics::histogram!(m::ECS_RUN_TASK_WAIT_SECONDS).record(started.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_burst_goes_at_once_and_the_rest_at_the_rate() {
        let pacer = Pacer::new(&RunTaskPacing {
            per_second: 100.0,
            burst: 5,
        });
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
