//! Runner pools and the rule that decides which pool can serve a job.

use std::sync::Arc;

use tokio::sync::watch;

use crate::config::PoolSettings;
use crate::domain::{Labels, label_eq};

/// A pool of identical runners dockhand can launch.
#[derive(Debug, Clone)]
pub struct Pool {
    pub name: String,
    /// Every label a runner of this pool carries.
    pub labels: Vec<String>,
    /// Everything else about the pool: registration and launch settings.
    pub settings: PoolSettings,
}

impl Pool {
    /// GitHub's rule: a runner can take a job when it has every one of the job's labels.
    fn can_serve(&self, job_labels: &Labels) -> bool {
        job_labels
            .iter()
            .all(|wanted| self.labels.iter().any(|have| label_eq(have, wanted)))
    }
}

/// The configured pools, in configuration order.
#[derive(Debug, Clone, Default)]
pub struct Pools(Vec<Pool>);

impl Pools {
    pub fn from_settings(settings: &[PoolSettings]) -> Self {
        Self(
            settings
                .iter()
                .map(|p| Pool {
                    name: p.name.clone(),
                    labels: p.labels.clone(),
                    settings: p.clone(),
                })
                .collect(),
        )
    }

    /// The first pool, in configuration order, whose runners can take a job with these
    /// labels. Order is the tie-break so that operators control it.
    pub fn match_job(&self, job_labels: &Labels) -> Option<&Pool> {
        self.0.iter().find(|pool| pool.can_serve(job_labels))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Pool> {
        self.0.iter()
    }
}

/// The pools in force, read by the ingress and the workers. A configuration reload swaps
/// the whole set, so each job is matched and launched against one consistent set.
#[derive(Debug, Clone)]
pub struct LivePools(watch::Receiver<Arc<Pools>>);

/// Swaps the pools that every [`LivePools`] made with it reads.
#[derive(Debug)]
pub struct PoolsUpdater(watch::Sender<Arc<Pools>>);

impl LivePools {
    /// Pools and the updater that replaces them.
    pub fn new(pools: Pools) -> (PoolsUpdater, Self) {
        let (tx, rx) = watch::channel(Arc::new(pools));
        (PoolsUpdater(tx), Self(rx))
    }

    /// Pools that never change.
    pub fn fixed(pools: Pools) -> Self {
        Self::new(pools).1
    }

    /// The set in force now.
    pub fn current(&self) -> Arc<Pools> {
        self.0.borrow().clone()
    }
}

impl PoolsUpdater {
    pub fn replace(&self, pools: Pools) {
        self.0.send_replace(Arc::new(pools));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pools(spec: &[(&str, &[&str])]) -> Pools {
        Pools(
            spec.iter()
                .map(|(name, labels)| Pool {
                    name: name.to_string(),
                    labels: labels.iter().map(|l| l.to_string()).collect(),
                    settings: PoolSettings::new(*name, labels),
                })
                .collect(),
        )
    }

    fn job(labels: &[&str]) -> Labels {
        Labels(labels.iter().map(|l| l.to_string()).collect())
    }

    #[test]
    fn a_pool_serves_a_job_whose_labels_it_all_has() {
        let p = pools(&[("linux", &["self-hosted", "linux", "x64"])]);
        assert_eq!(
            p.match_job(&job(&["self-hosted", "linux"])).unwrap().name,
            "linux"
        );
        assert_eq!(
            p.match_job(&job(&["self-hosted", "linux", "x64"]))
                .unwrap()
                .name,
            "linux"
        );
    }

    #[test]
    fn a_job_label_the_pool_lacks_means_no_match() {
        let p = pools(&[("linux", &["self-hosted", "linux", "x64"])]);
        assert!(
            p.match_job(&job(&["self-hosted", "linux", "gpu"]))
                .is_none()
        );
        assert!(p.match_job(&job(&["ubuntu-latest"])).is_none());
    }

    #[test]
    fn matching_ignores_case() {
        let p = pools(&[("linux", &["Self-Hosted", "Linux", "X64"])]);
        assert!(p.match_job(&job(&["self-hosted", "LINUX"])).is_some());
    }

    #[test]
    fn the_first_matching_pool_in_config_order_wins() {
        let p = pools(&[
            ("big", &["self-hosted", "linux", "x64", "large"]),
            ("small", &["self-hosted", "linux", "x64"]),
        ]);
        assert_eq!(p.match_job(&job(&["linux"])).unwrap().name, "big");
        assert_eq!(p.match_job(&job(&["large"])).unwrap().name, "big");
        let p = pools(&[
            ("small", &["self-hosted", "linux", "x64"]),
            ("big", &["self-hosted", "linux", "x64", "large"]),
        ]);
        assert_eq!(p.match_job(&job(&["linux"])).unwrap().name, "small");
        assert_eq!(p.match_job(&job(&["large"])).unwrap().name, "big");
    }

    #[test]
    fn no_pools_match_nothing() {
        assert!(Pools::default().match_job(&job(&["linux"])).is_none());
    }
}
