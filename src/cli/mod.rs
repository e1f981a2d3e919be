//! The command line.

pub mod jobs;

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use secrecy::{ExposeSecret, SecretString};

use crate::config::{ConfigSource, DEFAULT_CONFIG_PATH, SecretResolver};
use crate::synthetic::{self, SyntheticJob};

/// Autoscales ephemeral GitHub Actions self-hosted runners on Amazon ECS.
///
/// Configuration layers: built-in defaults, then the TOML given by --config (a file, or an
/// SSM parameter as ssm:NAME; default config/dockhand.toml, if present), then DOCKHAND_*
/// environment variables with `__` for nesting (DOCKHAND_QUEUE__KIND=sqs). Running
/// processes read it again every reload.interval and apply pool changes. Logs go to stdout as JSON unless stdout is a
/// terminal; RUST_LOG overrides [log] level.
#[derive(Debug, Parser)]
#[command(name = "dockhand", version, propagate_version = true)]
pub struct Cli {
    /// The TOML configuration: a file, or ssm:NAME for an SSM parameter holding it
    /// [default: config/dockhand.toml, when it exists]
    #[arg(
        long,
        global = true,
        env = "DOCKHAND_CONFIG",
        value_name = "FILE|ssm:NAME"
    )]
    pub config: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Single node: run the webhook ingress and the workers in one process, on the embedded
    /// queue and a SQLite store by default
    Serve(RunArgs),
    /// Run the webhook ingress and the admin endpoints (/metrics, /healthz, /readyz)
    Ingress,
    /// Run a worker: consume the queue, launch one runner per queued job, follow jobs to
    /// completion; plus the admin endpoints
    Worker(RunArgs),
    /// Run the store's database migrations (Postgres or SQLite) and exit
    Migrate,
    /// Work with the configuration
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Send a correctly signed synthetic workflow_job delivery to a running ingress, to
    /// smoke-test it. Exits non-zero unless the answer is 2xx
    SendEvent(SendEventArgs),
    /// Why is my job still queued? A job's story from the store: `jobs show JOB_ID`, and
    /// `jobs list`
    #[command(subcommand)]
    Jobs(jobs::JobsCommand),
    /// The runners dockhand registered: `runners list`
    #[command(subcommand)]
    Runners(jobs::RunnersCommand),
    /// Work with the dead-letter queue
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Move dead-lettered messages back to the main queue, once their cause is fixed.
    ///
    /// Each message is sent to the main queue with its body and attributes, its
    /// requeue-count attribute raised, and only then deleted from the dead-letter queue: a
    /// crash in between leaves a copy in both, which the workers' dedupe absorbs. Say which
    /// messages (--all for every one); on a terminal it asks before moving, elsewhere it
    /// needs --yes. Exits 1 if any chosen message failed to move, 2 when it refuses
    Requeue(RequeueArgs),
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Show dead-lettered messages and why they died, without consuming them: each is
    /// received, hidden for 120s while the scan goes on, then made visible again
    List {
        /// Show at most this many
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
        max: u32,
        /// `table` for people, `json` for scripts (an array of messages)
        #[arg(long, value_enum, default_value = "table")]
        output: crate::dlq::report::Format,
    },
}

#[derive(Debug, Args)]
pub struct RequeueArgs {
    /// Move at most this many (the first found)
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub max: Option<u32>,
    /// Only these workflow job ids (repeat, or separate with commas)
    #[arg(long, value_delimiter = ',')]
    pub job_id: Vec<u64>,
    /// Only jobs of this repository, as owner/name (repeatable)
    #[arg(long, value_name = "OWNER/NAME")]
    pub repo: Vec<String>,
    /// Only messages for this workflow_job action (repeatable)
    #[arg(long, value_enum)]
    pub action: Vec<ActionArg>,
    /// Only messages whose delivery the ingress accepted longer ago than this (e.g. 2h)
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub older_than: Option<std::time::Duration>,
    /// Only messages whose delivery the ingress accepted less long ago than this (e.g. 30m)
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub newer_than: Option<std::time::Duration>,
    /// Every dead-lettered message
    #[arg(long, conflicts_with_all = ["job_id", "repo", "action", "older_than", "newer_than"])]
    pub all: bool,
    /// Show what would move, and move nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask for confirmation (required when stdin is not a terminal)
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Move at most this many messages a second
    #[arg(long, value_name = "PER_SECOND", value_parser = positive_rate)]
    pub rate: Option<f64>,
    /// Move messages even if they were already requeued --max-requeues times
    #[arg(long)]
    pub force: bool,
    /// Skip messages already requeued this many times [default: queue.max_requeues, 3]
    #[arg(long, value_name = "N")]
    pub max_requeues: Option<u32>,
    /// `table` for people, `json` for scripts (every message's outcome and the summary)
    #[arg(long, value_enum, default_value = "table")]
    pub output: crate::dlq::report::Format,
}

