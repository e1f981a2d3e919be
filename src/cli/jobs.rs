//! `dockhand jobs show|list` and `dockhand runners list`: the store's record, for people
//! (text) and scripts (JSON).

use std::process::ExitCode;

use anyhow::Context;
use chrono::Utc;
use clap::{Args, Subcommand, ValueEnum};

use crate::config::{SecretResolver, Settings};
use crate::domain::JobId;
use crate::ecs::Launcher;
use crate::github::GitHubApp;
use crate::inspect::{self, JobQuery, JobStory, LiveClients, render};
use crate::store::{RunnerState, Store};

/// How a command prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// For people
    #[value(alias = "table")]
    Text,
    /// For scripts
    Json,
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Why a job is still queued, or what became of it: one line that answers, then its
    /// timeline from the store. Exits 1 for a job the store does not know
    Show(ShowArgs),
    /// Jobs in the store, newest first
    List(ListArgs),
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The workflow job id (the number at the end of the job's URL on GitHub)
    pub job_id: u64,
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
    /// Also ask GitHub for the job's status and ECS for its task's, and say where they
    /// disagree with the store (needs [github] and AWS credentials)
    #[arg(long)]
    pub live: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only jobs in this state: a launch state (owed, launching, launched, adopted, failed,
    /// dry_run, waived) or GitHub's (queued, in_progress, completed)
    #[arg(long)]
    pub state: Option<String>,
    /// Only jobs of this pool
    #[arg(long)]
    pub pool: Option<String>,
    /// Only jobs of this repository, as owner/name
    #[arg(long, value_name = "OWNER/NAME")]
    pub repo: Option<String>,
    /// Only jobs received longer ago than this (e.g. 2h)
    #[arg(long, value_name = "DURATION")]
    pub older_than: Option<String>,
    /// Only jobs received less long ago than this (e.g. 30m)
    #[arg(long, value_name = "DURATION")]
    pub newer_than: Option<String>,
    /// Show at most this many
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=i64::from(inspect::MAX_LIST)))]
    pub limit: u32,
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
}

#[derive(Debug, Subcommand)]
pub enum RunnersCommand {
    /// Runners dockhand registered, newest first: pool, the job each was launched for, the
    /// job it ran, its task, state and age
    List {
        /// Only runners of this pool
        #[arg(long)]
        pool: Option<String>,
        /// Only runners in this state (registered, launched, busy, finished, removed)
        #[arg(long, value_parser = runner_state)]
        state: Option<RunnerState>,
        /// Show at most this many
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
        limit: u32,
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
}

fn runner_state(value: &str) -> Result<RunnerState, String> {
    match RunnerState::parse(value) {
        RunnerState::Unknown => Err(format!(
            "one of {}",
            RunnerState::ALL.map(RunnerState::as_str).join(", ")
        )),
        state => Ok(state),
    }
}

fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(value).expect("the record serializes")
}

/// `dockhand jobs show`.
pub async fn show(settings: &Settings, args: &ShowArgs) -> anyhow::Result<ExitCode> {
    let store = Store::connect(&settings.store).await?;
    let name = inspect::store_name(&settings.store.url);
    let now = Utc::now();
    let Some(mut story) = JobStory::load(&store, &name, JobId(args.job_id), now).await? else {
        eprintln!("{}", inspect::unknown(JobId(args.job_id), &name));
        return Ok(ExitCode::FAILURE);
    };
    if args.live {
        live_clients(settings).await?.check(&mut story).await;
    }
    match args.output {
        Output::Text => print!("{}", render::story(&story, now)),
        Output::Json => println!("{}", json(&story)),
    }
    Ok(ExitCode::SUCCESS)
}

/// The GitHub App and ECS clients `--live` asks.
async fn live_clients(settings: &Settings) -> anyhow::Result<LiveClients> {
    let github = GitHubApp::from_settings(&settings.github, &SecretResolver::new(&settings.aws))
        .await
        .context("--live asks GitHub as the App: configure [github]")?;
    let ecs = Launcher::with_pacing(settings.aws.ecs_client().await, &settings.aws.run_task);
    Ok(LiveClients { github, ecs })
}

/// `dockhand jobs list`.
pub async fn list(settings: &Settings, args: &ListArgs) -> anyhow::Result<()> {
    let now = Utc::now();
    let query = JobQuery {
        state: args.state.clone(),
        pool: args.pool.clone(),
        repo: args.repo.clone(),
        older_than: args.older_than.clone(),
        newer_than: args.newer_than.clone(),
        limit: Some(args.limit),
    };
    let filter = query.filter(now).map_err(anyhow::Error::msg)?;
    let store = Store::connect(&settings.store).await?;
    let jobs = store.jobs(&filter).await?;
    match args.output {
        Output::Text => print!("{}", render::jobs(&jobs, now)),
        Output::Json => println!("{}", json(&jobs)),
    }
    Ok(())
}

/// `dockhand runners list`.
pub async fn runners(settings: &Settings, command: &RunnersCommand) -> anyhow::Result<()> {
    let RunnersCommand::List {
        pool,
        state,
        limit,
        output,
    } = command;
    let store = Store::connect(&settings.store).await?;
    let runners = store
        .list_runners(pool.as_deref(), *state, *limit, true)
        .await?;
    match output {
        Output::Text => print!("{}", render::runners(&runners, Utc::now())),
        Output::Json => println!("{}", json(&runners)),
    }
    Ok(())
}
