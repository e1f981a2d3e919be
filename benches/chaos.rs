//! The chaos soak (issue 13): dockhand's real binary inside the simulated GitHub and ECS
//! (the `dockhand-sim` crate), with duplicate and reordered deliveries, cancellations,
//! strangers' runners, 5% of tasks dying before their runner registers, 5% server errors
//! and 1% timeouts on every API, ECS throttling, and `kill -9` every 10 s. At the end the
//! simulator's books are checked, leftovers included: the soak waits for dockhand's
//! lifecycle reconciler to reap spare runners and fails if tasks or registrations remain
//! (`--leftovers-allowed` reports them without failing). See docs/benchmarks.md, "Chaos
//! soak (issue 13)".
//!
//! ```sh
//! cargo bench --bench chaos                       # single node, 10,000 jobs
//! cargo bench --bench chaos -- --jobs 500 --seed 7
//! cargo bench --bench chaos -- --task-deaths 0 --leftovers-allowed  # the launch path alone
//! cargo bench --bench chaos -- --spot-interruptions 0.1  # Spot first, 10% interrupted
//! cargo bench --bench chaos -- --layout scale-out  # ingress + 3 workers, 1,000 jobs
//! cargo bench --bench chaos -- --scenario job-wait --min-idle 0    # job wait, no warm pool
//! cargo bench --bench chaos -- --scenario job-wait --min-idle 24   # ... with 24 warm runners
//! ```
//!
//! `--scenario job-wait` (warm pools) runs a calm world instead (`Settings::calm`: no
//! faults, no kills, no cancellations or strangers' runners; runners ready 30 s after their
//! task runs, at 10 simulated seconds per real one) with a steady 2 jobs a second (real),
//! and prints the job wait, queued to started, in simulated seconds. With `--min-idle N`
//! the soak's pool keeps N warm runners (`min_idle`, `warm_target`), the jobs start
//! arriving once they are idle, and what is left at the end must be exactly those N idle
//! runners.
//!
//! `--scenario quota-burst` (issue 18) measures dockhand against GitHub's and ECS's rate
//! limits: a calm world that enforces them (`Settings::quota_burst`: 900 points a minute per
//! App, 100 calls in flight, 5,000 requests an hour per installation; RunTask 20 a second
//! and the Fargate launch bucket), 1,000 jobs queued at once, each delivered once per App
//! and 30% twice, at 10 simulated seconds per real one. It prints the time until every job
//! had its runner's RunTask accepted against the bound the limits set, the limit answers
//! and throttles, and GitHub calls per runner, and fails only on a lost or duplicated job.
//! `--apps N` runs N Apps; `--baseline` writes the config today's dockhand knows (one App,
//! no `[github.limits]` or `[aws.run_task]`), and `--dockhand-bin PATH` runs another
//! binary (any scenario):
//!
//! ```sh
//! cargo bench --bench chaos -- --scenario quota-burst --apps 1 --baseline
//! cargo bench --bench chaos -- --scenario quota-burst --apps 4
//! cargo bench --bench chaos -- --scenario quota-burst --baseline --dockhand-bin /tmp/old/dockhand
//! ```
//!
//! `--scenario ingress-outage` (issue 19): 300 jobs at 10 a second in a calm world where
//! nobody presses "Redeliver" (`Settings::ingress_outage`); every delivery fails for
//! `--outage-secs` (15) from `--outage-after` (20) s after the first, the last third of
//! the jobs (`--outage-kind unreachable|503|down`, see `soak::OutageKind`). dockhand's
//! recovery loop runs every `--redelivery-interval` (5 s), or not with `--no-recovery`;
//! `--dockhand-env K=V` sets more. It fails on a job given two runners (but for a
//! replacement) or (with the loop on) a job lost. An outage mid-feed loses no job even
//! without the loop: runners launched for later jobs run the missed ones, oldest first.
//!
//! ```sh
//! cargo bench --bench chaos -- --scenario ingress-outage
//! cargo bench --bench chaos -- --scenario ingress-outage --no-recovery
//! cargo bench --bench chaos -- --scenario ingress-outage --outage-kind down
//! ```
//!
//! The scale-out layout needs moto_server (`$DOCKHAND_TEST_MOTO_URL`, or `--moto URL`) and
//! Debian's Postgres binaries (it runs its own throwaway cluster).
//!
//! It is a harness, not a test: without `--bench` (as `cargo test` runs bench targets) it
//! does nothing. The short soak in the test suite is `tests/it/chaos.rs`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use dockhand_sim::Settings;
use dockhand_sim::soak::{
    self, IngressOutageSoak, OutageReport, QuotaBurst, QuotaReport, ScaleOut, SoakOptions,
    SoakReport, WarmPool,
};

