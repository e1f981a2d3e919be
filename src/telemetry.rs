//! Logging: JSON when stdout is not a terminal, human-readable when it is. The level comes
//! from `RUST_LOG` when set, else from `[log] level`.
//!
//! Whatever the filter says, the crates that carry HTTP requests, [`CAPPED`], log at `info`
//! at most. Their debug and trace events describe requests and answers: the AWS SDK's
//! redact the fields its model marks sensitive, but with `LOG_SIGNABLE_BODY=true` (an SDK
//! switch for chasing signing problems) aws_sigv4 logs each request body at `trace`, and
//! RunTask's holds the runner's JIT config. What the next SDK version logs is not ours to
//! vet, so the cap does not depend on it.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::{SubscriberInitExt, TryInitError};

use crate::config::{LogFormat, LogSettings};

/// Target prefixes held at `info`: the AWS SDK (`aws_smithy_*`, `aws_sdk_*`, `aws_config`,
/// `aws_sigv4`...), and the HTTP and TLS stacks under it and under the GitHub client, whose
/// debug and trace events show requests, answers, headers and frames. A prefix covers every
/// target that starts with it (`hyper` covers `hyper_util`).
pub const CAPPED: [&str; 7] = [
    "aws_", "h2", "hyper", "octocrab", "reqwest", "rustls", "tower",
];

/// The level [`CAPPED`] targets log at most.
const CAP: LevelFilter = LevelFilter::INFO;

/// Where log lines go: servers log to stdout; one-shot commands keep stdout for their
/// output and log to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogTarget {
    Stdout,
    Stderr,
}

/// Installs the global subscriber. A second call is a no-op (tests build many apps).
pub fn init(settings: &LogSettings, target: LogTarget) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let terminal = match target {
        LogTarget::Stdout => std::io::stdout().is_terminal(),
        LogTarget::Stderr => std::io::stderr().is_terminal(),
    };
    let json = match settings.format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !terminal,
    };
    let result = match target {
        LogTarget::Stdout => install(filter, json, terminal, std::io::stdout),
        LogTarget::Stderr => install(filter, json, terminal, std::io::stderr),
    };
    drop(result);
}

/// Installs the global subscriber that [`init`] does, writing to `writer`: `filter` with
/// [`CAPPED`] held at `info` on top (a cap no directive lifts, span-scoped ones included),
/// lines as JSON (one object per event, its span's fields beside it) or human-readable,
/// coloured when `ansi`. A caller that keeps the lines (a test searching them for secrets)
/// passes its own writer. Fails when a global subscriber is already installed.
pub fn install<W>(filter: EnvFilter, json: bool, ansi: bool, writer: W) -> Result<(), TryInitError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .finish()
            .with(caps())
            .try_init()
    } else {
        builder.with_ansi(ansi).finish().with(caps()).try_init()
    }
}

/// A filter that lets everything through but [`CAPPED`] targets above [`CAP`]. It stands
/// beside the user's filter rather than inside it: an `EnvFilter` directive for a longer
/// target (`aws_smithy_runtime::client=trace`) or a span (`[job]=trace`) would win over a
/// cap written as a directive.
fn caps() -> Targets {
    CAPPED.iter().fold(
        Targets::new().with_default(LevelFilter::TRACE),
        |t, target| t.with_target(*target, CAP),
    )
}

/// An error with its whole cause chain on one line (`a: b: c`), for logging it once where
/// it is handled.
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use tracing::Level;

    use super::*;

    #[test]
    fn capped_targets_stop_at_info_and_others_pass() {
        let caps = caps();
        for target in [
            "aws_smithy_runtime::client::orchestrator",
            "aws_sdk_ecs::operation::run_task",
            "aws_config::imds",
            "hyper_util::client::legacy::pool",
            "h2::codec::framed_write",
            "reqwest::connect",
            "rustls::client::hs",
        ] {
            assert!(caps.would_enable(target, &Level::INFO), "{target}");
            assert!(!caps.would_enable(target, &Level::DEBUG), "{target}");
            assert!(!caps.would_enable(target, &Level::TRACE), "{target}");
        }
        for target in ["dockhand::worker", "sqlx::query"] {
            assert!(caps.would_enable(target, &Level::TRACE), "{target}");
        }
    }
}
