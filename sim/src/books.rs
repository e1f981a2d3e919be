//! The simulator's own books, read at the end of a soak: did every job run exactly once,
//! did dockhand launch exactly the runners it owed, and what was left behind.

mod spot;
mod wait;

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::clock::SimTime;
use crate::model::{Conclusion, Interruption, JobState, Model, Origin, TaskStatus};
pub use spot::SpotBooks;
pub use wait::{WARM_HIT, WARM_STARTED_BY, WaitBooks};

/// The `startedBy` dockhand gives a job's task.
pub fn started_by(job: u64) -> String {
    format!("dockhand-job-{job}")
}

/// Every job's first RunTask accepted (its task created), in simulated time; jobs without
/// one are absent.
pub fn first_launches(model: &Model) -> HashMap<u64, SimTime> {
    let mut by_started_by: HashMap<&str, SimTime> = HashMap::new();
    for task in model.tasks.values() {
        if let Some(s) = &task.started_by {
            let first = by_started_by.entry(s.as_str()).or_insert(task.created);
            *first = (*first).min(task.created);
        }
    }
    model
        .jobs
        .keys()
        .filter_map(|&job| {
            by_started_by
                .get(started_by(job).as_str())
                .map(|&t| (job, t))
        })
        .collect()
}

/// Which of these jobs (each given two runners or more) had their first runner run
/// another job: GitHub gives a queued job to any idle runner, so a job whose runner was
/// taken is owed another, which dockhand's reconciler launches once GitHub still shows the
/// job queued after `verify_after`. The rest are duplicates in the plain sense.
pub fn first_runner_ran_another(model: &Model, jobs: &[u64]) -> Vec<u64> {
    let ran: HashMap<u64, u64> = model
        .jobs
        .values()
        .filter_map(|j| j.ran_on.map(|(runner, _)| (runner, j.id)))
        .collect();
    jobs.iter()
        .filter(|&&job| {
            let key = started_by(job);
            let first = model
                .tasks
                .values()
                .filter(|t| t.started_by.as_deref() == Some(key.as_str()))
                .min_by_key(|t| t.created);
            first
                .and_then(|t| t.runner)
                .and_then(|r| ran.get(&r))
                .is_some_and(|&other| other != job)
        })
        .copied()
        .collect()
}

#[derive(Debug, Clone, Default)]
pub struct Books {
    pub jobs: usize,
    pub poison: usize,
    pub cancelled_while_queued: usize,
    pub ran_on_dockhand: usize,
    pub ran_on_strangers: usize,
    /// Jobs whose `queued` delivery never reached the ingress: dockhand could not owe them.
    pub never_delivered: usize,
    /// Jobs owed a launch: not poison, not cancelled while queued, not run by a stranger,
    /// and delivered.
    pub owed: usize,
    /// Runners launched for jobs: tasks whose runner came online, or that are still coming
    /// up, but for those Spot interrupted before their runner took a job (replaced, as a
    /// task that died is). Warm runners (launched for no job) are counted in `wait`.
    pub launched: usize,
    /// Launches for jobs not owed one (cancelled, or taken by a stranger, first): spares.
    pub spare_launches: usize,
    /// Owed jobs with no launch of their own: a surplus runner (launched for a job that
    /// was then cancelled or taken by a stranger) ran them, so none was needed.
    pub served_by_surplus: usize,
    /// Jobs with more than one runner launched: a failure.
    pub launched_twice: Vec<u64>,
    /// Jobs not cancelled that did not run to success (still queued, running, or failed),
    /// but for those failed by a Spot interruption during their run (`spot.failed_jobs`).
    pub unfinished: Vec<u64>,
    pub assigned_twice: Vec<u64>,
    /// Busy runners whose task was stopped or that were deleted (not by Spot).
    pub busy_runners_killed: u64,
    pub delete_busy_refused: u64,
    pub tasks: usize,
    pub tasks_died: usize,
    /// Tasks that came up to a registration already deleted or used.
    pub tasks_refused: u64,
    pub client_token_replays: u64,
    /// Left behind: tasks not stopped, registrations still listed, and how many of the
    /// listed runners are idle online.
    pub tasks_left: usize,
    pub registrations_left: usize,
    pub idle_runners_left: usize,
    pub strangers: u64,
    /// Simulated seconds dockhand's runners spent online and idle: each from coming online
    /// until it took its (one, ephemeral) job or went away, or until the books were read.
    pub idle_runner_secs: f64,
    /// `idle_runner_secs` per job owed a launch (0 when none was owed).
    pub idle_secs_per_job: f64,
    /// Queued to started, in simulated time, of the jobs that ran; and the warm runners.
    pub wait: WaitBooks,
    /// Spot interruptions, and tasks by capacity provider.
    pub spot: SpotBooks,
}

