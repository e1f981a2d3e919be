//! A job's story, and lists of jobs and runners, as text for people.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::JobStory;
use super::headline::{clock, short_task, span, text};
use crate::store::{EventKind, HistoryEntry, JobRecord, RunnerRecord};

/// The story: the headline, the job's facts, the timeline (each step with the gap since the
/// one before), and what `--live` found.
pub fn story(story: &JobStory, now: DateTime<Utc>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "job {}: {}", story.job_id, story.headline);
    if let Some(job) = &story.job {
        let _ = writeln!(
            out,
            "  repo {}, pool {}, launch {}, GitHub {}, attempts {}",
            job.repo,
            job.pool.as_deref().unwrap_or("-"),
            job.launch.as_str(),
            job.github.as_str(),
            job.attempt
        );
    }
    if story.history.is_empty() {
        let _ = writeln!(
            out,
            "\nno history recorded (the job was stored before this dockhand version kept histories)"
        );
    } else {
        let _ = writeln!(
            out,
            "\ntimes UTC, {}",
            story.history[0].at.format("%Y-%m-%d")
        );
        let mut previous: Option<DateTime<Utc>> = None;
        let mut rows = Vec::new();
        for entry in &story.history {
            let gap = previous.map_or_else(String::new, |p| gap(entry.at - p));
            previous = Some(entry.at);
            rows.push([
                format!(
                    "{}.{:03}",
                    clock(entry.at, now),
                    entry.at.timestamp_subsec_millis()
                ),
                gap,
                entry.kind.as_str().to_string(),
                describe(entry, story.job_id.0, now),
                entry.process.clone(),
            ]);
        }
        out.push_str(&table(&["TIME", "GAP", "EVENT", "WHAT", "BY"], &rows));
    }
    if let Some(live) = &story.live {
        out.push('\n');
        out.push_str(&live.render());
    }
    out
}

/// The time since the step before: milliseconds under a second (where dockhand's own
/// latency shows), else as [`span`].
fn gap(d: chrono::TimeDelta) -> String {
    match d.num_milliseconds() {
        ms if ms < 0 => "-".to_string(),
        ms if ms < 1000 => format!("+{ms}ms"),
        _ => format!("+{}", span(d)),
    }
}

/// One entry in words.
pub fn describe(entry: &HistoryEntry, job: u64, now: DateTime<Utc>) -> String {
    let s = |key: &str| text(entry, key).unwrap_or("?").to_string();
    let d = &entry.detail;
    match entry.kind {
        EventKind::Received => format!("delivery {}, labels {}", s("delivery"), d["labels"]),
        EventKind::Duplicate => match text(entry, "launch") {
            Some(launch) => format!("delivery {} (launch already {launch})", s("delivery")),
            None => format!("delivery {}", s("delivery")),
        },
        EventKind::Matched => format!("pool {}", s("pool")),
        EventKind::Unmatched => format!("no pool serves labels {}", d["labels"]),
        EventKind::Deferred => {
            let until = text(entry, "until")
                .and_then(|t| t.parse::<DateTime<Utc>>().ok())
                .map(|t| format!("; next try at {}", clock(t, now)))
                .unwrap_or_default();
            let kept = if text(entry, "leftovers") == Some("kept") {
                "; its registration or task stays on record for the next attempt"
            } else {
                ""
            };
            format!("{}{until}{kept}", s("reason"))
        }
        EventKind::Claimed => {
            let mut line = format!("attempt {}", d["attempt"]);
            if let Some(from) = text(entry, "took_over_from") {
                let _ = write!(line, ", taken over from {from}, whose lease had expired");
            }
            if let Some(left) = d.get("leftovers").filter(|l| !l.is_null()) {
                let what: Vec<String> = ["runner", "task"]
                    .iter()
                    .filter_map(|k| Some(format!("{k} {}", left.get(*k)?.as_str()?)))
                    .collect();
                let _ = write!(line, "; an earlier attempt left {}", what.join(", "));
            }
            line
        }
        EventKind::Registered => format!("runner {} (id {})", s("runner"), d["runner_id"]),
        EventKind::Launched => {
            let task = short_task(&s("task"));
            match text(entry, "launched_on") {
                Some(on) => format!("runner {} on task {task} ({on})", s("runner")),
                None => format!("runner {} on task {task}", s("runner")),
            }
        }
        EventKind::Adopted => match text(entry, "task") {
            Some(task) => format!(
                "task {} of an interrupted attempt (runner {})",
                short_task(task),
                s("runner")
            ),
            None => format!(
                "runner {} of an interrupted attempt already ran a job",
                s("runner")
            ),
        },
        EventKind::DryRun => format!("would launch runner {}", s("runner")),
        EventKind::Waived | EventKind::Failed | EventKind::DeadLettered => s("reason"),
        EventKind::Requeued => {
            let reopened = if d["reopened"] == Value::Bool(true) {
                "; the failed launch is tried again"
            } else {
                ""
            };
            format!("requeue {} of its message{reopened}", d["requeues"])
        }
        EventKind::Started => format!("on runner {}, {}", s("runner"), whose(d, job)),
        EventKind::Completed => format!(
            "{} on runner {}, {}",
            s("conclusion"),
            s("runner"),
            whose(d, job)
        ),
        EventKind::Cancelled => format!("{} before any runner took it", s("conclusion")),
        EventKind::RunnerRemoved => format!("registration of runner {} deleted", s("runner")),
        EventKind::RunnerTaken => format!(
            "its runner {} ran job {} instead",
            s("runner"),
            d["ran_job"]
        ),
        EventKind::TaskStopped => {
            let how = match (text(entry, "stop_code"), text(entry, "stopped_reason")) {
                (Some(code), Some(reason)) => format!("{code}: {reason}"),
                (Some(code), None) => code.to_string(),
                (None, Some(reason)) => reason.to_string(),
                (None, None) => "ECS no longer knows it (reason unknown)".to_string(),
            };
            let exit = d["exit_code"]
                .as_i64()
                .map(|c| format!(", exit code {c}"))
                .unwrap_or_default();
            let job = if d["had_job"] == Value::Bool(true) {
                " while running a job"
            } else {
                " before its runner took a job"
            };
            format!(
                "task {} of runner {} stopped{job}: {how}{exit}",
                short_task(&s("task")),
                s("runner")
            )
        }
        EventKind::Replaced => format!(
            "replacement {} of {}: {}",
            d["replacement"],
            d["max"],
            s("reason")
        ),
        EventKind::Reaped => format!("runner {} removed: {}", s("runner"), s("why")),
        EventKind::ReapRefused => format!(
            "runner {} kept: GitHub says it is running a job",
            s("runner")
        ),
        EventKind::Verified => format!(
            "GitHub says {}; {}",
            s("github"),
            match text(entry, "action") {
                Some("healed") => "its webhook was lost: the store is put right".to_string(),
                Some("resent") => "its queued message is sent again".to_string(),
                Some("replaced") => "no runner of its pool is idle or starting".to_string(),
                Some("wait") => format!(
                    "{} runner(s) of its pool idle or starting",
                    d["spare_runners"]
                ),
                Some(other) => other.to_string(),
                None => String::new(),
            }
        ),
        EventKind::RunnerLost => format!(
            "its runner {} lost its task while running it: {}",
            s("runner"),
            text(entry, "stopped_reason").unwrap_or("reason unknown")
        ),
        EventKind::Would => format!("dry run: would {} ({})", s("action"), d),
        EventKind::Interrupted => {
            let then = if d["had_job"] == Value::Bool(true) {
                match d["rerun"].as_bool() {
                    Some(true) => {
                        "while running a job: it fails on GitHub, and its run's failed jobs are re-run once the run completes"
                    }
                    _ => {
                        "while running a job: it fails on GitHub (the pool does not re-run interrupted jobs)"
                    }
                }
            } else {
                "before its runner took a job: replaced on the pool's next capacity provider"
            };
            format!(
                "Spot reclaimed task {} of runner {} on {} {then}",
                short_task(&s("task")),
                s("runner"),
                text(entry, "capacity_provider").unwrap_or("Spot capacity"),
            )
        }
        EventKind::Rerun => match text(entry, "outcome") {
            Some("requested") => format!(
                "GitHub re-runs the failed jobs of run {} as attempt {}: they launch on on-demand capacity",
                d["run_id"], d["attempt"]
            ),
            Some("covered") => format!(
                "run {} was re-run already (attempt {}): not asked again",
                d["run_id"], d["attempt"]
            ),
            Some("not_needed") => format!(
                "the job ended {} after all: run {} is not re-run",
                s("conclusion"),
                d["run_id"]
            ),
            Some(other) => format!("run {} not re-run ({other}): {}", d["run_id"], s("reason")),
            None => d.to_string(),
        },
        EventKind::Unknown => d.to_string(),
    }
}

