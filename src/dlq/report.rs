//! The faces of `dockhand dlq list` and `dockhand requeue`: a table for people or JSON for
//! scripts on stdout; the confirmation, a progress bar (on a terminal) or a line per
//! message (elsewhere), and the summary on stderr. Bodies are never printed.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{DeadLetter, Moved, Plan, Selection, Summary};
use crate::config::Settings;
use crate::queue::{self, Queue};

/// How results are printed on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// Whether a person is there to answer a question.
pub fn interactive() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// The main queue and its dead-letter queue, as configured.
async fn open(settings: &Settings) -> anyhow::Result<(Arc<dyn Queue>, Arc<dyn Queue>)> {
    let main = queue::connect(&settings.queue, &settings.aws).await?;
    let dlq = main
        .dead_letter_queue()
        .await
        .with_context(|| format!("finding the dead-letter queue of {}", main.location()))?
        .with_context(|| {
            format!(
                "{} has no dead-letter queue: give it a RedrivePolicy, or set \
                 queue.sqs.dead_letter_url",
                main.location()
            )
        })?;
    Ok((main, dlq))
}

/// `dockhand dlq list`.
pub async fn run_list(settings: &Settings, max: usize, format: Format) -> anyhow::Result<()> {
    let (_, dlq) = open(settings).await?;
    let listing = super::list(&*dlq, max)
        .await
        .with_context(|| format!("reading {}", dlq.location()))?;
    let entries = listing.entries;
    let now = Utc::now();
    match format {
        Format::Json => println!(
            "{}",
            Value::from_iter(entries.iter().map(|e| entry_json(e, now)))
        ),
        Format::Table if entries.is_empty() => {
            eprintln!("the dead-letter queue {} is empty", dlq.location())
        }
        Format::Table => {
            print!("{}", table(&entries, now));
            let more = if entries.len() == max {
                format!(" (the first {max}: --max shows more)")
            } else if !listing.complete {
                " (the scan stopped before the end of the queue: more remain)".to_string()
            } else {
                String::new()
            };
            eprintln!(
                "{} dead-lettered message{} in {}{more}",
                entries.len(),
                plural(entries.len()),
                dlq.location()
            );
        }
    }
    Ok(())
}

/// How `dockhand requeue` should go about it.
#[derive(Debug, Clone)]
pub struct RequeueRun {
    pub selection: Selection,
    pub dry_run: bool,
    /// Confirmed in advance (`--yes`).
    pub yes: bool,
    /// Messages per second, at most.
    pub rate: Option<f64>,
    pub format: Format,
}

