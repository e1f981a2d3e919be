//! The closed sets of job and runner states, as stored.

/// What dockhand did for a job: the launch it owes every queued job. Kept apart from
/// [`GitHubState`], because a job that ran on another job's runner still owes a launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LaunchState {
    /// A launch is owed and nobody holds it: the next `queued` delivery claims it. An
    /// interrupted attempt's registration or task may still be recorded, for that claim to
    /// adopt or clean up.
    Owed,
    /// A worker holds the lease and is launching.
    Launching,
    /// A runner task was started for the job.
    Launched,
    /// A task an interrupted attempt had started was found and recorded.
    Adopted,
    /// The launch failed permanently (until `dockhand requeue` reopens it).
    Failed,
    /// Dry run: what would have launched was recorded.
    DryRun,
    /// No launch is owed: the job finished before any runner took it, or ran on a runner
    /// dockhand did not launch.
    Waived,
    /// A value this build does not know (written by a newer one).
    Unknown,
}

impl LaunchState {
    pub const ALL: [LaunchState; 7] = [
        Self::Owed,
        Self::Launching,
        Self::Launched,
        Self::Adopted,
        Self::Failed,
        Self::DryRun,
        Self::Waived,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owed => "owed",
            Self::Launching => "launching",
            Self::Launched => "launched",
            Self::Adopted => "adopted",
            Self::Failed => "failed",
            Self::DryRun => "dry_run",
            Self::Waived => "waived",
            Self::Unknown => "unknown",
        }
    }

    pub fn parse(value: &str) -> Self {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == value)
            .unwrap_or(Self::Unknown)
    }

    /// Whether nothing more will be launched for the job (short of a requeue of a failed
    /// one): a `queued` delivery for it is a duplicate.
    pub fn is_settled(self) -> bool {
        !matches!(self, Self::Owed | Self::Launching)
    }
}

/// What GitHub last said about a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GitHubState {
    Queued,
    /// Running on the runner in `ran_on`.
    InProgress,
    /// Finished, with a conclusion (a job cancelled while queued too).
    Completed,
    Unknown,
}

impl GitHubState {
    pub const ALL: [GitHubState; 3] = [Self::Queued, Self::InProgress, Self::Completed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::InProgress => "in_progress",
            Self::Completed => "completed",
            Self::Unknown => "unknown",
        }
    }

    pub fn parse(value: &str) -> Self {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == value)
            .unwrap_or(Self::Unknown)
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
    /// Its registration was deleted (a launch that failed or was taken over, or the
    /// reconciler removed it).
    Removed,
    /// Its task stopped before the runner took a job (the registration may remain, for the
    /// orphan sweep).
    Stopped,
    Unknown,
}

impl RunnerState {
    pub const ALL: [RunnerState; 6] = [
        Self::Registered,
        Self::Launched,
        Self::Busy,
        Self::Finished,
        Self::Removed,
        Self::Stopped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Registered => "registered",
            Self::Launched => "launched",
            Self::Busy => "busy",
            Self::Finished => "finished",
            Self::Removed => "removed",
            Self::Stopped => "stopped",
            Self::Unknown => "unknown",
        }
    }

    pub fn parse(value: &str) -> Self {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == value)
            .unwrap_or(Self::Unknown)
    }

    /// Whether it counts toward its pool's `max_runners`.
    pub fn is_live(self) -> bool {
        matches!(self, Self::Registered | Self::Launched | Self::Busy)
    }
}

/// Each state serializes as its stored name.
macro_rules! serialize_by_name {
    ($($state:ty),*) => {$(
        impl serde::Serialize for $state {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    )*};
}

serialize_by_name!(LaunchState, GitHubState, RunnerState);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_their_names() {
        for s in LaunchState::ALL {
            assert_eq!(LaunchState::parse(s.as_str()), s);
        }
        for s in GitHubState::ALL {
            assert_eq!(GitHubState::parse(s.as_str()), s);
        }
        for s in RunnerState::ALL {
            assert_eq!(RunnerState::parse(s.as_str()), s);
        }
        assert_eq!(LaunchState::parse("pending"), LaunchState::Unknown);
    }
}
