//! A throwaway Postgres cluster the soak can restart: Debian's initdb and pg_ctl, on a free
//! loopback port, in a temporary directory, run as `postgres` when we are root.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use super::process::free_port;

pub struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    user: Option<String>,
    pub port: u16,
}

fn find_bin() -> anyhow::Result<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .context("no /usr/lib/postgresql: install Debian's postgresql package")?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists() && bin.join("pg_ctl").exists())
        .collect();
    found.sort();
    found
        .pop()
        .context("no initdb and pg_ctl under /usr/lib/postgresql/*/bin")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

impl Cluster {
    /// initdb (trust auth, superuser `postgres`) and start, in `dir`.
    pub fn start(dir: &Path) -> anyhow::Result<Self> {
        let bin = find_bin()?;
        std::fs::create_dir_all(dir)?;
        let user = is_root().then(|| "postgres".to_string());
        if let Some(user) = &user {
            let status = Command::new("chown").arg(user).arg(dir).status()?;
            anyhow::ensure!(status.success(), "chown {user} {}", dir.display());
        }
        let cluster = Self {
            bin,
            dir: dir.to_path_buf(),
            user,
            port: free_port()?,
        };
        let data = cluster.dir.join("data");
        cluster.run(
            "initdb",
            &[
                "-D",
                &data.to_string_lossy(),
                "-A",
                "trust",
                "-U",
                "postgres",
            ],
        )?;
        cluster.pg_ctl(&["start", "-w"])?;
        Ok(cluster)
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Stops at once (`-m immediate`: no clean shutdown, as a crash) and starts again.
    pub fn restart(&self) -> anyhow::Result<()> {
        self.pg_ctl(&["stop", "-m", "immediate", "-w"])?;
        self.pg_ctl(&["start", "-w"])
    }

    fn pg_ctl(&self, args: &[&str]) -> anyhow::Result<()> {
        let data = self.dir.join("data").to_string_lossy().into_owned();
        let options = format!("-h 127.0.0.1 -p {} -k {}", self.port, self.dir.display());
        let log = self.dir.join("postgres.log").to_string_lossy().into_owned();
        let mut all = vec!["-D", &data, "-o", &options, "-l", &log];
        all.extend_from_slice(args);
        self.run("pg_ctl", &all)
    }

    fn run(&self, tool: &str, args: &[&str]) -> anyhow::Result<()> {
        let path = self.bin.join(tool);
        let mut command = match &self.user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&path);
                c
            }
            None => Command::new(&path),
        };
        let out = command
            .args(args)
            .current_dir("/")
            .output()
            .with_context(|| format!("running {}", path.display()))?;
        if !out.status.success() {
            bail!(
                "{tool} {} failed: {}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.pg_ctl(&["stop", "-m", "immediate", "-w"]);
    }
}
