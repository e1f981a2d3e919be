//! Load harness for dockhand's workers (issue 3): the real `dockhand serve` against fast
//! in-process fakes of GitHub and ECS, fed 1,000 queued jobs of which 30% are delivered
//! twice. It reports throughput, the latency dockhand adds from webhook to RunTask, calls
//! per runner, peak RSS, duplicates and lost jobs. See docs/benchmarks.md, "Workers (issue 3)".
//!
//! ```sh
//! cargo bench --bench load                                  # one run, concurrency 32
//! cargo bench --bench load -- --runs 3 --concurrency 8,32,64
//! ```
//!
//! It is a harness, not a test: under `cargo test` / `cargo nextest` (which run bench
//! targets without `--bench`) it does nothing and lists no tests.

mod dockhand;
mod fake_ecs;
mod fake_github;
mod report;
mod traffic;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::dockhand::{ChildConfig, Dockhand, cpu_secs, histogram_p99, slower_than, sum_by_label};
use crate::fake_ecs::FakeEcs;
use crate::fake_github::FakeGitHub;
use crate::report::{Percentiles, RunResult};
use crate::traffic::Traffic;

const APP_ID: u64 = 31337;

/// Command-line options (after `cargo bench --bench load --`).
#[derive(Debug, Clone)]
struct Options {
    jobs: usize,
    duplicate_percent: usize,
    clients: usize,
    /// Deliveries per second; `None` sends as fast as the clients go (a burst).
    rate: Option<f64>,
    concurrency: Vec<usize>,
    runs: usize,
    timeout: Duration,
    settle: Duration,
    seed: u64,
    /// Where dockhand keeps jobs and runners.
    store: StoreKind,
}

/// The store the child runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StoreKind {
    /// A SQLite file beside the embedded queue (single node).
    Sqlite,
    /// A fresh database on the Postgres server at `$DOCKHAND_TEST_DATABASE_URL` (default
    /// `postgres://postgres@127.0.0.1:5432/postgres`), dropped after the run.
    Postgres,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            jobs: 1000,
            duplicate_percent: 30,
            clients: 32,
            rate: None,
            concurrency: vec![32],
            runs: 1,
            timeout: Duration::from_secs(120),
            settle: Duration::from_secs(3),
            seed: 3,
            store: StoreKind::Sqlite,
        }
    }
}

const USAGE: &str = "cargo bench --bench load -- [--jobs N] [--duplicates PERCENT] [--clients N] \
[--rate PER_SEC] [--concurrency N[,N...]] [--runs N] [--timeout SECS] [--settle SECS] [--seed N] \
[--store sqlite|postgres]";

