//! The closed sets of job and runner states, as stored.

/// Where a job is in its life. `Pending` and an expired `Launching` may be claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobState {
    Pending,
    Launching,
    Launched,
    Running,
    Completed,
    Cancelled,
    Failed,
    /// No pool served it: only rows from older builds, which stored such jobs.
    Unmatched,
    DryRun,
    /// A value this build does not know (written by a newer one).
    Unknown,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Launching => "launching",
            Self::Launched => "launched",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
            Self::Failed => "failed",
            Self::Unmatched => "unmatched",
            Self::DryRun => "dry_run",
            Self::Unknown => "unknown",
        }
    }

    pub fn parse(value: &str) -> Self {
        match value {
            "pending" => Self::Pending,
            "launching" => Self::Launching,
            "launched" => Self::Launched,
            "running" => Self::Running,
            "completed" => Self::Completed,
            "cancelled" => Self::Cancelled,
            "failed" => Self::Failed,
            "unmatched" => Self::Unmatched,
            "dry_run" => Self::DryRun,
            _ => Self::Unknown,
        }
    }
}

/// Where a runner dockhand registered is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunnerState {
    /// Registered on GitHub, no task yet.
    Registered,
    /// Its task is running, waiting for a job.
    Launched,
    /// Running a job.
    Busy,
    /// Its job completed; the ephemeral runner and its task are gone.
    Finished,
    /// Its registration was deleted (a launch that failed or was taken over).
    Removed,
    Unknown,
}

impl RunnerState {
    pub const ALL: [RunnerState; 5] = [
        Self::Registered,
        Self::Launched,
        Self::Busy,
        Self::Finished,
        Self::Removed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Registered => "registered",
            Self::Launched => "launched",
            Self::Busy => "busy",
            Self::Finished => "finished",
            Self::Removed => "removed",
            Self::Unknown => "unknown",
        }
    }

    pub fn parse(value: &str) -> Self {
        match value {
            "registered" => Self::Registered,
            "launched" => Self::Launched,
            "busy" => Self::Busy,
            "finished" => Self::Finished,
            "removed" => Self::Removed,
            _ => Self::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_their_names() {
        for s in [
            JobState::Pending,
            JobState::Launching,
            JobState::Launched,
            JobState::Running,
            JobState::Completed,
            JobState::Cancelled,
            JobState::Failed,
            JobState::Unmatched,
            JobState::DryRun,
        ] {
            assert_eq!(JobState::parse(s.as_str()), s);
        }
        for s in RunnerState::ALL {
            assert_eq!(RunnerState::parse(s.as_str()), s);
        }
    }
}
