//! What an ingress outage found: how many jobs' `queued` deliveries failed, how many
//! redeliveries dockhand asked for and how many brought a job back, how long after the
//! outage the last of those jobs started, and the two failures (a job that never got a
//! runner, a job given two that did not need a replacement).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::time::Duration;

use super::{IngressOutageSoak, OutageKind};
use crate::books::{Books, WaitBooks};
use crate::clock::SimTime;
use crate::soak::SoakOptions;
use crate::world::World;

/// What the run left for the report.
pub(super) struct Run {
    pub books: Books,
    /// Each job's first RunTask accepted (of a runner launched for it).
    pub launches: HashMap<u64, SimTime>,
    /// When each job started (a runner, any, took it).
    pub started: HashMap<u64, SimTime>,
    /// Jobs still queued.
    pub queued: Vec<u64>,
    /// Of the jobs given two runners, those whose first runner ran another job.
    pub replaced: Vec<u64>,
    /// When the outage ended (simulated time).
    pub outage_end: SimTime,
    /// Whether every job started, and (with the recovery loop on) every `queued` event
    /// that failed was delivered since, before the soak stopped waiting.
    pub settled: bool,
    /// dockhand's `dockhand_webhook_redeliveries_total` by outcome.
    pub metrics: Vec<(String, f64)>,
    pub leaks: usize,
    pub crashes: usize,
    pub kills: usize,
    pub clean_exit: bool,
    pub elapsed: Duration,
}

#[derive(Debug, Clone)]
pub struct OutageReport {
    pub seed: u64,
    pub time_scale: f64,
    pub jobs: usize,
    pub kind: OutageKind,
    /// The outage's window after the first delivery (real time).
    pub after: Duration,
    pub lasting: Duration,
    pub recovery: bool,
    pub env: Vec<(String, String)>,
    /// Delivery attempts logged, and those that failed.
    pub attempts: usize,
    pub failed_attempts: usize,
    /// Attempts that were redeliveries (of a guid logged before), and those accepted.
    pub redelivered: usize,
    pub redelivered_ok: usize,
    /// Jobs whose `queued` delivery failed at least once; of them, those whose `queued`
    /// delivery was accepted later.
    pub queued_failed: usize,
    pub queued_recovered: usize,
    /// Redelivery requests the simulated GitHub received (`POST .../attempts`), those it
    /// accepted (202), and reads of the delivery log (`GET /app/hook/deliveries`).
    pub redeliver_posts: u64,
    pub redeliveries_accepted: u64,
    pub log_reads: u64,
    /// dockhand's own count of redeliveries, by outcome.
    pub metrics: Vec<(String, f64)>,
    /// Jobs that never started (no runner took them); of them, those whose `queued`
    /// delivery never got through.
    pub lost: Vec<u64>,
    pub lost_undelivered: usize,
    /// Jobs no runner was launched for (some ran on a runner launched for another).
    pub not_launched_for: usize,
    /// Runners launched for jobs (the books' count).
    pub runners: usize,
    /// Jobs given two runners or more, but for replacements: those whose first runner ran
    /// another job.
    pub duplicates: Vec<u64>,
    pub replaced: usize,
    /// From the outage's end until each job whose `queued` delivery had failed started
    /// (simulated seconds): the median and the last; and until the last of them had a
    /// runner of its own (its RunTask accepted).
    pub recovery_p50: Option<f64>,
    pub recovery_last: Option<f64>,
    pub recovery_last_launch: Option<f64>,
    /// Every job's wait, queued to started (simulated): jobs after the outage wait too,
    /// when runners launched for them run older jobs.
    pub wait: WaitBooks,
    /// Every job started and every failed `queued` event was delivered since (recovery
    /// on) before the soak stopped waiting.
    pub settled: bool,
    pub leaks: usize,
    pub crashes: usize,
    pub kills: usize,
    pub clean_exit: bool,
    pub elapsed: Duration,
}

