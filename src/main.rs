use std::process::ExitCode;

use clap::Parser;
use dockhand::cli::jobs::{self, JobsCommand};
use dockhand::cli::{Cli, Command, ConfigCommand, DlqCommand};
use dockhand::config::{ConfigSource, Roles, Settings};
use dockhand::dlq;
use dockhand::startup::{Application, Reloading, shutdown_on_signal};
use dockhand::store::Store;
use dockhand::telemetry::{self, LogTarget};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "dockhand failed");
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = cli.config_source();
    match cli.command {
        Command::Serve(args) => run_app(config, Roles::SERVE, args.dry_run).await?,
        Command::Worker(args) => run_app(config, Roles::WORKER, args.dry_run).await?,
        Command::Ingress => run_app(config, Roles::INGRESS, false).await?,
        Command::Migrate => {
            let settings = config.load().await?;
            telemetry::init(&settings.log, LogTarget::Stderr);
            Store::connect_only(&settings.store)
                .await?
                .migrate()
                .await?;
            eprintln!(
                "migrations applied to {}",
                dockhand::inspect::store_name(&settings.store.url)
            );
        }
        Command::Config(ConfigCommand::Check { process }) => {
            let settings = config.load().await?;
            settings.validate_for(process.roles())?;
            print!("{}", settings.to_redacted_toml());
            eprintln!("configuration is valid");
        }
        Command::SendEvent(args) => return args.run(&config).await,
        Command::Jobs(JobsCommand::Show(args)) => {
            let settings = load_for_tool(&config).await?;
            return jobs::show(&settings, &args).await;
        }
        Command::Jobs(JobsCommand::List(args)) => {
            jobs::list(&load_for_tool(&config).await?, &args).await?;
        }
        Command::Runners(command) => {
            jobs::runners(&load_for_tool(&config).await?, &command).await?;
        }
        Command::Dlq(DlqCommand::List { max, output }) => {
            let settings = load_for_tool(&config).await?;
            dlq::report::run_list(&settings, max as usize, output).await?;
        }
        Command::Requeue(args) => {
            // Refuse before touching anything, configuration included.
            let refusal = args
                .selection(0)
                .check()
                .err()
                .or((!args.dry_run && !args.yes && !dlq::report::interactive())
                    .then_some(dlq::Refusal::NotConfirmed));
            if let Some(refusal) = refusal {
                eprintln!("error: {refusal}");
                return Ok(ExitCode::from(2));
            }
            let settings = load_for_tool(&config).await?;
            let run = dlq::report::RequeueRun {
                selection: args.selection(settings.queue.max_requeues),
                dry_run: args.dry_run,
                yes: args.yes,
                rate: args.rate,
                format: args.output,
            };
            return dlq::report::run_requeue(&settings, run).await;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Settings for a one-shot tool: its logs go to stderr, warnings and worse unless RUST_LOG
/// says otherwise, so that stdout holds only its output.
async fn load_for_tool(config: &ConfigSource) -> anyhow::Result<Settings> {
    let settings = config.load().await?;
    let mut log = settings.log.clone();
    log.level = "warn".into();
    telemetry::init(&log, LogTarget::Stderr);
    Ok(settings)
}

async fn run_app(config: ConfigSource, roles: Roles, dry_run: bool) -> anyhow::Result<()> {
    let mut settings = config.load().await?;
    settings.worker.dry_run |= dry_run;
    telemetry::init(&settings.log, LogTarget::Stdout);
    let reloading = Reloading {
        source: config,
        dry_run,
    };
    let app = Application::build_reloading(&settings, roles, Some(reloading)).await?;
    app.run_until_stopped(shutdown_on_signal()).await
}