impl Books {
    /// Reads the books; `delivered` holds the jobs whose `queued` delivery was accepted.
    pub fn read(model: &Model, delivered: &HashSet<u64>) -> Self {
        let mut books = Self {
            jobs: model.jobs.len(),
            busy_runners_killed: model.counters.busy_runners_killed,
            delete_busy_refused: model.counters.delete_busy_refused,
            tasks_refused: model.counters.jit_refused,
            client_token_replays: model.counters.client_token_replays,
            strangers: model.counters.strangers,
            tasks: model.tasks.len(),
            idle_runner_secs: model.idle_runner_time().as_secs_f64(),
            spot: SpotBooks::read(model),
            wait: WaitBooks::read(model),
            ..Self::default()
        };
        let left = model.leftovers();
        (
            books.tasks_left,
            books.registrations_left,
            books.idle_runners_left,
        ) = (left.tasks, left.registrations, left.idle_runners);
        let mut launches: HashMap<&str, usize> = HashMap::new();
        for task in model.tasks.values() {
            if task.stop_code == Some("TaskFailedToStart") {
                books.tasks_died += 1;
            }
            // Provisioning, or running with its runner not online yet: still coming up.
            let came_up = (task.runner.is_some() || task.status != TaskStatus::Stopped)
                && task.interrupted != Some(Interruption::BeforeJob);
            if came_up && let Some(s) = &task.started_by {
                *launches.entry(s.as_str()).or_default() += 1;
            }
        }
        let mut ids: Vec<&u64> = model.jobs.keys().collect();
        ids.sort();
        for id in ids {
            let job = &model.jobs[id];
            let n = launches
                .get(started_by(job.id).as_str())
                .copied()
                .unwrap_or(0);
            books.launched += n;
            if job.assignments > 1 {
                books.assigned_twice.push(job.id);
            }
            if job.poison {
                books.poison += 1;
                continue;
            }
            let cancelled = job.state == JobState::Done(Conclusion::Cancelled);
            let stranger = matches!(job.ran_on, Some((_, Origin::Stranger)));
            match job.ran_on {
                Some((_, Origin::Dockhand)) => books.ran_on_dockhand += 1,
                Some((_, Origin::Stranger)) => books.ran_on_strangers += 1,
                None => {}
            }
            if cancelled {
                books.cancelled_while_queued += 1;
            } else if job.state != JobState::Done(Conclusion::Success)
                && !books.spot.failed_jobs.contains(&job.id)
            {
                books.unfinished.push(job.id);
            }
            let was_delivered = delivered.contains(&job.id);
            if !was_delivered {
                books.never_delivered += 1;
            }
            if cancelled || stranger || !was_delivered {
                books.spare_launches += n.min(1);
                if n > 1 {
                    books.launched_twice.push(job.id);
                }
                continue;
            }
            books.owed += 1;
            match n {
                0 => books.served_by_surplus += 1,
                1 => {}
                _ => books.launched_twice.push(job.id),
            }
        }
        if books.owed > 0 {
            books.idle_secs_per_job = books.idle_runner_secs / books.owed as f64;
        }
        books
    }

    /// The checks that must hold after dockhand settles. Leftovers fail only with
    /// `leftovers_fail` (once the lifecycle reconciler reaps them).
    pub fn failures(&self, warm_left: Option<usize>) -> Vec<String> {
        let mut failures = Vec::new();
        let mut check = |ok: bool, what: String| {
            if !ok {
                failures.push(what);
            }
        };
        check(
            self.unfinished.is_empty(),
            format!(
                "{} jobs not cancelled did not run to success: {}",
                self.unfinished.len(),
                sample(&self.unfinished)
            ),
        );
        check(
            self.assigned_twice.is_empty(),
            format!(
                "{} jobs ran twice: {}",
                self.assigned_twice.len(),
                sample(&self.assigned_twice)
            ),
        );
        check(
            self.launched_twice.is_empty(),
            format!(
                "{} jobs got two runners: {}",
                self.launched_twice.len(),
                sample(&self.launched_twice)
            ),
        );
        // Runners launched = launches owed, but for the races only the reconciler can undo:
        // a job cancelled, or taken by a stranger, after its launch.
        check(
            self.launched >= self.owed && self.launched - self.owed <= self.spare_launches,
            format!(
                "runners launched {} against {} owed: a surplus beyond the {} launches for jobs cancelled or taken first",
                self.launched, self.owed, self.spare_launches
            ),
        );
        check(
            self.busy_runners_killed == 0,
            format!("{} busy runners were killed", self.busy_runners_killed),
        );
        if let Some(warm) = warm_left {
            check(
                self.tasks_left == warm
                    && self.registrations_left == warm
                    && self.idle_runners_left == warm,
                format!(
                    "left behind: {} tasks, {} registrations, {} idle runners, where the warm pool keeps {warm}",
                    self.tasks_left, self.registrations_left, self.idle_runners_left
                ),
            );
        }
        failures
    }
}

fn sample(ids: &[u64]) -> String {
    let shown: BTreeSet<&u64> = ids.iter().take(5).collect();
    let more = ids.len().saturating_sub(5);
    let shown: Vec<String> = shown.iter().map(|id| id.to_string()).collect();
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}
