//! The world's state: GitHub's jobs and runners, ECS's tasks, and how they move on in
//! simulated time. One lock guards it all (see [`crate::World`]); the HTTP layers and the
//! clock's ticks call in.
//!
//! - Jobs arrive queued. GitHub gives the oldest queued job to an idle online runner whose
//!   labels cover it, whoever launched that runner, and sends `in_progress`, then
//!   `completed` when it has run. A queued job may be cancelled.
//! - A task comes up (`RUNNING`) after a delay and its runner comes online with the JIT
//!   config from its environment a settable delay later ([`Settings::runner_ready`]),
//!   unless the task dies or stops first or the registration is gone. An ephemeral
//!   runner leaves after one job, and its task exits. A registration whose runner never
//!   came online, or whose task stopped, stays listed (offline) until it is deleted.
//! - For the books: the time dockhand's runners spend online and idle
//!   ([`Model::idle_runner_time`]) and what dockhand leaves behind ([`Model::leftovers`]).

#[cfg(test)]
mod apps_tests;
mod ecs;
mod github;
mod payload;
#[cfg(test)]
mod ready_tests;
mod scheduler;
#[cfg(test)]
mod spot_tests;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use crate::clock::{Clock, SimTime};
use crate::settings::Settings;

pub use ecs::{EcsError, RunTaskRequest, SPOT_INTERRUPTION, SPOT_PROVIDER};
pub use github::{DeleteError, JitError, RunnerGroup};

/// Who started a runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Registered through the App's JIT endpoint and started by RunTask.
    Dockhand,
    /// A runner dockhand knows nothing of (someone else's), with the same labels.
    Stranger,
}

/// How a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conclusion {
    Success,
    /// Cancelled while queued.
    Cancelled,
    /// Its runner was stopped under it.
    Failure,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Queued,
    Running { runner: u64, until: SimTime },
    Done(Conclusion),
}

#[derive(Debug, Clone)]
pub struct Job {
    pub id: u64,
    pub run_id: u64,
    pub repo: String,
    pub created: SimTime,
    pub state: JobState,
    pub cancel_at: Option<SimTime>,
    /// The runner that took it, and who launched that runner.
    pub ran_on: Option<(u64, Origin)>,
    pub started: Option<SimTime>,
    /// When it was completed (ran, failed or was cancelled).
    pub completed: Option<SimTime>,
    /// Times GitHub gave it to a runner: never more than one.
    pub assignments: u32,
    /// A job no installation serves: its launch must fail for good (dead-lettered).
    pub poison: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunnerState {
    /// Registered, its process not started yet (GitHub shows it offline).
    Registered,
    Idle,
    Busy(u64),
    /// Its process has gone: it ran its one job, or its task stopped.
    Gone,
}

#[derive(Debug, Clone)]
pub struct Runner {
    pub id: u64,
    pub name: String,
    pub origin: Origin,
    pub state: RunnerState,
    pub group_id: u64,
    pub labels: Vec<String>,
    /// Whether GitHub still lists the registration (until deleted, or it ran its job).
    pub listed: bool,
    pub task: Option<String>,
    /// Since when it has been online and idle; `None` while it is not.
    pub idle_since: Option<SimTime>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskStatus {
    Provisioning,
    Running,
    Stopped,
}

#[derive(Debug, Clone)]
pub struct Task {
    pub arn: String,
    pub started_by: Option<String>,
    pub task_definition: String,
    pub launch_type: Option<String>,
    pub capacity_provider: Option<String>,
    /// The JIT config from the runner container's environment.
    pub jit: Option<String>,
    pub status: TaskStatus,
    pub desired_stopped: bool,
    pub stop_code: Option<&'static str>,
    pub stopped_reason: Option<String>,
    pub exit_code: Option<i32>,
    pub created: SimTime,
    /// When it will be (or was) `RUNNING`.
    pub up_at: SimTime,
    pub started: Option<SimTime>,
    /// When its runner process comes online, once the task is `RUNNING` and
    /// [`Settings::runner_ready`] is not zero; `None` before, and when it came online as
    /// the task started.
    pub online_at: Option<SimTime>,
    pub stopped: Option<SimTime>,
    /// Stops before its runner registers.
    pub dies: bool,
    /// When Spot will interrupt it (a task on `FARGATE_SPOT` only), unless it has stopped.
    pub interrupt_at: Option<SimTime>,
    /// How Spot interrupted it, once it has.
    pub interrupted: Option<Interruption>,
    pub runner: Option<u64>,
    pub client_token: Option<String>,
    /// RunTask's `overrides`, echoed as ECS does (the JIT config included).
    pub overrides: serde_json::Value,
    /// RunTask's `tags` (key, value), then ECS's managed tags if it asked for them; shown
    /// only by a DescribeTasks that includes `TAGS`.
    pub tags: Vec<(String, String)>,
}

/// How Spot interrupted a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interruption {
    /// Before its runner took a job (provisioning, or online and idle): the job it was
    /// launched for is still queued, for a replacement to serve.
    BeforeJob,
    /// While its runner ran this job: GitHub failed the job.
    DuringJob(u64),
}

/// A webhook GitHub owes dockhand: one per App for each event, carrying that App's
/// installation.
#[derive(Debug, Clone)]
pub struct Webhook {
    pub job: u64,
    pub action: &'static str,
    pub installation: u64,
    /// The job's repository, as the body names it (GitHub's delivery log shows it).
    pub repository_id: u64,
    pub body: String,
}

/// Counts the books keep beyond the jobs, runners and tasks themselves.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    pub strangers: u64,
    /// Busy runners whose task was stopped (not by a Spot interruption: see
    /// [`Interruption::DuringJob`]), or that were deleted: a job lost.
    pub busy_runners_killed: u64,
    pub delete_busy_refused: u64,
    /// Tasks that came up with a JIT config whose registration was gone or used.
    pub jit_refused: u64,
    pub client_token_replays: u64,
    /// Simulated time dockhand's runners spent online and idle, counted when each left the
    /// idle set (took a job, was deleted, or its task stopped); see
    /// [`Model::idle_runner_time`] for the total including runners idle now.
    pub idle_runner_time: Duration,
}