impl OutageReport {
    pub(super) fn new(
        options: &SoakOptions,
        outage: &IngressOutageSoak,
        world: &World,
        run: Run,
    ) -> Self {
        let delivered = world.webhooks.queued_accepted.lock().unwrap().clone();
        let log = world.webhooks.log.lock().unwrap();
        let (mut attempts, mut failed_attempts, mut redelivered, mut redelivered_ok) = (0, 0, 0, 0);
        let mut queued_failed = HashSet::new();
        for d in log.all() {
            attempts += 1;
            let ok = d.attempt.succeeded();
            failed_attempts += usize::from(!ok);
            redelivered += usize::from(d.redelivery);
            redelivered_ok += usize::from(d.redelivery && ok);
            if d.action == "queued" && !ok {
                queued_failed.insert(d.job);
            }
        }
        drop(log);
        let after_outage = |at: &HashMap<u64, SimTime>| {
            let mut waits: Vec<f64> = queued_failed
                .iter()
                .filter_map(|job| at.get(job))
                .map(|at| at.saturating_sub(run.outage_end).as_secs_f64())
                .collect();
            waits.sort_by(f64::total_cmp);
            waits
        };
        let (waits, launch_waits) = (after_outage(&run.started), after_outage(&run.launches));
        let mut lost = run.queued.clone();
        lost.sort_unstable();
        let duplicates: Vec<u64> = (run.books.launched_twice.iter())
            .filter(|j| !run.replaced.contains(j))
            .copied()
            .collect();
        let calls: BTreeMap<&str, u64> = world.github.calls().into_iter().collect();
        let call = |endpoint| calls.get(endpoint).copied().unwrap_or(0);
        Self {
            seed: options.sim.seed,
            time_scale: options.sim.time_scale,
            jobs: options.jobs,
            kind: outage.kind,
            after: outage.after,
            lasting: outage.lasting,
            recovery: outage.recovery,
            env: outage.dockhand_env(),
            attempts,
            failed_attempts,
            redelivered,
            redelivered_ok,
            queued_failed: queued_failed.len(),
            queued_recovered: queued_failed
                .iter()
                .filter(|j| delivered.contains(j))
                .count(),
            redeliver_posts: call("redeliver"),
            redeliveries_accepted: world
                .webhooks
                .stats
                .redeliveries
                .load(std::sync::atomic::Ordering::Relaxed),
            log_reads: call("deliveries"),
            metrics: run.metrics,
            lost_undelivered: lost.iter().filter(|j| !delivered.contains(j)).count(),
            lost,
            not_launched_for: options.jobs.saturating_sub(run.launches.len()),
            runners: run.books.launched,
            duplicates,
            replaced: run.replaced.len(),
            recovery_p50: waits.get(waits.len() / 2).copied(),
            recovery_last: waits.last().copied(),
            recovery_last_launch: launch_waits.last().copied(),
            wait: run.books.wait.clone(),
            settled: run.settled,
            leaks: run.leaks,
            crashes: run.crashes,
            kills: run.kills,
            clean_exit: run.clean_exit,
            elapsed: run.elapsed,
        }
    }

    /// What failed: a job given two runners (but for a replacement), a crash, a secret in
    /// a log, or (with the recovery loop on) a job that never started. The baseline is
    /// expected to lose jobs.
    pub fn failures(&self) -> Vec<String> {
        let mut failures = Vec::new();
        if self.recovery && !self.lost.is_empty() {
            failures.push(format!(
                "{} jobs lost (never started){}",
                self.lost.len(),
                sample(&self.lost)
            ));
        }
        if !self.duplicates.is_empty() {
            failures.push(format!(
                "{} jobs given two runners{}",
                self.duplicates.len(),
                sample(&self.duplicates)
            ));
        }
        if self.crashes > 0 {
            failures.push(format!("{} exits nobody asked for", self.crashes));
        }
        if self.leaks > 0 {
            failures.push(format!("{} secrets in dockhand's logs", self.leaks));
        }
        if !self.clean_exit {
            failures.push("the final SIGTERM did not end dockhand with status 0".into());
        }
        failures
    }

    pub fn passed(&self) -> bool {
        self.failures().is_empty()
    }

    /// dockhand's count of one outcome.
    fn metric(&self, outcome: &str) -> String {
        self.metrics
            .iter()
            .find(|(o, _)| o == outcome)
            .map_or("-".into(), |(_, n)| format!("{n:.0}"))
    }

    /// Simulated seconds, and the real ones dockhand lived through.
    fn secs(&self, sim: Option<f64>) -> String {
        sim.map_or("-".into(), |s| {
            format!("{:.1} s ({s:.0} simulated)", s / self.time_scale)
        })
    }

    /// The run as a row of docs/benchmarks.md's table.
    pub fn row(&self) -> String {
        format!(
            "| {} | {} | {:.0} s after {:.0} s | {} | {} | {} | {} ({} accepted) | {} | {} | {} ({} replacements) | {} |",
            if self.recovery {
                "recovery"
            } else {
                "baseline"
            },
            self.kind.as_str(),
            self.lasting.as_secs_f64(),
            self.after.as_secs_f64(),
            self.seed,
            self.jobs,
            self.queued_failed,
            self.redeliver_posts,
            self.redeliveries_accepted,
            self.queued_recovered,
            self.lost.len(),
            self.duplicates.len(),
            self.replaced,
            self.secs(self.recovery_last),
        )
    }

    pub const ROW_HEADER: &'static str = "| dockhand | outage | window | seed | jobs | queued deliveries failed | redelivery requests | jobs delivered later | lost | duplicates | last of them started, after the outage (real) |\n|---|---|---|---|---|---|---|---|---|---|---|";
}

