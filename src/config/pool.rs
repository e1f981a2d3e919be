//! `[[pool]]`: what a pool's runners carry, how they register with GitHub, and how they
//! are launched on ECS.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Problems;
use super::warm::WarmSchedule;

/// Most labels one pool may carry (GitHub's limit for a JIT runner).
const MAX_POOL_LABELS: usize = 100;
const MAX_POOL_NAME: usize = 32;

/// One `[[pool]]`: a kind of runner dockhand can launch.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSettings {
    /// Lower-case letters, digits and `-`; it becomes part of runner names.
    pub name: String,
    /// Every label the pool's runners carry, including `self-hosted`, OS and arch if jobs
    /// ask for them: a job is served when its labels are a subset of these.
    pub labels: Vec<String>,
    /// Where runners register: the job's organization, or the job's repository.
    #[serde(default)]
    pub scope: RunnerScopeKind,
    /// The runner group (org scope only), by name; its id is looked up and cached.
    #[serde(default = "default_runner_group")]
    pub runner_group: String,
    /// The runner's work folder.
    #[serde(default = "default_work_folder")]
    pub work_folder: String,
    /// Live runners this pool may have at once; more jobs wait on the queue.
    #[serde(default = "default_max_runners")]
    pub max_runners: u32,
    /// A runner task running longer than this is stopped by the reconciler (GitHub's
    /// default job timeout is 6 h).
    #[serde(default = "default_max_runtime", with = "humantime_serde")]
    pub max_runtime: std::time::Duration,
    /// When a Spot interruption kills a runner in the middle of a job: once GitHub reports
    /// the job and its run completed, ask GitHub (once) to re-run the run's failed jobs;
    /// the re-run's jobs launch on the pool's on-demand capacity providers only. Needs the
    /// App's repository permission "Actions: read & write".
    #[serde(default)]
    pub rerun_interrupted: bool,
    /// Idle runners the reconciler keeps ready for the next job (warm runners); a
    /// `[[pool.schedule]]` entry overrides it while it matches. `max_runners` caps them too.
    #[serde(default)]
    pub min_idle: u32,
    /// `min_idle` by time of day: the last entry whose cron expression matches the current
    /// minute wins.
    #[serde(default)]
    pub schedule: Vec<WarmSchedule>,
    /// Where warm runners register: the organization (`scope = "org"`) or `owner/repo`
    /// (`scope = "repo"`). Required when the pool keeps warm runners.
    #[serde(default)]
    pub warm_target: Option<String>,
    /// An idle runner waiting longer than this is replaced by a fresh one, so images and
    /// registrations stay fresh.
    #[serde(
        default = "super::warm::default_max_idle_age",
        with = "humantime_serde"
    )]
    pub max_idle_age: std::time::Duration,
    /// How runners are launched. Required by workers (not by the ingress).
    #[serde(default)]
    pub ecs: Option<EcsLaunchSettings>,
}

impl PoolSettings {
    /// A pool with these labels and every other setting at its default (no launch settings).
    pub fn new(name: impl Into<String>, labels: &[&str]) -> Self {
        Self {
            name: name.into(),
            labels: labels.iter().map(|l| l.to_string()).collect(),
            scope: RunnerScopeKind::default(),
            runner_group: default_runner_group(),
            work_folder: default_work_folder(),
            max_runners: default_max_runners(),
            max_runtime: default_max_runtime(),
            rerun_interrupted: false,
            min_idle: 0,
            schedule: Vec::new(),
            warm_target: None,
            max_idle_age: super::warm::default_max_idle_age(),
            ecs: None,
        }
    }
}

fn default_runner_group() -> String {
    "Default".to_string()
}

fn default_work_folder() -> String {
    "_work".to_string()
}

fn default_max_runners() -> u32 {
    50
}

fn default_max_runtime() -> std::time::Duration {
    std::time::Duration::from_secs(6 * 3600 + 15 * 60)
}

/// Where a pool's runners register with GitHub.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunnerScopeKind {
    /// `POST /orgs/{org}/actions/runners/generate-jitconfig`: needs the App's organization
    /// permission "Self-hosted runners: read & write".
    #[default]
    Org,
    /// `POST /repos/{owner}/{repo}/actions/runners/generate-jitconfig`: needs the
    /// repository permission "Administration: read & write".
    Repo,
}

