//! dockhand's configuration for a soak: pointed at the simulator, with short timeouts so
//! that injected timeouts cost seconds, short lifecycle timings so that leftovers are
//! reaped within the settle timeout, and logs at debug so the secrets check sees all.

use std::path::Path;

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
    pub app_id: u64,
    pub private_key: &'a Path,
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

[github]
api_url = {github}
app_id = {app_id}
private_key = {{ file = {key} }}
request_timeout = "2s"

[worker]
concurrency = {concurrency}
depth_poll_interval = "1s"
# After a kill -9, the dead process's messages stay invisible until their visibility
# timeout, and its leases hold their jobs until they expire: both are shorter here than
# the defaults (60s, 120s) so that a soak with a kill every 10 s is not mostly waiting.
lease = "20s"

# The lifecycle reconciler, on real-time timers while the world runs 60 times faster: a
# pass a second, so that a task that died, a spare runner left idle or an orphan is dealt
# with in seconds of the soak rather than minutes.
[lifecycle]
interval = "1s"
leader_lease = "3s"
pending_timeout = "60s"
idle_timeout = "3s"
verify_after = "20s"
max_replacements = 3
orphan_interval = "10s"
orphan_grace = "10s"

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
"#,
        secret = quoted(endpoints.webhook_secret),
        github = quoted(endpoints.github_url),
        app_id = endpoints.app_id,
        key = quoted(&endpoints.private_key.to_string_lossy()),
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
