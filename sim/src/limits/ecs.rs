//! Token buckets, and ECS's API limits made of them: RunTask's own bucket, the Fargate
//! task-launch bucket, and a bucket per other operation
//! (<https://docs.aws.amazon.com/AmazonECS/latest/APIReference/request-throttling.html>).

use std::collections::HashMap;
use std::time::Duration;

/// A token bucket on any clock: `capacity` tokens, refilled at `rate` a second. Times are
/// durations since the clock's start (simulated or real; the caller keeps to one).
#[derive(Debug, Clone)]
pub struct TokenBucket {
    capacity: f64,
    rate: f64,
    tokens: f64,
    last: Duration,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub fn new(capacity: f64, rate: f64, now: Duration) -> Self {
        Self {
            capacity,
            rate,
            tokens: capacity,
            last: now,
        }
    }

    /// Takes a token if there is one at `now`.
    pub fn take(&mut self, now: Duration) -> bool {
        let elapsed = now.saturating_sub(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        self.last = self.last.max(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// ECS's API limits as AWS applies them to an account, in simulated time: RunTask answers
/// ThrottlingException beyond `run_task_per_sec` calls a second (bursts of
/// `run_task_burst`), and a RunTask that would launch a Fargate task when the launch bucket
/// (`fargate_capacity`, refilled at `fargate_per_sec`) is empty is throttled too ("Rate
/// exceeded"). Every other operation has a bucket of its own, `burst` then `per_sec`.
#[derive(Debug, Clone, PartialEq)]
pub struct EcsLimits {
    pub run_task_per_sec: f64,
    pub run_task_burst: f64,
    pub fargate_capacity: f64,
    pub fargate_per_sec: f64,
    pub per_sec: f64,
    pub burst: f64,
}

impl Default for EcsLimits {
    fn default() -> Self {
        Self {
            run_task_per_sec: 20.0,
            run_task_burst: 20.0,
            fargate_capacity: 100.0,
            fargate_per_sec: 20.0,
            per_sec: 20.0,
            burst: 100.0,
        }
    }
}

/// Which of ECS's limits throttled a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EcsThrottle {
    /// RunTask's own rate.
    RunTask,
    /// The Fargate task-launch bucket.
    FargateLaunches,
    /// Another operation's rate.
    Other,
}

/// Calls throttled, by limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EcsThrottled {
    pub run_task: u64,
    pub fargate_launches: u64,
    pub other: u64,
}

/// ECS's buckets, and how many calls each throttled.
#[derive(Debug, Clone)]
pub struct EcsThrottles {
    limits: EcsLimits,
    run_task: TokenBucket,
    fargate: TokenBucket,
    others: HashMap<String, TokenBucket>,
    pub throttled: EcsThrottled,
}

impl EcsThrottles {
    /// Full buckets at `now`.
    pub fn new(limits: &EcsLimits, now: Duration) -> Self {
        Self {
            run_task: TokenBucket::new(limits.run_task_burst, limits.run_task_per_sec, now),
            fargate: TokenBucket::new(limits.fargate_capacity, limits.fargate_per_sec, now),
            others: HashMap::new(),
            limits: limits.clone(),
            throttled: EcsThrottled::default(),
        }
    }

    /// A call of `operation` arrives: throttled (and counted) beyond its rate.
    pub fn call(&mut self, operation: &str, now: Duration) -> Result<(), EcsThrottle> {
        let (bucket, throttle) = if operation == "RunTask" {
            (&mut self.run_task, EcsThrottle::RunTask)
        } else {
            let l = &self.limits;
            let bucket = self
                .others
                .entry(operation.to_string())
                .or_insert_with(|| TokenBucket::new(l.burst, l.per_sec, now));
            (bucket, EcsThrottle::Other)
        };
        if bucket.take(now) {
            return Ok(());
        }
        match throttle {
            EcsThrottle::RunTask => self.throttled.run_task += 1,
            _ => self.throttled.other += 1,
        }
        Err(throttle)
    }

    /// A RunTask would launch a Fargate task: throttled (and counted) when the launch
    /// bucket is empty.
    pub fn launch(&mut self, now: Duration) -> Result<(), EcsThrottle> {
        if self.fargate.take(now) {
            Ok(())
        } else {
            self.throttled.fargate_launches += 1;
            Err(EcsThrottle::FargateLaunches)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_millis((s * 1000.0) as u64)
    }

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let mut bucket = TokenBucket::new(20.0, 20.0, Duration::ZERO);
        assert_eq!((0..25).filter(|_| bucket.take(Duration::ZERO)).count(), 20);
        // A quarter of a second refills five.
        let now = secs(0.25);
        assert_eq!((0..10).filter(|_| bucket.take(now)).count(), 5);
        // Never more than the capacity, however long it rests.
        let later = secs(100.0);
        assert_eq!((0..30).filter(|_| bucket.take(later)).count(), 20);
    }

    #[test]
    fn the_fargate_bucket_launches_100_at_once_then_20_a_second() {
        let limits = EcsLimits {
            // A RunTask API as fast as the launches can go, to see the launch bucket alone.
            run_task_per_sec: 1000.0,
            run_task_burst: 1000.0,
            ..EcsLimits::default()
        };
        let mut throttles = EcsThrottles::new(&limits, Duration::ZERO);
        let launched = (0..150)
            .filter(|_| {
                throttles.call("RunTask", Duration::ZERO).is_ok()
                    && throttles.launch(Duration::ZERO).is_ok()
            })
            .count();
        assert_eq!(launched, 100);
        assert_eq!(throttles.throttled.fargate_launches, 50);
        assert_eq!(
            throttles.launch(Duration::ZERO),
            Err(EcsThrottle::FargateLaunches)
        );
        // One second later: 20 more, and no 21st.
        let now = secs(1.0);
        assert_eq!(
            (0..21).filter(|_| throttles.launch(now).is_ok()).count(),
            20
        );
        let throttled = EcsThrottled {
            run_task: 0,
            fargate_launches: 52,
            other: 0,
        };
        assert_eq!(throttles.throttled, throttled);
    }

    #[test]
    fn runtask_calls_beyond_20_a_second_are_throttled_and_other_operations_have_their_own_buckets()
    {
        let mut throttles = EcsThrottles::new(&EcsLimits::default(), Duration::ZERO);
        let admitted = (0..30)
            .filter(|_| throttles.call("RunTask", Duration::ZERO).is_ok())
            .count();
        assert_eq!(admitted, 20);
        assert_eq!(throttles.throttled.run_task, 10);
        assert_eq!(throttles.call("RunTask", secs(0.05)), Ok(()));
        // ListTasks: its own bucket, 100 at once.
        let listed = (0..120)
            .filter(|_| throttles.call("ListTasks", Duration::ZERO).is_ok())
            .count();
        assert_eq!(listed, 100);
        assert_eq!(throttles.call("DescribeTasks", Duration::ZERO), Ok(()));
        assert_eq!(
            throttles.call("ListTasks", Duration::ZERO),
            Err(EcsThrottle::Other)
        );
        assert_eq!(throttles.throttled.other, 21);
    }
}
