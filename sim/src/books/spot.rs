//! The Spot side of the books: tasks Spot interrupted before their runner took a job (the
//! job is still owed a runner: dockhand replaces it, on the pool's next capacity provider)
//! or during one (GitHub failed the job: failed by Spot, not lost by dockhand), and where
//! RunTask put tasks.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::model::{Interruption, Model, Task};

#[derive(Debug, Clone, Default)]
pub struct SpotBooks {
    /// Tasks Spot interrupted before their runner took a job (provisioning, or idle).
    pub before_job: usize,
    /// Tasks Spot interrupted while their runner ran a job.
    pub during_job: usize,
    /// The jobs those were running: GitHub failed them.
    pub failed_jobs: HashSet<u64>,
    /// Tasks started, by capacity provider (`launch type X` for those started without one).
    pub launches: BTreeMap<String, usize>,
    /// For each task interrupted before a job, the next task started for the same job (its
    /// replacement), by capacity provider; `none` where none was started (the job ran on
    /// another runner, or was cancelled, first).
    pub replacements: BTreeMap<String, usize>,
}

impl SpotBooks {
    pub fn read(model: &Model) -> Self {
        let mut books = Self::default();
        let mut by_job: HashMap<&str, Vec<&Task>> = HashMap::new();
        for task in model.tasks.values() {
            *books.launches.entry(provider(task)).or_default() += 1;
            if let Some(started_by) = &task.started_by {
                by_job.entry(started_by).or_default().push(task);
            }
            match task.interrupted {
                Some(Interruption::BeforeJob) => books.before_job += 1,
                Some(Interruption::DuringJob(job)) => {
                    books.during_job += 1;
                    books.failed_jobs.insert(job);
                }
                None => {}
            }
        }
        for tasks in by_job.values_mut() {
            tasks.sort_by_key(|t| t.created);
        }
        for task in model.tasks.values() {
            if task.interrupted != Some(Interruption::BeforeJob) {
                continue;
            }
            let stopped = task.stopped.unwrap_or(task.created);
            let next = task
                .started_by
                .as_deref()
                .and_then(|s| by_job.get(s))
                .and_then(|tasks| tasks.iter().find(|t| t.created >= stopped));
            let key = next.map_or_else(|| "none".to_string(), |t| provider(t));
            *books.replacements.entry(key).or_default() += 1;
        }
        books
    }

    /// Whether the soak ran on capacity providers at all (the report says so only then).
    pub fn in_play(&self) -> bool {
        self.before_job + self.during_job > 0
            || self.launches.keys().any(|p| !p.starts_with("launch type "))
    }
}

fn provider(task: &Task) -> String {
    match (&task.capacity_provider, &task.launch_type) {
        (Some(provider), _) => provider.clone(),
        (None, Some(launch_type)) => format!("launch type {launch_type}"),
        (None, None) => "launch type (none)".to_string(),
    }
}
