//! The one line that answers "why is my job still queued?", or says what became of the job,
//! from its row and its history.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::store::{EventKind, GitHubState, HistoryEntry, JobRecord, LaunchState};

/// A time as the story shows it: `12:01:07` today (UTC), the date too on another day.
pub fn clock(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    if t.date_naive() == now.date_naive() {
        t.format("%H:%M:%S").to_string()
    } else {
        t.format("%Y-%m-%d %H:%M:%S").to_string()
    }
}

/// A duration in the largest two units: `45s`, `4m 10s`, `2h 3m`, `3d 4h`.
pub fn span(d: chrono::TimeDelta) -> String {
    let s = d.num_seconds().max(0);
    let (days, hours, minutes, seconds) = (s / 86_400, s / 3_600 % 24, s / 60 % 60, s % 60);
    match (days, hours, minutes) {
        (0, 0, 0) => format!("{seconds}s"),
        (0, 0, m) => format!("{m}m {seconds}s"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

/// A task ARN as text shows it: `…/` and the task's id (JSON keeps the whole ARN).
pub fn short_task(arn: &str) -> String {
    match arn.rsplit_once('/') {
        Some((_, id)) => format!("…/{id}"),
        None => arn.to_string(),
    }
}

/// A string field of an entry's detail.
pub fn text<'a>(entry: &'a HistoryEntry, key: &str) -> Option<&'a str> {
    entry.detail.get(key).and_then(Value::as_str)
}

fn last(history: &[HistoryEntry], kind: EventKind) -> Option<&HistoryEntry> {
    history.iter().rev().find(|e| e.kind == kind)
}

/// Whose runner `runner` is, as the `started` entry recorded it.
fn whose(job: &JobRecord, history: &[HistoryEntry]) -> String {
    let started = last(history, EventKind::Started);
    let launched_for = started.and_then(|e| e.detail.get("launched_for")?.as_u64());
    let warm = started.is_some_and(|e| e.detail["warm"].as_bool() == Some(true));
    match (job.ran_on_dockhand, launched_for) {
        (Some(false), _) => "which dockhand did not launch".to_string(),
        (_, None) if warm => "a warm runner".to_string(),
        (_, Some(id)) if id == job.job_id.0 => "launched for this job".to_string(),
        (_, Some(id)) => format!("launched for job {id}"),
        _ => "launched by dockhand".to_string(),
    }
}

/// The line, or `None` when the store has neither a row nor a history for the job.
pub fn headline(
    job: Option<&JobRecord>,
    history: &[HistoryEntry],
    now: DateTime<Utc>,
) -> Option<String> {
    let at = |t: DateTime<Utc>| clock(t, now);
    let Some(job) = job else {
        let entry = history.last()?;
        return Some(match entry.kind {
            EventKind::Unmatched => format!(
                "not launched: no pool serves the job's labels {} (seen at {})",
                entry.detail.get("labels").unwrap_or(&Value::Null),
                at(entry.at)
            ),
            EventKind::DeadLettered => format!(
                "dead-lettered at {}: {}",
                at(entry.at),
                text(entry, "reason").unwrap_or("no reason given")
            ),
            EventKind::Deferred => waiting(history, now),
            _ => format!("received at {}; no worker has claimed it yet", at(entry.at)),
        });
    };
    let runner = job.ran_on.as_deref().unwrap_or("?");
    Some(match job.github {
        GitHubState::Completed if job.ran_on.is_none() => format!(
            "cancelled on GitHub{} before any runner took it ({})",
            job.completed_at
                .map(|t| format!(" at {}", at(t)))
                .unwrap_or_default(),
            job.conclusion.as_deref().unwrap_or("no conclusion")
        ),
        GitHubState::Completed => format!(
            "completed ({}){} on runner {runner}, {}",
            job.conclusion.as_deref().unwrap_or("no conclusion"),
            job.completed_at
                .map(|t| format!(" at {}", at(t)))
                .unwrap_or_default(),
            whose(job, history)
        ),
        GitHubState::InProgress => format!(
            "running on runner {runner}, {}{}",
            whose(job, history),
            job.started_at
                .map(|t| format!(", since {}", at(t)))
                .unwrap_or_default()
        ),
        GitHubState::Queued | GitHubState::Unknown => queued(job, history, now),
    })
}

/// The line for a job GitHub still has queued, by what dockhand did for it.
fn queued(job: &JobRecord, history: &[HistoryEntry], now: DateTime<Utc>) -> String {
    let at = |t: DateTime<Utc>| clock(t, now);
    let runner = job.runner_name.as_deref().unwrap_or("?");
    match job.launch {
        LaunchState::Owed => {
            if let Some(replaced) = last(history, EventKind::Replaced)
                .filter(|r| last(history, EventKind::Claimed).is_none_or(|c| c.at <= r.at))
            {
                format!(
                    "owed a replacement runner since {}{}; waiting for a worker to claim it",
                    at(replaced.at),
                    replacement(replaced)
                )
            } else if last(history, EventKind::Deferred).is_some() {
                waiting(history, now)
            } else {
                format!(
                    "owed a launch since {}; waiting for a worker to claim it",
                    at(job.received_at)
                )
            }
        }
        LaunchState::Launching => {
            let claimed = last(history, EventKind::Claimed);
            format!(
                "launching: worker {} holds the lease (attempt {}){}",
                job.lease_owner.as_deref().unwrap_or("?"),
                job.attempt,
                claimed
                    .map(|c| format!(" since {}", at(c.at)))
                    .unwrap_or_default()
            )
        }
        LaunchState::Launched | LaunchState::Adopted => {
            let launch = last(history, EventKind::Launched).or(last(history, EventKind::Adopted));
            let when = launch.map_or(job.updated_at, |e| e.at);
            let task = job
                .task_arn
                .as_deref()
                .map(|t| format!(" on task {}", short_task(t)))
                .unwrap_or_default();
            let verb = if job.launch == LaunchState::Adopted {
                "adopted the launch of runner"
            } else {
                "launched runner"
            };
            let waited = span(now - when);
            let replaced = last(history, EventKind::Replaced)
                .map(replacement)
                .unwrap_or_default();
            match last(history, EventKind::RunnerTaken) {
                Some(taken) => format!(
                    "{verb} {runner}{task} at {}; it ran job {} instead, and GitHub has not \
                     started this job yet ({waited}): the next idle runner of pool {} takes it",
                    at(when),
                    taken.detail.get("ran_job").unwrap_or(&Value::Null),
                    job.pool.as_deref().unwrap_or("?")
                ),
                None => format!(
                    "{verb} {runner}{task} at {}{replaced}; GitHub has not started the job yet \
                     ({waited})",
                    at(when)
                ),
            }
        }
        LaunchState::Failed => match last(history, EventKind::DeadLettered) {
            Some(dead) => format!(
                "dead-lettered at {}: {}",
                at(dead.at),
                text(dead, "reason").unwrap_or("no reason given")
            ),
            None => format!(
                "failed at {}: {}",
                at(job.updated_at),
                job.reason.as_deref().unwrap_or("no reason given")
            ),
        },
        LaunchState::DryRun => format!(
            "dry run: would have launched runner {runner} at {}",
            at(job.updated_at)
        ),
        LaunchState::Waived => format!(
            "no launch owed: {} (at {})",
            last(history, EventKind::Waived)
                .and_then(|e| text(e, "reason"))
                .or(job.reason.as_deref())
                .unwrap_or("the job no longer needs a runner"),
            at(job.updated_at)
        ),
        LaunchState::Unknown => format!(
            "in a launch state this build does not know (written by a newer dockhand), since {}",
            at(job.updated_at)
        ),
    }
}

/// ` (replacement N of M: <why the runner before went away>)`.
fn replacement(replaced: &HistoryEntry) -> String {
    format!(
        " (replacement {} of {}: {})",
        replaced.detail.get("replacement").unwrap_or(&Value::Null),
        replaced.detail.get("max").unwrap_or(&Value::Null),
        text(replaced, "reason").unwrap_or("its runner went away")
    )
}

/// "waiting: <the last deferral's reason> since <the first of its run of the same kind>,
/// deferred N times; next try at <until>".
fn waiting(history: &[HistoryEntry], now: DateTime<Utc>) -> String {
    let deferrals: Vec<&HistoryEntry> = history
        .iter()
        .filter(|e| e.kind == EventKind::Deferred)
        .collect();
    let Some(latest) = deferrals.last() else {
        return "waiting".to_string();
    };
    let why = text(latest, "why");
    let since = deferrals
        .iter()
        .rev()
        .take_while(|e| text(e, "why") == why)
        .last()
        .map_or(latest.at, |e| e.at);
    let times = match deferrals.len() {
        1 => "once".to_string(),
        n => format!("{n} times"),
    };
    let next = latest
        .detail
        .get("until")
        .and_then(Value::as_str)
        .and_then(|t| t.parse::<DateTime<Utc>>().ok())
        .map(|t| format!("; next try at {}", clock(t, now)))
        .unwrap_or_default();
    format!(
        "waiting: {} since {}, deferred {times}{next}",
        text(latest, "reason").unwrap_or("deferred"),
        clock(since, now)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_show_the_two_largest_units() {
        let s = chrono::TimeDelta::seconds;
        assert_eq!(span(s(45)), "45s");
        assert_eq!(span(s(250)), "4m 10s");
        assert_eq!(span(s(7_380)), "2h 3m");
        assert_eq!(span(s(273_600)), "3d 4h");
        assert_eq!(span(s(-3)), "0s");
    }

    #[test]
    fn times_carry_the_date_only_on_another_day() {
        let now: DateTime<Utc> = "2026-12-02T15:00:00Z".parse().unwrap();
        let today: DateTime<Utc> = "2026-12-02T12:01:07Z".parse().unwrap();
        let before: DateTime<Utc> = "2026-12-01T23:59:59Z".parse().unwrap();
        assert_eq!(clock(today, now), "12:01:07");
        assert_eq!(clock(before, now), "2026-12-01 23:59:59");
    }

    #[test]
    fn a_task_is_shown_by_its_id() {
        assert_eq!(
            short_task("arn:aws:ecs:eu-west-1:123456789012:task/runners/84b8ce1a"),
            "…/84b8ce1a"
        );
        assert_eq!(short_task("84b8ce1a"), "84b8ce1a");
    }
}
