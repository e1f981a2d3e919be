//! What became of one message: a closed set, whose names are the `outcome` metric label.

use std::time::Duration;

use crate::ecs::LaunchError;
use crate::github::GitHubError;
use crate::store::StoreError;
use crate::telemetry::chain;

/// A message the worker is done with: it is deleted once this is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A runner task was started for the job.
    Launched,
    /// A task an interrupted attempt had started was found and recorded.
    Adopted,
    /// The job is launched, failed, or being handled elsewhere already.
    Duplicate,
    /// No launch is owed: the job finished before any runner took it, or ran on a runner
    /// dockhand did not launch.
    Waived,
    /// No pool serves the job's labels (any more), and dockhand never stored it: the
    /// message is acknowledged and nothing is stored.
    Unmatched,
    /// Dry run: recorded what would have launched.
    DryRun,
    /// An `in_progress`, `completed` or `waiting` event, recorded.
    Tracked,
    /// An ECS task state change event, handed to the lifecycle.
    TaskEvent,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Launched => "launched",
            Self::Adopted => "adopted",
            Self::Duplicate => "duplicate",
            Self::Waived => "waived",
            Self::Unmatched => "unmatched",
            Self::DryRun => "dry_run",
            Self::Tracked => "tracked",
            Self::TaskEvent => "task_event",
        }
    }
}

/// Why a message is put back on the queue for later. Every reason but [`Deferral::Error`]
/// is an expected wait: it is sent again as a fresh delayed copy, so it does not count
/// towards the queue's dead-letter limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deferral {
    /// No launch option had capacity.
    Capacity,
    /// GitHub's rate limit: come back when it resets.
    RateLimit(Duration),
    /// The pool is at `max_runners`.
    PoolFull,
    /// Another worker holds the job's lease for this long.
    Held(Duration),
    /// The ingress matched this pool, which this worker's config does not have yet.
    UnknownPool(String),
    /// A wait longer than one delayed send allows is not over yet.
    NotYet(Duration),
    /// A transient error (GitHub, ECS, the store).
    Error(String),
}

impl Deferral {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Capacity => "deferred_capacity",
            Self::RateLimit(_) => "deferred_rate_limit",
            Self::PoolFull => "deferred_pool_full",
            Self::Held(_) => "deferred_held",
            Self::UnknownPool(_) => "deferred_unknown_pool",
            Self::NotYet(_) => "deferred_not_yet",
            Self::Error(_) => "deferred_error",
        }
    }

    /// Whether this is an expected wait rather than an error.
    pub fn is_expected(&self) -> bool {
        !matches!(self, Self::Error(_))
    }
}

/// Why processing a message did not end in an [`Outcome`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobError {
    /// Try again later: the message's visibility is pushed out.
    Deferred(Deferral),
    /// Will never succeed as it is: the message goes to the dead-letter queue with this
    /// reason, at once.
    Permanent(String),
}

/// How a store failure stops an attempt: always a wait, never a failure.
impl From<StoreError> for JobError {
    fn from(err: StoreError) -> Self {
        match err {
            // The lease went to another worker, which now owns the job's fate.
            StoreError::LeaseLost(_) => JobError::Deferred(Deferral::Error(err.to_string())),
            StoreError::Unavailable(_) => JobError::Deferred(Deferral::Error(chain(&err))),
        }
    }
}

/// A GitHub failure as the attempt's result: a rate limit waits for its reset, other
/// transient failures come back through the queue, the rest are permanent.
pub(super) fn github_error(err: GitHubError) -> JobError {
    match err {
        GitHubError::RateLimited { retry_after } => {
            JobError::Deferred(Deferral::RateLimit(retry_after))
        }
        e if e.is_transient() => {
            JobError::Deferred(Deferral::Error(format!("GitHub: {}", chain(&e))))
        }
        e => JobError::Permanent(format!("GitHub: {}", chain(&e))),
    }
}

/// An ECS failure as the attempt's result: no capacity waits, other transient failures
/// come back through the queue, the rest are permanent.
pub(super) fn launch_error(err: LaunchError) -> JobError {
    match err {
        LaunchError::NoCapacity { .. } => JobError::Deferred(Deferral::Capacity),
        e if e.is_transient() => JobError::Deferred(Deferral::Error(format!("ECS: {}", chain(&e)))),
        e => JobError::Permanent(format!("ECS: {}", chain(&e))),
    }
}

