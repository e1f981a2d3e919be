//! What a quota burst found: the time every job took to get its runner's RunTask against
//! the bound the limits set, the limit answers and throttles dockhand drew, the GitHub
//! calls it spent per runner, and the books' two failures (a job with no runner, a job
//! with two).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

use super::QuotaBurst;
use crate::books::Books;
use crate::clock::SimTime;
use crate::limits::{EcsLimits, EcsThrottled, LimitKind, QuotaSettings};
use crate::settings::Settings;
use crate::soak::SoakOptions;
use crate::webhooks::WebhookStats;
use crate::world::World;

/// The least time the limits allow for launching `jobs` runners, in simulated seconds: the
/// slower of GitHub and ECS.
///
/// - GitHub: each runner needs one JIT config, a POST of 5 points, and each App may spend
///   `points_per_window` (900) a `window` (minute): jobs × 5 / (900 × Apps) minutes. Every
///   other call (tokens, reads, the reconciler's) only adds to it. A sliding window lets
///   one window's worth go at once, so a pacer that spends the first window at the start
///   can finish up to one window early: the ratio can dip below 1 by up to 60 s / bound.
/// - ECS: one RunTask per runner, `burst` (20) at once then `per_sec` (20) a second:
///   max(0, jobs − 20) / 20 s. The Fargate launch bucket (100, then 20 a second) allows
///   more than that and never binds first.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bound {
    pub github: f64,
    pub ecs: f64,
}

impl Bound {
    pub fn of(jobs: usize, apps: usize, quota: &QuotaSettings, ecs: &EcsLimits) -> Self {
        let points = jobs as f64 * f64::from(QuotaSettings::points("POST"));
        let per_window = f64::from(quota.points_per_window) * apps.max(1) as f64;
        Self {
            github: points / per_window * quota.window.as_secs_f64(),
            ecs: (jobs as f64 - ecs.run_task_burst).max(0.0) / ecs.run_task_per_sec,
        }
    }

    pub fn secs(&self) -> f64 {
        self.github.max(self.ecs)
    }
}

/// What the run left for the report.
pub(super) struct Run {
    pub books: Books,
    pub first_delivery: Option<SimTime>,
    /// Each job's first RunTask accepted.
    pub first_launch: HashMap<u64, SimTime>,
    /// Of the jobs given two runners, those whose first runner ran another job.
    pub first_runner_ran_another: usize,
    /// Whether every job had one before the timeout.
    pub launched_all: bool,
    pub settled: bool,
    pub crashes: usize,
    pub clean_exit: bool,
    pub elapsed: Duration,
}

