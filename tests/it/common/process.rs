//! Running the `dockhand` binary from tests.

use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_dockhand");

/// A free loopback port (free when asked; tests bind it soon after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until a running process's `/readyz` answers 2xx.
pub async fn wait_until_ready(admin: &str) {
    let client = reqwest::Client::new();
    eventually("dockhand to become ready", Duration::from_secs(30), || {
        let request = client.get(format!("{admin}/readyz")).send();
        async move { request.await.ok().filter(|r| r.status().is_success()) }
    })
    .await;
}

/// Polls `check` every 100ms until it gives a value; panics after `limit`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "waited {limit:?} for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A child process that is killed if the test ends (or panics) before it exits.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A pool that serves `queued_job`s, with launch settings a dry run never uses.
pub const LINUX_POOL: &str = r#"
[[pool]]
name = "linux-x64"
labels = ["self-hosted", "linux", "x64"]
[pool.ecs]
cluster = "runners"
task_definition = "gha-runner"
launch_type = "FARGATE"
subnets = ["subnet-1"]
"#;

/// The configuration of a dry-run `dockhand serve` on these loopback ports, its embedded
/// queue and SQLite store in `dir`. `secret` is the webhook secret's source (a TOML inline
/// table); `rest` holds the pools and any other sections.
pub fn serve_config(
    dir: &std::path::Path,
    webhook_port: u16,
    admin_port: u16,
    secret: &str,
    rest: &str,
) -> String {
    let dir = dir.display();
    format!(
        r#"
[server]
listen = "127.0.0.1:{webhook_port}"
[admin]
listen = "127.0.0.1:{admin_port}"
[webhook]
secrets = [{secret}]
[queue.embedded]
path = "{dir}/queue.db"
[worker]
dry_run = true
[store]
url = "sqlite://{dir}/dockhand.db"
{rest}"#
    )
}
