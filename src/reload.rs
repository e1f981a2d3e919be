//! Hot reload. The configuration's source (a file, or an SSM parameter) is read again every
//! `reload.interval`, and pool changes apply at once: pools added, removed or resized, new
//! labels, new launch settings. A configuration that cannot be read or does not validate
//! is refused, logged and counted, and the running one stays. Everything outside
//! `[[pool]]` (listen addresses, the queue, the store, the GitHub App) is built into the
//! running process: a change there is reported as needing a restart, and not applied.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::{ConfigError, ConfigSource, LifecycleSettings, Roles, Settings};
use crate::metrics as m;
use crate::pool::{Pools, PoolsUpdater};

/// Re-reads the configuration and swaps the pools.
pub struct Reloader {
    source: ConfigSource,
    roles: Roles,
    /// `--dry-run` given on the command line, which holds whatever the file says.
    dry_run: bool,
    running: Settings,
    updater: PoolsUpdater,
    /// The reconciler's settings, which reload like the pools.
    lifecycle: tokio::sync::watch::Sender<LifecycleSettings>,
    /// The sections last reported as needing a restart, so each change is reported once.
    reported: BTreeSet<&'static str>,
}

/// What one reload did; the label of `dockhand_config_reloads_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reloaded {
    /// The pools changed and are in force now.
    Applied,
    /// Nothing that can change while running changed.
    Unchanged,
    /// The configuration loaded but is not valid for this process: refused.
    Invalid,
    /// The file or parameter could not be read: the running configuration stays.
    Unreadable,
}

impl Reloaded {
    fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Unchanged => "unchanged",
            Self::Invalid => "invalid",
            Self::Unreadable => "unreadable",
        }
    }
}

impl Reloader {
    pub fn new(
        source: ConfigSource,
        roles: Roles,
        dry_run: bool,
        running: Settings,
        updater: PoolsUpdater,
        lifecycle: tokio::sync::watch::Sender<LifecycleSettings>,
    ) -> Self {
        Self {
            source,
            roles,
            dry_run,
            running,
            updater,
            lifecycle,
            reported: BTreeSet::new(),
        }
    }

    /// Reloads every `interval` until `shutdown`.
    pub async fn run(mut self, interval: Duration, shutdown: CancellationToken) {
        let start = tokio::time::Instant::now() + interval;
        let mut tick = tokio::time::interval_at(start, interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            self.reload_once().await;
        }
    }

    /// Reads the source once and applies what changed.
    pub async fn reload_once(&mut self) -> Reloaded {
        let outcome = self.try_reload().await;
        metrics::counter!(m::CONFIG_RELOADS_TOTAL, "outcome" => outcome.as_str()).increment(1);
        outcome
    }

    async fn try_reload(&mut self) -> Reloaded {
        let mut new = match self.source.load().await {
            Ok(new) => new,
            Err(err @ (ConfigError::Missing(_) | ConfigError::Unreadable { .. })) => {
                tracing::error!(
                    source = %self.source,
                    error = %crate::telemetry::chain(&err),
                    "cannot read the configuration; the running one stays"
                );
                return Reloaded::Unreadable;
            }
            Err(err) => return self.refuse(&err),
        };
        new.worker.dry_run |= self.dry_run;
        if let Err(err) = new.validate_for(self.roles) {
            return self.refuse(&err);
        }
        self.report_restart_only_changes(&new);
        let lifecycle_changed = new.lifecycle != self.running.lifecycle;
        if lifecycle_changed {
            tracing::info!(source = %self.source, "lifecycle settings reloaded");
            self.lifecycle.send_replace(new.lifecycle.clone());
            self.running.lifecycle = new.lifecycle.clone();
        }
        // Compared as values, secrets included: serialized, every secret reads `<redacted>`.
        if new.pools == self.running.pools {
            return if lifecycle_changed {
                Reloaded::Applied
            } else {
                Reloaded::Unchanged
            };
        }
        let names: Vec<&str> = new.pools.iter().map(|p| p.name.as_str()).collect();
        tracing::info!(source = %self.source, pools = ?names, "pools reloaded");
        self.updater.replace(Pools::from_settings(&new.pools));
        self.running.pools = new.pools;
        Reloaded::Applied
    }

    fn refuse(&self, err: &ConfigError) -> Reloaded {
        // The message names keys, never values: secrets are not in it.
        tracing::error!(
            source = %self.source,
            error = %err,
            "the new configuration is invalid; refused, the running one stays"
        );
        Reloaded::Invalid
    }

