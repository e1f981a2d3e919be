//! What a simulated world is like: its GitHub org and App, its ECS cluster, how long things
//! take, and how often they go wrong.

use std::time::Duration;

use crate::faults::FaultSettings;

/// Simulated durations are in simulated time; see [`crate::clock::Clock`].
#[derive(Debug, Clone)]
pub struct Settings {
    /// Seeds the traffic, the delays and every fault.
    pub seed: u64,
    /// Simulated seconds per real second.
    pub time_scale: f64,
    pub org: String,
    pub installation_id: u64,
    pub app_id: u64,
    /// The App's public key (PEM): JWTs must be signed with its private half.
    pub app_public_key_pem: Vec<u8>,
    pub webhook_secret: String,
    /// The labels every job asks for and every runner, ours or a stranger's, offers.
    pub labels: Vec<String>,
    /// The one ECS cluster.
    pub cluster: String,
    /// From RunTask to the task `RUNNING` (simulated; uniform in the range).
    pub task_start: (Duration, Duration),
    /// From the task `RUNNING` to its runner online at GitHub, ready for a job: the runner
    /// process starting and registering with its JIT config (simulated; uniform in the
    /// range). Until then GitHub lists the runner offline.
    pub runner_ready: (Duration, Duration),
    /// How long a job runs once a runner takes it (simulated).
    pub job_duration: (Duration, Duration),
    /// Share of jobs cancelled if still queued after `cancel_after`.
    pub cancel_rate: f64,
    pub cancel_after: (Duration, Duration),
    /// Share of jobs for which a runner dockhand did not launch comes online: it takes the
    /// oldest queued job it can and leaves.
    pub steal_rate: f64,
    /// Share of tasks that stop before their runner registers.
    pub task_death_rate: f64,
    /// Share of tasks launched on capacity provider `FARGATE_SPOT` that Spot interrupts,
    /// at a time chosen at RunTask uniformly from `task_start`'s lower bound to the upper
    /// bounds of `task_start`, `runner_ready` and `job_duration` added up: some before
    /// their runner takes a job, some during one. The task stops with stopCode `SpotInterruption`.
    pub spot_interruption_rate: f64,
    pub webhooks: WebhookSettings,
    pub github_faults: FaultSettings,
    pub ecs_faults: FaultSettings,
    /// ECS answers ThrottlingException beyond this many calls per second, per operation.
    pub ecs_calls_per_sec: u32,
}

/// How GitHub's webhook deliveries misbehave. Rates are fractions.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Share of deliveries never sent.
    pub loss: f64,
    /// Share of deliveries sent twice (half with the same `X-GitHub-Delivery`, as a
    /// redelivery, half with a new one).
    pub duplicate: f64,
    /// Share of deliveries held back by up to `max_delay` (real time), so that later ones
    /// overtake them.
    pub reorder: f64,
    pub max_delay: Duration,
    /// A delivery that failed (no 2xx) is sent again after this long (real time), as an
    /// operator pressing "Redeliver" would; `None` leaves it failed.
    pub redeliver_failed_after: Option<Duration>,
    /// Deliveries in flight at once.
    pub senders: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            seed: 1,
            time_scale: 60.0,
            org: "sim-org".into(),
            installation_id: 4242,
            app_id: 31337,
            app_public_key_pem: Vec::new(),
            webhook_secret: "sim-webhook-secret".into(),
            labels: ["self-hosted", "linux", "x64"].map(String::from).to_vec(),
            cluster: "sim".into(),
            task_start: (Duration::from_secs(15), Duration::from_secs(45)),
            runner_ready: (Duration::ZERO, Duration::ZERO),
            job_duration: (Duration::from_secs(30), Duration::from_secs(180)),
            cancel_rate: 0.0,
            cancel_after: (Duration::from_secs(5), Duration::from_secs(60)),
            steal_rate: 0.0,
            task_death_rate: 0.0,
            spot_interruption_rate: 0.0,
            webhooks: WebhookSettings::default(),
            github_faults: FaultSettings::default(),
            ecs_faults: FaultSettings::default(),
            ecs_calls_per_sec: 20,
        }
    }
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            max_delay: Duration::from_millis(500),
            redeliver_failed_after: Some(Duration::from_secs(2)),
            senders: 16,
        }
    }
}

impl Settings {
    /// The soak's world: 30% duplicate deliveries, 10% reordered; 20% of jobs cancelled
    /// within 10 s if still queued (most start sooner); a stranger's runner for 5% of jobs;
    /// 5% of tasks stopping (`TaskFailedToStart`) before their runner registers, which
    /// dockhand's lifecycle reconciler must notice and replace; 5% server errors and 1%
    /// timeouts on GitHub and ECS.
    pub fn chaos(seed: u64) -> Self {
        let faults = FaultSettings {
            error_rate: 0.05,
            timeout_rate: 0.01,
            hold: Duration::from_secs(5),
        };
        Self {
            seed,
            cancel_rate: 0.20,
            cancel_after: (Duration::ZERO, Duration::from_secs(10)),
            steal_rate: 0.05,
            task_death_rate: 0.05,
            webhooks: WebhookSettings {
                duplicate: 0.30,
                reorder: 0.10,
                ..WebhookSettings::default()
            },
            github_faults: faults.clone(),
            ecs_faults: faults,
            ..Self::default()
        }
    }

    /// A world without faults, for measuring how long jobs wait: every delivery arrives
    /// once and in order, no job is cancelled or taken by a stranger, no task dies, no API
    /// fails (ECS still throttles beyond `ecs_calls_per_sec`). A task runs 15–45 s after RunTask and its runner is ready 30 s later; time
    /// runs 10 times faster than the wall clock, so one tick of the world (5 ms) is 0.05
    /// simulated seconds and dockhand's own latency (milliseconds) stays small.
    pub fn calm(seed: u64) -> Self {
        Self {
            seed,
            time_scale: 10.0,
            runner_ready: (Duration::from_secs(30), Duration::from_secs(30)),
            ..Self::default()
        }
    }
}