const USAGE: &str = "cargo bench --bench chaos -- [--layout single|scale-out] [--jobs N] \
[--rate JOBS_PER_SEC] [--kill-every SECS (0: never)] [--seed N] [--poison N] [--concurrency N] \
[--settle SECS] [--dir PATH] [--task-deaths SHARE (0.05)] [--deaths PERCENT (the same, in %)] \
[--spot-interruptions SHARE (0: the pool runs on launch type FARGATE)] \
[--leftovers-allowed] [--workers N] [--moto URL] \
[--scenario chaos|job-wait|quota-burst|ingress-outage] [--apps 1|2|4] [--baseline | --old-config] \
[--max-wait DUR (real)] [--dockhand-bin PATH] [--outage-secs SECS] [--outage-after SECS] \
[--outage-kind unreachable|503|down] [--no-recovery] [--redelivery-interval SECS] \
[--dockhand-env DOCKHAND_KEY=VALUE] \
[--time-scale SIM_SECS_PER_SEC] [--task-start DUR[..DUR]] [--runner-ready-delay DUR[..DUR]] \
[--job-duration DUR[..DUR]] [--min-idle N] [--warm-target ORG] [--max-idle-age DUR] \
(DUR: simulated time, e.g. 30s, 2m)";

/// What the soak is for.
#[derive(Debug, Clone)]
enum Scenario {
    /// Faults and kills, checked against the books (issue 13).
    Chaos,
    /// How long jobs wait for a runner in a calm world, with or without warm runners.
    JobWait,
    /// How close a burst of jobs comes to the launch rate GitHub's and ECS's limits allow.
    QuotaBurst(QuotaBurst),
    /// Whether jobs announced during an ingress outage still get their runner.
    IngressOutage(IngressOutageSoak),
}

impl Scenario {
    fn name(&self) -> &'static str {
        match self {
            Self::Chaos => "chaos",
            Self::JobWait => "job-wait",
            Self::QuotaBurst(_) => "quota-burst",
            Self::IngressOutage(_) => "ingress-outage",
        }
    }
}

/// The Apps' (private, public) keys: the test key for Apps 1 and 3, the second key for
/// Apps 2 and 4 (verification is by App id and key, so a key may serve two Apps).
fn app_keys(fixtures: &Path, apps: usize) -> Vec<(PathBuf, PathBuf)> {
    (0..apps)
        .map(|n| {
            let name = if n % 2 == 0 {
                "github-app-test-key"
            } else {
                "github-app-second-key"
            };
            (
                fixtures.join(format!("{name}.pem")),
                fixtures.join(format!("{name}.pub.pem")),
            )
        })
        .collect()
}

/// A soak's options (its warm pool among them), its layout (`None`: single node) and its
/// scenario.
type Plan = (SoakOptions, Option<ScaleOut>, Scenario);

