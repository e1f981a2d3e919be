//! What a soak found: the books' checks, the dead-letter queue against the injected
//! poison, secrets in the logs, and the figures to put in docs/benchmarks.md.

use std::collections::BTreeSet;
use std::fmt;
use std::io::BufRead;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::{Settling, SoakOptions};
use crate::books::{Books, WARM_HIT};
use crate::webhooks::WebhookStats;
use crate::world::World;

/// Strings that must never appear in a log line: installation tokens, JIT configs (the
/// simulator's all start so), the AWS secret key, any private key, and a field found only
/// in webhook bodies (the head commit).
pub const LEAK_MARKERS: [&str; 5] = [
    "ghs_",
    "simjit",
    "simsecret",
    "PRIVATE KEY",
    "4f1b2c3d5e6f708192a3b4c5d6e7f8091a2b3c4d",
];

/// How the processes fared.
#[derive(Debug, Clone, Default)]
pub struct Processes {
    pub kills: usize,
    /// Exits nobody asked for.
    pub crashes: usize,
    /// The final SIGTERM ended every process with status 0.
    pub clean_exit: bool,
    pub logs: Vec<PathBuf>,
}

/// A secret in a log line.
#[derive(Debug, Clone)]
pub struct Leak {
    pub file: PathBuf,
    pub line: usize,
    pub marker: String,
}

/// Every line of every log against the markers and the webhook secret. Returns the leaks
/// (at most 20) and how many lines were read.
pub fn scan_logs(logs: &[PathBuf], webhook_secret: &str) -> anyhow::Result<(Vec<Leak>, usize)> {
    let mut leaks = Vec::new();
    let mut lines = 0;
    for file in logs {
        let reader = std::io::BufReader::new(std::fs::File::open(file)?);
        for (n, line) in reader.lines().enumerate() {
            let line = line?;
            lines += 1;
            let found = LEAK_MARKERS
                .iter()
                .copied()
                .chain([webhook_secret])
                .find(|m| line.contains(m));
            if let Some(marker) = found
                && leaks.len() < 20
            {
                leaks.push(Leak {
                    file: file.clone(),
                    line: n + 1,
                    marker: marker.to_string(),
                });
            }
        }
    }
    Ok((leaks, lines))
}

/// The job ids of `dockhand dlq list --output json` (`None` for a message without one).
pub fn dead_letter_jobs(json: &str) -> anyhow::Result<Vec<Option<u64>>> {
    let entries: Value = serde_json::from_str(json)?;
    let entries = entries
        .as_array()
        .ok_or_else(|| anyhow::anyhow!("dlq list --output json printed no array"))?;
    Ok(entries
        .iter()
        .map(|e| e.get("job_id").and_then(Value::as_u64))
        .collect())
}