    /// Logs, once per change, the sections that differ from the running ones but only
    /// apply on a restart.
    fn report_restart_only_changes(&mut self, new: &Settings) {
        let changed = restart_only_changes(&self.running, new);
        if !changed.is_empty() && changed != self.reported {
            tracing::warn!(
                sections = ?changed,
                "these settings changed but apply only on a restart; the running values stay"
            );
        }
        self.reported = changed;
    }
}

/// The sections outside `[[pool]]` whose values differ, secrets included.
fn restart_only_changes(running: &Settings, new: &Settings) -> BTreeSet<&'static str> {
    // Destructured, so that a new section cannot be forgotten here.
    let Settings {
        server,
        admin,
        webhook,
        queue,
        aws,
        github,
        worker,
        lifecycle: _,
        redelivery,
        store,
        log,
        reload,
        pools: _,
    } = new;
    [
        ("server", *server != running.server),
        ("admin", *admin != running.admin),
        ("webhook", *webhook != running.webhook),
        ("queue", *queue != running.queue),
        ("aws", *aws != running.aws),
        ("github", *github != running.github),
        ("worker", *worker != running.worker),
        ("redelivery", *redelivery != running.redelivery),
        ("store", *store != running.store),
        ("log", *log != running.log),
        ("reload", *reload != running.reload),
    ]
    .into_iter()
    .filter_map(|(section, changed)| changed.then_some(section))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::LivePools;

    fn config(secret: &str) -> String {
        format!(
            "[webhook]\nsecrets = [{{ value = \"{secret}\" }}]\n\n\
             [[pool]]\nname = \"linux\"\nlabels = [\"self-hosted\", \"linux\"]\n"
        )
    }

    #[tokio::test]
    async fn lifecycle_changes_apply_without_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("dockhand.toml");
        std::fs::write(&file, config("s")).unwrap();
        let source = ConfigSource::File(file.clone());
        let running = source.load().await.unwrap();
        let (updater, _pools) = LivePools::new(Pools::from_settings(&running.pools));
        let (lifecycle, seen) = tokio::sync::watch::channel(running.lifecycle.clone());
        let mut reloader =
            Reloader::new(source, Roles::INGRESS, false, running, updater, lifecycle);
        let changed = format!(
            "{}\n[lifecycle]\nidle_timeout = \"2m\"\nmax_replacements = 5\n",
            config("s")
        );
        std::fs::write(&file, changed).unwrap();
        assert_eq!(reloader.reload_once().await, Reloaded::Applied);
        let now = seen.borrow().clone();
        assert_eq!(
            (now.idle_timeout, now.max_replacements),
            (std::time::Duration::from_secs(120), 5)
        );
        assert!(reloader.reported.is_empty(), "{:?}", reloader.reported);
        // An invalid value is refused; the running one stays.
        let invalid = format!("{}\n[lifecycle]\nmax_replacements = 99\n", config("s"));
        std::fs::write(&file, invalid).unwrap();
        assert_eq!(reloader.reload_once().await, Reloaded::Invalid);
        assert_eq!(seen.borrow().max_replacements, 5);
    }

    #[tokio::test]
    async fn a_changed_inline_secret_is_seen_as_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("dockhand.toml");
        std::fs::write(&file, config("old-secret")).unwrap();
        let source = ConfigSource::File(file.clone());
        let running = source.load().await.unwrap();
        let (updater, _pools) = LivePools::new(Pools::from_settings(&running.pools));
        let mut reloader = Reloader::new(
            source,
            Roles::INGRESS,
            false,
            running.clone(),
            updater,
            tokio::sync::watch::channel(running.lifecycle).0,
        );
        assert_eq!(reloader.reload_once().await, Reloaded::Unchanged);
        assert!(reloader.reported.is_empty(), "{:?}", reloader.reported);

        // Only the secret's value changes: what either would print is the same.
        std::fs::write(&file, config("new-secret")).unwrap();
        assert_eq!(reloader.reload_once().await, Reloaded::Unchanged);
        assert_eq!(
            reloader.reported,
            BTreeSet::from(["webhook"]),
            "a new webhook secret applies only on a restart, and must be reported"
        );

        // A pool's new label applies at once; the webhook stays reported as it was.
        let more_labels = config("new-secret").replace("\"linux\"]", "\"linux\", \"x64\"]");
        std::fs::write(&file, more_labels).unwrap();
        assert_eq!(reloader.reload_once().await, Reloaded::Applied);
        assert_eq!(
            reloader.running.pools[0].labels,
            ["self-hosted", "linux", "x64"]
        );
        assert_eq!(reloader.reported, BTreeSet::from(["webhook"]));
    }
}
