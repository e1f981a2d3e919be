//! The chaos soak: dockhand's real binaries inside the simulated world, with processes
//! killed (`kill -9`) as they work, then the simulator's books read once dockhand settles.
//!
//! - [`single_node`]: `dockhand serve` on the embedded queue and SQLite, killed and
//!   restarted every `kill_every`.
//! - [`quota_burst`]: `dockhand serve` in a calm world that enforces GitHub's and ECS's rate
//!   limits, a burst of jobs at once, measured against the bound the limits set.
//! - [`ingress_outage`]: `dockhand serve` in a calm world whose deliveries all fail for a
//!   while; dockhand's recovery loop must bring the jobs they announced back.
//! - [`scale_out`]: the ingress and N workers on SQS (moto, behind a fault proxy) and a
//!   throwaway Postgres cluster that is restarted mid-run; a random worker is killed and
//!   restarted every `kill_every`.
//!
//! Once every job has arrived, the soak waits (up to `settle_timeout`) for dockhand to
//! settle (see [`Settling`]) before it reads the books.

mod config;
mod outage;
mod postgres;
mod process;
mod proxy;
mod quota;
mod report;
mod scale_out;
mod sqs;
mod warm;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::books::Books;
use crate::model::{Leftovers, Model};
use crate::settings::Settings;
use crate::world::World;
use config::{Backing, Endpoints, GitHubConfig, Lifecycle, Pacing};
pub use outage::{IngressOutageSoak, OutageKind, OutageReport, ingress_outage};
use process::{Process, free_port};
pub use quota::{Bound, QuotaBurst, QuotaReport, quota_burst};
pub use report::{LEAK_MARKERS, Leak, SoakReport, scan_logs};
pub use scale_out::{ScaleOut, run as scale_out};
pub use warm::WarmPool;

/// What a soak runs.
#[derive(Debug, Clone)]
pub struct SoakOptions {
    /// dockhand's binary.
    pub bin: PathBuf,
    /// The GitHub App's private key (dockhand signs with it) and public key (the
    /// simulator checks with it).
    pub private_key: PathBuf,
    pub public_key: PathBuf,
    /// Where configs, databases and logs go.
    pub dir: PathBuf,
    pub jobs: usize,
    /// Jobs among them whose installation does not exist: they must be dead-lettered.
    pub poison: usize,
    /// Jobs queued per real second.
    pub rate: f64,
    /// `kill -9` a process this often while jobs arrive; `None` never.
    pub kill_every: Option<Duration>,
    /// How long dockhand has, once every job has arrived, to run them all.
    pub settle_timeout: Duration,
    /// Each process's `[worker] concurrency`.
    pub concurrency: usize,
    /// Leftover tasks and registrations fail the soak, and settling waits for dockhand's
    /// lifecycle reconciler to reap them.
    pub leftovers_fail: bool,
    pub sim: Settings,
    /// dockhand's warm runners (none by default). With `leftovers_fail`, exactly
    /// `warm.min_idle` idle runners, their tasks and registrations, must be left at the end.
    pub warm: WarmPool,
}

/// Starts `dockhand serve` (embedded queue and SQLite in `options.dir`) with `endpoints`,
/// waits until it is ready, and points the world's webhooks at it.
pub(crate) async fn serve_single_node(
    options: &SoakOptions,
    endpoints: &Endpoints<'_>,
    world: &World,
    http: &reqwest::Client,
) -> anyhow::Result<Process> {
    let (webhook_port, admin_port) = (free_port()?, free_port()?);
    let toml = config::toml(
        endpoints,
        &Backing::Embedded { dir: &options.dir },
        webhook_port,
        admin_port,
        options.concurrency,
    );
    let mut serve = Process::new(
        &options.bin,
        &["serve"],
        &options.dir,
        "serve",
        &toml,
        admin_port,
    )?
    .with_env(&endpoints.env);
    serve.start()?;
    serve.wait_ready(http, Duration::from_secs(30)).await?;
    world
        .webhooks
        .set_url(&format!("http://127.0.0.1:{webhook_port}/webhook"));
    Ok(serve)
}

