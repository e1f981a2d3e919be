//! Which parts of dockhand a process runs, and the settings each part needs beyond what
//! every process checks.

use super::{ConfigError, Problems, Settings};

/// Which parts of dockhand a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    /// Receives webhooks and enqueues jobs.
    pub ingress: bool,
    /// Consumes the queue and launches runners.
    pub worker: bool,
}

impl Roles {
    /// `dockhand serve`: the ingress and the worker in one process.
    pub const SERVE: Roles = Roles {
        ingress: true,
        worker: true,
    };
    /// `dockhand ingress`.
    pub const INGRESS: Roles = Roles {
        ingress: true,
        worker: false,
    };
    /// `dockhand worker`.
    pub const WORKER: Roles = Roles {
        ingress: false,
        worker: true,
    };
}

impl Settings {
    /// Every check that applies to a process running these roles.
    pub fn validate_for(&self, roles: Roles) -> Result<(), ConfigError> {
        self.validate()?;
        if roles.ingress {
            self.validate_for_ingress()?;
        }
        if roles.worker {
            self.validate_for_workers()?;
        }
        Ok(())
    }

    /// The checks for a process that receives webhooks: it needs a secret to verify them.
    pub(super) fn validate_for_ingress(&self) -> Result<(), ConfigError> {
        let mut p = Problems::default();
        self.webhook.check_for_ingress(&mut p);
        p.into_result()
    }

    /// The stricter checks for a process that launches runners: the GitHub App and every
    /// pool's `[pool.ecs]` must be set, unless the worker is in dry-run mode.
    pub(super) fn validate_for_workers(&self) -> Result<(), ConfigError> {
        let mut p = Problems::default();
        if !self.worker.dry_run {
            self.github.check_for_launching(&mut p);
        }
        for (i, pool) in self.pools.iter().enumerate() {
            if pool.ecs.is_none() {
                p.add(
                    format!("pool[{i}].ecs"),
                    "workers need [pool.ecs] launch settings",
                );
            }
        }
        p.into_result()
    }
}