/// Whose runner a `started` or `completed` entry names.
fn whose(detail: &Value, job: u64) -> String {
    match (
        detail["dockhand"].as_bool(),
        detail["launched_for"].as_u64(),
    ) {
        (Some(false), _) => "not launched by dockhand".to_string(),
        (_, None) if detail["warm"].as_bool() == Some(true) => "a warm runner".to_string(),
        (_, Some(id)) if id == job => "launched for this job".to_string(),
        (_, Some(id)) => format!("launched for job {id}"),
        _ => "no runner".to_string(),
    }
}

/// `dockhand jobs list`.
pub fn jobs(jobs: &[JobRecord], now: DateTime<Utc>) -> String {
    let rows: Vec<[String; 8]> = jobs
        .iter()
        .map(|j| {
            [
                j.job_id.to_string(),
                j.repo.clone(),
                j.pool.clone().unwrap_or_else(|| "-".into()),
                j.launch.as_str().to_string(),
                j.github.as_str().to_string(),
                j.runner_name.clone().unwrap_or_else(|| "-".into()),
                span(now - j.received_at),
                j.reason.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let header = [
        "JOB", "REPO", "POOL", "LAUNCH", "GITHUB", "RUNNER", "AGE", "REASON",
    ];
    format!("{}{} jobs\n", table(&header, &rows), jobs.len())
}

/// `dockhand runners list`.
pub fn runners(runners: &[RunnerRecord], now: DateTime<Utc>) -> String {
    let rows: Vec<[String; 7]> = runners
        .iter()
        .map(|r| {
            [
                r.runner_name.clone(),
                r.pool.clone(),
                r.for_job_id
                    .map_or_else(|| "warm".into(), |j| j.to_string()),
                r.ran_job_id.map_or_else(|| "-".into(), |j| j.to_string()),
                r.task_arn.as_deref().map_or_else(|| "-".into(), short_task),
                r.state.as_str().to_string(),
                span(now - r.created_at),
            ]
        })
        .collect();
    let header = [
        "RUNNER", "POOL", "FOR JOB", "RAN JOB", "TASK", "STATE", "AGE",
    ];
    format!("{}{} runners\n", table(&header, &rows), runners.len())
}

/// Columns padded to their widest cell; the last one is not padded.
fn table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == N {
                text.push_str(cell);
            } else {
                let _ = write!(text, "{cell:<width$}  ", width = widths[i]);
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}
