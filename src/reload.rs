//! Hot reload. The configuration's source (a file, or an SSM parameter) is read again every
//! `reload.interval`, and pool changes apply at once: pools added, removed or resized, new
//! labels, new launch settings. A configuration that cannot be read or does not validate
//! is refused, logged and counted, and the running one stays. Everything outside
//! `[[pool]]` (listen addresses, the queue, the store, the GitHub App) is built into the
//! running process: a change there is reported as needing a restart, and not applied.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::{ConfigError, ConfigSource, Roles, Settings};
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
    /// The sections last reported as needing a restart, so each change is reported once.
    reported: BTreeSet<String>,
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
    pub fn as_str(self) -> &'static str {
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
    ) -> Self {
        Self {
            source,
            roles,
            dry_run,
            running,
            updater,
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
        if json(&new.pools) == json(&self.running.pools) {
            return Reloaded::Unchanged;
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
        let (running, new) = (json(&self.running), json(new));
        let changed: BTreeSet<String> = new
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(section, value)| *section != "pool" && running.get(section) != Some(value))
            .map(|(section, _)| section.clone())
            .collect();
        if !changed.is_empty() && changed != self.reported {
            tracing::warn!(
                sections = ?changed,
                "these settings changed but apply only on a restart; the running values stay"
            );
        }
        self.reported = changed;
    }
}

fn json<T: serde::Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).expect("settings always serialize")
}
