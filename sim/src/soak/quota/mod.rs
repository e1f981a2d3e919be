//! The quota burst (issue 18): how close dockhand comes to the launch rate GitHub's and
//! ECS's limits allow. A calm world that enforces GitHub's rate limits (per App and per
//! installation) and ECS's RunTask limits (`Settings::quota_burst`); `dockhand serve` on
//! the embedded queue; a burst of jobs queued at once, each delivered once per App, 30% of
//! the deliveries twice. The clock runs from the first delivery until every job has had
//! its runner's RunTask accepted; then the soak waits for dockhand to settle, so that a
//! second runner for a job (a late duplicate) is caught, and reads the books.
//!
//! The bound it is measured against: see [`Bound`].

mod report;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::config::{AppKey, GitHubConfig, Lifecycle, Pacing};
use super::{Settling, SoakOptions, endpoints, serve_single_node, settle_step};
use crate::books::{Books, first_launches, first_runner_ran_another};
use crate::settings::{AppSettings, Settings};
use crate::world::World;
pub use report::{Bound, QuotaReport};

/// What a quota burst runs, beyond its [`SoakOptions`] (whose `sim` should be
/// [`Settings::quota_burst`], and whose `settle_timeout` bounds the wait for every job's
/// RunTask).
#[derive(Debug, Clone)]
pub struct QuotaBurst {
    /// One (private key, public key) pair per App: dockhand signs with the first, the
    /// world checks with the second. Apps are numbered as [`AppSettings::nth`].
    pub keys: Vec<(PathBuf, PathBuf)>,
    /// Today's dockhand (before issue 18): the one-App config form (`app_id`,
    /// `private_key`) and no `[github.limits]` or `[aws.run_task]`. One App only.
    pub baseline: bool,
    /// `[github.limits] max_wait`: how long a call may wait for budget.
    pub max_wait: Duration,
}

/// How long, once every job has its RunTask, the soak waits for dockhand to settle.
const SETTLE_AFTER_LAUNCHES: Duration = Duration::from_secs(120);