/// What the worker did with one message in the end. A closed set: it becomes the `outcome`
/// metric label (through [`Settled::as_str`]) only where the metric is recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// Recorded in the store, then deleted from the queue.
    Done(Outcome),
    /// Put back on the queue, to be received again later.
    Deferred(Deferral),
    /// Failed permanently: sent to the dead-letter queue with this reason.
    Failed(String),
}

impl Settled {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Done(outcome) => outcome.as_str(),
            Self::Deferred(deferral) => deferral.as_str(),
            Self::Failed(_) => "failed",
        }
    }
}

impl From<Result<Outcome, JobError>> for Settled {
    fn from(result: Result<Outcome, JobError>) -> Self {
        match result {
            Ok(outcome) => Self::Done(outcome),
            Err(JobError::Deferred(deferral)) => Self::Deferred(deferral),
            Err(JobError::Permanent(reason)) => Self::Failed(reason),
        }
    }
}

/// Exponential backoff with jitter: `base * 2^(n-1)`, capped at `max`, then a random
/// value between half and all of it, so deferred messages don't come back in lockstep.
pub fn backoff(receive_count: u32, base: Duration, max: Duration) -> Duration {
    let exp = receive_count.saturating_sub(1).min(20);
    let full = base.saturating_mul(1u32 << exp).min(max);
    let jitter = fastrand::f64() * 0.5 + 0.5;
    full.mul_f64(jitter)
}

/// The least a rate-limit deferral is spread over, so even a short wait does not bring a
/// backlog back in one second.
const RATE_LIMIT_MIN_SPREAD: Duration = Duration::from_secs(5);
/// The most a rate-limit deferral is spread over, so a long wait adds at most this.
const RATE_LIMIT_MAX_SPREAD: Duration = Duration::from_secs(300);

/// How long a message deferred by a rate limit stays away, for a limit that resets in
/// `wait`: the wait, then a uniformly random share of a quarter of it (at least
/// [`RATE_LIMIT_MIN_SPREAD`], at most [`RATE_LIMIT_MAX_SPREAD`]). Every message deferred
/// by one limit waits for the same reset; spread out, the backlog does not come back
/// within one second and trip the limit again.
pub fn rate_limit_delay(wait: Duration) -> Duration {
    let spread = (wait / 4).clamp(RATE_LIMIT_MIN_SPREAD, RATE_LIMIT_MAX_SPREAD);
    wait + spread.mul_f64(fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limited_messages_come_back_spread_over_seconds_and_never_before_the_reset() {
        let wait = Duration::from_secs(60);
        let delays: Vec<Duration> = (0..1000).map(|_| rate_limit_delay(wait)).collect();
        let (first, last) = (*delays.iter().min().unwrap(), *delays.iter().max().unwrap());
        assert!(first >= wait, "{first:?} is before the reset");
        assert!(
            last <= wait + wait / 4,
            "{last:?}: spread past a quarter of the wait"
        );
        assert!(
            last - first > Duration::from_secs(10),
            "1,000 deferrals come back within {:?} of each other",
            last - first
        );
        let mut seconds: Vec<u64> = delays.iter().map(Duration::as_secs).collect();
        seconds.sort_unstable();
        seconds.dedup();
        assert!(
            seconds.len() >= 12,
            "only {} distinct seconds",
            seconds.len()
        );
    }

    #[test]
    fn a_short_rate_limit_still_spreads_over_seconds_and_a_long_one_is_capped() {
        let short = Duration::from_secs(1);
        let delays: Vec<Duration> = (0..1000).map(|_| rate_limit_delay(short)).collect();
        assert!(
            delays
                .iter()
                .all(|d| *d >= short && *d <= short + RATE_LIMIT_MIN_SPREAD)
        );
        let spread = *delays.iter().max().unwrap() - *delays.iter().min().unwrap();
        assert!(spread > Duration::from_secs(3), "{spread:?}");

        let long = Duration::from_secs(3600);
        for _ in 0..1000 {
            let d = rate_limit_delay(long);
            assert!(d >= long && d <= long + RATE_LIMIT_MAX_SPREAD, "{d:?}");
        }
    }

    #[test]
    fn backoff_doubles_is_capped_and_jittered_within_half_to_full() {
        let (base, max) = (Duration::from_secs(5), Duration::from_secs(300));
        for (count, full) in [(1, 5), (2, 10), (3, 20), (4, 40), (7, 300), (40, 300)] {
            for _ in 0..50 {
                let d = backoff(count, base, max);
                let full = Duration::from_secs(full);
                assert!(d <= full && d >= full / 2, "{count}: {d:?}");
            }
        }
    }
}