/// How long a soak waits, before the first job, for dockhand to fill its warm pool.
const WARM_POOL_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs the single-node soak. With warm runners, the jobs start arriving once the pool is
/// full (or [`WARM_POOL_TIMEOUT`] has passed).
pub async fn single_node(options: &SoakOptions) -> anyhow::Result<SoakReport> {
    let started = Instant::now();
    let world = start_world(options).await?;
    let http = reqwest::Client::builder().no_proxy().build()?;
    let serve = serve_single_node(options, &endpoints(options, &world), &world, &http).await?;
    options
        .warm
        .wait_until_full(&world, WARM_POOL_TIMEOUT)
        .await;

    let feeding = Arc::new(AtomicBool::new(true));
    let mut idle = Some(serve);
    let killer = options.kill_every.map(|every| {
        let feeding = feeding.clone();
        let mut serve = idle.take().expect("the process");
        tokio::spawn(async move {
            while feeding.load(Ordering::Relaxed) {
                tokio::time::sleep(every).await;
                if !feeding.load(Ordering::Relaxed) {
                    break;
                }
                serve.kill9()?;
                serve.start()?;
            }
            anyhow::Ok(serve)
        })
    });
    feed(&world, options).await;
    feeding.store(false, Ordering::Relaxed);
    let mut serve = match killer {
        Some(killer) => killer.await.context("the killer task")??,
        None => idle.take().expect("the process"),
    };
    let mut crashes = 0;
    serve.wait_ready(&http, Duration::from_secs(30)).await?;
    let poison = delivered_poison(&world);
    let deadline = Instant::now() + options.settle_timeout;
    let mut settling = Settling::Busy;
    while settling != Settling::Settled && Instant::now() < deadline {
        if let Some(status) = serve.exited() {
            crashes += 1;
            eprintln!("soak: serve exited on its own ({status}); restarting");
            serve.start()?;
            serve.wait_ready(&http, Duration::from_secs(30)).await?;
        }
        let now = settle_step(&world, &http, &serve.admin_url, poison, options).await;
        settling = settling.then(now);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let exit = serve.stop(Duration::from_secs(10)).await?;
    let dead_letters = report::dead_letter_jobs(
        &serve.run_once(&["dlq", "list", "--output", "json", "--max", "100000"])?,
    )?;
    let logs = serve.logs.clone();
    finish(
        &world,
        options,
        started,
        settling,
        report::Processes {
            kills: serve.kills,
            crashes,
            clean_exit: exit.is_some_and(|s| s.success()),
            logs,
        },
        dead_letters,
    )
}

/// How many poison jobs the ingress accepted: they must all reach the dead-letter queue.
fn delivered_poison(world: &World) -> usize {
    let delivered = world.webhooks.queued_accepted.lock().unwrap().clone();
    world.with(|m| {
        m.jobs
            .values()
            .filter(|j| j.poison && delivered.contains(&j.id))
            .count()
    })
}

/// Where settling stands, from busy to settled. The books are read once it is `Settled`,
/// or at the settle timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settling {
    /// Jobs queued or running in the world, or deliveries in flight.
    Busy,
    /// The world is quiet, but dockhand's queue is not drained (or not every delivered
    /// poison job has reached its dead-letter queue).
    Draining,
    /// Quiet and drained, but dockhand has left tasks not stopped or its runners'
    /// registrations listed, for its lifecycle reconciler to reap. Waited on only with
    /// `leftovers_fail`.
    Leftovers(Leftovers),
    Settled,
}

impl Settling {
    /// Moves on to `now`, saying so when the wait turns to leftovers.
    fn then(self, now: Self) -> Self {
        if let Self::Leftovers(left) = now
            && !matches!(self, Self::Leftovers(_))
        {
            eprintln!(
                "soak: quiet and drained; waiting for {} tasks and {} registrations to be reaped",
                left.tasks, left.registrations
            );
        }
        now
    }

    /// What was still pending, for a soak that did not settle.
    pub fn pending(&self) -> Option<String> {
        match self {
            Self::Busy => Some("jobs still queued or running, or deliveries in flight".into()),
            Self::Draining => Some("dockhand's queue not drained".into()),
            Self::Leftovers(left) => Some(format!(
                "{} tasks not stopped and {} registrations listed, not reaped",
                left.tasks, left.registrations
            )),
            Self::Settled => None,
        }
    }
}

