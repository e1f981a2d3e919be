//! dockhand's configuration for a soak: pointed at the simulator, with short timeouts so
//! that injected timeouts cost seconds, short lifecycle timings so that leftovers are
//! reaped within the settle timeout, and logs at debug so the secrets check sees all.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::process::quoted;
use super::warm::WarmPool;

/// Where the queue and the store are.
pub enum Backing<'a> {
    /// Single node: the embedded queue and a SQLite store in `dir`.
    Embedded { dir: &'a Path },
    /// Scale-out: SQS queues (through the fault proxy) and Postgres.
    Shared {
        queue_url: &'a str,
        dead_letter_url: &'a str,
        postgres_url: &'a str,
    },
}

pub struct Endpoints<'a> {
    pub github_url: &'a str,
    /// The AWS endpoint: the simulated ECS, or (scale-out) the proxy that routes SQS calls
    /// to moto and ECS calls to the simulator.
    pub aws_url: &'a str,
    pub github: GitHubConfig,
    pub webhook_secret: &'a str,
    pub labels: &'a [String],
    pub cluster: &'a str,
    /// The pool runs on capacity providers `["FARGATE_SPOT", "FARGATE"]` (Spot first)
    /// rather than launch type `FARGATE`: for a soak with Spot interruptions.
    pub spot: bool,
    /// The simulated org: where warm runners register unless `warm` names a target.
    pub org: &'a str,
    /// The pool's warm runners (none at `min_idle` 0).
    pub warm: &'a WarmPool,
    /// `[lifecycle]`'s timers.
    pub lifecycle: Lifecycle,
    /// `DOCKHAND_` environment variables each process runs with, beyond the config file
    /// (the ingress outage's `[redelivery]` settings).
    pub env: Vec<(String, String)>,
}

/// dockhand's `[lifecycle]` timers (real time, as dockhand runs).
#[derive(Debug, Clone, PartialEq)]
pub struct Lifecycle {
    pub interval: Duration,
    pub leader_lease: Duration,
    pub pending_timeout: Duration,
    pub idle_timeout: Duration,
    pub verify_after: Duration,
    pub orphan_interval: Duration,
    pub orphan_grace: Duration,
}

impl Lifecycle {
    /// The soaks' short timers, while the world runs 60 times faster: a pass a second, so
    /// that a task that died, a spare runner left idle or an orphan is dealt with in
    /// seconds of the soak rather than minutes.
    pub fn soak() -> Self {
        let secs = Duration::from_secs;
        Self {
            interval: secs(1),
            leader_lease: secs(3),
            pending_timeout: secs(60),
            idle_timeout: secs(3),
            verify_after: secs(20),
            orphan_interval: secs(10),
            orphan_grace: secs(10),
        }
    }

    /// dockhand's defaults (a pass every 30 s, a 60 s leader lease; 600 s to come up; 300 s idle; 600 s before
    /// checking a job GitHub still shows queued; orphans every 600 s) in simulated time:
    /// each divided by the time scale.
    pub fn defaults_at(time_scale: f64) -> Self {
        let sim = |secs: u64| {
            Duration::from_secs(secs)
                .div_f64(time_scale.max(1.0))
                .max(Duration::from_millis(100))
        };
        Self {
            interval: sim(30),
            leader_lease: sim(60),
            pending_timeout: sim(600),
            idle_timeout: sim(300),
            verify_after: sim(600),
            orphan_interval: sim(600),
            orphan_grace: sim(600),
        }
    }

    fn toml(&self) -> String {
        let ms = |d: Duration| format!("\"{}ms\"", d.as_millis());
        format!(
            "interval = {}\nleader_lease = {}\npending_timeout = {}\nidle_timeout = {}\nverify_after = {}\nmax_replacements = 3\norphan_interval = {}\norphan_grace = {}",
            ms(self.interval),
            ms(self.leader_lease),
            ms(self.pending_timeout),
            ms(self.idle_timeout),
            ms(self.verify_after),
            ms(self.orphan_interval),
            ms(self.orphan_grace)
        )
    }
}

/// One GitHub App dockhand acts as: its id and private key.
#[derive(Debug, Clone)]
pub struct AppKey {
    pub id: u64,
    pub private_key: PathBuf,
}

/// dockhand's `[github]`: the Apps, in which form, and whether it paces its calls.
#[derive(Debug, Clone)]
pub struct GitHubConfig {
    pub apps: Vec<AppKey>,
    /// `[[github.app]]` entries, rather than `app_id` and `private_key`: the one form for
    /// several Apps, and one a dockhand from before issue 18 does not know.
    pub app_list: bool,
    pub request_timeout: Duration,
    /// `[github.limits]` and `[aws.run_task]`; `None` leaves both out (a dockhand from
    /// before issue 18 knows neither, and rejects unknown keys).
    pub pacing: Option<Pacing>,
}

impl GitHubConfig {
    /// One App, in the form every dockhand knows, unpaced: what the soaks have always run.
    pub fn one_app(id: u64, private_key: &Path) -> Self {
        Self {
            apps: vec![AppKey {
                id,
                private_key: private_key.to_path_buf(),
            }],
            app_list: false,
            request_timeout: Duration::from_secs(2),
            pacing: None,
        }
    }