impl RequeueArgs {
    /// The selection, with `max_requeues` from the configuration unless given.
    pub fn selection(&self, configured_max_requeues: u32) -> crate::dlq::Selection {
        crate::dlq::Selection {
            filter: crate::dlq::Filter {
                job_ids: self.job_id.clone(),
                repos: self.repo.clone(),
                actions: self.action.iter().map(|a| a.as_str().to_string()).collect(),
                older_than: self.older_than,
                newer_than: self.newer_than,
            },
            all: self.all,
            max: self.max.map(|m| m as usize),
            max_requeues: self.max_requeues.unwrap_or(configured_max_requeues),
            force: self.force,
        }
    }
}

fn positive_rate(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!(
            "`{value}` is not a positive number of messages per second"
        )),
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Do everything except the GitHub and ECS calls: log and record what would launch
    /// (same as worker.dry_run = true)
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration and print the effective settings, secrets redacted
    Check {
        /// Which process the configuration is for: each needs different settings (an
        /// ingress a webhook secret, a worker the GitHub App and [pool.ecs])
        #[arg(long = "for", value_enum, default_value = "serve")]
        process: ProcessArg,
    },
}

/// A kind of dockhand process.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ProcessArg {
    Serve,
    Ingress,
    Worker,
}

impl ProcessArg {
    pub fn roles(self) -> crate::config::Roles {
        match self {
            Self::Serve => crate::config::Roles::SERVE,
            Self::Ingress => crate::config::Roles::INGRESS,
            Self::Worker => crate::config::Roles::WORKER,
        }
    }
}

/// A workflow_job action.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ActionArg {
    Queued,
    Waiting,
    #[value(name = "in_progress")]
    InProgress,
    Completed,
}

impl ActionArg {
    fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Waiting => "waiting",
            Self::InProgress => "in_progress",
            Self::Completed => "completed",
        }
    }
}

#[derive(Debug, Args)]
pub struct SendEventArgs {
    /// Where to POST [default: http://<server.listen><server.path> from the configuration]
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// A file holding the webhook secret to sign with [default: the configuration's first
    /// webhook secret]
    #[arg(long, value_name = "FILE")]
    pub secret_file: Option<PathBuf>,
    /// The webhook secret to sign with (prefer --secret-file: arguments are visible to
    /// other users of the machine)
    #[arg(
        long,
        env = "DOCKHAND_SEND_SECRET",
        hide_env_values = true,
        conflicts_with = "secret_file"
    )]
    pub secret: Option<String>,
    /// The workflow_job action
    #[arg(long, value_enum, default_value = "queued")]
    pub action: ActionArg,
    /// The job's labels (runs-on), comma-separated
    #[arg(long, value_delimiter = ',', default_value = "self-hosted,linux,x64")]
    pub labels: Vec<String>,
    /// The workflow job id [default: random]
    #[arg(long)]
    pub job_id: Option<u64>,
    /// The workflow run id [default: random]
    #[arg(long)]
    pub run_id: Option<u64>,
    /// The repository, as owner/name
    #[arg(long, default_value = "octo-org/hello-world")]
    pub repo: String,
    /// The GitHub App installation id to put in the event [default: none]
    #[arg(long)]
    pub installation_id: Option<u64>,
    /// Steps in the job: each adds about 130 bytes to the payload
    #[arg(long, default_value_t = 4)]
    pub steps: usize,
}