fn options(args: &[String]) -> anyhow::Result<Plan> {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut o = SoakOptions {
        bin: PathBuf::from(env!("CARGO_BIN_EXE_dockhand")),
        private_key: fixtures.join("github-app-test-key.pem"),
        public_key: fixtures.join("github-app-test-key.pub.pem"),
        dir: PathBuf::new(),
        jobs: 10_000,
        poison: 10,
        rate: 15.0,
        kill_every: Some(Duration::from_secs(10)),
        settle_timeout: Duration::from_secs(180),
        concurrency: 32,
        leftovers_fail: true,
        sim: Settings::chaos(1),
        warm: WarmPool::default(),
    };
    let mut dir = None;
    let mut scale_out: Option<ScaleOut> = None;
    let mut workers = 3;
    let mut moto = std::env::var("DOCKHAND_TEST_MOTO_URL").ok();
    let (mut jobs, mut rate) = (None, None);
    let mut scenario = match args.iter().position(|a| a == "--scenario") {
        None => Scenario::Chaos,
        Some(i) => match args.get(i + 1).map(String::as_str) {
            Some("chaos") => Scenario::Chaos,
            Some("job-wait") => Scenario::JobWait,
            Some("quota-burst") => Scenario::QuotaBurst(QuotaBurst {
                keys: Vec::new(),
                baseline: false,
                max_wait: Duration::from_secs(30),
            }),
            Some("ingress-outage") => Scenario::IngressOutage(IngressOutageSoak::default()),
            other => anyhow::bail!(
                "--scenario: chaos, job-wait, quota-burst or ingress-outage, not {other:?}"
            ),
        },
    };
    let mut apps = 1;
    match scenario {
        Scenario::JobWait => (o.sim, o.kill_every, o.poison) = (Settings::calm(1), None, 0),
        Scenario::QuotaBurst(_) => {
            (o.sim, o.kill_every, o.poison) = (Settings::quota_burst(1, apps), None, 0);
            (o.leftovers_fail, o.settle_timeout) = (false, Duration::from_secs(600));
        }
        Scenario::IngressOutage(_) => {
            (o.sim, o.kill_every, o.poison) = (Settings::ingress_outage(1), None, 0);
            (o.leftovers_fail, o.settle_timeout) = (false, Duration::from_secs(300));
        }
        Scenario::Chaos => {}
    }
    let mut args = args.iter().filter(|a| *a != "--bench");
    while let Some(flag) = args.next() {
        if flag == "--leftovers-allowed" {
            o.leftovers_fail = false;
            continue;
        }
        if ["--baseline", "--old-config", "--no-recovery"].contains(&flag.as_str()) {
            match &mut scenario {
                Scenario::QuotaBurst(burst) if flag != "--no-recovery" => burst.baseline = true,
                Scenario::IngressOutage(outage) if flag != "--old-config" => {
                    outage.recovery = false
                }
                _ => anyhow::bail!("{flag} is for --scenario quota-burst or ingress-outage"),
            }
            continue;
        }
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value; {USAGE}"))?;
        let number = || {
            value
                .parse::<f64>()
                .with_context(|| format!("{flag}: not a number: {value}"))
        };
        match flag.as_str() {
            "--jobs" => jobs = Some(number()? as usize),
            "--rate" => rate = Some(number()?),
            "--workers" => workers = number()? as usize,
            "--moto" => moto = Some(value.clone()),
            "--layout" => {
                scale_out = match value.as_str() {
                    "single" => None,
                    "scale-out" => Some(ScaleOut {
                        moto_url: String::new(),
                        workers: 3,
                        sqs_error_rate: 0.05,
                    }),
                    other => anyhow::bail!("--layout: single or scale-out, not {other}"),
                }
            }
            "--kill-every" => {
                o.kill_every = Some(Duration::from_secs_f64(number()?)).filter(|d| !d.is_zero())
            }
            "--seed" => o.sim.seed = number()? as u64,
            "--poison" => o.poison = number()? as usize,
            "--concurrency" => o.concurrency = number()? as usize,
            "--settle" => o.settle_timeout = Duration::from_secs_f64(number()?),
            "--task-deaths" => o.sim.task_death_rate = share(flag, number()?, 1.0)?,
            "--deaths" => o.sim.task_death_rate = share(flag, number()?, 100.0)?,
            "--spot-interruptions" => o.sim.spot_interruption_rate = share(flag, number()?, 1.0)?,
            "--dir" => dir = Some(PathBuf::from(value)),
            "--scenario" => {}
            "--time-scale" => o.sim.time_scale = number()?.max(1.0),
            "--task-start" => o.sim.task_start = range(flag, value)?,
            "--runner-ready-delay" => o.sim.runner_ready = range(flag, value)?,
            "--job-duration" => o.sim.job_duration = range(flag, value)?,
            "--min-idle" => o.warm.min_idle = number()? as u32,
            "--warm-target" => o.warm.target = Some(value.clone()),
            "--max-idle-age" => o.warm.max_idle_age = Some(duration(flag, value)?),
            "--apps" => apps = number()? as usize,
            "--dockhand-bin" => o.bin = PathBuf::from(value),
            "--max-wait" => match &mut scenario {
                Scenario::QuotaBurst(burst) => burst.max_wait = duration(flag, value)?,
                _ => anyhow::bail!("--max-wait is for --scenario quota-burst"),
            },
            _ => {
                let taken = match &mut scenario {
                    Scenario::IngressOutage(outage) => outage.option(flag, value)?,
                    _ => false,
                };
                anyhow::ensure!(
                    taken,
                    "unknown option {flag} (or not for this scenario); {USAGE}"
                );
            }
        }
    }
    if let Some(layout) = &mut scale_out {
        layout.workers = workers;
        layout.moto_url =
            moto.context("the scale-out layout needs moto: --moto URL or $DOCKHAND_TEST_MOTO_URL")?;
        (o.jobs, o.rate) = (1_000, 8.0);
    }
    match &mut scenario {
        Scenario::JobWait => (o.jobs, o.rate) = (300, 2.0),
        Scenario::QuotaBurst(burst) => {
            anyhow::ensure!((1..=4).contains(&apps), "--apps: 1 to 4, not {apps}");
            anyhow::ensure!(
                !burst.baseline || apps == 1,
                "--baseline: today's dockhand knows one App only"
            );
            anyhow::ensure!(scale_out.is_none(), "the quota burst runs on a single node");
            burst.keys = app_keys(&fixtures, apps);
            // The burst arrives at once: the rate is not used.
            (o.jobs, o.rate) = (1_000, f64::MAX);
        }
        Scenario::IngressOutage(outage) => {
            anyhow::ensure!(
                scale_out.is_none(),
                "the ingress outage runs on a single node"
            );
            anyhow::ensure!(!outage.lasting.is_zero(), "--outage-secs must be positive");
            (o.jobs, o.rate) = (300, 10.0);
        }
        Scenario::Chaos => {}
    }
    o.jobs = jobs.unwrap_or(o.jobs);
    o.rate = rate.unwrap_or(o.rate);
    anyhow::ensure!(
        o.jobs > 0 && o.rate > 0.0,
        "--jobs and --rate must be positive"
    );
    o.dir = match dir {
        Some(dir) => dir,
        None => std::env::temp_dir().join(format!("dockhand-chaos-{}", std::process::id())),
    };
    std::fs::create_dir_all(&o.dir)?;
    Ok((o, scale_out, scenario))
}