impl fmt::Display for OutageReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "ingress outage: {} jobs, outage {} for {:.0} s from {:.0} s after the first delivery (real), recovery loop {}, seed {}, time scale {}",
            self.jobs,
            self.kind.as_str(),
            self.lasting.as_secs_f64(),
            self.after.as_secs_f64(),
            if self.recovery {
                "on"
            } else {
                "off (baseline)"
            },
            self.seed,
            self.time_scale
        )?;
        let env: Vec<String> = self.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        writeln!(f, "dockhand's environment: {}", env.join(" "))?;
        writeln!(
            f,
            "deliveries: {} attempts logged, {} failed; {} redeliveries, {} accepted",
            self.attempts, self.failed_attempts, self.redelivered, self.redelivered_ok
        )?;
        writeln!(
            f,
            "jobs whose queued delivery failed at least once: {}; delivered later: {}",
            self.queued_failed, self.queued_recovered
        )?;
        writeln!(
            f,
            "GitHub: {} redelivery requests (POST /app/hook/deliveries/{{id}}/attempts), {} accepted; {} delivery log reads",
            self.redeliver_posts, self.redeliveries_accepted, self.log_reads
        )?;
        writeln!(
            f,
            "dockhand_webhook_redeliveries_total: requested {}, recovered {}, refused {}, exhausted {}",
            self.metric("requested"),
            self.metric("recovered"),
            self.metric("refused"),
            self.metric("exhausted")
        )?;
        writeln!(
            f,
            "after the outage, each job whose queued delivery had failed started: median {}, last {}; the last of them had a runner of its own {}{}",
            self.secs(self.recovery_p50),
            self.secs(self.recovery_last),
            self.secs(self.recovery_last_launch),
            if self.settled {
                ""
            } else {
                "; the soak stopped waiting before every job had started and every failed queued event had been delivered"
            }
        )?;
        let w = &self.wait;
        writeln!(
            f,
            "job wait, queued to started, all {} jobs that started: p50 {}, p90 {}, max {}",
            w.jobs,
            self.secs(Some(w.p50)),
            self.secs(Some(w.p90)),
            self.secs(Some(w.max))
        )?;
        writeln!(
            f,
            "runners: {} launched for {} jobs; {} jobs had none launched for them; {} replaced (their first runner ran another job)",
            self.runners, self.jobs, self.not_launched_for, self.replaced
        )?;
        writeln!(
            f,
            "lost jobs (never started): {}, {} of them never delivered{}{}; duplicates (a job given two runners, not replacements): {}{}",
            self.lost.len(),
            self.lost_undelivered,
            if self.recovery || self.lost.is_empty() {
                ""
            } else {
                " (expected without the recovery loop)"
            },
            sample(&self.lost),
            self.duplicates.len(),
            sample(&self.duplicates)
        )?;
        writeln!(
            f,
            "processes: {} kill -9, {} crashes, clean exit {}; {} leaks; {:.1} s in all",
            self.kills,
            self.crashes,
            self.clean_exit,
            self.leaks,
            self.elapsed.as_secs_f64()
        )?;
        let failures = self.failures();
        if failures.is_empty() {
            writeln!(f, "PASSED")
        } else {
            writeln!(f, "FAILED: {}", failures.join("; "))
        }
    }
}

/// A few job ids, to look up with `dockhand jobs show`.
fn sample(jobs: &[u64]) -> String {
    if jobs.is_empty() {
        return String::new();
    }
    let shown: Vec<String> = jobs.iter().take(5).map(u64::to_string).collect();
    format!(" (e.g. {})", shown.join(", "))
}

/// A Prometheus counter's series summed by one label's values, from a `/metrics` text.
pub(super) fn counters(text: &str, name: &str, label: &str) -> Vec<(String, f64)> {
    let mut by: BTreeMap<String, f64> = BTreeMap::new();
    let prefix = format!("{name}{{");
    let key = format!("{label}=\"");
    for line in text.lines().filter(|l| l.starts_with(&prefix)) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Some(start) = series.find(&key).map(|i| i + key.len()) else {
            continue;
        };
        let Some(len) = series[start..].find('"') else {
            continue;
        };
        if let Ok(value) = value.parse::<f64>() {
            *by.entry(series[start..start + len].to_string())
                .or_default() += value;
        }
    }
    by.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_summed_by_the_label() {
        let text = "# TYPE dockhand_webhook_redeliveries_total counter\n\
            dockhand_webhook_redeliveries_total{app=\"1\",outcome=\"requested\"} 7\n\
            dockhand_webhook_redeliveries_total{app=\"2\",outcome=\"requested\"} 3\n\
            dockhand_webhook_redeliveries_total{outcome=\"exhausted\"} 1\n\
            dockhand_webhook_redeliveries_totally{outcome=\"requested\"} 100\n";
        let counts = counters(text, "dockhand_webhook_redeliveries_total", "outcome");
        assert_eq!(
            counts,
            [
                ("exhausted".to_string(), 1.0),
                ("requested".to_string(), 10.0)
            ]
        );
        assert!(counters("", "x", "y").is_empty());
    }
}