#[derive(Debug, Clone)]
pub struct QuotaReport {
    pub seed: u64,
    pub time_scale: f64,
    pub jobs: usize,
    pub apps: usize,
    pub baseline: bool,
    /// From the first delivery until every job had its runner's RunTask accepted
    /// (simulated seconds); `None` if some job never did.
    pub time: Option<f64>,
    pub bound: Bound,
    /// Limit answers by App and kind.
    pub refused: Vec<(u64, LimitKind, u64)>,
    /// ECS calls throttled: RunTask by its rate, by the Fargate launch bucket, and other
    /// operations.
    pub ecs_throttled: EcsThrottled,
    pub github_calls: Vec<(&'static str, u64)>,
    pub ecs_calls: Vec<(&'static str, u64)>,
    /// Runners launched for jobs (the books' count).
    pub runners: usize,
    /// Jobs with no runner, and jobs given two.
    pub lost: Vec<u64>,
    pub duplicates: Vec<u64>,
    /// Of `duplicates`, those whose first runner ran another job (so the job was owed a
    /// replacement).
    pub first_runner_ran_another: usize,
    /// Webhook deliveries: sent (one per App per event), accepted, and sent twice.
    pub deliveries: [u64; 3],
    pub settled: bool,
    pub crashes: usize,
    pub clean_exit: bool,
    pub elapsed: Duration,
}

impl QuotaReport {
    pub(super) fn new(
        options: &SoakOptions,
        burst: &QuotaBurst,
        settings: &Settings,
        world: &World,
        run: Run,
    ) -> Self {
        let quota = settings.quota.clone().unwrap_or_default();
        let ecs = settings.ecs_limits.clone().unwrap_or_default();
        let time = match (run.launched_all, run.first_delivery) {
            (true, Some(first)) => run
                .first_launch
                .values()
                .max()
                .map(|last| last.saturating_sub(first).as_secs_f64()),
            _ => None,
        };
        let mut lost: Vec<u64> = world.with(|m| {
            m.jobs
                .keys()
                .filter(|j| !run.first_launch.contains_key(j))
                .copied()
                .collect()
        });
        lost.sort_unstable();
        let ecs_throttled = world.ecs.throttled_by_limit().unwrap_or(EcsThrottled {
            other: *world.ecs.throttled.lock().unwrap(),
            ..EcsThrottled::default()
        });
        let s = &world.webhooks.stats;
        Self {
            seed: settings.seed,
            time_scale: settings.time_scale,
            jobs: options.jobs,
            apps: settings.apps.len(),
            baseline: burst.baseline,
            time,
            bound: Bound::of(options.jobs, settings.apps.len(), &quota, &ecs),
            refused: world.github.refused(),
            ecs_throttled,
            github_calls: world.github.calls(),
            ecs_calls: world.ecs.calls(),
            runners: run.books.launched,
            lost,
            duplicates: run.books.launched_twice.clone(),
            first_runner_ran_another: run.first_runner_ran_another,
            deliveries: [&s.events, &s.accepted, &s.duplicated].map(WebhookStats::get),
            settled: run.settled,
            crashes: run.crashes,
            clean_exit: run.clean_exit,
            elapsed: run.elapsed,
        }
    }

    /// No job lost, none given two runners. (The ratio and the limit answers are targets,
    /// reported, not failed.)
    pub fn passed(&self) -> bool {
        self.lost.is_empty() && self.duplicates.is_empty()
    }

    /// time / bound, when every job had its RunTask.
    pub fn ratio(&self) -> Option<f64> {
        self.time.map(|t| t / self.bound.secs())
    }

    /// Limit answers by kind, all Apps together.
    pub fn refused_by_kind(&self) -> BTreeMap<LimitKind, u64> {
        let mut by_kind = BTreeMap::new();
        for &(_, kind, n) in &self.refused {
            *by_kind.entry(kind).or_default() += n;
        }
        by_kind
    }

    pub fn github_calls_total(&self) -> u64 {
        self.github_calls.iter().map(|(_, n)| n).sum()
    }

    /// GitHub calls per runner launched.
    pub fn calls_per_runner(&self) -> f64 {
        self.github_calls_total() as f64 / self.runners.max(1) as f64
    }

    /// The run as a row of docs/benchmarks.md's table.
    pub fn row(&self) -> String {
        let kinds = self.refused_by_kind();
        let kind = |k| kinds.get(&k).copied().unwrap_or(0);
        format!(
            "| {} | {} | {} | {} | {} | {:.0} s | {} | {} / {} / {} | {} / {} | {:.2} | {} | {} |",
            if self.baseline { "baseline" } else { "paced" },
            self.apps,
            self.seed,
            self.jobs,
            self.time.map_or("-".into(), |t| format!("{t:.0} s")),
            self.bound.secs(),
            self.ratio().map_or("-".into(), |r| format!("{r:.2}")),
            kind(LimitKind::Secondary),
            kind(LimitKind::Concurrency),
            kind(LimitKind::Primary),
            self.ecs_throttled.run_task,
            self.ecs_throttled.fargate_launches,
            self.calls_per_runner(),
            self.lost.len(),
            if self.duplicates.is_empty() {
                "0".to_string()
            } else {
                format!(
                    "{} ({} after their first runner ran another job)",
                    self.duplicates.len(),
                    self.first_runner_ran_another
                )
            },
        )
    }

    pub const ROW_HEADER: &'static str = "| dockhand | Apps | seed | jobs | every job's RunTask | bound | time/bound | GitHub 403s secondary / concurrency / primary | RunTask throttled rate / Fargate | GitHub calls per runner | lost | duplicates |\n|---|---|---|---|---|---|---|---|---|---|---|---|";
}

impl fmt::Display for QuotaReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.bound;
        writeln!(
            f,
            "quota burst: {} jobs, {} App(s), {}, seed {}, time scale {}",
            self.jobs,
            self.apps,
            if self.baseline {
                "baseline (one App in the old config form, no [github.limits] or [aws.run_task])"
            } else {
                "paced ([[github.app]], [github.limits], [aws.run_task])"
            },
            self.seed,
            self.time_scale
        )?;
        match self.time {
            Some(t) => writeln!(
                f,
                "every job's runner's RunTask accepted {t:.1} simulated s after the first delivery ({:.1} real s)",
                t / self.time_scale
            )?,
            None => writeln!(
                f,
                "NOT every job had its runner's RunTask accepted before the timeout"
            )?,
        }
        writeln!(
            f,
            "quota bound: {:.1} s = max(GitHub {:.1} s = {} jobs x 5 points / (900 points a minute x {} App(s)), ECS {:.1} s = ({} jobs - 20) / 20 RunTask a second); time/bound {} (target <= 1.05)",
            b.secs(),
            b.github,
            self.jobs,
            self.apps,
            b.ecs,
            self.jobs,
            self.ratio().map_or("-".into(), |r| format!("{r:.3}"))
        )?;
        let kinds = self.refused_by_kind();
        let kind = |k| kinds.get(&k).copied().unwrap_or(0);
        let per_app: Vec<String> = self
            .refused
            .iter()
            .map(|(app, k, n)| format!("App {app} {}: {n}", k.as_str()))
            .collect();
        writeln!(
            f,
            "GitHub limit answers (target 0): {} secondary, {} concurrency, {} primary{}",
            kind(LimitKind::Secondary),
            kind(LimitKind::Concurrency),
            kind(LimitKind::Primary),
            if per_app.is_empty() {
                String::new()
            } else {
                format!(" ({})", per_app.join(", "))
            }
        )?;
        writeln!(
            f,
            "ECS throttles (target 0): RunTask {} by its rate, {} by the Fargate launch bucket; {} on other operations",
            self.ecs_throttled.run_task,
            self.ecs_throttled.fargate_launches,
            self.ecs_throttled.other
        )?;
        writeln!(
            f,
            "GitHub calls: {} for {} runners launched = {:.2} per runner; by endpoint {:?}; ECS calls {:?}",
            self.github_calls_total(),
            self.runners,
            self.calls_per_runner(),
            self.github_calls,
            self.ecs_calls
        )?;
        let [sent, accepted, twice] = self.deliveries;
        writeln!(
            f,
            "webhooks: {sent} deliveries (one per App per event), {accepted} accepted, {twice} sent twice with a new delivery id"
        )?;
        writeln!(
            f,
            "lost jobs (no runner): {}{}; duplicates (a job given two runners): {}, of which {} after the job's first runner ran another job (replaced by the reconciler){}",
            self.lost.len(),
            sample(&self.lost),
            self.duplicates.len(),
            self.first_runner_ran_another,
            sample(&self.duplicates)
        )?;
        writeln!(
            f,
            "settled: {}, crashes {}, clean exit {}, {:.1} s in all",
            self.settled,
            self.crashes,
            self.clean_exit,
            self.elapsed.as_secs_f64()
        )?;
        if self.passed() {
            writeln!(f, "PASSED")
        } else {
            writeln!(
                f,
                "FAILED: {} jobs lost, {} duplicated",
                self.lost.len(),
                self.duplicates.len()
            )
        }
    }
}

/// A few job ids, to look up with `dockhand jobs show`.
fn sample(jobs: &[u64]) -> String {
    if jobs.is_empty() {
        return String::new();
    }
    let shown: Vec<String> = jobs.iter().take(5).map(u64::to_string).collect();
    format!(" (e.g. {})", shown.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_is_the_slower_of_githubs_points_and_ecss_runtask_rate() {
        let (quota, run_task) = (QuotaSettings::default(), EcsLimits::default());
        let one = Bound::of(1_000, 1, &quota, &run_task);
        assert!((one.github - 333.33).abs() < 0.01, "{one:?}");
        assert!((one.ecs - 49.0).abs() < 1e-9, "{one:?}");
        assert_eq!(one.secs(), one.github);
        let four = Bound::of(1_000, 4, &quota, &run_task);
        assert!((four.secs() - 83.33).abs() < 0.01, "{four:?}");
        // Enough Apps, and ECS is the ceiling.
        let many = Bound::of(1_000, 8, &quota, &run_task);
        assert_eq!(many.secs(), 49.0);
        assert_eq!(Bound::of(10, 1, &quota, &run_task).ecs, 0.0);
    }
}
