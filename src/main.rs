use std::process::ExitCode;

use clap::Parser;
use dockhand::cli::{Cli, Command, ConfigCommand};
use dockhand::config::Settings;
use dockhand::startup::{IngressServer, shutdown_on_signal};
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
    let config = cli.config.as_deref();
    match cli.command {
        Command::Serve | Command::Ingress => {
            let settings = Settings::load(config)?;
            telemetry::init(&settings.log, LogTarget::Stdout);
            let server = IngressServer::build(&settings).await?;
            server.run_until_stopped(shutdown_on_signal()).await?;
        }
        Command::Config(ConfigCommand::Check) => {
            let settings = Settings::load(config)?;
            print!("{}", settings.to_redacted_toml());
            eprintln!("configuration is valid");
        }
        Command::SendEvent(args) => return args.run(config).await,
    }
    Ok(ExitCode::SUCCESS)
}