impl Options {
    fn parse(args: &[String]) -> anyhow::Result<Self> {
        let mut o = Self::default();
        let mut args = args.iter();
        while let Some(flag) = args.next() {
            if flag == "--bench" {
                continue;
            }
            let value = args
                .next()
                .with_context(|| format!("{flag} needs a value; {USAGE}"))?;
            let number = || {
                value
                    .parse::<u64>()
                    .with_context(|| format!("{flag}: not a number: {value}"))
            };
            match flag.as_str() {
                "--jobs" => o.jobs = number()? as usize,
                "--duplicates" => o.duplicate_percent = number()? as usize,
                "--clients" => o.clients = number()? as usize,
                "--rate" => o.rate = Some(number()? as f64).filter(|r| *r > 0.0),
                "--runs" => o.runs = number()? as usize,
                "--timeout" => o.timeout = Duration::from_secs(number()?),
                "--settle" => o.settle = Duration::from_secs(number()?),
                "--seed" => o.seed = number()?,
                "--store" => {
                    o.store = match value.as_str() {
                        "sqlite" => StoreKind::Sqlite,
                        "postgres" => StoreKind::Postgres,
                        other => anyhow::bail!("--store: sqlite or postgres, not {other}"),
                    }
                }
                "--concurrency" => {
                    o.concurrency = value
                        .split(',')
                        .map(|c| c.trim().parse::<usize>())
                        .collect::<Result<_, _>>()
                        .with_context(|| format!("--concurrency: {value}"))?
                }
                _ => anyhow::bail!("unknown option {flag}; {USAGE}"),
            }
        }
        anyhow::ensure!(o.duplicate_percent <= 100, "--duplicates is a percentage");
        anyhow::ensure!(
            o.jobs > 0 && o.clients > 0 && o.runs > 0,
            "counts must be positive"
        );
        Ok(o)
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        // `cargo test --all-targets` and nextest run bench targets as tests: list none, run
        // nothing. Only `cargo bench` passes --bench.
        if !args.iter().any(|a| a == "--list") {
            eprintln!("the load harness runs only under `cargo bench --bench load`");
        }
        return ExitCode::SUCCESS;
    }
    let options = match Options::parse(&args) {
        Ok(o) => o,
        Err(err) => {
            eprintln!("error: {err:#}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(run_all(&options)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Every run of every concurrency; false when a run lost, duplicated or failed to exit.
async fn run_all(options: &Options) -> anyhow::Result<bool> {
    println!(
        "load: {} jobs, {}% delivered twice, {} clients at {}, worker.concurrency {:?}, {} run(s) each, store {:?}; machine: {} cores, {}",
        options.jobs,
        options.duplicate_percent,
        options.clients,
        options
            .rate
            .map_or("full speed".to_string(), |r| format!("{r} deliveries/s")),
        options.concurrency,
        options.runs,
        options.store,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model(),
    );
    let mut results = Vec::new();
    for &concurrency in &options.concurrency {
        for run in 1..=options.runs {
            let result = run_once(options, concurrency).await?;
            result.print(&format!("run {run}/{}", options.runs));
            results.push(result);
        }
    }
    report::print_markdown(&results);
    Ok(results.iter().all(RunResult::correct))
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

async fn run_once(options: &Options, concurrency: usize) -> anyhow::Result<RunResult> {
    let github = FakeGitHub::start().await?;
    let ecs = FakeEcs::start().await?;
    let dir = tempfile::tempdir()?;
    let store = match options.store {
        StoreKind::Sqlite => None,
        StoreKind::Postgres => Some(dockhand::PostgresDb::create().await?),
    };
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(options.clients)
        .build()?;
    let mut child = Dockhand::spawn(&ChildConfig {
        dir: dir.path(),
        github_url: &github.url,
        ecs_url: &ecs.url,
        app_id: APP_ID,
        worker_concurrency: concurrency,
        store_url: store.as_ref().map(|db| db.url.as_str()),
    })?;
    child.wait_ready(&http, Duration::from_secs(30)).await?;
    let traffic = Arc::new(Traffic::build(
        options.jobs,
        options.duplicate_percent,
        options.seed,
    ));
    let cpu_before = (cpu_secs(&child.pid().to_string()), cpu_secs("self"));
    let mut sent = traffic::send_all(
        &http,
        &child.webhook_url,
        traffic.clone(),
        options.clients,
        options.rate,
    )
    .await;

    // Every distinct job launched, or the hard timeout; then a settle period for late
    // duplicates.
    let deadline = sent.started + options.timeout;
    while ecs.jobs_launched() < options.jobs && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(options.settle).await;

    let gh = github.calls();
    let ec = ecs.calls();
    let proc = child.proc_status()?;
    let dockhand_cpu = cpu_secs(&child.pid().to_string()) - cpu_before.0;
    let harness_cpu = cpu_secs("self") - cpu_before.1;
    let metrics = child.metrics(&http).await?;
    let log = child.log.clone();
    let exit = child.stop(Duration::from_secs(40)).await;
    let log_lines = std::fs::read_to_string(&log)
        .map(|s| s.lines().count())
        .unwrap_or(0);

    let mut latency = Vec::new();
    let mut after_202 = Vec::new();
    let mut slowest = Vec::new();
    let mut lost_sample = Vec::new();
    let mut lost = 0;
    let mut last_launch = sent.started;
    for (i, job) in traffic.job_ids.iter().enumerate() {
        match ec.run_tasks.get(job) {
            Some(launch) => {
                last_launch = last_launch.max(launch.first);
                if let Some(t) = sent.first_sent[i] {
                    let took = launch.first.saturating_duration_since(t);
                    latency.push(took);
                    slowest.push((
                        t.saturating_duration_since(sent.started).as_secs_f64(),
                        took,
                    ));
                }
                if let Some(t) = sent.first_accepted[i] {
                    after_202.push(launch.first.saturating_duration_since(t));
                }
            }
            None => {
                lost += 1;
                if lost_sample.len() < 10 {
                    lost_sample.push(*job);
                }
            }
        }
    }
    let launched = ec.run_tasks.len();
    let per_runner = |calls: u64| calls as f64 / launched.max(1) as f64;
    let launch_secs = (last_launch - sent.started).as_secs_f64();
    let jit_jobs = gh.jobs_registered() as u64;
    let (exit, exit_ok) = match exit {
        Ok(status) => (
            status
                .code()
                .map_or_else(|| status.to_string(), |c| c.to_string()),
            status.success(),
        ),
        Err(err) => (format!("{err:#}"), false),
    };
    if log_lines > 0 {
        eprintln!("dockhand logged {log_lines} line(s); the first few:");
        if let Ok(text) = std::fs::read_to_string(&log) {
            for line in text.lines().take(5) {
                eprintln!("  {line}");
            }
        }
    }
    Ok(RunResult {
        worker_concurrency: concurrency,
        jobs: options.jobs,
        deliveries: traffic.deliveries.len(),
        ingress_secs: (sent.finished - sent.started).as_secs_f64(),
        launch_secs,
        jobs_per_sec: launched as f64 / launch_secs.max(f64::EPSILON),
        latency_ms: Percentiles::of(&mut latency),
        latency_after_202_ms: Percentiles::of(&mut after_202),
        ingress_ms: Percentiles::of(&mut sent.ingress),
        slowest_launches: {
            slowest.sort_by_key(|s: &(f64, Duration)| std::cmp::Reverse(s.1));
            slowest
                .iter()
                .take(5)
                .map(|(at, took)| (*at, took.as_secs_f64() * 1000.0))
                .collect()
        },
        slowest_ingress: sent
            .slowest
            .iter()
            .map(|(at, took)| (*at, took.as_secs_f64() * 1000.0))
            .collect(),
        launched,
        github_calls: gh.total(),
        github_by_endpoint: gh.by_endpoint.clone(),
        github_per_runner: per_runner(gh.total()),
        ecs_calls: ec.total(),
        ecs_by_operation: ec.by_operation.clone(),
        ecs_per_runner: per_runner(ec.total()),
        peak_rss_mib: proc.peak_rss_kib as f64 / 1024.0,
        rss_mib: proc.rss_kib as f64 / 1024.0,
        threads: proc.threads,
        dockhand_cpu_secs: dockhand_cpu,
        harness_cpu_secs: harness_cpu,
        duplicate_run_tasks: ec.run_task_total() - launched as u64,
        duplicate_registrations: gh.jit_total() - jit_jobs,
        lost,
        lost_sample,
        jobs_total: sum_by_label(&metrics, "dockhand_jobs_total", "outcome"),
        store_write_p99_ms: histogram_p99(&metrics, "dockhand_store_write_seconds")
            .map(|s| s * 1000.0),
        queue_write_p99_ms: histogram_p99(&metrics, "dockhand_queue_write_seconds")
            .map(|s| s * 1000.0),
        slow_store_writes: slower_than(&metrics, "dockhand_store_write_seconds", "0.025"),
        slow_queue_writes: slower_than(&metrics, "dockhand_queue_write_seconds", "0.025"),
        writes_over_10ms: [
            "dockhand_store_write_seconds",
            "dockhand_queue_write_seconds",
        ]
        .map(|m| {
            slower_than(&metrics, m, "0.01")
                .iter()
                .fold(0.0, |sum, (_, n)| sum + n)
        }),
        answers: sent.answers,
        exit,
        exit_ok,
        log_lines,
    })
}
