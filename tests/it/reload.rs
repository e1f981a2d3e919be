//! Hot reload, through the binary: `dockhand serve` re-reads its configuration (a file, or
//! an SSM parameter in moto) and the next job uses the new pools, with no restart. A broken
//! configuration is refused and the running one keeps working.

use crate::common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::process::{
    BIN, KillOnDrop, LINUX_POOL, eventually, free_port, serve_config, wait_until_ready,
};
use common::*;
use dockhand::domain::JobId;
use dockhand::store::{LaunchState, Store};

/// Where the running process reads its configuration.
enum Source {
    File(std::path::PathBuf),
    Ssm(String),
}

impl Source {
    async fn put(&self, text: &str) {
        match self {
            Self::File(path) => {
                // Write-then-rename, as editors and config management do, so a reload never
                // reads half a file.
                let partial = path.with_extension("partial");
                std::fs::write(&partial, text).unwrap();
                std::fs::rename(&partial, path).unwrap();
            }
            Self::Ssm(name) => {
                moto_aws()
                    .ssm_client()
                    .await
                    .put_parameter()
                    .name(name)
                    .value(text)
                    .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
                    .overwrite(true)
                    .send()
                    .await
                    .unwrap();
            }
        }
    }

    fn arg(&self) -> String {
        match self {
            Self::File(path) => path.display().to_string(),
            Self::Ssm(name) => format!("ssm:{name}"),
        }
    }
}

struct Served {
    source: Source,
    dir: tempfile::TempDir,
    webhook: String,
    admin: String,
    _process: KillOnDrop,
}

const GPU_POOL: &str = r#"
[[pool]]
name = "gpu"
labels = ["self-hosted", "linux", "gpu"]
max_runners = 4
[pool.ecs]
cluster = "gpu-runners"
task_definition = "gha-runner-gpu"
launch_type = "EC2"
subnets = ["subnet-1"]
"#;

/// The served configuration, reloaded every second, with these pools.
fn config_text(dir: &tempfile::TempDir, webhook_port: u16, admin_port: u16, pools: &str) -> String {
    let secret = format!(r#"{{ value = "{SECRET}" }}"#);
    let rest = format!("[reload]\ninterval = \"1s\"\n{pools}");
    serve_config(dir.path(), webhook_port, admin_port, &secret, &rest)
}

impl Served {
    /// `dockhand serve` in dry-run on the embedded queue, reloading every second.
    async fn start(ssm: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let source = if ssm {
            Source::Ssm(format!(
                "/dockhand-test/{}/config",
                uuid::Uuid::new_v4().simple()
            ))
        } else {
            Source::File(dir.path().join("dockhand.toml"))
        };
        let (webhook_port, admin_port) = (free_port(), free_port());
        source
            .put(&config_text(&dir, webhook_port, admin_port, LINUX_POOL))
            .await;
        let aws = moto_aws();
        let process = Command::new(BIN)
            .args(["serve", "--config", &source.arg()])
            .env_remove("DOCKHAND_CONFIG")
            .env("RUST_LOG", "info")
            .env("DOCKHAND_AWS__REGION", "us-east-1")
            .env("DOCKHAND_AWS__ENDPOINT_URL", aws.endpoint_url.unwrap())
            .env("DOCKHAND_AWS__CREDENTIALS__ACCESS_KEY_ID", "testing")
            .env("DOCKHAND_AWS__CREDENTIALS__SECRET_ACCESS_KEY", "testing")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let served = Self {
            source,
            webhook: format!("http://127.0.0.1:{webhook_port}/webhook"),
            admin: format!("http://127.0.0.1:{admin_port}"),
            dir,
            _process: KillOnDrop(process),
        };
        wait_until_ready(&served.admin).await;
        served
    }

    /// The configuration with these pools.
    fn config(&self, pools: &str) -> String {
        let (webhook_port, admin_port) = self.ports();
        config_text(&self.dir, webhook_port, admin_port, pools)
    }

    fn ports(&self) -> (u16, u16) {
        let port = |url: &str| {
            reqwest::Url::parse(url)
                .unwrap()
                .port()
                .expect("an explicit port")
        };
        (port(&self.webhook), port(&self.admin))
    }

    /// Puts a new configuration with these pools, and waits for the process to count one
    /// more reload with `outcome`.
    async fn reconfigure(&self, text: &str, outcome: &str) {
        self.after(self.source.put(text), outcome).await;
    }

    /// Makes a change, and waits for the process to count one more reload with `outcome`.
    async fn after(&self, change: impl std::future::Future<Output = ()>, outcome: &str) {
        let series = format!("dockhand_config_reloads_total{{outcome=\"{outcome}\"}}");
        let before = sample(&self.metrics().await, &series).unwrap_or(0.0);
        change.await;
        eventually(
            &format!("a reload with outcome {outcome}"),
            Duration::from_secs(20),
            || async {
                (sample(&self.metrics().await, &series).unwrap_or(0.0) > before).then_some(())
            },
        )
        .await;
    }

    async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.admin))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Delivers a queued job with these labels; returns the ingress's outcome.
    async fn deliver(&self, job: u64, labels: &[&str]) -> String {
        let answer = signed_request(
            &reqwest::Client::new(),
            &self.webhook,
            &uuid::Uuid::new_v4().to_string(),
            job_body("queued", job, labels),
        )
        .send()
        .await
        .unwrap();
        let json: serde_json::Value = serde_json::from_str(&answer.text().await.unwrap()).unwrap();
        json["outcome"].as_str().unwrap().to_string()
    }

    /// Waits for the job's dry-run launch and returns its pool and runner name.
    async fn dry_run_launch(&self, job: u64) -> (String, String) {
        let store = Store::connect(&dockhand::config::StoreSettings {
            url: format!("sqlite://{}", self.dir.path().join("dockhand.db").display()),
            ..Default::default()
        })
        .await
        .unwrap();
        eventually(
            &format!("job {job}'s dry-run launch"),
            Duration::from_secs(20),
            || async {
                let job = store.job(JobId(job)).await.unwrap()?;
                (job.launch == LaunchState::DryRun)
                    .then(|| (job.pool.unwrap(), job.runner_name.unwrap()))
            },
        )
        .await
    }
}

