//! How long jobs waited for a runner: from `queued` to `in_progress` on GitHub, in
//! simulated time, and how many started within [`WARM_HIT`] (an idle runner was ready for
//! them). Also which jobs ran on warm runners: runners dockhand launched for no job, to
//! stand idle (`startedBy` `dockhand-warm-{pool}`).

use std::collections::HashSet;
use std::time::Duration;

use crate::model::{Model, TaskStatus};

/// A job that started within this long of being queued found a runner ready for it.
pub const WARM_HIT: Duration = Duration::from_secs(2);

/// What dockhand's warm runners' tasks are started by begins so (`dockhand-warm-{pool}`).
pub const WARM_STARTED_BY: &str = "dockhand-warm-";

#[derive(Debug, Clone, Default, PartialEq)]
pub struct WaitBooks {
    /// Jobs that started on a runner (dockhand's or a stranger's).
    pub jobs: usize,
    /// Queued to started, simulated seconds: median, p90, p99, max (nearest rank).
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    /// Jobs that started within [`WARM_HIT`].
    pub warm_hits: usize,
    /// Jobs that ran on a warm runner.
    pub on_warm_runners: usize,
    /// Warm runners launched: their tasks whose runner came online or is still coming up
    /// (as [`super::Books::launched`] counts the launches for jobs).
    pub warm_tasks: usize,
}

impl WaitBooks {
    pub fn read(model: &Model) -> Self {
        let warm_tasks: Vec<_> = model
            .tasks
            .values()
            .filter(|t| {
                t.started_by
                    .as_deref()
                    .is_some_and(|s| s.starts_with(WARM_STARTED_BY))
            })
            .collect();
        let warm_runners: HashSet<u64> = warm_tasks.iter().filter_map(|t| t.runner).collect();
        let mut waits = Vec::new();
        let mut on_warm_runners = 0;
        for job in model.jobs.values() {
            let (Some(started), Some((runner, _))) = (job.started, job.ran_on) else {
                continue;
            };
            waits.push(started.saturating_sub(job.created));
            on_warm_runners += usize::from(warm_runners.contains(&runner));
        }
        Self {
            on_warm_runners,
            warm_tasks: warm_tasks
                .iter()
                .filter(|t| t.runner.is_some() || t.status != TaskStatus::Stopped)
                .count(),
            ..Self::of(waits)
        }
    }

    /// The statistics of these waits.
    pub fn of(mut waits: Vec<Duration>) -> Self {
        waits.sort();
        let rank = |q: f64| {
            let n = waits.len();
            if n == 0 {
                return 0.0;
            }
            let i = ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
            waits[i].as_secs_f64()
        };
        Self {
            jobs: waits.len(),
            p50: rank(0.5),
            p90: rank(0.9),
            p99: rank(0.99),
            max: rank(1.0),
            warm_hits: waits.iter().filter(|w| **w <= WARM_HIT).count(),
            ..Self::default()
        }
    }

    /// The share of jobs that started within [`WARM_HIT`] (0 when none started).
    pub fn warm_hit_share(&self) -> f64 {
        if self.jobs == 0 {
            0.0
        } else {
            self.warm_hits as f64 / self.jobs as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: &[f64]) -> Vec<Duration> {
        s.iter().map(|s| Duration::from_secs_f64(*s)).collect()
    }

    #[test]
    fn percentiles_are_nearest_rank_and_warm_hits_count_waits_of_two_seconds_or_less() {
        let waits: Vec<f64> = (1..=10).map(f64::from).collect();
        let books = WaitBooks::of(secs(&waits));
        assert_eq!(
            (books.jobs, books.p50, books.p90, books.p99, books.max),
            (10, 5.0, 9.0, 10.0, 10.0)
        );
        assert_eq!(books.warm_hits, 2);
        assert!((books.warm_hit_share() - 0.2).abs() < 1e-9);
    }

    #[test]
    fn no_jobs_is_all_zeros() {
        let books = WaitBooks::of(Vec::new());
        assert_eq!(books, WaitBooks::default());
        assert_eq!(books.warm_hit_share(), 0.0);
    }
}
