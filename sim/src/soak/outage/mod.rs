//! The ingress outage (issue 19): do jobs whose `queued` delivery failed still get their
//! runner, once dockhand asks GitHub to deliver them again? A calm world
//! (`Settings::ingress_outage`) in which nobody presses "Redeliver"; `dockhand serve` on the
//! embedded queue with its recovery loop on a short interval (or off, for the baseline);
//! jobs queued at a steady rate; and, for a window of the run, every delivery failing (see
//! [`OutageKind`]). Once the outage is over the soak waits until every job has started (a
//! runner took it) and every `queued` event that failed has been delivered since (with the
//! recovery loop on), or until nothing moves any more (no job starting, no redelivery, no
//! delivery) for a few of dockhand's intervals, then lingers two more intervals so that a
//! second runner for a job is caught, and reads the delivery log and the books.
//!
//! GitHub gives a queued job to any idle runner whose labels cover it, the oldest job
//! first. So a runner launched for a job queued after the outage may well run a job whose
//! delivery failed during it, and the later job then waits for dockhand's reconciler to
//! replace its runner: a job with two runners whose first ran another job is such a
//! replacement, not a duplicate. A job has its runner when it starts.

mod report;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::process::Process;
use super::{SoakOptions, endpoints, feed, scan_logs, serve_single_node, start_world};
use crate::books::{Books, first_launches, first_runner_ran_another};
use crate::model::JobState;
use crate::webhooks::{IngressOutage, OutageAnswer, Sender};
use crate::world::World;
pub use report::OutageReport;

/// How deliveries fail during the outage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutageKind {
    /// The ingress cannot be reached while dockhand runs (a broken network path or DNS):
    /// `failed to connect`, status code 0. dockhand's recovery loop runs through it.
    Unreachable,
    /// A load balancer in front of the ingress answers 503 (no healthy target) without
    /// reaching dockhand; dockhand runs through it.
    Unavailable,
    /// dockhand itself is down: `kill -9` when the outage starts, started again when it
    /// ends. Deliveries find nothing listening (`failed to connect`).
    Down,
}

impl OutageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unreachable => "unreachable",
            Self::Unavailable => "503",
            Self::Down => "down",
        }
    }

    /// How the world's webhooks fail; `None` when it is dockhand that is down.
    fn answer(self) -> Option<OutageAnswer> {
        match self {
            Self::Unreachable => Some(OutageAnswer::Refused),
            Self::Unavailable => Some(OutageAnswer::Unavailable),
            Self::Down => None,
        }
    }
}

impl std::str::FromStr for OutageKind {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        Ok(match s {
            "unreachable" => Self::Unreachable,
            "503" => Self::Unavailable,
            "down" => Self::Down,
            other => anyhow::bail!("unreachable, 503 or down, not {other}"),
        })
    }
}

/// What an ingress outage runs, beyond its [`SoakOptions`] (whose `sim` should be
/// [`crate::Settings::ingress_outage`], and whose `settle_timeout` bounds the wait after
/// the outage).
#[derive(Debug, Clone)]
pub struct IngressOutageSoak {
    /// When the outage starts, after the first delivery, and how long it lasts (real time).
    pub after: Duration,
    pub lasting: Duration,
    pub kind: OutageKind,
    /// dockhand's recovery loop on; off (`DOCKHAND_REDELIVERY__ENABLED=false`) for the
    /// baseline, which shows what is lost without it.
    pub recovery: bool,
    /// `[redelivery] interval` (real time).
    pub interval: Duration,
    /// More `DOCKHAND_` variables for dockhand (`[redelivery] per_second`, ...); later ones
    /// win.
    pub env: Vec<(String, String)>,
}

impl Default for IngressOutageSoak {
    /// 15 s unreachable from 20 s after the first delivery: with the bench's 300 jobs at
    /// 10 a second, the last third of the jobs' `queued` deliveries fail, and no job
    /// queued later brings a runner that could run them. The recovery loop every 5 s.
    fn default() -> Self {
        Self {
            after: Duration::from_secs(20),
            lasting: Duration::from_secs(15),
            kind: OutageKind::Unreachable,
            recovery: true,
            interval: Duration::from_secs(5),
            env: Vec::new(),
        }
    }
}