async fn pool_changes_apply_without_a_restart_and_a_broken_config_is_refused(ssm: bool) {
    let served = Served::start(ssm).await;
    let gpu = ["self-hosted", "linux", "gpu"];
    assert_eq!(served.deliver(1, &gpu).await, "no_matching_pool");

    // A pool is added.
    let two_pools = served.config(&format!("{LINUX_POOL}{GPU_POOL}"));
    served.reconfigure(&two_pools, "applied").await;
    assert_eq!(served.deliver(2, &gpu).await, "enqueued");
    assert_eq!(
        served.dry_run_launch(2).await,
        ("gpu".to_string(), "dh-gpu-2-1".to_string())
    );

    // Broken TOML, then a valid file with an invalid pool: both refused, and the running
    // pools keep working.
    served.reconfigure("[[pool]]\nname = ", "invalid").await;
    let no_labels = two_pools.replace(r#"labels = ["self-hosted", "linux", "gpu"]"#, "labels = []");
    served.reconfigure(&no_labels, "invalid").await;
    assert_eq!(served.deliver(3, &gpu).await, "enqueued");
    assert_eq!(served.dry_run_launch(3).await.0, "gpu");

    // The pool is removed again.
    let one_pool = served.config(LINUX_POOL);
    served.reconfigure(&one_pool, "applied").await;
    assert_eq!(served.deliver(4, &gpu).await, "no_matching_pool");
    assert_eq!(
        served.deliver(5, &["self-hosted", "linux"]).await,
        "enqueued"
    );
    assert_eq!(served.dry_run_launch(5).await.0, "linux-x64");

    // The parameter is deleted: unreadable, and the running pools stay.
    if let Source::Ssm(name) = &served.source {
        let delete = async {
            let ssm = moto_aws().ssm_client().await;
            ssm.delete_parameter().name(name).send().await.unwrap();
        };
        served.after(delete, "unreadable").await;
        assert_eq!(
            served.deliver(6, &["self-hosted", "linux"]).await,
            "enqueued"
        );
        assert_eq!(served.dry_run_launch(6).await.0, "linux-x64");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_a_file_pool_changes_apply_without_a_restart_and_a_broken_config_is_refused() {
    pool_changes_apply_without_a_restart_and_a_broken_config_is_refused(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_ssm_pool_changes_apply_without_a_restart_and_a_broken_config_is_refused() {
    pool_changes_apply_without_a_restart_and_a_broken_config_is_refused(true).await;
}