impl Cli {
    /// Where the configuration comes from.
    pub fn config_source(&self) -> ConfigSource {
        ConfigSource::from_arg(self.config.as_deref())
    }
}

impl SendEventArgs {
    /// Sends the delivery and prints the answer; the exit code says whether it was 2xx.
    pub async fn run(self, config: &ConfigSource) -> anyhow::Result<ExitCode> {
        let (url, secret) = self.target(config).await?;
        let spec = SyntheticJob {
            action: self.action.as_str().to_string(),
            job_id: self.job_id.unwrap_or_else(random_id),
            run_id: self.run_id.unwrap_or_else(random_id),
            labels: self.labels,
            repo: self.repo,
            installation_id: self.installation_id,
            steps: self.steps,
        };
        let body = synthetic::workflow_job_payload(&spec).to_string();
        let delivery = uuid::Uuid::new_v4().to_string();
        let (status, answer) =
            synthetic::deliver(&url, secret.expose_secret().as_bytes(), &delivery, &body)
                .await
                .with_context(|| format!("sending to {url}"))?;
        println!(
            "{} {} job {} ({} bytes) -> HTTP {}: {}",
            spec.action,
            spec.repo,
            spec.job_id,
            body.len(),
            status.as_u16(),
            answer.trim()
        );
        Ok(if status.is_success() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    }

    async fn target(&self, config: &ConfigSource) -> anyhow::Result<(String, SecretString)> {
        let explicit_secret = match (&self.secret, &self.secret_file) {
            (Some(secret), _) => Some(SecretString::from(secret.clone())),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                Some(SecretString::from(text.trim_end_matches(['\r', '\n'])))
            }
            (None, None) => None,
        };
        if let (Some(url), Some(secret)) = (&self.url, &explicit_secret) {
            return Ok((url.clone(), secret.clone()));
        }
        let settings = config.load().await.with_context(|| {
            format!(
                "pass --url and --secret-file, or a valid --config (default {DEFAULT_CONFIG_PATH})"
            )
        })?;
        let url = self.url.clone().unwrap_or_else(|| {
            let mut addr = settings.server.listen;
            if addr.ip().is_unspecified() {
                addr.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
            }
            format!("http://{addr}{}", settings.server.path)
        });
        let secret = match explicit_secret {
            Some(secret) => secret,
            None => {
                let first = settings.webhook.secrets.first().with_context(|| {
                    format!(
                        "no secret to sign with: pass --secret-file (or --secret), or configure \
                         webhook.secrets in {config}"
                    )
                })?;
                SecretResolver::new(&settings.aws)
                    .resolve(first)
                    .await
                    .context("webhook.secrets[0]")?
            }
        };
        Ok((url, secret))
    }
}

fn random_id() -> u64 {
    // Positive and below 2^53, like GitHub's ids, so JSON tools read them exactly.
    (uuid::Uuid::new_v4().as_u128() as u64) >> 11
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn send_event_parses_its_flags() {
        let cli = Cli::parse_from([
            "dockhand",
            "send-event",
            "--action",
            "in_progress",
            "--labels",
            "a,b",
            "--job-id",
            "7",
        ]);
        let Command::SendEvent(args) = cli.command else {
            panic!("not send-event")
        };
        assert_eq!(args.labels, ["a", "b"]);
        assert_eq!(args.job_id, Some(7));
        assert_eq!(args.action.as_str(), "in_progress");
    }

    #[tokio::test]
    async fn send_event_without_any_webhook_secret_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("dockhand.toml");
        std::fs::write(&file, "[[pool]]\nname = \"linux\"\nlabels = [\"linux\"]\n").unwrap();
        let cli = Cli::parse_from([
            "dockhand",
            "send-event",
            "--url",
            "http://127.0.0.1:1/webhook",
        ]);
        let Command::SendEvent(args) = cli.command else {
            panic!("not send-event")
        };
        let err = args
            .target(&ConfigSource::File(file.clone()))
            .await
            .unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            format!(
                "no secret to sign with: pass --secret-file (or --secret), or configure \
                 webhook.secrets in {}",
                file.display()
            )
        );
    }
}
