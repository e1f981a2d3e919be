//! The real `dockhand serve` as a child process: its temp config, readiness, peak memory,
//! metrics, and a SIGTERM stop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The webhook secret the harness signs with.
pub const SECRET: &str = "load-harness-secret";
/// The pool every synthetic job matches.
pub const POOL_LABELS: [&str; 3] = ["self-hosted", "linux", "x64"];

/// What the child is configured with.
pub struct ChildConfig<'a> {
    pub dir: &'a Path,
    pub github_url: &'a str,
    pub ecs_url: &'a str,
    pub app_id: u64,
    pub worker_concurrency: usize,
    /// A Postgres store's URL; `None` is a SQLite file in `dir`.
    pub store_url: Option<&'a str>,
}

/// A fresh Postgres database for one run, dropped (best effort) when this is.
pub struct PostgresDb {
    pub url: String,
    server: String,
    name: String,
}

impl PostgresDb {
    pub async fn create() -> anyhow::Result<Self> {
        let server = std::env::var("DOCKHAND_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let name = format!("dockhand_load_{}", uuid::Uuid::new_v4().simple());
        let admin = sqlx::PgPool::connect(&server)
            .await
            .with_context(|| format!("connecting to Postgres at {server}"))?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await?;
        admin.close().await;
        let base = server.rsplit_once('/').map_or(server.as_str(), |(b, _)| b);
        Ok(Self {
            url: format!("{base}/{name}"),
            server,
            name,
        })
    }
}

impl Drop for PostgresDb {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let admin = sqlx::PgPool::connect(&server).await.ok()?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&admin)
                .await
                .ok()
            })
        })
        .join();
    }
}

/// The 99th percentile of a histogram, summed over its labels: the upper bound (seconds)
/// of the first bucket that holds 99% of the samples. `None` without samples.
pub fn histogram_p99(metrics: &str, metric: &str) -> Option<f64> {
    let mut buckets: Vec<(f64, f64)> = sum_by_label(metrics, &format!("{metric}_bucket"), "le")
        .into_iter()
        .map(|(le, n)| (le.parse::<f64>().unwrap_or(f64::INFINITY), n))
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last()?.1;
    if total == 0.0 {
        return None;
    }
    buckets
        .iter()
        .find(|(_, n)| *n >= 0.99 * total)
        .map(|(le, _)| *le)
}

/// Per op, how many observations of a histogram took longer than `over` seconds (a bucket
/// bound): the writes that make a tail, which a p99 over thousands of fast writes hides.
pub fn slower_than(metrics: &str, metric: &str, over: &str) -> Vec<(String, f64)> {
    let count = sum_by_label(metrics, &format!("{metric}_count"), "op");
    let mut within: std::collections::BTreeMap<String, f64> = Default::default();
    let needle = format!("le=\"{over}\"");
    for line in metrics.lines().filter(|l| l.contains(&needle)) {
        let one = sum_by_label(line, &format!("{metric}_bucket"), "op");
        for (op, n) in one {
            *within.entry(op).or_default() += n;
        }
    }
    count
        .into_iter()
        .map(|(op, n)| {
            let slow = n - within.get(&op).copied().unwrap_or(0.0);
            (op, slow)
        })
        .filter(|(_, slow)| *slow > 0.0)
        .collect()
}

/// A running `dockhand serve`.
pub struct Dockhand {
    child: Child,
    pub webhook_url: String,
    pub admin_url: String,
    pub log: PathBuf,
}

/// Memory and threads of a process, from `/proc/<pid>/status`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcStatus {
    /// Peak resident set size (VmHWM), KiB.
    pub peak_rss_kib: u64,
    /// Resident set size now (VmRSS), KiB.
    pub rss_kib: u64,
    pub threads: u64,
}

/// CPU seconds (user + system) a process has used, from `/proc/<pid>/stat`.
pub fn cpu_secs(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return f64::NAN;
    };
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(&stat[..0], |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) / clock_ticks_per_sec()
}

fn clock_ticks_per_sec() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// A loopback port free a moment ago (the child binds it soon after).
fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?.port())
}