impl IngressOutageSoak {
    /// Takes one of the scenario's command-line options: `--outage-secs SECS`,
    /// `--outage-after SECS`, `--outage-kind unreachable|503|down`,
    /// `--redelivery-interval SECS` or `--dockhand-env DOCKHAND_KEY=VALUE` (times real).
    /// `Ok(false)` for another option.
    pub fn option(&mut self, flag: &str, value: &str) -> anyhow::Result<bool> {
        let secs = || -> anyhow::Result<Duration> {
            let secs: f64 = value.parse().with_context(|| format!("{flag}: {value}"))?;
            Duration::try_from_secs_f64(secs).with_context(|| format!("{flag}: {value}"))
        };
        match flag {
            "--outage-secs" => self.lasting = secs()?,
            "--outage-after" => self.after = secs()?,
            "--outage-kind" => self.kind = value.parse().context("--outage-kind")?,
            "--redelivery-interval" => self.interval = secs()?,
            "--dockhand-env" => match value.split_once('=') {
                Some((key, v)) if key.starts_with("DOCKHAND_") => {
                    self.env.push((key.to_string(), v.to_string()))
                }
                _ => anyhow::bail!("{flag}: DOCKHAND_KEY=VALUE, not {value}"),
            },
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The environment dockhand runs with.
    pub fn dockhand_env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            (
                "DOCKHAND_REDELIVERY__ENABLED".to_string(),
                self.recovery.to_string(),
            ),
            (
                "DOCKHAND_REDELIVERY__INTERVAL".to_string(),
                format!("{}ms", self.interval.as_millis()),
            ),
        ];
        env.extend(self.env.iter().cloned());
        env
    }

    /// How long nothing may move, after the outage, before the soak stops waiting.
    fn stall(&self) -> Duration {
        (self.interval * 3).max(Duration::from_secs(15))
    }
}

