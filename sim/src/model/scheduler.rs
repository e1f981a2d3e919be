//! GitHub's scheduler: the oldest queued job to the longest-idle runner whose labels cover
//! it, jobs finishing or being cancelled, runners lost under their jobs, and the idle set
//! (with the time dockhand's runners spend in it, for the books).

use std::time::Duration;

use super::{Conclusion, JobState, Model, Origin, RunnerState};
use crate::clock::SimTime;

impl Model {
    pub(super) fn cancel_due(&mut self, now: SimTime) {
        let due: Vec<(SimTime, u64)> = self
            .queued
            .iter()
            .filter(|(_, id)| self.jobs[id].cancel_at.is_some_and(|at| at <= now))
            .copied()
            .collect();
        for key in due {
            self.queued.remove(&key);
            let job = self.jobs.get_mut(&key.1).expect("queued job");
            job.state = JobState::Done(Conclusion::Cancelled);
            job.completed = Some(now);
            self.emit(key.1, "completed");
        }
    }

    /// GitHub's scheduler: the oldest queued job first, to the longest-idle runner whose
    /// labels cover it.
    pub(super) fn assign(&mut self, now: SimTime) {
        while let Some(&(created, job_id)) = self.queued.iter().next() {
            let labels = &self.settings.labels;
            let Some(&(_, runner_id)) = self.idle.iter().find(|(_, r)| {
                let runner = &self.runners[r];
                labels.iter().all(|l| runner.labels.contains(l))
            }) else {
                return;
            };
            self.queued.remove(&(created, job_id));
            self.leave_idle(runner_id, now);
            let duration = self.between(self.settings.job_duration);
            let runner = self.runners.get_mut(&runner_id).expect("idle runner");
            runner.state = RunnerState::Busy(job_id);
            let origin = runner.origin;
            let job = self.jobs.get_mut(&job_id).expect("queued job");
            job.state = JobState::Running {
                runner: runner_id,
                until: now + duration,
            };
            job.ran_on = Some((runner_id, origin));
            job.started = Some(now);
            job.assignments += 1;
            self.emit(job_id, "in_progress");
        }
    }

    pub(super) fn finish_jobs(&mut self, now: SimTime) {
        let done: Vec<(u64, u64)> = self
            .jobs
            .values()
            .filter_map(|j| match j.state {
                JobState::Running { runner, until } if until <= now => Some((j.id, runner)),
                _ => None,
            })
            .collect();
        for (job_id, runner_id) in done {
            let job = self.jobs.get_mut(&job_id).expect("running job");
            job.state = JobState::Done(Conclusion::Success);
            job.completed = Some(now);
            self.emit(job_id, "completed");
            // Ephemeral: the runner leaves GitHub after its one job, and its task exits.
            let runner = self.runners.get_mut(&runner_id).expect("busy runner");
            runner.state = RunnerState::Gone;
            runner.listed = false;
            if let Some(arn) = runner.task.clone() {
                self.exited(&arn, now, 0);
            }
        }
    }

    /// The runner's process has gone while it held a job: GitHub fails the job. A runner
    /// whose task Spot `interrupted` is not counted as killed (the books count those).
    pub(super) fn lose_runner(&mut self, runner_id: u64, now: SimTime, interrupted: bool) {
        let Some(runner) = self.runners.get(&runner_id) else {
            return;
        };
        let was = runner.state;
        match was {
            RunnerState::Idle => self.leave_idle(runner_id, now),
            RunnerState::Busy(job_id) => {
                if !interrupted {
                    self.counters.busy_runners_killed += 1;
                }
                if let Some(job) = self.jobs.get_mut(&job_id) {
                    job.state = JobState::Done(Conclusion::Failure);
                    job.started.get_or_insert(now);
                    job.completed = Some(now);
                }
                self.emit(job_id, "completed");
            }
            RunnerState::Registered | RunnerState::Gone => {}
        }
        self.runners.get_mut(&runner_id).expect("the runner").state = RunnerState::Gone;
    }

    /// An idle runner comes online at `now`: GitHub may give it a job.
    pub(super) fn enter_idle(&mut self, runner_id: u64, now: SimTime) {
        let runner = self.runners.get_mut(&runner_id).expect("the runner");
        runner.state = RunnerState::Idle;
        runner.idle_since = Some(now);
        self.idle.insert((now, runner_id));
    }

    /// An idle runner stops being idle at `now` (it takes a job or goes away); a
    /// dockhand runner's idle time goes to the books.
    fn leave_idle(&mut self, runner_id: u64, now: SimTime) {
        let runner = self.runners.get_mut(&runner_id).expect("the runner");
        let Some(since) = runner.idle_since.take() else {
            return;
        };
        self.idle.remove(&(since, runner_id));
        if runner.origin == Origin::Dockhand {
            self.counters.idle_runner_time += now.saturating_sub(since);
        }
    }

    /// Simulated time dockhand's runners have spent online and idle, those idle now
    /// counted up to now.
    pub fn idle_runner_time(&self) -> Duration {
        let now = self.clock.now();
        self.runners
            .values()
            .filter(|r| r.origin == Origin::Dockhand)
            .filter_map(|r| r.idle_since)
            .map(|since| now.saturating_sub(since))
            .sum::<Duration>()
            + self.counters.idle_runner_time
    }
}