/// Runs a quota burst.
pub async fn quota_burst(options: &SoakOptions, burst: &QuotaBurst) -> anyhow::Result<QuotaReport> {
    anyhow::ensure!(
        !burst.keys.is_empty(),
        "a quota burst needs at least one App"
    );
    anyhow::ensure!(
        !burst.baseline || burst.keys.len() == 1,
        "the baseline (today's dockhand) knows one App only"
    );
    let mut settings = options.sim.clone();
    settings.apps = burst
        .keys
        .iter()
        .enumerate()
        .map(|(n, (_, public))| {
            let pem =
                std::fs::read(public).with_context(|| format!("reading {}", public.display()))?;
            Ok(AppSettings::nth(n, pem))
        })
        .collect::<anyhow::Result<_>>()?;
    let world = World::start(settings.clone()).await?;
    let http = reqwest::Client::builder().no_proxy().build()?;
    let mut endpoints = endpoints(options, &world);
    endpoints.github = github_config(&settings, burst);
    // dockhand's default timers in simulated time: the reconciler's calls count against
    // the same limits, as often as they would in production.
    endpoints.lifecycle = Lifecycle::defaults_at(settings.time_scale);
    let mut serve = serve_single_node(options, &endpoints, &world, &http)
        .await
        .context("dockhand with the quota burst's config (a dockhand that does not know `[[github.app]]`, `[github.limits]` or `[aws.run_task]` refuses it: see --baseline)")?;

    let started = Instant::now();
    {
        let mut model = world.model.lock().unwrap();
        for _ in 0..options.jobs {
            model.queue_job(false);
        }
    }
    let launched_all = wait_for_launches(&world, options).await;
    let mut crashes = 0;
    let deadline = Instant::now() + SETTLE_AFTER_LAUNCHES;
    let mut settling = Settling::Busy;
    while settling != Settling::Settled && Instant::now() < deadline {
        if let Some(status) = serve.exited() {
            crashes += 1;
            eprintln!("quota burst: serve exited on its own ({status}); restarting");
            serve.start()?;
            serve.wait_ready(&http, Duration::from_secs(30)).await?;
        }
        settling = settle_step(&world, &http, &serve.admin_url, 0, options).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let clean_exit = serve
        .stop(Duration::from_secs(10))
        .await?
        .is_some_and(|s| s.success());
    let delivered = world.webhooks.queued_accepted.lock().unwrap().clone();
    let first_sent = world.webhooks.first_sent.get().copied();
    let (books, first_launch, first_runner_ran_another) = world.with(|m| {
        let books = Books::read(m, &delivered);
        let taken = first_runner_ran_another(m, &books.launched_twice).len();
        (books, first_launches(m), taken)
    });
    let first_delivery = first_sent.map(|at| world.with(|m| m.clock.at(at)));
    Ok(QuotaReport::new(
        options,
        burst,
        &settings,
        &world,
        report::Run {
            books,
            first_delivery,
            first_launch,
            first_runner_ran_another,
            launched_all,
            settled: settling == Settling::Settled,
            crashes,
            clean_exit,
            elapsed: started.elapsed(),
        },
    ))
}

/// dockhand's `[github]` for the burst: every App in the `[[github.app]]` form, paced to
/// the world's limits; or, for the baseline, the one App in the old form, unpaced.
fn github_config(settings: &Settings, burst: &QuotaBurst) -> GitHubConfig {
    let apps = settings
        .apps
        .iter()
        .zip(&burst.keys)
        .map(|(app, (private, _))| AppKey {
            id: app.id,
            private_key: private.clone(),
        })
        .collect();
    if burst.baseline {
        return GitHubConfig {
            apps,
            ..GitHubConfig::one_app(0, &burst.keys[0].0)
        };
    }
    GitHubConfig {
        apps,
        app_list: true,
        request_timeout: Duration::from_secs(10),
        pacing: Some(pacing(settings, burst.max_wait)),
    }
}

/// dockhand's default `[github.limits] points_burst`.
const DOCKHAND_POINTS_BURST: u32 = 15;

/// The world's limits in dockhand's real time: rates times the time scale; counts (calls
/// in flight, the burst, the reserve) as they are.
fn pacing(settings: &Settings, max_wait: Duration) -> Pacing {
    let scale = settings.time_scale;
    let quota = settings.quota.clone().unwrap_or_default();
    let ecs = settings.ecs_limits.clone().unwrap_or_default();
    let per_minute = f64::from(quota.points_per_window) * 60.0 / quota.window.as_secs_f64();
    // dockhand's limiter admits at most burst + a minute's refill in a (real) minute; the
    // world's window is a simulated minute, `scale` times shorter. With the burst as it is
    // and the refill rate scaled, burst + a simulated minute's refill is the window's
    // points exactly: (per_minute - burst) * scale + burst points a real minute.
    let burst = DOCKHAND_POINTS_BURST;
    Pacing {
        points_per_minute: ((per_minute - f64::from(burst)) * scale).floor() as u32 + burst,
        points_burst: burst,
        concurrent: quota.concurrent,
        primary_reserve: 100,
        max_wait,
        // ECS's bucket and dockhand's limiter tick on different clocks; 5% under the
        // rate keeps scheduling jitter from a throttle.
        run_task_per_second: ecs.run_task_per_sec * scale * 0.95,
        run_task_burst: ecs.run_task_burst as u32,
    }
}

/// Waits (up to the options' settle timeout) until every job has a RunTask accepted,
/// reporting progress every 10 s. Returns whether they all did.
async fn wait_for_launches(world: &World, options: &SoakOptions) -> bool {
    let deadline = Instant::now() + options.settle_timeout;
    let mut next_report = Instant::now() + Duration::from_secs(10);
    loop {
        let launched = world.with(|m| first_launches(m).len());
        if launched >= options.jobs {
            return true;
        }
        if Instant::now() >= deadline {
            eprintln!(
                "quota burst: {launched} of {} jobs had a RunTask accepted by the timeout ({:?})",
                options.jobs, options.settle_timeout
            );
            return false;
        }
        if Instant::now() >= next_report {
            let refused: u64 = world.github.refused().iter().map(|(_, _, n)| n).sum();
            eprintln!(
                "quota burst: {launched} of {} jobs launched, {refused} GitHub limit answers so far",
                options.jobs
            );
            next_report += Duration::from_secs(10);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::soak::WarmPool;
    use crate::soak::config::Endpoints;
    use crate::soak::config::{self, Backing};

    /// The config dockhand gets for a burst, parsed back.
    fn config(apps: usize, baseline: bool) -> toml::Table {
        let settings = Settings::quota_burst(1, apps);
        let burst = QuotaBurst {
            keys: (0..apps)
                .map(|n| (PathBuf::from(format!("/k/{n}.pem")), PathBuf::new()))
                .collect(),
            baseline,
            max_wait: Duration::from_secs(5),
        };
        let labels = settings.labels.clone();
        let warm = WarmPool::default();
        let endpoints = Endpoints {
            github_url: "http://127.0.0.1:1",
            aws_url: "http://127.0.0.1:2",
            github: github_config(&settings, &burst),
            webhook_secret: "s",
            labels: &labels,
            cluster: "sim",
            spot: false,
            org: "sim-org",
            warm: &warm,
            lifecycle: Lifecycle::defaults_at(10.0),
            env: Vec::new(),
        };
        let backing = Backing::Embedded {
            dir: Path::new("/tmp"),
        };
        config::toml(&endpoints, &backing, 1, 2, 32)
            .parse()
            .unwrap()
    }

    #[test]
    fn the_paced_config_lists_every_app_and_the_limits_in_dockhands_real_time() {
        let toml = config(2, false);
        let github = toml["github"].as_table().unwrap();
        assert!(github.get("app_id").is_none() && github.get("private_key").is_none());
        let apps = github["app"].as_array().unwrap();
        assert_eq!(apps.len(), 2);
        assert_eq!(apps[1]["id"].as_integer(), Some(31_338));
        assert_eq!(apps[1]["private_key"]["file"].as_str(), Some("/k/1.pem"));
        assert_eq!(github["request_timeout"].as_str(), Some("10000ms"));
        // 900 points a simulated minute, 10 simulated seconds a real one: dockhand's burst
        // and a simulated minute (6 real seconds) of its refill are the window's 900 points
        // (less the second's worth dockhand keeps back itself).
        let limits = github["limits"].as_table().unwrap();
        let (per_minute, burst) = (
            limits["points_per_minute"].as_integer().unwrap(),
            limits["points_burst"].as_integer().unwrap(),
        );
        assert_eq!((per_minute, burst), (8_865, 15));
        assert_eq!(burst + (per_minute - burst) / 10, 900);
        assert_eq!(limits["concurrent"].as_integer(), Some(100));
        assert_eq!(limits["primary_reserve"].as_integer(), Some(100));
        assert_eq!(limits["max_wait"].as_str(), Some("5000ms"));
        let run_task = toml["aws"]["run_task"].as_table().unwrap();
        // 20 a simulated second, 5% under for the two clocks' jitter.
        assert_eq!(run_task["per_second"].as_float(), Some(190.0));
        assert_eq!(run_task["burst"].as_integer(), Some(20));
        assert_eq!(toml["lifecycle"]["interval"].as_str(), Some("3000ms"));
        assert_eq!(toml["lifecycle"]["verify_after"].as_str(), Some("60000ms"));
    }

    #[test]
    fn the_baseline_config_is_the_one_app_form_without_limits() {
        let toml = config(1, true);
        let github = toml["github"].as_table().unwrap();
        assert_eq!(github["app_id"].as_integer(), Some(31_337));
        assert_eq!(github["private_key"]["file"].as_str(), Some("/k/0.pem"));
        assert!(github.get("app").is_none() && github.get("limits").is_none());
        assert!(toml["aws"].get("run_task").is_none());
    }
}