/// Runs an ingress outage.
pub async fn ingress_outage(
    options: &SoakOptions,
    outage: &IngressOutageSoak,
) -> anyhow::Result<OutageReport> {
    let started = Instant::now();
    let mut options = options.clone();
    options.sim.webhooks.outage = outage.kind.answer().map(|answer| IngressOutage {
        after: outage.after,
        lasting: outage.lasting,
        answer,
    });
    let world = start_world(&options).await?;
    let http = reqwest::Client::builder().no_proxy().build()?;
    let mut endpoints = endpoints(&options, &world);
    endpoints.env = outage.dockhand_env();
    let serve = serve_single_node(&options, &endpoints, &world, &http)
        .await
        .context("dockhand with the outage's environment (a dockhand without `[redelivery]` refuses DOCKHAND_REDELIVERY__*)")?;

    let serve = if outage.kind == OutageKind::Down {
        let down = take_down(
            serve,
            world.webhooks.clone(),
            (outage.after, outage.lasting),
            http.clone(),
        );
        let down = tokio::spawn(down);
        feed(&world, &options).await;
        down.await.context("the outage task")??
    } else {
        feed(&world, &options).await;
        serve
    };
    let first = *world
        .webhooks
        .first_sent
        .get()
        .context("no delivery was ever sent")?;
    let ends = first + outage.after + outage.lasting;
    let mut dockhand = Dockhand {
        serve,
        http,
        crashes: 0,
    };
    let settled = wait_for_recovery(&world, &options, outage, ends, &mut dockhand).await?;
    // A second runner for a job would come from a later pass: wait two more.
    let linger = Instant::now() + (outage.interval * 2).max(Duration::from_secs(10));
    while Instant::now() < linger {
        dockhand.restart_if_exited().await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let Dockhand {
        mut serve,
        http,
        crashes,
    } = dockhand;
    let metrics = redelivery_metrics(&http, &serve.admin_url).await;
    let clean_exit = serve
        .stop(Duration::from_secs(10))
        .await?
        .is_some_and(|s| s.success());
    let (leaks, _) = scan_logs(&serve.logs, &options.sim.webhook_secret)?;
    let delivered = world.webhooks.queued_accepted.lock().unwrap().clone();
    let (books, launches, ends_sim, replaced, job_starts, queued) = world.with(|m| {
        let books = Books::read(m, &delivered);
        let replaced = first_runner_ran_another(m, &books.launched_twice);
        let started = m
            .jobs
            .values()
            .filter_map(|j| j.started.map(|at| (j.id, at)))
            .collect();
        let queued = m
            .jobs
            .values()
            .filter(|j| j.state == JobState::Queued)
            .map(|j| j.id)
            .collect();
        let ends = m.clock.at(ends);
        (books, first_launches(m), ends, replaced, started, queued)
    });
    Ok(OutageReport::new(
        &options,
        outage,
        &world,
        report::Run {
            books,
            launches,
            started: job_starts,
            queued,
            replaced,
            outage_end: ends_sim,
            settled,
            metrics,
            leaks: leaks.len(),
            crashes,
            kills: serve.kills,
            clean_exit,
            elapsed: started.elapsed(),
        },
    ))
}

/// The `down` outage: `kill -9` dockhand `after` the first delivery, start it again
/// `lasting` later. Returns the process.
async fn take_down(
    mut serve: Process,
    webhooks: Arc<Sender>,
    (after, lasting): (Duration, Duration),
    http: reqwest::Client,
) -> anyhow::Result<Process> {
    let first = loop {
        if let Some(first) = webhooks.first_sent.get() {
            break *first;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    tokio::time::sleep_until((first + after).into()).await;
    serve.kill9()?;
    eprintln!("ingress outage: dockhand killed (-9); back in {lasting:?}");
    tokio::time::sleep_until((first + after + lasting).into()).await;
    serve.start()?;
    serve.wait_ready(&http, Duration::from_secs(30)).await?;
    Ok(serve)
}

/// `dockhand serve`, restarted if it exits on its own (a crash, counted).
struct Dockhand {
    serve: Process,
    http: reqwest::Client,
    crashes: usize,
}

impl Dockhand {
    async fn restart_if_exited(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.serve.exited() {
            self.crashes += 1;
            eprintln!("ingress outage: serve exited on its own ({status}); restarting");
            self.serve.start()?;
            self.serve
                .wait_ready(&self.http, Duration::from_secs(30))
                .await?;
        }
        Ok(())
    }
}

/// Waits, once the outage is over, until no job is queued and (with the recovery loop on)
/// every job whose `queued` delivery failed has had it delivered since (`true`), or
/// nothing has moved for [`IngressOutageSoak::stall`], or the settle timeout has passed.
/// Reports progress every 10 s.
async fn wait_for_recovery(
    world: &World,
    options: &SoakOptions,
    outage: &IngressOutageSoak,
    ends: Instant,
    dockhand: &mut Dockhand,
) -> anyhow::Result<bool> {
    let deadline = ends.max(Instant::now()) + options.settle_timeout;
    let (mut last, mut moved) = (None, Instant::now());
    let mut next_report = Instant::now() + Duration::from_secs(10);
    loop {
        dockhand.restart_if_exited().await?;
        let queued = world.with(|m| m.queued_jobs());
        let redeliveries = world.webhooks.stats.redeliveries.load(Ordering::Relaxed);
        let (logged, missed) = missed_queued(&world.webhooks);
        let now = (queued, redeliveries, logged, world.webhooks.in_flight());
        if last != Some(now) {
            (last, moved) = (Some(now), Instant::now());
        }
        if queued == 0 && (missed == 0 || !outage.recovery) {
            return Ok(true);
        }
        let still = moved.elapsed();
        let why = if Instant::now() >= deadline {
            Some(format!("the settle timeout ({:?})", options.settle_timeout))
        } else if Instant::now() >= ends && still >= outage.stall() {
            Some(format!("nothing moved for {:.1} s", still.as_secs_f64()))
        } else {
            None
        };
        if let Some(why) = why {
            eprintln!(
                "ingress outage: {queued} of {} jobs still queued, {missed} queued events not delivered; stopping: {why}",
                options.jobs
            );
            return Ok(false);
        }
        if Instant::now() >= next_report {
            eprintln!(
                "ingress outage: {queued} of {} jobs queued, {missed} queued events not delivered, {redeliveries} redeliveries asked for, {logged} deliveries logged",
                options.jobs
            );
            next_report += Duration::from_secs(10);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Deliveries logged, and jobs whose `queued` delivery failed and has not got through since.
fn missed_queued(webhooks: &Sender) -> (usize, usize) {
    let log = webhooks.log.lock().unwrap();
    let delivered = webhooks.queued_accepted.lock().unwrap();
    let missed: HashSet<u64> = log
        .all()
        .filter(|d| d.action == "queued" && !d.attempt.succeeded())
        .map(|d| d.job)
        .filter(|job| !delivered.contains(job))
        .collect();
    (log.all().count(), missed.len())
}

/// dockhand's `dockhand_webhook_redeliveries_total` by outcome (empty when it has none).
async fn redelivery_metrics(http: &reqwest::Client, admin_url: &str) -> Vec<(String, f64)> {
    let Ok(text) = async {
        http.get(format!("{admin_url}/metrics"))
            .send()
            .await?
            .text()
            .await
    }
    .await
    else {
        return Vec::new();
    };
    report::counters(&text, "dockhand_webhook_redeliveries_total", "outcome")
}