/// A TOML string literal (JSON's escapes are TOML's).
fn quoted(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

impl Dockhand {
    pub fn spawn(config: &ChildConfig<'_>) -> anyhow::Result<Self> {
        let (webhook_port, admin_port) = (free_port()?, free_port()?);
        let key =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/github-app-test-key.pem");
        let dir = config.dir;
        let toml = format!(
            r#"[server]
listen = "127.0.0.1:{webhook_port}"
path = "/webhook"
shutdown_grace = "5s"

[admin]
listen = "127.0.0.1:{admin_port}"

[webhook]
secrets = [{{ value = {secret} }}]

[queue]
kind = "embedded"

[queue.embedded]
path = {queue}

[store]
url = {store}

[aws]
region = "us-east-1"
endpoint_url = {ecs}

[aws.credentials]
access_key_id = "x"
secret_access_key = "x"

# The harness measures dockhand's own throughput, not GitHub's or ECS's quota (the quota
# burst is `cargo bench --bench chaos -- --scenario quota-burst`): pacing far above it.
[aws.run_task]
per_second = 100000.0
burst = 10000

[github]
api_url = {github}
app_id = {app_id}
private_key = {{ file = {key} }}

[github.limits]
points_per_minute = 100000000
concurrent = 10000

[worker]
concurrency = {concurrency}

# The reconciler runs as in production, but often, so its calls show in a short run.
[lifecycle]
interval = "1s"

[log]
level = "warn"
format = "json"

[[pool]]
name = "linux-x64"
labels = {labels}
max_runners = 100000

[pool.ecs]
cluster = "load"
task_definition = "runner"
launch_type = "FARGATE"
subnets = ["subnet-0load"]
security_groups = ["sg-0load"]
"#,
            secret = quoted(SECRET),
            queue = quoted(&dir.join("queue.db").to_string_lossy()),
            store = match config.store_url {
                Some(url) => format!("{}\nmigrate_on_start = true", quoted(url)),
                None => quoted(&format!("sqlite://{}", dir.join("dockhand.db").display())),
            },
            ecs = quoted(config.ecs_url),
            github = quoted(config.github_url),
            app_id = config.app_id,
            key = quoted(&key.to_string_lossy()),
            concurrency = config.worker_concurrency,
            labels = serde_json::to_string(&POOL_LABELS).expect("labels serialize"),
        );
        let config_path = dir.join("dockhand.toml");
        std::fs::write(&config_path, toml).context("writing the child's config")?;
        let log = dir.join("dockhand.log");
        let log_file = std::fs::File::create(&log)?;
        let mut command = Command::new(env!("CARGO_BIN_EXE_dockhand"));
        command
            .args(["serve", "--config"])
            .arg(&config_path)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            // The config file alone decides: no RUST_LOG or DOCKHAND_* from the caller.
            .env_remove("RUST_LOG")
            .env("NO_PROXY", "127.0.0.1,localhost");
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("DOCKHAND_") {
                command.env_remove(name);
            }
        }
        let child = command.spawn().context("starting dockhand serve")?;
        Ok(Self {
            child,
            webhook_url: format!("http://127.0.0.1:{webhook_port}/webhook"),
            admin_url: format!("http://127.0.0.1:{admin_port}"),
            log,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for `/readyz` to answer 200, failing early if the child exits.
    pub async fn wait_ready(
        &mut self,
        http: &reqwest::Client,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let url = format!("{}/readyz", self.admin_url);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "dockhand exited before it was ready ({status}); see {}",
                    self.log.display()
                );
            }
            if let Ok(response) = http.get(&url).send().await
                && response.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "dockhand not ready after {timeout:?}; see {}",
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn proc_status(&self) -> anyhow::Result<ProcStatus> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Ok(ProcStatus {
            peak_rss_kib: field("VmHWM:"),
            rss_kib: field("VmRSS:"),
            threads: field("Threads:"),
        })
    }

    pub async fn metrics(&self, http: &reqwest::Client) -> anyhow::Result<String> {
        let response = http
            .get(format!("{}/metrics", self.admin_url))
            .send()
            .await?;
        Ok(response.error_for_status()?.text().await?)
    }

    /// Sends SIGTERM and waits for the exit.
    pub async fn stop(mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let sent = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .context("running kill -TERM")?;
        if !sent.success() {
            bail!("kill -TERM {} failed: {sent}", self.pid());
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                self.child.kill()?;
                bail!("dockhand still running {timeout:?} after SIGTERM; killed it");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Dockhand {
    /// A harness that fails midway must not leave its child behind.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `dockhand_jobs_total` (or any counter) summed by one label, from Prometheus text.
pub fn sum_by_label(metrics: &str, metric: &str, label: &str) -> Vec<(String, f64)> {
    let mut sums: std::collections::BTreeMap<String, f64> = Default::default();
    let needle = format!("{label}=\"");
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix(metric) else {
            continue;
        };
        if !rest.starts_with('{') {
            continue;
        }
        let Some((labels, value)) = rest.rsplit_once(' ') else {
            continue;
        };
        let Some(start) = labels.find(&needle) else {
            continue;
        };
        let tail = &labels[start + needle.len()..];
        let name = tail.split('"').next().unwrap_or_default().to_string();
        *sums.entry(name).or_default() += value.parse::<f64>().unwrap_or(0.0);
    }
    sums.into_iter().collect()
}