/// `[pool.ecs]`: the RunTask call for one runner.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EcsLaunchSettings {
    pub cluster: String,
    /// A family, `family:revision` or an ARN.
    pub task_definition: String,
    /// The container that receives the JIT config and extra environment.
    #[serde(default = "default_container")]
    pub container: String,
    /// `FARGATE`, `EC2` or `EXTERNAL`. Exclusive with `capacity_providers`.
    #[serde(default)]
    pub launch_type: Option<LaunchType>,
    /// Capacity providers tried in order when one has no capacity, e.g.
    /// `["FARGATE_SPOT", "FARGATE"]`. Exclusive with `launch_type`.
    #[serde(default)]
    pub capacity_providers: Vec<String>,
    /// Which of `capacity_providers` are Spot capacity: a task they run may be
    /// interrupted. `FARGATE_SPOT` by default; name EC2 capacity providers backed by Spot
    /// instances here too.
    #[serde(default = "default_spot_providers")]
    pub spot_capacity_providers: Vec<String>,
    /// awsvpc networking (required for Fargate).
    #[serde(default)]
    pub subnets: Vec<String>,
    #[serde(default)]
    pub security_groups: Vec<String>,
    #[serde(default)]
    pub assign_public_ip: bool,
    #[serde(default)]
    pub platform_version: Option<String>,
    /// Extra environment variables for the runner container.
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// Extra tags on every task (dockhand adds its own job, pool and runner tags).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

fn default_spot_providers() -> Vec<String> {
    vec!["FARGATE_SPOT".to_string()]
}

fn default_container() -> String {
    "runner".to_string()
}

impl EcsLaunchSettings {
    /// Whether tasks on this capacity provider may be interrupted by Spot.
    pub fn is_spot(&self, provider: &str) -> bool {
        self.spot_capacity_providers.iter().any(|p| p == provider)
    }

    /// Whether any of the pool's capacity providers is Spot capacity.
    pub fn uses_spot(&self) -> bool {
        self.capacity_providers.iter().any(|p| self.is_spot(p))
    }
}

/// RunTask's `launchType`: where a task runs when no capacity provider is named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum LaunchType {
    Fargate,
    Ec2,
    External,
}

impl LaunchType {
    /// The name ECS uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fargate => "FARGATE",
            Self::Ec2 => "EC2",
            Self::External => "EXTERNAL",
        }
    }
}

/// The environment variable the official actions-runner image reads its JIT config from.
pub const JIT_CONFIG_ENV: &str = "ACTIONS_RUNNER_INPUT_JITCONFIG";

pub(super) fn check_pools(pools: &[PoolSettings], p: &mut Problems) {
    if pools.is_empty() {
        p.add("pool", "at least one [[pool]] is required");
    }
    for (i, pool) in pools.iter().enumerate() {
        let key = format!("pool[{i}]");
        let name_ok = !pool.name.is_empty()
            && pool.name.len() <= MAX_POOL_NAME
            && pool
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !pool.name.starts_with('-');
        if !name_ok {
            p.add(
                format!("{key}.name"),
                format!(
                    "`{}`: use 1-{MAX_POOL_NAME} lower-case letters, digits or `-`, not starting with `-`",
                    pool.name
                ),
            );
        }
        if pools[..i].iter().any(|other| other.name == pool.name) {
            p.add(
                format!("{key}.name"),
                format!("`{}` is used by another pool", pool.name),
            );
        }
        if pool.labels.is_empty() || pool.labels.len() > MAX_POOL_LABELS {
            p.add(
                format!("{key}.labels"),
                format!("give between 1 and {MAX_POOL_LABELS} labels"),
            );
        }
        if pool.labels.iter().any(|l| l.trim().is_empty()) {
            p.add(format!("{key}.labels"), "labels must not be blank");
        }
        if pool.max_runners == 0 {
            p.add(format!("{key}.max_runners"), "must be at least 1");
        }
        if pool.max_runtime < std::time::Duration::from_secs(60) {
            p.add(format!("{key}.max_runtime"), "must be at least 1m");
        }
        if pool.work_folder.trim().is_empty() {
            p.add(format!("{key}.work_folder"), "must not be blank");
        }
        pool.check_warm(&key, p);
        if let Some(ecs) = &pool.ecs {
            ecs.check(&format!("{key}.ecs"), p);
        }
    }
}

impl EcsLaunchSettings {
    fn check(&self, key: &str, p: &mut Problems) {
        for (field, value) in [
            ("cluster", &self.cluster),
            ("task_definition", &self.task_definition),
            ("container", &self.container),
        ] {
            if value.trim().is_empty() {
                p.add(format!("{key}.{field}"), "must not be blank");
            }
        }
        match (self.launch_type, self.capacity_providers.is_empty()) {
            (Some(_), false) => p.add(
                format!("{key}.capacity_providers"),
                "set either launch_type or capacity_providers, not both",
            ),
            (None, true) => p.add(
                format!("{key}.launch_type"),
                "set launch_type (FARGATE, EC2, EXTERNAL) or capacity_providers",
            ),
            _ => {}
        }
        let fargate = self.launch_type == Some(LaunchType::Fargate)
            || self
                .capacity_providers
                .iter()
                .any(|c| c.starts_with("FARGATE"));
        if fargate && self.subnets.is_empty() {
            p.add(
                format!("{key}.subnets"),
                "Fargate tasks need at least one subnet",
            );
        }
        if self.environment.contains_key(JIT_CONFIG_ENV) {
            p.add(
                format!("{key}.environment"),
                format!("{JIT_CONFIG_ENV} is set by dockhand"),
            );
        }
    }
}
