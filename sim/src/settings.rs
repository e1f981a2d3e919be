//! What a simulated world is like: its GitHub org and Apps, its ECS cluster, how long things
//! take, how often they go wrong, and which of GitHub's and ECS's rate limits it enforces.

use std::time::Duration;

use crate::faults::FaultSettings;
pub use crate::limits::{EcsLimits, QuotaSettings};
pub use crate::webhooks::{IngressOutage, OutageAnswer};

/// Simulated durations are in simulated time; see [`crate::clock::Clock`].
#[derive(Debug, Clone)]
pub struct Settings {
    /// Seeds the traffic, the delays and every fault.
    pub seed: u64,
    /// Simulated seconds per real second.
    pub time_scale: f64,
    pub org: String,
    /// The GitHub Apps installed on the org, each with its own installation: at least one.
    /// GitHub sends every webhook once per App, with that App's installation id.
    pub apps: Vec<AppSettings>,
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
    /// ECS answers ThrottlingException beyond this many calls per second, per operation
    /// (real time), unless `ecs_limits` is set.
    pub ecs_calls_per_sec: u32,
    /// GitHub's secondary (per App) and primary (per installation) rate limits, in
    /// simulated time; `None` (the default) enforces none.
    pub quota: Option<QuotaSettings>,
    /// ECS's limits as AWS sets them, in simulated time: RunTask's own bucket, the Fargate
    /// task-launch bucket, and one per other operation. `None` (the default) throttles
    /// every operation at `ecs_calls_per_sec` of real time.
    pub ecs_limits: Option<EcsLimits>,
}

/// One GitHub App and its installation on the org.
#[derive(Debug, Clone)]
pub struct AppSettings {
    pub id: u64,
    /// The App's installation on the org: an installation token acts for it alone.
    pub installation_id: u64,
    /// The App's public key (PEM): its JWTs must be signed with the private half.
    pub public_key_pem: Vec<u8>,
}

impl AppSettings {
    /// App `n` (from 0) of a world: ids 31337, 31338, ... installed as 4242, 4243, ...
    pub fn nth(n: usize, public_key_pem: Vec<u8>) -> Self {
        Self {
            id: 31_337 + n as u64,
            installation_id: 4_242 + n as u64,
            public_key_pem,
        }
    }
}

/// How GitHub's webhook deliveries misbehave. Rates are fractions.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Share of deliveries never sent.
    pub loss: f64,
    /// Share of deliveries sent twice: `duplicate_same_id` of those with the same
    /// `X-GitHub-Delivery` (a redelivery), the rest with a new one.
    pub duplicate: f64,
    pub duplicate_same_id: f64,
    /// Share of deliveries held back by up to `max_delay` (real time), so that later ones
    /// overtake them.
    pub reorder: f64,
    pub max_delay: Duration,
    /// A delivery that failed (no 2xx) is sent again after this long (real time), as an
    /// operator pressing "Redeliver" would; `None` leaves it failed.
    pub redeliver_failed_after: Option<Duration>,
    /// Deliveries in flight at once.
    pub senders: usize,
    /// A window in which every delivery fails without reaching the ingress; none by
    /// default.
    pub outage: Option<IngressOutage>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            seed: 1,
            time_scale: 60.0,
            org: "sim-org".into(),
            apps: vec![AppSettings::nth(0, Vec::new())],
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
            quota: None,
            ecs_limits: None,
        }
    }
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            loss: 0.0,
            duplicate: 0.0,
            duplicate_same_id: 0.5,
            reorder: 0.0,
            max_delay: Duration::from_millis(500),
            redeliver_failed_after: Some(Duration::from_secs(2)),
            senders: 16,
            outage: None,
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
    /// fails (ECS still throttles beyond `ecs_calls_per_sec`). A task runs 15–45 s after
    /// RunTask and its runner is ready 30 s later; time runs 10 times faster than the wall
    /// clock, so one tick of the world (5 ms) is 0.05 simulated seconds and dockhand's own
    /// latency (milliseconds) stays small.
    pub fn calm(seed: u64) -> Self {
        Self {
            seed,
            time_scale: 10.0,
            runner_ready: (Duration::from_secs(30), Duration::from_secs(30)),
            ..Self::default()
        }
    }

    /// The quota burst's world (issue 18): calm, with GitHub's rate limits and ECS's RunTask
    /// limits enforced, and `apps` Apps (their keys filled in by the caller). Tasks start
    /// within 1–3 s and jobs run 5–15 s (simulated), so a burst of jobs is soon done;
    /// 30% of deliveries come twice, each time with a new delivery id.
    pub fn quota_burst(seed: u64, apps: usize) -> Self {
        let calm = Self::calm(seed);
        Self {
            apps: (0..apps.max(1))
                .map(|n| AppSettings::nth(n, Vec::new()))
                .collect(),
            task_start: (Duration::from_secs(1), Duration::from_secs(3)),
            runner_ready: (Duration::ZERO, Duration::ZERO),
            job_duration: (Duration::from_secs(5), Duration::from_secs(15)),
            webhooks: WebhookSettings {
                duplicate: 0.30,
                duplicate_same_id: 0.0,
                ..calm.webhooks.clone()
            },
            quota: Some(QuotaSettings::default()),
            ecs_limits: Some(EcsLimits::default()),
            ..calm
        }
    }

    /// The ingress outage's world (issue 19): calm, tasks starting within 1–3 s and jobs
    /// running 5–15 s (simulated), every event delivered once, and no operator pressing
    /// "Redeliver": a delivery that fails stays failed unless dockhand asks GitHub for it
    /// again. The outage itself (`webhooks.outage`) is the caller's to set.
    pub fn ingress_outage(seed: u64) -> Self {
        let calm = Self::calm(seed);
        Self {
            task_start: (Duration::from_secs(1), Duration::from_secs(3)),
            runner_ready: (Duration::ZERO, Duration::ZERO),
            job_duration: (Duration::from_secs(5), Duration::from_secs(15)),
            webhooks: WebhookSettings {
                redeliver_failed_after: None,
                ..calm.webhooks.clone()
            },
            ..calm
        }
    }
}
