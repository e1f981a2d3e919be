//! The scale-out soak: `dockhand ingress` and N `dockhand worker`s on SQS (moto, behind the
//! fault proxy) and a throwaway Postgres cluster. A random worker is killed (`kill -9`) and
//! restarted every `kill_every`, and Postgres is restarted once, half-way through.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::config::{self, Backing};
use super::postgres::Cluster;
use super::process::{Process, free_port};
use super::proxy::AwsProxy;
use super::report::{Processes, SoakReport, dead_letter_jobs};
use super::{
    Settling, SoakOptions, delivered_poison, endpoints, feed, finish, settle_step, start_world,
};

/// Where the scale-out layout's queue lives, and how it fails.
#[derive(Debug, Clone)]
pub struct ScaleOut {
    /// moto_server's URL.
    pub moto_url: String,
    pub workers: usize,
    /// Share of SQS calls the proxy fails.
    pub sqs_error_rate: f64,
}

/// Runs the scale-out soak (with warm runners, the jobs start arriving once the pool is
/// full, as in [`super::single_node`]).
pub async fn run(options: &SoakOptions, layout: &ScaleOut) -> anyhow::Result<SoakReport> {
    let started = Instant::now();
    let world = start_world(options).await?;
    let http = reqwest::Client::builder().no_proxy().build()?;
    let cluster = Arc::new(
        Cluster::start(&options.dir.join("postgres")).context("the throwaway Postgres cluster")?,
    );
    let name = format!("dockhand-soak-{}", uuid::Uuid::new_v4().simple());
    let (queue_url, dead_letter_url) = super::sqs::create_queues(&layout.moto_url, &name).await?;
    let proxy = AwsProxy::start(
        &layout.moto_url,
        &world.ecs_url,
        options.sim.seed,
        layout.sqs_error_rate,
    )
    .await?;
    let mut endpoints = endpoints(options, &world);
    endpoints.aws_url = &proxy.url;
    let postgres_url = cluster.url("postgres");
    let backing = Backing::Shared {
        queue_url: &queue_url,
        dead_letter_url: &dead_letter_url,
        postgres_url: &postgres_url,
    };
    let process = |args: &[&str], name: &str, webhook_port: u16| -> anyhow::Result<Process> {
        let admin_port = free_port()?;
        let toml = config::toml(
            &endpoints,
            &backing,
            webhook_port,
            admin_port,
            options.concurrency,
        );
        Ok(
            Process::new(&options.bin, args, &options.dir, name, &toml, admin_port)?
                .with_env(&endpoints.env),
        )
    };
    let webhook_port = free_port()?;
    let mut ingress = process(&["ingress"], "ingress", webhook_port)?;
    let mut workers = (0..layout.workers)
        .map(|i| process(&["worker"], &format!("worker{i}"), free_port()?))
        .collect::<anyhow::Result<Vec<_>>>()?;
    // The first worker migrates the database before the others share it.
    for p in std::iter::once(&mut ingress).chain(workers.iter_mut()) {
        p.start()?;
        p.wait_ready(&http, Duration::from_secs(30)).await?;
    }
    world
        .webhooks
        .set_url(&format!("http://127.0.0.1:{webhook_port}/webhook"));
    options
        .warm
        .wait_until_full(&world, super::WARM_POOL_TIMEOUT)
        .await;

    let feeding = Arc::new(AtomicBool::new(true));
    let killer = {
        let feeding = feeding.clone();
        let every = options.kill_every;
        let mut rng = fastrand::Rng::with_seed(options.sim.seed);
        tokio::spawn(async move {
            while let Some(every) = every {
                tokio::time::sleep(every).await;
                if !feeding.load(Ordering::Relaxed) {
                    break;
                }
                let victim = rng.usize(..workers.len());
                workers[victim].kill9()?;
                workers[victim].start()?;
            }
            anyhow::Ok(workers)
        })
    };
    let restart = {
        let cluster = cluster.clone();
        let half = Duration::from_secs_f64(options.jobs as f64 / options.rate / 2.0);
        tokio::spawn(async move {
            tokio::time::sleep(half).await;
            tokio::task::spawn_blocking(move || cluster.restart()).await??;
            eprintln!("soak: restarted Postgres (stop -m immediate, start)");
            anyhow::Ok(())
        })
    };
    feed(&world, options).await;
    feeding.store(false, Ordering::Relaxed);
    let mut workers = killer.await.context("the killer task")??;
    restart
        .await
        .context("the Postgres restart")?
        .context("restarting Postgres")?;

    let mut crashes = 0;
    let poison = delivered_poison(&world);
    let deadline = Instant::now() + options.settle_timeout;
    let mut settling = Settling::Busy;
    while settling != Settling::Settled && Instant::now() < deadline {
        for p in std::iter::once(&mut ingress).chain(workers.iter_mut()) {
            if let Some(status) = p.exited() {
                crashes += 1;
                eprintln!("soak: a process exited on its own ({status}); restarting");
                p.start()?;
            }
        }
        let now = settle_step(&world, &http, &workers[0].admin_url, poison, options).await;
        settling = settling.then(now);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut clean_exit = true;
    for p in std::iter::once(&mut ingress).chain(workers.iter_mut()) {
        clean_exit &= p
            .stop(Duration::from_secs(15))
            .await?
            .is_some_and(|s| s.success());
    }
    let dead_letters = dead_letter_jobs(
        &workers[0].run_once(&["dlq", "list", "--output", "json", "--max", "100000"])?,
    )?;
    let logs = std::iter::once(&ingress)
        .chain(workers.iter())
        .flat_map(|p| p.logs.clone())
        .collect();
    let kills = workers.iter().map(|p| p.kills).sum();
    eprintln!("soak: the proxy failed {} SQS calls", proxy.sqs_failed());
    finish(
        &world,
        options,
        started,
        settling,
        Processes {
            kills,
            crashes,
            clean_exit,
            logs,
        },
        dead_letters,
    )
}