/// `dockhand requeue`: exits 1 if any chosen message failed to move, or the confirmation
/// was declined.
pub async fn run_requeue(settings: &Settings, run: RequeueRun) -> anyhow::Result<ExitCode> {
    let (main, dlq) = open(settings).await?;
    let plan = super::plan(&*dlq, &run.selection)
        .await
        .with_context(|| format!("reading {}", dlq.location()))?;
    let now = Utc::now();
    if run.format == Format::Table {
        show_plan(&plan, &run, now, &*main, &*dlq);
    }
    if run.dry_run || plan.chosen.is_empty() {
        let summary = plan.unmoved();
        let outcomes = plan
            .chosen
            .iter()
            .map(|e| (e, "would_move", None))
            .collect();
        finish(&run, outcomes, &plan.over_limit, &summary, now);
        plan.release(&*dlq).await;
        return Ok(ExitCode::SUCCESS);
    }
    if !run.yes && !confirm(plan.chosen.len(), &*main).await? {
        eprintln!("nothing moved");
        plan.release(&*dlq).await;
        return Ok(ExitCode::FAILURE);
    }

    let over_limit = plan.over_limit.clone();
    let mut results: Vec<(DeadLetter, Moved)> = Vec::with_capacity(plan.chosen.len());
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(plan.chosen.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} done, {eta} left")
                .expect("a valid template"),
        );
        bar
    });
    let summary = plan
        .execute(&main, &dlq, run.rate, |entry, moved| {
            let line = match moved {
                Moved::Moved => format!("moved {}", describe(entry)),
                Moved::Failed(why) => format!("FAILED {}: {why}", describe(entry)),
            };
            match &bar {
                Some(bar) => {
                    if matches!(moved, Moved::Failed(_)) {
                        bar.println(line);
                    }
                    bar.inc(1);
                }
                None => eprintln!("{line}"),
            }
            results.push((entry.clone(), moved.clone()));
        })
        .await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let outcomes = results
        .iter()
        .map(|(entry, moved)| match moved {
            Moved::Moved => (entry, "moved", None),
            Moved::Failed(why) => (entry, "failed", Some(why.as_str())),
        })
        .collect();
    finish(&run, outcomes, &over_limit, &summary, now);
    Ok(if summary.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// What is about to move, and what matched but is over the limit.
fn show_plan(plan: &Plan, run: &RequeueRun, now: DateTime<Utc>, main: &dyn Queue, dlq: &dyn Queue) {
    if !plan.chosen.is_empty() {
        eprintln!(
            "{} {} message{} from {} to {}:",
            if run.dry_run { "Would move" } else { "Moving" },
            plan.chosen.len(),
            plural(plan.chosen.len()),
            dlq.location(),
            main.location()
        );
        print!("{}", table(&plan.chosen, now));
    }
    if !plan.complete {
        eprintln!(
            "The scan stopped after {} minutes, before the end of the dead-letter queue: \
             run again for the rest.",
            super::max_scan_time(super::MOVE_HOLD).as_secs() / 60
        );
    }
    if !plan.over_limit.is_empty() {
        eprintln!(
            "Skipping {} message{} already requeued {} times or more (--force moves them too):",
            plan.over_limit.len(),
            plural(plan.over_limit.len()),
            run.selection.max_requeues
        );
        eprint!("{}", table(&plan.over_limit, now));
    }
}

/// Prints the summary (and, for `--output json`, every message's outcome).
fn finish(
    run: &RequeueRun,
    outcomes: Vec<(&DeadLetter, &str, Option<&str>)>,
    over_limit: &[DeadLetter],
    summary: &Summary,
    now: DateTime<Utc>,
) {
    match run.format {
        Format::Json => {
            let mut messages: Vec<Value> = outcomes
                .into_iter()
                .map(|(entry, outcome, error)| {
                    let mut value = entry_json(entry, now);
                    value["outcome"] = outcome.into();
                    if let Some(error) = error {
                        value["error"] = error.into();
                    }
                    value
                })
                .collect();
            messages.extend(over_limit.iter().map(|entry| {
                let mut value = entry_json(entry, now);
                value["outcome"] = "skipped_by_limit".into();
                value
            }));
            println!(
                "{}",
                json!({"dry_run": run.dry_run, "messages": messages, "summary": summary})
            );
        }
        Format::Table => {
            let verb = if run.dry_run { "would move" } else { "moved" };
            eprintln!(
                "{verb} {}, skipped by filter {}, skipped by limit {}, failed {}",
                if run.dry_run {
                    outcomes.len()
                } else {
                    summary.moved
                },
                summary.skipped_by_filter,
                summary.skipped_by_limit,
                summary.failed
            );
        }
    }
}

/// Asks on the terminal; only "y" or "yes" goes ahead.
async fn confirm(count: usize, main: &dyn Queue) -> anyhow::Result<bool> {
    eprint!(
        "Move {count} message{} to {}? [y/N] ",
        plural(count),
        main.location()
    );
    std::io::stderr().flush()?;
    let answer = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    })
    .await??;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

/// `job 42 (octo/hello, queued)`.
fn describe(entry: &DeadLetter) -> String {
    let job = entry.job_id.map_or_else(
        || format!("message {}", entry.message.id),
        |id| format!("job {id}"),
    );
    let details: Vec<&str> = [entry.repo.as_deref(), entry.action.as_deref()]
        .into_iter()
        .flatten()
        .collect();
    if details.is_empty() {
        job
    } else {
        format!("{job} ({})", details.join(", "))
    }
}

fn entry_json(entry: &DeadLetter, now: DateTime<Utc>) -> Value {
    json!({
        "message_id": entry.message.id.0,
        "job_id": entry.job_id,
        "repo": entry.repo,
        "action": entry.action,
        "pool": entry.pool,
        "receives": entry.receives,
        "requeues": entry.requeues,
        "since": entry.since,
        "age_seconds": entry.age(now).map(|a| a.as_secs()),
        "reason": entry.reason,
    })
}

/// A table with a header, columns padded to their widest cell, the reason last and whole.
pub fn table(entries: &[DeadLetter], now: DateTime<Utc>) -> String {
    const HEADER: [&str; 8] = [
        "JOB", "REPO", "ACTION", "POOL", "RECEIVES", "REQUEUES", "AGE", "REASON",
    ];
    let dash = || "-".to_string();
    let rows: Vec<[String; 8]> = entries
        .iter()
        .map(|e| {
            [
                e.job_id.map_or_else(dash, |id| id.to_string()),
                e.repo.clone().unwrap_or_else(dash),
                e.action.clone().unwrap_or_else(dash),
                e.pool.clone().unwrap_or_else(dash),
                e.receives.to_string(),
                e.requeues.to_string(),
                e.age(now).map_or_else(dash, age),
                e.reason.clone(),
            ]
        })
        .collect();
    let mut widths = HEADER.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header = HEADER.map(str::to_string);
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `42s`, `17m`, `3h 5m`, `2d 4h`.
fn age(age: Duration) -> String {
    let s = age.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86400, s % 86400 / 3600),
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_at_a_glance() {
        assert_eq!(age(Duration::from_secs(42)), "42s");
        assert_eq!(age(Duration::from_secs(17 * 60 + 5)), "17m");
        assert_eq!(age(Duration::from_secs(3 * 3600 + 5 * 60)), "3h 5m");
        assert_eq!(age(Duration::from_secs(2 * 86400 + 4 * 3600)), "2d 4h");
    }
}
