//! dockhand's warm runners in a soak: the pool keys the soak writes into dockhand's
//! config, the wait, before the first job arrives, for the pool to fill, and the job-wait
//! scenario's figures (the world's steady state, the row of docs/benchmarks.md's table).

use std::time::{Duration, Instant};

use super::process::quoted;
use super::{SoakOptions, SoakReport};
use crate::model::Model;
use crate::world::World;

/// The pool's warm runners: `min_idle`, `warm_target` and `max_idle_age` in `[[pool]]`.
#[derive(Debug, Clone, Default)]
pub struct WarmPool {
    /// Idle runners dockhand keeps ready. At 0 none of the keys is written, so that a
    /// dockhand that has no warm pools (and refuses unknown keys) still starts.
    pub min_idle: u32,
    /// Where warm runners register: the organization (org scope) or `owner/repo` (repo
    /// scope; the simulator serves org-scoped runners only). `None`: the simulated org.
    pub target: Option<String>,
    /// `None` leaves dockhand's default.
    pub max_idle_age: Option<Duration>,
}

impl WarmPool {
    /// The keys for `[[pool]]`, one a line; nothing when `min_idle` is 0. `org` is the
    /// simulated org, the target when none is set.
    pub fn toml(&self, org: &str) -> String {
        if self.min_idle == 0 {
            return String::new();
        }
        let target = self.target.as_deref().unwrap_or(org);
        let mut toml = format!(
            "min_idle = {}\nwarm_target = {}\n",
            self.min_idle,
            quoted(target)
        );
        if let Some(age) = self.max_idle_age {
            toml.push_str(&format!("max_idle_age = \"{}s\"\n", age.as_secs()));
        }
        toml
    }

    /// Waits (up to `timeout`, real time) until `min_idle` of dockhand's runners are online
    /// and idle, so that the jobs meet a full pool rather than one filling up. A pool that
    /// does not fill is reported and the soak goes on: its misses show in the job wait.
    pub async fn wait_until_full(&self, world: &World, timeout: Duration) {
        if self.min_idle == 0 {
            return;
        }
        let started = Instant::now();
        let want = self.min_idle as usize;
        loop {
            let idle = world.with(Model::leftovers).idle_runners;
            if idle >= want {
                eprintln!(
                    "soak: warm pool full ({idle} idle runners) after {:.1} s",
                    started.elapsed().as_secs_f64()
                );
                return;
            }
            if started.elapsed() > timeout {
                eprintln!(
                    "soak: warm pool not full after {timeout:?}: {idle} of {want} idle runners; queueing jobs anyway"
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn mean((low, high): (Duration, Duration)) -> f64 {
    (low + high).as_secs_f64() / 2.0
}

impl SoakOptions {
    /// The job-wait scenario's world in steady state, in simulated time: the arrival rate,
    /// the jobs running (the steady-state concurrency), and the runners starting up.
    pub fn steady_state(&self) -> String {
        let per_sec = self.rate / self.sim.time_scale;
        let running = per_sec * mean(self.sim.job_duration);
        let starting = per_sec * (mean(self.sim.task_start) + mean(self.sim.runner_ready));
        format!(
            "steady state (simulated): a job every {:.1} s, each running {:.0} s on average, so {running:.1} jobs running at once (the steady-state concurrency); a runner ready {:.0} s after RunTask on average, so {starting:.1} runners starting; min_idle {}",
            1.0 / per_sec,
            mean(self.sim.job_duration),
            mean(self.sim.task_start) + mean(self.sim.runner_ready),
            self.warm.min_idle
        )
    }
}

impl SoakReport {
    pub const WAIT_ROW_HEADER: &'static str = "| min_idle | seed | jobs | wait p50 | p90 | max | started within 2 s | on warm runners | idle runner-s per owed job |\n|---|---|---|---|---|---|---|---|---|";

    /// The job wait as a row of docs/benchmarks.md's table.
    pub fn wait_row(&self, warm: &WarmPool) -> String {
        let (w, b) = (&self.books.wait, &self.books);
        format!(
            "| {} | {} | {} | {:.1} s | {:.1} s | {:.1} s | {:.1}% | {} | {:.1} |",
            warm.min_idle,
            self.seed,
            w.jobs,
            w.p50,
            w.p90,
            w.max,
            w.warm_hit_share() * 100.0,
            w.on_warm_runners,
            b.idle_secs_per_job
        )
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::soak::config::{self, Backing, Endpoints, GitHubConfig, Lifecycle};

    #[test]
    fn no_key_is_written_without_warm_runners() {
        let pool = WarmPool {
            min_idle: 0,
            target: Some("acme".into()),
            max_idle_age: Some(Duration::from_secs(60)),
        };
        assert_eq!(pool.toml("sim-org"), "");
    }

    #[test]
    fn warm_runners_register_on_the_simulated_org_unless_told_otherwise() {
        let pool = WarmPool {
            min_idle: 4,
            ..WarmPool::default()
        };
        assert_eq!(
            pool.toml("sim-org"),
            "min_idle = 4\nwarm_target = \"sim-org\"\n"
        );
        let pool = WarmPool {
            min_idle: 4,
            target: Some("acme".into()),
            max_idle_age: Some(Duration::from_secs(3600)),
        };
        assert_eq!(
            pool.toml("sim-org"),
            "min_idle = 4\nwarm_target = \"acme\"\nmax_idle_age = \"3600s\"\n"
        );
    }

    #[test]
    fn the_keys_go_in_the_pool_table_of_dockhands_config() {
        let warm = WarmPool {
            min_idle: 12,
            ..WarmPool::default()
        };
        let labels = vec!["self-hosted".to_string()];
        let endpoints = Endpoints {
            github_url: "http://127.0.0.1:1",
            aws_url: "http://127.0.0.1:2",
            github: GitHubConfig::one_app(1, Path::new("key.pem")),
            webhook_secret: "s",
            labels: &labels,
            cluster: "sim",
            spot: false,
            org: "sim-org",
            warm: &warm,
            lifecycle: Lifecycle::soak(),
            env: Vec::new(),
        };
        let dir = Path::new("/tmp");
        let toml = config::toml(&endpoints, &Backing::Embedded { dir }, 1, 2, 4);
        let pool = &toml[toml.find("[[pool]]").unwrap()..toml.find("[pool.ecs]").unwrap()];
        assert!(
            pool.contains("\nmin_idle = 12\nwarm_target = \"sim-org\"\n"),
            "{pool}"
        );
        let cold = Endpoints {
            warm: &WarmPool::default(),
            ..endpoints
        };
        let toml = config::toml(&cold, &Backing::Embedded { dir }, 1, 2, 4);
        assert!(!toml.contains("min_idle") && !toml.contains("warm_target"));
    }
}