/// What dockhand left behind: tasks not stopped, and registrations of its runners still
/// listed (of which `idle_runners` are online and idle).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Leftovers {
    pub tasks: usize,
    pub registrations: usize,
    pub idle_runners: usize,
}

impl Leftovers {
    pub fn none(&self) -> bool {
        self.only_warm(0)
    }

    /// Whether all that is left is `warm` runners, online and idle: each with its task and
    /// its registration.
    pub fn only_warm(&self, warm: usize) -> bool {
        self.tasks == warm && self.registrations == warm && self.idle_runners == warm
    }
}

pub struct Model {
    pub settings: Settings,
    pub clock: Clock,
    rng: fastrand::Rng,
    pub jobs: HashMap<u64, Job>,
    /// Queued jobs, oldest first.
    queued: BTreeSet<(SimTime, u64)>,
    pub runners: HashMap<u64, Runner>,
    /// Online idle runners, in the order they came online.
    idle: BTreeSet<(SimTime, u64)>,
    pub tasks: HashMap<String, Task>,
    /// Task ARNs in creation order, for ListTasks' pages.
    task_order: Vec<String>,
    /// Provisioning tasks by the time they come up, running tasks by the time their runner
    /// comes online, and Spot tasks by the time Spot interrupts them.
    pending: BTreeSet<(SimTime, String)>,
    client_tokens: HashMap<String, String>,
    /// Encoded JIT config → runner id.
    jit: HashMap<String, u64>,
    /// Installation tokens → (installation, expiry in real time).
    tokens: HashMap<String, (u64, std::time::Instant)>,
    next_job: u64,
    next_runner: u64,
    pub counters: Counters,
    outbox: Vec<Webhook>,
    /// Every secret handed out (tokens, JIT configs): none may appear in a log.
    pub secrets_issued: Vec<String>,
}

/// Job ids start here, far from anything a real org would have.
pub const FIRST_JOB_ID: u64 = 8_200_000_000;

impl Model {
    pub fn new(settings: Settings, clock: Clock) -> Self {
        let rng = fastrand::Rng::with_seed(settings.seed);
        Self {
            settings,
            clock,
            rng,
            jobs: HashMap::new(),
            queued: BTreeSet::new(),
            runners: HashMap::new(),
            idle: BTreeSet::new(),
            tasks: HashMap::new(),
            task_order: Vec::new(),
            pending: BTreeSet::new(),
            client_tokens: HashMap::new(),
            jit: HashMap::new(),
            tokens: HashMap::new(),
            next_job: FIRST_JOB_ID,
            next_runner: 500_001,
            counters: Counters::default(),
            outbox: Vec::new(),
            secrets_issued: Vec::new(),
        }
    }

