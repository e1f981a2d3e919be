//! dockhand's real binary as a child process: its config, readiness, `kill -9` and a
//! restart on the same ports, SIGTERM, and the logs of every incarnation.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A loopback port free a moment ago (the child binds it soon after).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?.port())
}

/// A TOML string literal (JSON's escapes are TOML's).
pub fn quoted(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

/// One dockhand process (`serve`, `ingress` or `worker`), restartable.
pub struct Process {
    bin: PathBuf,
    args: Vec<String>,
    config: PathBuf,
    dir: PathBuf,
    name: String,
    pub admin_url: String,
    child: Option<Child>,
    /// Every incarnation's log file.
    pub logs: Vec<PathBuf>,
    pub kills: usize,
    /// `DOCKHAND_` environment variables it runs with (none of the soak's own reach it).
    env: Vec<(String, String)>,
}

impl Process {
    /// Writes `config` to `dir/{name}.toml`; the process is not started yet.
    pub fn new(
        bin: &Path,
        args: &[&str],
        dir: &Path,
        name: &str,
        config: &str,
        admin_port: u16,
    ) -> anyhow::Result<Self> {
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, config).context("writing a dockhand config")?;
        Ok(Self {
            bin: bin.to_path_buf(),
            args: args.iter().map(|a| a.to_string()).collect(),
            config: path,
            dir: dir.to_path_buf(),
            name: name.to_string(),
            admin_url: format!("http://127.0.0.1:{admin_port}"),
            child: None,
            logs: Vec::new(),
            kills: 0,
            env: Vec::new(),
        })
    }

    /// Runs every incarnation with these environment variables as well (later ones win).
    pub fn with_env(mut self, env: &[(String, String)]) -> Self {
        self.env.extend_from_slice(env);
        self
    }

    /// Starts a new incarnation, logging to its own file.
    pub fn start(&mut self) -> anyhow::Result<()> {
        let log = self
            .dir
            .join(format!("{}-{}.log", self.name, self.logs.len()));
        let file = std::fs::File::create(&log)?;
        let mut command = Command::new(&self.bin);
        command
            .args(&self.args)
            .arg("--config")
            .arg(&self.config)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .env_remove("RUST_LOG")
            .env("NO_PROXY", "127.0.0.1,localhost");
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("DOCKHAND_") {
                command.env_remove(name);
            }
        }
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        self.child = Some(
            command
                .spawn()
                .with_context(|| format!("starting {}", self.bin.display()))?,
        );
        self.logs.push(log);
        Ok(())
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
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "{} exited before it was ready ({status}); see {}",
                    self.name,
                    self.log()
                );
            }
            if let Ok(r) = http.get(&url).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} not ready after {timeout:?}; see {}",
                    self.name,
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn log(&self) -> String {
        self.logs
            .last()
            .map(|l| l.display().to_string())
            .unwrap_or_default()
    }

    /// `kill -9`, and reaps it.
    pub fn kill9(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
            self.kills += 1;
        }
        Ok(())
    }

    /// Whether it has exited on its own (a crash).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// SIGTERM, then waits for the exit; SIGKILL after `timeout`.
    pub async fn stop(
        &mut self,
        timeout: Duration,
    ) -> anyhow::Result<Option<std::process::ExitStatus>> {
        let Some(mut child) = self.child.take() else {
            return Ok(None);
        };
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() > deadline {
                child.kill()?;
                child.wait()?;
                bail!(
                    "{} still running {timeout:?} after SIGTERM; killed it",
                    self.name
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Runs the binary once with these arguments and this config, returning stdout.
    pub fn run_once(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new(&self.bin)
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .current_dir(&self.dir)
            .env_remove("RUST_LOG")
            .output()?;
        if !out.status.success() {
            bail!(
                "dockhand {} failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Process {
    /// A soak that fails midway must not leave its children behind.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