/// One look at whether dockhand has settled: the world quiet (2 s), then dockhand's queues
/// drained, then, with `leftovers_fail`, nothing of dockhand's left in the world but its
/// warm runners.
async fn settle_step(
    world: &World,
    http: &reqwest::Client,
    admin_url: &str,
    poison: usize,
    options: &SoakOptions,
) -> Settling {
    if !world_quiet(world).await {
        return Settling::Busy;
    }
    if !drained(http, admin_url, poison).await {
        return Settling::Draining;
    }
    let left = world.with(Model::leftovers);
    if options.leftovers_fail && !left.only_warm(options.warm.min_idle as usize) {
        return Settling::Leftovers(left);
    }
    Settling::Settled
}

/// Whether dockhand has nothing left to do: its main queue holds no message, waiting, in
/// flight or delayed, and its dead-letter queue holds `poison` (the gauges are polled by
/// the worker every second).
async fn drained(http: &reqwest::Client, admin_url: &str, poison: usize) -> bool {
    let Ok(text) = async {
        http.get(format!("{admin_url}/metrics"))
            .send()
            .await?
            .text()
            .await
    }
    .await
    else {
        return false;
    };
    let gauge = |name: &str, queue: &str| {
        let series = format!("{name}{{queue=\"{queue}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(series.as_str()))
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    let main = [
        gauge("dockhand_queue_messages", "main"),
        gauge("dockhand_queue_messages_in_flight", "main"),
    ];
    let dead = gauge("dockhand_queue_messages", "dead_letter");
    main.iter().all(|n| *n == Some(0.0)) && dead.is_some_and(|d| d >= poison as f64)
}

/// Starts the world, its first App's public key read from `options.public_key` unless the
/// settings carry it (the other Apps' keys must be in the settings).
async fn start_world(options: &SoakOptions) -> anyhow::Result<World> {
    let mut settings = options.sim.clone();
    let first = settings.apps.first_mut().context("the world has no App")?;
    if first.public_key_pem.is_empty() {
        first.public_key_pem = std::fs::read(&options.public_key)
            .with_context(|| format!("reading {}", options.public_key.display()))?;
    }
    World::start(settings).await
}

fn endpoints<'a>(options: &'a SoakOptions, world: &'a World) -> Endpoints<'a> {
    Endpoints {
        github_url: &world.github_url,
        aws_url: &world.ecs_url,
        // The soaks' traffic is beyond GitHub's quota by design; the quota burst
        // (soak::quota) is where pacing is measured.
        github: GitHubConfig {
            pacing: Some(Pacing::unlimited()),
            ..GitHubConfig::one_app(options.sim.apps[0].id, &options.private_key)
        },
        webhook_secret: &options.sim.webhook_secret,
        labels: &options.sim.labels,
        cluster: &options.sim.cluster,
        spot: options.sim.spot_interruption_rate > 0.0,
        org: &options.sim.org,
        warm: &options.warm,
        lifecycle: Lifecycle::soak(),
        env: Vec::new(),
    }
}

/// Queues the jobs at the options' rate, the poison ones spread among them.
async fn feed(world: &World, options: &SoakOptions) {
    let start = tokio::time::Instant::now();
    let poison_every = options.jobs.checked_div(options.poison).unwrap_or(0);
    for i in 0..options.jobs {
        tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / options.rate)).await;
        let poison = poison_every > 0 && i % poison_every == poison_every / 2;
        world.queue_job(poison);
    }
}

/// Whether the world has been quiet for 2 s: no job queued or running, and no delivery
/// in flight.
async fn world_quiet(world: &World) -> bool {
    for _ in 0..20 {
        let busy = world.with(|m| m.queued_jobs() + m.running_jobs()) > 0
            || world.webhooks.in_flight() > 0;
        if busy {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    true
}

fn finish(
    world: &World,
    options: &SoakOptions,
    started: Instant,
    settling: Settling,
    processes: report::Processes,
    dead_letters: Vec<Option<u64>>,
) -> anyhow::Result<SoakReport> {
    let delivered = world.webhooks.queued_accepted.lock().unwrap().clone();
    let (books, poison_jobs) = world.with(|m| {
        let poison: Vec<u64> = m.jobs.values().filter(|j| j.poison).map(|j| j.id).collect();
        (Books::read(m, &delivered), poison)
    });
    let leaks = scan_logs(&processes.logs, &options.sim.webhook_secret)?;
    Ok(SoakReport::new(
        books,
        options,
        started.elapsed(),
        settling,
        processes,
        dead_letters,
        poison_jobs,
        leaks,
        world,
    ))
}