    fn between(&mut self, (low, high): (Duration, Duration)) -> Duration {
        if high <= low {
            return low;
        }
        let span = (high - low).as_millis() as u64;
        low + Duration::from_millis(self.rng.u64(0..=span))
    }

    fn chance(&mut self, rate: f64) -> bool {
        rate > 0.0 && self.rng.f64() < rate
    }

    /// A new queued job (its `queued` webhook goes out); `poison` for a job whose org has no
    /// installation. Returns its id.
    pub fn queue_job(&mut self, poison: bool) -> u64 {
        let now = self.clock.now();
        let id = self.next_job;
        self.next_job += 1;
        let cancel_at = if !poison && self.chance(self.settings.cancel_rate) {
            Some(now + self.between(self.settings.cancel_after))
        } else {
            None
        };
        let repo = if poison {
            "no-app-org/poison".to_string()
        } else {
            format!("{}/repo-{}", self.settings.org, id % 17)
        };
        let job = Job {
            id,
            run_id: 3_000_000_000 + id - FIRST_JOB_ID,
            repo,
            created: now,
            state: JobState::Queued,
            cancel_at,
            ran_on: None,
            started: None,
            completed: None,
            assignments: 0,
            poison,
        };
        self.jobs.insert(id, job);
        // A poison job's org has no runners of ours or anyone's: it stays queued there.
        if !poison {
            self.queued.insert((now, id));
        }
        self.emit(id, "queued");
        if !poison && self.chance(self.settings.steal_rate) {
            self.add_stranger();
        }
        id
    }

    /// A runner dockhand did not launch comes online, idle.
    pub fn add_stranger(&mut self) {
        let now = self.clock.now();
        let id = self.next_runner;
        self.next_runner += 1;
        self.counters.strangers += 1;
        self.runners.insert(
            id,
            Runner {
                id,
                name: format!("someone-elses-{id}"),
                origin: Origin::Stranger,
                state: RunnerState::Idle,
                group_id: 1,
                labels: self.settings.labels.clone(),
                listed: true,
                task: None,
                idle_since: None,
            },
        );
        self.enter_idle(id, now);
    }

    /// Moves the world on to now: cancellations, tasks coming up, assignments, jobs
    /// finishing. Returns the webhooks to send.
    pub fn tick(&mut self) -> Vec<Webhook> {
        let now = self.clock.now();
        self.cancel_due(now);
        self.start_tasks(now);
        self.finish_jobs(now);
        self.assign(now);
        std::mem::take(&mut self.outbox)
    }

    /// Owes dockhand a delivery of the event per App (philips-labs/terraform-aws-github-runner
    /// #5216: GitHub sends each App installed on the org its own).
    fn emit(&mut self, job: u64, action: &'static str) {
        let installations: Vec<u64> = self
            .settings
            .apps
            .iter()
            .map(|a| a.installation_id)
            .collect();
        for installation in installations {
            let body = payload::workflow_job(self, job, action, installation);
            self.outbox.push(Webhook {
                job,
                action,
                installation,
                repository_id: payload::repository_id(self, job),
                body,
            });
        }
    }

    /// What dockhand has left behind now. Every task is dockhand's (only it calls RunTask).
    pub fn leftovers(&self) -> Leftovers {
        let mut left = Leftovers {
            tasks: self
                .tasks
                .values()
                .filter(|t| t.status != TaskStatus::Stopped)
                .count(),
            ..Leftovers::default()
        };
        for runner in self
            .runners
            .values()
            .filter(|r| r.origin == Origin::Dockhand && r.listed)
        {
            left.registrations += 1;
            if runner.state == RunnerState::Idle {
                left.idle_runners += 1;
            }
        }
        left
    }

    /// Queued jobs, oldest first.
    pub fn queued_jobs(&self) -> usize {
        self.queued.len()
    }

    pub fn running_jobs(&self) -> usize {
        self.jobs
            .values()
            .filter(|j| matches!(j.state, JobState::Running { .. }))
            .count()
    }

    pub fn idle_runners(&self) -> usize {
        self.idle.len()
    }
}