/// A duration from the command line (`30s`, `2m`, `1h`).
fn duration(flag: &str, value: &str) -> anyhow::Result<Duration> {
    humantime::parse_duration(value).with_context(|| format!("{flag}: not a duration: {value}"))
}

/// A range of durations, `LOW..HIGH`, or one duration for both ends.
fn range(flag: &str, value: &str) -> anyhow::Result<(Duration, Duration)> {
    let (low, high) = value.split_once("..").unwrap_or((value, value));
    let (low, high) = (duration(flag, low)?, duration(flag, high)?);
    anyhow::ensure!(low <= high, "{flag}: {value} ends before it starts");
    Ok((low, high))
}

/// A share (0 to 1) from the command line, given as a fraction of `whole` (1, or 100 for
/// a percentage).
fn share(flag: &str, value: f64, whole: f64) -> anyhow::Result<f64> {
    anyhow::ensure!(
        (0.0..=whole).contains(&value),
        "{flag}: from 0 to {whole}, not {value}"
    );
    Ok(value / whole)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        if !args.iter().any(|a| a == "--list") {
            eprintln!("the chaos soak runs only under `cargo bench --bench chaos`");
        }
        return ExitCode::SUCCESS;
    }
    let (options, scale_out, scenario) = match options(&args) {
        Ok(o) => o,
        Err(err) => {
            eprintln!("error: {err:#}");
            return ExitCode::FAILURE;
        }
    };
    if let Scenario::QuotaBurst(burst) = &scenario {
        eprintln!(
            "quota-burst: {} jobs at once, {} App(s), {}, 30% of deliveries twice, time scale {}, binary {}, in {}",
            options.jobs,
            burst.keys.len(),
            if burst.baseline {
                "baseline config (one App, no limits sections)"
            } else {
                "paced config"
            },
            options.sim.time_scale,
            options.bin.display(),
            options.dir.display()
        );
        let report = runtime().block_on(soak::quota_burst(&options, burst));
        return finish(report.map(|r| {
            let table = format!("{}\n{}", QuotaReport::ROW_HEADER, r.row());
            (format!("{r}\n{table}"), r.passed())
        }));
    }
    if let Scenario::IngressOutage(outage) = &scenario {
        eprintln!(
            "ingress-outage: {} jobs at {}/s, outage {} for {:?} from {:?} after the first delivery, recovery loop {} every {:?}, binary {}, in {}",
            options.jobs,
            options.rate,
            outage.kind.as_str(),
            outage.lasting,
            outage.after,
            if outage.recovery { "on" } else { "off" },
            outage.interval,
            options.bin.display(),
            options.dir.display()
        );
        let report = runtime().block_on(soak::ingress_outage(&options, outage));
        return finish(report.map(|r| {
            let table = format!("{}\n{}", OutageReport::ROW_HEADER, r.row());
            (format!("{r}\n{table}"), r.passed())
        }));
    }
    let layout = match &scale_out {
        Some(s) => format!(
            "scale-out (ingress + {} workers, SQS on moto, Postgres)",
            s.workers
        ),
        None => "single node".to_string(),
    };
    eprintln!(
        "{} soak: {layout}, {} jobs at {}/s, kill -9 every {:?}, {}% of tasks dying{}, leftovers {}, seed {}, in {}",
        scenario.name(),
        options.jobs,
        options.rate,
        options.kill_every,
        options.sim.task_death_rate * 100.0,
        if options.sim.spot_interruption_rate > 0.0 {
            format!(
                ", FARGATE_SPOT first with {}% of its tasks interrupted",
                options.sim.spot_interruption_rate * 100.0
            )
        } else {
            String::new()
        },
        if options.leftovers_fail {
            "fail"
        } else {
            "allowed"
        },
        options.sim.seed,
        options.dir.display()
    );
    if matches!(scenario, Scenario::JobWait) || options.warm.min_idle > 0 {
        eprintln!("{}", options.steady_state());
    }
    let run = async {
        match &scale_out {
            Some(layout) => soak::scale_out(&options, layout).await,
            None => soak::single_node(&options).await,
        }
    };
    finish(runtime().block_on(run).map(|r| {
        let mut text = r.to_string();
        if matches!(scenario, Scenario::JobWait) {
            let row = r.wait_row(&options.warm);
            text.push_str(&format!("\n{}\n{row}", SoakReport::WAIT_ROW_HEADER));
        }
        (text, r.passed())
    }))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

/// Prints a measured scenario's report (with its row of docs/benchmarks.md's table) and
/// exits as it passed, or with the error of a run that could not be made.
fn finish(report: anyhow::Result<(String, bool)>) -> ExitCode {
    match report {
        Ok((report, passed)) => {
            println!("{report}");
            if passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
