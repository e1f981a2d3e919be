//! What became of one message: a closed set, whose names are the `outcome` metric label.

use std::time::Duration;

/// A message the worker is done with: it is deleted once this is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A runner task was started for the job.
    Launched,
    /// A task an interrupted attempt had started was found and recorded.
    Adopted,
    /// The job is launched, finished, or being handled elsewhere already.
    Duplicate,
    /// No pool serves the job's labels (any more).
    Unmatched,
    /// Dry run: recorded what would have launched.
    DryRun,
    /// An `in_progress`, `completed` or `waiting` event, recorded.
    Tracked,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Launched => "launched",
            Self::Adopted => "adopted",
            Self::Duplicate => "duplicate",
            Self::Unmatched => "unmatched",
            Self::DryRun => "dry_run",
            Self::Tracked => "tracked",
        }
    }
}

/// Why a message is put back on the queue for later.
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
            Self::Error(_) => "deferred_error",
        }
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

#[cfg(test)]
mod tests {
    use super::*;

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
