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
use dockhand_sim::soak::{self, ScaleOut, SoakOptions};

const USAGE: &str = "cargo bench --bench chaos -- [--layout single|scale-out] [--jobs N] \
[--rate JOBS_PER_SEC] [--kill-every SECS (0: never)] [--seed N] [--poison N] [--concurrency N] \
[--settle SECS] [--dir PATH] [--task-deaths SHARE (0.05)] [--deaths PERCENT (the same, in %)] \
[--spot-interruptions SHARE (0: the pool runs on launch type FARGATE)] \
[--leftovers-allowed] [--workers N] [--moto URL]";

fn options(args: &[String]) -> anyhow::Result<(SoakOptions, Option<ScaleOut>)> {
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
    };
    let mut dir = None;
    let mut scale_out: Option<ScaleOut> = None;
    let mut workers = 3;
    let mut moto = std::env::var("DOCKHAND_TEST_MOTO_URL").ok();
    let (mut jobs, mut rate) = (None, None);
    let mut args = args.iter().filter(|a| *a != "--bench");
    while let Some(flag) = args.next() {
        if flag == "--leftovers-allowed" {
            o.leftovers_fail = false;
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
            _ => anyhow::bail!("unknown option {flag}; {USAGE}"),
        }
    }
    if let Some(layout) = &mut scale_out {
        layout.workers = workers;
        layout.moto_url =
            moto.context("the scale-out layout needs moto: --moto URL or $DOCKHAND_TEST_MOTO_URL")?;
        (o.jobs, o.rate) = (1_000, 8.0);
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
    Ok((o, scale_out))
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
    let (options, scale_out) = match options(&args) {
        Ok(o) => o,
        Err(err) => {
            eprintln!("error: {err:#}");
            return ExitCode::FAILURE;
        }
    };
    let layout = match &scale_out {
        Some(s) => format!(
            "scale-out (ingress + {} workers, SQS on moto, Postgres)",
            s.workers
        ),
        None => "single node".to_string(),
    };
    eprintln!(
        "chaos soak: {layout}, {} jobs at {}/s, kill -9 every {:?}, {}% of tasks dying{}, leftovers {}, seed {}, in {}",
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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let run = async {
        match &scale_out {
            Some(layout) => soak::scale_out(&options, layout).await,
            None => soak::single_node(&options).await,
        }
    };
    match runtime.block_on(run) {
        Ok(report) => {
            println!("{report}");
            if report.passed() {
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
