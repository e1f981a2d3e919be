//! One run's numbers, and the tables that show them.

use std::collections::BTreeMap;
use std::time::Duration;

/// Targets from issue 3.
pub const MAX_GITHUB_CALLS_PER_RUNNER: f64 = 1.02;
pub const MAX_PEAK_RSS_MIB: f64 = 64.0;

/// What one run measured.
#[derive(Debug, Clone, Default)]
pub struct RunResult {
    pub worker_concurrency: usize,
    pub jobs: usize,
    pub deliveries: usize,
    /// First webhook sent to last delivery answered.
    pub ingress_secs: f64,
    /// First webhook sent to the last distinct job's first RunTask.
    pub launch_secs: f64,
    pub jobs_per_sec: f64,
    /// First delivery sent → first RunTask received, ms.
    pub latency_ms: Percentiles,
    /// First delivery's 202 received → first RunTask received, ms.
    pub latency_after_202_ms: Percentiles,
    pub launched: usize,
    pub github_calls: u64,
    pub github_by_endpoint: BTreeMap<&'static str, u64>,
    pub github_per_runner: f64,
    pub ecs_calls: u64,
    pub ecs_by_operation: BTreeMap<String, u64>,
    pub ecs_per_runner: f64,
    pub peak_rss_mib: f64,
    pub rss_mib: f64,
    pub threads: u64,
    /// CPU seconds used from the first webhook to the end of the settle period.
    pub dockhand_cpu_secs: f64,
    /// The same for the harness process (clients and fakes).
    pub harness_cpu_secs: f64,
    /// RunTask calls beyond one per job (and any naming no job).
    pub duplicate_run_tasks: u64,
    /// JIT registrations beyond one per job.
    pub duplicate_registrations: u64,
    /// Jobs with no RunTask.
    pub lost: usize,
    pub lost_sample: Vec<u64>,
    /// The 99th percentile of `dockhand_store_write_seconds` and
    /// `dockhand_queue_write_seconds`, all ops together, in ms (a bucket's upper bound).
    pub store_write_p99_ms: Option<f64>,
    pub queue_write_p99_ms: Option<f64>,
    /// Writes over 25 ms, by op, for the store and the queue.
    pub slow_store_writes: Vec<(String, f64)>,
    pub slow_queue_writes: Vec<(String, f64)>,
    /// How many store and queue writes took over 10 ms.
    pub writes_over_10ms: [f64; 2],
    /// First delivery sent → its 202, ms (the ingress's share of the latency).
    pub ingress_ms: Percentiles,
    /// The five slowest jobs: (seconds into the run, sent → RunTask in ms).
    pub slowest_launches: Vec<(f64, f64)>,
    /// The five slowest deliveries: (seconds into the run, sent → 202 in ms).
    pub slowest_ingress: Vec<(f64, f64)>,
    /// `dockhand_jobs_total` by outcome.
    pub jobs_total: Vec<(String, f64)>,
    /// `status outcome` → count, as the ingress answered.
    pub answers: BTreeMap<String, u64>,
    pub exit: String,
    pub exit_ok: bool,
    /// Lines dockhand logged (at warn or above).
    pub log_lines: usize,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Percentiles {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles of `samples`.
    pub fn of(samples: &mut [Duration]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_unstable();
        let at = |p: f64| {
            let rank = ((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
            samples[rank - 1].as_secs_f64() * 1000.0
        };
        Self {
            p50: at(0.50),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok { "ok" } else { "MISSED" }
}

impl RunResult {
    pub fn correct(&self) -> bool {
        self.lost == 0
            && self.duplicate_run_tasks == 0
            && self.duplicate_registrations == 0
            && self.exit_ok
    }

    /// The run in detail, for the terminal.
    pub fn print(&self, label: &str) {
        println!(
            "\n--- {label}: worker.concurrency = {} ---",
            self.worker_concurrency
        );
        let rows: Vec<(&str, String)> = vec![
            (
                "jobs / deliveries",
                format!("{} / {}", self.jobs, self.deliveries),
            ),
            ("ingress answers", format!("{:?}", self.answers)),
            (
                "all webhooks answered in",
                format!("{:.2} s", self.ingress_secs),
            ),
            (
                "last distinct RunTask at",
                format!("{:.2} s", self.launch_secs),
            ),
            ("throughput", format!("{:.0} jobs/s", self.jobs_per_sec)),
            (
                "webhook sent -> RunTask",
                format!(
                    "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                    self.latency_ms.p50, self.latency_ms.p99, self.latency_ms.max
                ),
            ),
            (
                "write latency p99 (bucket)",
                format!(
                    "store {}, queue {}",
                    ms_or_dash(self.store_write_p99_ms),
                    ms_or_dash(self.queue_write_p99_ms)
                ),
            ),
            (
                "writes over 25 ms, by op",
                format!(
                    "store {:?}, queue {:?}",
                    self.slow_store_writes, self.slow_queue_writes
                ),
            ),
            (
                "writes over 10 ms",
                format!(
                    "store {}, queue {}",
                    self.writes_over_10ms[0], self.writes_over_10ms[1]
                ),
            ),
            (
                "webhook sent -> 202",
                format!(
                    "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                    self.ingress_ms.p50, self.ingress_ms.p99, self.ingress_ms.max
                ),
            ),
            (
                "slowest sent -> RunTask (at s: ms)",
                at_ms(&self.slowest_launches),
            ),
            (
                "slowest sent -> 202 (at s: ms)",
                at_ms(&self.slowest_ingress),
            ),
            (
                "202 received -> RunTask",
                format!(
                    "p50 {:.1} ms, p99 {:.1} ms",
                    self.latency_after_202_ms.p50, self.latency_after_202_ms.p99
                ),
            ),
            (
                "GitHub calls / runner",
                format!(
                    "{:.4} ({} calls, {} runners: {:?}) [{}]",
                    self.github_per_runner,
                    self.github_calls,
                    self.launched,
                    self.github_by_endpoint,
                    verdict(self.github_per_runner <= MAX_GITHUB_CALLS_PER_RUNNER)
                ),
            ),
            (
                "ECS calls / runner",
                format!(
                    "{:.4} ({} calls: {:?})",
                    self.ecs_per_runner, self.ecs_calls, self.ecs_by_operation
                ),
            ),
            (
                "peak RSS (VmHWM)",
                format!(
                    "{:.1} MiB (now {:.1} MiB, {} threads) [{}]",
                    self.peak_rss_mib,
                    self.rss_mib,
                    self.threads,
                    verdict(self.peak_rss_mib <= MAX_PEAK_RSS_MIB)
                ),
            ),
            (
                "CPU used (user+sys)",
                format!(
                    "dockhand {:.2} s ({:.2} ms/job), harness+fakes {:.2} s",
                    self.dockhand_cpu_secs,
                    self.dockhand_cpu_secs * 1000.0 / self.jobs as f64,
                    self.harness_cpu_secs
                ),
            ),
            (
                "duplicate RunTasks",
                format!(
                    "{} [{}]",
                    self.duplicate_run_tasks,
                    verdict(self.duplicate_run_tasks == 0)
                ),
            ),
            (
                "duplicate JIT registrations",
                format!(
                    "{} [{}]",
                    self.duplicate_registrations,
                    verdict(self.duplicate_registrations == 0)
                ),
            ),
            (
                "jobs lost",
                format!(
                    "{} {:?} [{}]",
                    self.lost,
                    self.lost_sample,
                    verdict(self.lost == 0)
                ),
            ),
            ("dockhand_jobs_total", format!("{:?}", self.jobs_total)),
            ("dockhand log lines (warn+)", self.log_lines.to_string()),
            (
                "exit after SIGTERM",
                format!("{} [{}]", self.exit, verdict(self.exit_ok)),
            ),
        ];
        for (name, value) in rows {
            println!("  {name:<28} {value}");
        }
    }
}

fn ms_or_dash(ms: Option<f64>) -> String {
    ms.map_or("-".into(), |ms| format!("≤ {ms} ms"))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// One Markdown table row per run and a median row per concurrency (worst case for the
/// correctness columns), ready to paste.
pub fn print_markdown(results: &[RunResult]) {
    println!(
        "\n| concurrency | run | jobs/s | p50 ms | p99 ms | max ms | store write p99 ms | queue write p99 ms | GitHub calls/runner | ECS calls/runner | peak RSS MiB | dup RunTask | dup JIT | lost | exit |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut concurrencies: Vec<usize> = results.iter().map(|r| r.worker_concurrency).collect();
    concurrencies.dedup();
    for c in concurrencies {
        let runs: Vec<&RunResult> = results
            .iter()
            .filter(|r| r.worker_concurrency == c)
            .collect();
        for (i, r) in runs.iter().enumerate() {
            println!(
                "| {c} | {} | {:.0} | {:.1} | {:.1} | {:.1} | {} | {} | {:.4} | {:.4} | {:.1} | {} | {} | {} | {} |",
                i + 1,
                r.jobs_per_sec,
                r.latency_ms.p50,
                r.latency_ms.p99,
                r.latency_ms.max,
                ms_or_dash(r.store_write_p99_ms),
                ms_or_dash(r.queue_write_p99_ms),
                r.github_per_runner,
                r.ecs_per_runner,
                r.peak_rss_mib,
                r.duplicate_run_tasks,
                r.duplicate_registrations,
                r.lost,
                r.exit
            );
        }
        let m = |f: fn(&RunResult) -> f64| median(runs.iter().map(|r| f(r)).collect());
        println!(
            "| **{c}** | **median** | **{:.0}** | **{:.1}** | **{:.1}** | **{:.1}** | | | **{:.4}** | **{:.4}** | **{:.1}** | {} | {} | {} | {} |",
            m(|r| r.jobs_per_sec),
            m(|r| r.latency_ms.p50),
            m(|r| r.latency_ms.p99),
            m(|r| r.latency_ms.max),
            m(|r| r.github_per_runner),
            m(|r| r.ecs_per_runner),
            m(|r| r.peak_rss_mib),
            runs.iter()
                .map(|r| r.duplicate_run_tasks)
                .max()
                .unwrap_or(0),
            runs.iter()
                .map(|r| r.duplicate_registrations)
                .max()
                .unwrap_or(0),
            runs.iter().map(|r| r.lost).max().unwrap_or(0),
            if runs.iter().all(|r| r.exit_ok) {
                "0"
            } else {
                "FAILED"
            },
        );
    }
}

/// `(seconds into the run, ms)` pairs as `at: ms, ...`.
fn at_ms(pairs: &[(f64, f64)]) -> String {
    pairs
        .iter()
        .map(|(at, ms)| format!("{at:.2}: {ms:.1}"))
        .collect::<Vec<_>>()
        .join(", ")
}