#[derive(Debug, Clone)]
pub struct SoakReport {
    pub seed: u64,
    pub time_scale: f64,
    pub jobs: usize,
    pub elapsed: Duration,
    /// Whether dockhand settled before the timeout: `settling` is `Settled`.
    pub settled: bool,
    /// Where settling stood when the books were read.
    pub settling: Settling,
    pub books: Books,
    pub processes: Processes,
    pub dead_letters: Vec<Option<u64>>,
    pub poison_jobs: Vec<u64>,
    pub leaks: Vec<Leak>,
    pub log_lines: usize,
    /// (events, attempts, accepted, failed, lost, duplicated, held back)
    pub webhooks: [u64; 7],
    pub github_faults: Vec<(String, u64)>,
    pub ecs_faults: Vec<(String, u64)>,
    pub ecs_throttled: u64,
    /// Calls the simulated APIs answered, by endpoint or operation.
    pub github_calls: Vec<(&'static str, u64)>,
    pub ecs_calls: Vec<(&'static str, u64)>,
    pub failures: Vec<String>,
}

impl SoakReport {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        books: Books,
        options: &SoakOptions,
        elapsed: Duration,
        settling: Settling,
        processes: Processes,
        dead_letters: Vec<Option<u64>>,
        poison_jobs: Vec<u64>,
        (leaks, log_lines): (Vec<Leak>, usize),
        world: &World,
    ) -> Self {
        let s = &world.webhooks.stats;
        let webhooks = [
            &s.events,
            &s.attempts,
            &s.accepted,
            &s.failed,
            &s.lost,
            &s.duplicated,
            &s.held,
        ]
        .map(WebhookStats::get);
        let mut report = Self {
            seed: options.sim.seed,
            time_scale: options.sim.time_scale,
            jobs: options.jobs,
            elapsed,
            settled: settling == Settling::Settled,
            settling,
            failures: Vec::new(),
            books,
            processes,
            dead_letters,
            poison_jobs,
            leaks,
            log_lines,
            webhooks,
            github_faults: world.github.faults.injected(),
            ecs_faults: world.ecs.faults.injected(),
            ecs_throttled: *world.ecs.throttled.lock().unwrap(),
            github_calls: world.github.calls(),
            ecs_calls: world.ecs.calls(),
        };
        report.failures = report.check(
            options
                .leftovers_fail
                .then_some(options.warm.min_idle as usize),
            &world.webhooks.queued_accepted.lock().unwrap(),
        );
        report
    }

    fn check(
        &self,
        warm_left: Option<usize>,
        delivered: &std::collections::HashSet<u64>,
    ) -> Vec<String> {
        let mut failures = self.books.failures(warm_left);
        if let Some(pending) = self.settling.pending() {
            failures.push(format!("dockhand did not settle by the timeout: {pending}"));
        }
        let dead: BTreeSet<Option<u64>> = self.dead_letters.iter().copied().collect();
        let poison: BTreeSet<Option<u64>> = self
            .poison_jobs
            .iter()
            .filter(|j| delivered.contains(j))
            .map(|j| Some(*j))
            .collect();
        let unexpected: Vec<String> = dead.difference(&poison).map(|j| format!("{j:?}")).collect();
        if !unexpected.is_empty() {
            failures.push(format!(
                "dead-lettered but not poison: {}",
                unexpected.join(", ")
            ));
        }
        let kept: Vec<String> = poison.difference(&dead).map(|j| format!("{j:?}")).collect();
        if !kept.is_empty() {
            failures.push(format!("poison not dead-lettered: {}", kept.join(", ")));
        }
        for leak in &self.leaks {
            failures.push(format!(
                "a secret ({}) in {}:{}",
                leak.marker,
                leak.file.display(),
                leak.line
            ));
        }
        if self.processes.crashes > 0 {
            failures.push(format!(
                "{} process exits nobody asked for",
                self.processes.crashes
            ));
        }
        if !self.processes.clean_exit {
            failures.push("the final SIGTERM did not end every process with status 0".into());
        }
        failures
    }

    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

impl fmt::Display for SoakReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.books;
        let [events, attempts, accepted, failed, lost, duplicated, held] = self.webhooks;
        writeln!(
            f,
            "seed {}, {} jobs, {:.1} s, settled: {}",
            self.seed,
            self.jobs,
            self.elapsed.as_secs_f64(),
            self.settled
        )?;
        writeln!(
            f,
            "jobs: {} ran on dockhand's runners, {} on strangers', {} cancelled while queued, {} poison, {} unfinished",
            b.ran_on_dockhand,
            b.ran_on_strangers,
            b.cancelled_while_queued,
            b.poison,
            b.unfinished.len()
        )?;
        let (scale, w) = (self.time_scale, &b.wait);
        writeln!(
            f,
            "job wait, queued to started (simulated s; real = /{scale}): {} jobs, p50 {:.1}, p90 {:.1}, p99 {:.1}, max {:.1}; started within {} s (warm hits): {:.1}% ({})",
            w.jobs,
            w.p50,
            w.p90,
            w.p99,
            w.max,
            WARM_HIT.as_secs(),
            w.warm_hit_share() * 100.0,
            w.warm_hits
        )?;
        if w.warm_tasks > 0 {
            writeln!(
                f,
                "warm runners: {} launched (for no job), {} jobs ran on them",
                w.warm_tasks, w.on_warm_runners
            )?;
        }
        writeln!(
            f,
            "launches: {} owed, {} runners launched ({} surplus), {} for jobs cancelled or taken first, {} owed jobs ran on a surplus runner instead, {} jobs with two",
            b.owed,
            b.launched,
            b.launched.saturating_sub(b.owed),
            b.spare_launches,
            b.served_by_surplus,
            b.launched_twice.len()
        )?;
        writeln!(
            f,
            "tasks: {} started, {} died before registering, {} came up to a deleted registration, {} RunTask replays by client token",
            b.tasks, b.tasks_died, b.tasks_refused, b.client_token_replays
        )?;
        if b.spot.in_play() {
            let list = |counts: &std::collections::BTreeMap<String, usize>| {
                let counts: Vec<String> = counts.iter().map(|(p, n)| format!("{n} {p}")).collect();
                if counts.is_empty() {
                    "none".to_string()
                } else {
                    counts.join(", ")
                }
            };
            writeln!(
                f,
                "spot: {} tasks interrupted before their runner took a job (replacements started on: {}), {} during a job (failed by Spot, not lost by dockhand); tasks started by capacity provider: {}",
                b.spot.before_job,
                list(&b.spot.replacements),
                b.spot.during_job,
                list(&b.spot.launches)
            )?;
        }
        writeln!(
            f,
            "idle runners (simulated): {:.0} runner-seconds online and idle, {:.1} per owed job",
            b.idle_runner_secs, b.idle_secs_per_job
        )?;
        writeln!(
            f,
            "left behind: {} tasks not stopped, {} registrations, {} idle runners; busy runners killed: {}, deletes refused as busy: {}",
            b.tasks_left,
            b.registrations_left,
            b.idle_runners_left,
            b.busy_runners_killed,
            b.delete_busy_refused
        )?;
        writeln!(
            f,
            "webhooks: {events} events, {attempts} attempts, {accepted} accepted, {failed} failed, {lost} lost, {duplicated} duplicated, {held} held back"
        )?;
        writeln!(
            f,
            "processes: {} kill -9, {} crashes, clean exit: {}; dead letters {} (poison {}); {} log lines, {} leaks",
            self.processes.kills,
            self.processes.crashes,
            self.processes.clean_exit,
            self.dead_letters.len(),
            self.poison_jobs.len(),
            self.log_lines,
            self.leaks.len()
        )?;
        writeln!(
            f,
            "faults: GitHub {:?}; ECS {:?}, {} throttled",
            self.github_faults, self.ecs_faults, self.ecs_throttled
        )?;
        writeln!(
            f,
            "calls: GitHub {:?}; ECS {:?}",
            self.github_calls, self.ecs_calls
        )?;
        if self.failures.is_empty() {
            writeln!(f, "PASSED")
        } else {
            writeln!(f, "FAILED:")?;
            for failure in &self.failures {
                writeln!(f, "  - {failure}")?;
            }
            Ok(())
        }
    }
}