    /// The `[github]` keys and `[[github.app]]` entries.
    fn toml(&self, api_url: &str) -> String {
        let key = |k: &AppKey| quoted(&k.private_key.to_string_lossy());
        let mut toml = format!(
            "[github]\napi_url = {}\nrequest_timeout = \"{}ms\"\n",
            quoted(api_url),
            self.request_timeout.as_millis()
        );
        match (self.app_list, self.apps.as_slice()) {
            (false, [app]) => toml.push_str(&format!(
                "app_id = {}\nprivate_key = {{ file = {} }}\n",
                app.id,
                key(app)
            )),
            (_, apps) => {
                for app in apps {
                    toml.push_str(&format!(
                        "\n[[github.app]]\nid = {}\nprivate_key = {{ file = {} }}\n",
                        app.id,
                        key(app)
                    ));
                }
            }
        }
        toml
    }
}

/// How fast dockhand may call, in its own (real) time: the world's limits times its time
/// scale, since dockhand runs in real time while the limits run in simulated time.
#[derive(Debug, Clone, PartialEq)]
pub struct Pacing {
    pub points_per_minute: u32,
    pub points_burst: u32,
    pub concurrent: u32,
    pub primary_reserve: u32,
    pub max_wait: Duration,
    pub run_task_per_second: f64,
    pub run_task_burst: u32,
}

impl Pacing {
    /// Far above any limit: for soaks whose traffic is beyond GitHub's quota by design (the
    /// chaos soak starts hundreds of runners a simulated second), where the world enforces
    /// none and dockhand should not pace.
    pub fn unlimited() -> Self {
        Self {
            points_per_minute: 1_000_000_000,
            points_burst: 1_000_000,
            concurrent: 100_000,
            primary_reserve: 0,
            max_wait: Duration::from_secs(30),
            run_task_per_second: 1_000_000.0,
            run_task_burst: 100_000,
        }
    }

    fn toml(&self) -> String {
        format!(
            "\n[github.limits]\npoints_per_minute = {}\npoints_burst = {}\nconcurrent = {}\nprimary_reserve = {}\nmax_wait = \"{}ms\"\n\n[aws.run_task]\nper_second = {:.1}\nburst = {}\n",
            self.points_per_minute,
            self.points_burst,
            self.concurrent,
            self.primary_reserve,
            self.max_wait.as_millis(),
            self.run_task_per_second,
            self.run_task_burst
        )
    }
}

/// The TOML for one process.
pub fn toml(
    endpoints: &Endpoints<'_>,
    backing: &Backing<'_>,
    webhook_port: u16,
    admin_port: u16,
    concurrency: usize,
) -> String {
    let aws_endpoint = format!("endpoint_url = {}", quoted(endpoints.aws_url));
    let (queue, store) = match backing {
        Backing::Embedded { dir } => (
            format!(
                "kind = \"embedded\"\n\n[queue.embedded]\npath = {}\nvisibility_timeout = \"15s\"",
                quoted(&dir.join("queue.db").to_string_lossy())
            ),
            format!(
                "url = {}",
                quoted(&format!("sqlite://{}", dir.join("dockhand.db").display()))
            ),
        ),
        Backing::Shared {
            queue_url,
            dead_letter_url,
            postgres_url,
        } => (
            format!(
                "kind = \"sqs\"\n\n[queue.sqs]\nurl = {}\ndead_letter_url = {}\nvisibility_timeout = \"15s\"",
                quoted(queue_url),
                quoted(dead_letter_url),
            ),
            format!("url = {}\nmigrate_on_start = true", quoted(postgres_url)),
        ),
    };
    format!(
        r#"[server]
listen = "127.0.0.1:{webhook_port}"
path = "/webhook"
shutdown_grace = "3s"

[admin]
listen = "127.0.0.1:{admin_port}"

[webhook]
secrets = [{{ value = {secret} }}]

[queue]
{queue}

[store]
{store}

[aws]
region = "us-east-1"
{aws_endpoint}
operation_timeout = "2s"
connect_timeout = "1s"

[aws.credentials]
access_key_id = "simkey"
secret_access_key = "simsecret"

{github}
[worker]
concurrency = {concurrency}
depth_poll_interval = "1s"
# After a kill -9, the dead process's messages stay invisible until their visibility
# timeout, and its leases hold their jobs until they expire: both are shorter here than
# the defaults (60s, 120s) so that a soak with a kill every 10 s is not mostly waiting.
lease = "20s"

# The lifecycle reconciler, on real-time timers (short ones for the chaos soaks).
[lifecycle]
{lifecycle}

[log]
level = "dockhand=debug,info"
format = "json"

[[pool]]
name = "linux-x64"
labels = {labels}
max_runners = 100000
{warm}
[pool.ecs]
cluster = {cluster}
task_definition = "runner"
{launch}
subnets = ["subnet-0sim"]
security_groups = ["sg-0sim"]
{pacing}"#,
        secret = quoted(endpoints.webhook_secret),
        github = endpoints.github.toml(endpoints.github_url),
        lifecycle = endpoints.lifecycle.toml(),
        pacing = endpoints
            .github
            .pacing
            .as_ref()
            .map(Pacing::toml)
            .unwrap_or_default(),
        labels = serde_json::to_string(endpoints.labels).expect("labels serialize"),
        cluster = quoted(endpoints.cluster),
        warm = endpoints.warm.toml(endpoints.org),
        launch = if endpoints.spot {
            r#"capacity_providers = ["FARGATE_SPOT", "FARGATE"]"#
        } else {
            r#"launch_type = "FARGATE""#
        },
    )
}
