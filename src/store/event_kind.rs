//! The kinds of a job's history entries ([`super::history`]): a closed set, stored by
//! name, so that an entry written by a newer build reads as `unknown` rather than failing.

use serde::Serialize;

/// What happened to a job: a closed set, stored by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The first `queued` delivery a worker handled (its time is the ingress's).
    Received,
    /// Another `queued` delivery of the job, with another delivery id.
    Duplicate,
    /// A pool serves the job's labels.
    Matched,
    /// No pool serves them: nothing is launched.
    Unmatched,
    /// The launch waits: why, and until when.
    Deferred,
    /// A worker took the launch's lease (an attempt), perhaps over an expired one.
    Claimed,
    /// A JIT runner was registered on GitHub.
    Registered,
    /// Its task was started.
    Launched,
    /// A task (or a runner that ran a job) an interrupted attempt had started was adopted.
    Adopted,
    /// Dry run: what would have launched.
    DryRun,
    /// No launch is owed any more.
    Waived,
    /// The launch failed permanently.
    Failed,
    /// Its message went to the dead-letter queue.
    DeadLettered,
    /// `dockhand requeue` moved its message back; a failed launch is tried again.
    Requeued,
    /// GitHub started the job on a runner.
    Started,
    /// GitHub completed the job.
    Completed,
    /// GitHub completed the job before any runner took it.
    Cancelled,
    /// A runner registration made for the job was deleted.
    RunnerRemoved,
    /// The runner launched for this job ran another job.
    RunnerTaken,
    /// The reconciler found the task of a runner for this job stopped: ECS's stop code,
    /// reason and exit code.
    TaskStopped,
    /// The job's runner went away before taking a job: a new attempt is launched.
    Replaced,
    /// The reconciler removed a runner launched for this job (idle surplus, stuck
    /// starting, over its max runtime, or an orphan).
    Reaped,
    /// GitHub refused to remove the runner (it had just taken a job): left alone.
    ReapRefused,
    /// The reconciler asked GitHub about the job, which had gone quiet.
    Verified,
    /// The runner running this job lost its task: GitHub fails the job.
    RunnerLost,
    /// Dry run: what the reconciler would have done.
    Would,
    /// Spot reclaimed the task of a runner for this job (or of the runner running it):
    /// before the runner took a job, or during one.
    Interrupted,
    /// What became of the re-run of an interrupted job's workflow run: requested (and the
    /// new run attempt), covered (re-run already), not needed, refused, expired.
    Rerun,
    /// A name this build does not know (written by a newer one).
    Unknown,
}

impl EventKind {
    pub const ALL: [EventKind; 28] = [
        Self::Received,
        Self::Duplicate,
        Self::Matched,
        Self::Unmatched,
        Self::Deferred,
        Self::Claimed,
        Self::Registered,
        Self::Launched,
        Self::Adopted,
        Self::DryRun,
        Self::Waived,
        Self::Failed,
        Self::DeadLettered,
        Self::Requeued,
        Self::Started,
        Self::Completed,
        Self::Cancelled,
        Self::RunnerRemoved,
        Self::RunnerTaken,
        Self::TaskStopped,
        Self::Replaced,
        Self::Reaped,
        Self::ReapRefused,
        Self::Verified,
        Self::RunnerLost,
        Self::Would,
        Self::Interrupted,
        Self::Rerun,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Received => "received",
            Self::Duplicate => "duplicate",
            Self::Matched => "matched",
            Self::Unmatched => "unmatched",
            Self::Deferred => "deferred",
            Self::Claimed => "claimed",
            Self::Registered => "registered",
            Self::Launched => "launched",
            Self::Adopted => "adopted",
            Self::DryRun => "dry_run",
            Self::Waived => "waived",
            Self::Failed => "failed",
            Self::DeadLettered => "dead_lettered",
            Self::Requeued => "requeued",
            Self::Started => "started",
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
            Self::RunnerRemoved => "runner_removed",
            Self::RunnerTaken => "runner_taken",
            Self::TaskStopped => "task_stopped",
            Self::Replaced => "replaced",
            Self::Reaped => "reaped",
            Self::ReapRefused => "reap_refused",
            Self::Verified => "verified",
            Self::RunnerLost => "runner_lost",
            Self::Would => "would",
            Self::Interrupted => "interrupted",
            Self::Rerun => "rerun",
            Self::Unknown => "unknown",
        }
    }

    pub fn parse(value: &str) -> Self {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == value)
            .unwrap_or(Self::Unknown)
    }
}
